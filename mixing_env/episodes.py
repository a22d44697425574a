"""One episode: the policy protocol, the episode runner and its record.

Every policy - a baseline, the trained module's adapter, a test's scripted policy - follows
:class:`Policy`, and every episode anywhere (evaluation, demonstrations, mixing, the tests) is
played by :func:`run_episode`, which returns one :class:`EpisodeRecord`.

Axis order: per-step arrays are stacked with the **slot axis first**, ``(C, n)`` for ``n``
steps, like a song's ``stems`` (C, T, chunk), its ``true_gains`` (C, T) and a baseline's
``gains(song)`` (C, T), so a record's gains compare with them without a transpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mixing_env.data.song import Song

__all__ = ["EpisodeRecord", "Policy", "run_episode"]


@runtime_checkable
class Policy(Protocol):
    """What the runner drives: ``reset`` once per episode, then ``act`` once per step."""

    name: str
    """Row label in tables and plots."""

    def reset(self, song: Song, start: int) -> None:
        """A new episode starts on ``song`` at chunk ``start`` (clear state, look ahead)."""

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The action for the current chunk, float32 [shape=(C,)], given its observation."""


@dataclass
class EpisodeRecord:
    """What one policy did in one episode of ``n`` steps (slot axis first, see the module).

    Attributes:
        song: The song played.
        start: Its first chunk; step k mixed chunk ``start + k``.
        gains: The gains the env applied (on the simplex), float64 [shape=(C, n)].
        actions: The policy's actions as given, float32 [shape=(C, n)].
        reward: Reward per step [shape=(n,)].
        mfcc_distance: ``info["mfcc_distance"]`` per step [shape=(n,)].
        kl: ``info["kl"]`` per step [shape=(n,)].
        terminated: The last step's ``terminated``.
        truncated: The last step's ``truncated``.
        observations: With ``keep_observations``: the n + 1 observations, reset's first.
    """

    song: Song
    start: int
    gains: np.ndarray
    actions: np.ndarray
    reward: np.ndarray
    mfcc_distance: np.ndarray
    kl: np.ndarray
    terminated: bool
    truncated: bool
    observations: list[dict[str, np.ndarray]] | None = None

    @property
    def n_steps(self) -> int:
        """n, the number of steps."""
        return int(self.reward.shape[0])

    @property
    def chunks(self) -> np.ndarray:
        """The chunk each step mixed [shape=(n,)]."""
        return np.arange(self.start, self.start + self.n_steps)


def run_episode(
    env: Any,
    policy: Policy,
    *,
    song: str | None = None,
    start: int | None = None,
    seed: int | None = None,
    keep_observations: bool = False,
) -> EpisodeRecord:
    """Play one episode of ``env`` with ``policy``.

    Args:
        env: A :class:`~mixing_env.envs.mixing_env.MixingEnv`, possibly wrapped.
        policy: A :class:`Policy`.
        song: Song to play (reset option); None lets the env draw one.
        start: First chunk (reset option); None: the env's choice.
        seed: Seed of ``env.reset``.
        keep_observations: Keep every observation in the record (demonstrations need them).

    Returns:
        The episode's :class:`EpisodeRecord`.
    """
    options = {k: v for k, v in (("song", song), ("start", start)) if v is not None}
    obs, info = env.reset(seed=seed, options=options or None)
    played, first = env.unwrapped.song, int(info["chunk"])
    policy.reset(played, first)
    observations = [obs] if keep_observations else None
    gains, actions, rewards, distances, kls = [], [], [], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = np.asarray(policy.act(obs), dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        gains.append(np.asarray(info["gains"], dtype=np.float64))
        rewards.append(float(reward))
        distances.append(float(info["mfcc_distance"]))
        kls.append(float(info["kl"]))
        if observations is not None:
            observations.append(obs)
    return EpisodeRecord(
        song=played,
        start=first,
        gains=np.stack(gains, axis=1),
        actions=np.stack(actions, axis=1),
        reward=np.asarray(rewards),
        mfcc_distance=np.asarray(distances),
        kl=np.asarray(kls),
        terminated=bool(terminated),
        truncated=bool(truncated),
        observations=observations,
    )
