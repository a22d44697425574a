"""Tiny deterministic songs, an env on them, and a module rollout for the algorithm tests."""

from __future__ import annotations

import numpy as np

from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data.song import Song
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.episodes import run_episode
from rl_models.app.module_policy import ModulePolicy

__all__ = ["OneTrackEnv", "deterministic_rollout", "one_track_song"]


def one_track_song(*, n_chunks: int = 16, seed: int = 0, name: str = "one_track") -> Song:
    """Three real tracks of different timbre whose reference mix is track 0 alone.

    The best action puts all gain on slot 0; any weight on the other two changes the mix's
    MFCC (a low hum and a high whistle against broadband noise).
    """
    rng = np.random.default_rng(seed)
    n = n_chunks * CHUNK_SIZE
    t = np.arange(n) / SAMPLE_RATE
    noise = 0.3 * rng.standard_normal(n)
    hum = 0.3 * np.sin(2 * np.pi * 110.0 * t)
    whistle = 0.3 * np.sin(2 * np.pi * 6000.0 * t)
    stems = np.stack([noise, hum, whistle]).astype(np.float32).reshape(3, n_chunks, CHUNK_SIZE)
    return Song(
        name=name,
        stems=stems,
        reference=stems[0].copy(),
        track_mask=np.ones(3, np.float32),
        slot_names=["Drums/Kick#1", "Strings/Bass#1", "Keys/Synth#1"],
        sample_rate=SAMPLE_RATE,
        n_valid_chunks=n_chunks,
    )


class OneTrackEnv(MixingEnv):
    """The real MixingEnv on :func:`one_track_song` only (RLlib builds it from env_config)."""

    def __init__(self, config: dict | None = None):
        super().__init__(config, songs=[one_track_song()])


def deterministic_rollout(module, env: MixingEnv, *, seed: int = 0) -> tuple[np.ndarray, float]:
    """Runs one episode with the module's deterministic (mean) actions, carrying its state.

    The product's own adapter and runner (:class:`ModulePolicy`, :func:`run_episode`).

    Returns:
        The actions [shape=(steps, C)] and the mean reward per step.
    """
    record = run_episode(env, ModulePolicy(module), seed=seed)
    return record.actions.T, float(record.reward.mean())
