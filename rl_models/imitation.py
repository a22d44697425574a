"""Imitation of demonstrated gains: where demonstrations come from, how they are batched, the loss.

Shared by behaviour cloning (:mod:`rl_models.app.behaviour_cloning`, which fits a module to
them alone) and the imitation term of RL learners
(:mod:`rl_models.algorithms.demonstration_term`, which keeps that loss in PPO's): a layer
below both, on the env and the module only.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mixing_env.errors import ConfigError

__all__ = ["LOSSES", "DemonstrationBatches", "StoredStates", "StreamDemonstrations",
           "imitation_loss", "log_gain_error"]

LOSSES = ("dirichlet", "log_gain")
"""What behaviour cloning minimises (see :func:`train_behaviour_cloning`)."""


def log_gain_error(dist_inputs: Any, actions: Any) -> Any:
    """Mean squared error of log-gains (dB up to a factor), each row centred over its tracks.

    Args:
        dist_inputs: The module's Dirichlet inputs, concentrations and track mask
            [shape=(..., 2C)].
        actions: Demonstrated gains on the simplex [shape=(..., C)].
    """
    import torch

    C = actions.shape[-1]
    concentration, mask = dist_inputs[..., :C], dist_inputs[..., C:] > 0.5
    n = mask.sum(-1, keepdim=True).clamp_min(1)
    diff = torch.log(concentration.clamp_min(1e-12)) - torch.log(actions.clamp_min(1e-12))
    diff = torch.where(mask, diff, torch.zeros_like(diff))
    diff = diff - diff.sum(-1, keepdim=True) / n
    return (torch.where(mask, diff, torch.zeros_like(diff)) ** 2).sum(-1).div(n[..., 0]).mean()


class StoredStates:
    """Each episode's module state at every sequence start (R2D2's stored state).

    When an episode enters the buffer the module plays it once (no gradient), ``seq_len``
    chunks at a time from its first chunk, and keeps the state it reaches at each sequence
    boundary; a training sequence cut there starts from that state, as the agent would be
    after mixing the song up to it. The states are those of the module when the episode came
    in (stale by up to a buffer's turnover); sequences stay drawn at random from the buffer.

    Args:
        module: The module being trained.
        seq_len: Chunks per sequence.
    """

    def __init__(self, module: Any, seq_len: int):
        self.module, self.seq_len = module, seq_len

    def states(self, obs: dict[str, np.ndarray], n_chunks: int) -> list:
        """The batched (1, ...) state at chunks 0, seq_len, 2 seq_len, ... of an episode."""
        import torch
        import tree
        from ray.rllib.core.columns import Columns

        state = tree.map_structure(lambda x: torch.as_tensor(np.asarray(x))[None],
                                   self.module.get_initial_state())
        kept = []
        with torch.no_grad():
            for start in range(0, n_chunks - self.seq_len + 1, self.seq_len):
                kept.append(state)
                window = tree.map_structure(
                    lambda x, s=start: torch.as_tensor(x[None, s : s + self.seq_len]), obs)
                state = self.module.forward_train(
                    {Columns.OBS: window, Columns.STATE_IN: state})[Columns.STATE_OUT]
        return kept

    def add(self, episode: tuple) -> tuple:
        """``(obs, actions)`` -> ``(obs, actions, states)``."""
        obs, actions = episode
        return obs, actions, self.states(obs, len(actions))


class StreamDemonstrations:
    """Demonstrations without end: the engineer's own gains played on newly made songs.

    Each call of :meth:`next_episode` plays the ``truth`` policy (the gains that made the
    song's reference) through a MixingEnv of generated songs (its config's ``generated``), so
    behaviour cloning sees a new song every few episodes and never the held-out ones.

    Args:
        env_config: A MixingEnv config with ``generated`` songs.
        seed: Seed of the episodes' windows.
    """

    def __init__(self, env_config: dict, *, seed: int = 0):
        from mixing_env.baselines import make_baseline
        from mixing_env.envs.mixing_env import MixingEnv

        if not env_config.get("generated"):
            raise ConfigError("stream demonstrations need an env config with 'generated' songs")
        self.env = MixingEnv(env_config)
        self.env.reset(seed=seed)
        self.policy = make_baseline("truth")
        self.seconds = 0.0

    @property
    def songs_made(self) -> int:
        """Songs the stream has made so far."""
        return self.env.source.pool.stream.songs_made

    def next_episode(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One new demonstration: observations (arrays over steps) and actions."""
        import tree

        from mixing_env.episodes import run_episode

        start = time.process_time()
        record = run_episode(self.env, self.policy, keep_observations=True)
        obs = tree.map_structure(lambda *xs: np.stack(xs).astype(np.float32),
                                 *record.observations[:-1])
        self.seconds += time.process_time() - start
        return obs, record.actions.T.astype(np.float32)



class DemonstrationBatches:
    """Batches of demonstrated sequences for a module to imitate, from a buffer of episodes.

    With a :class:`StreamDemonstrations` the buffer keeps the last ``capacity`` episodes and
    takes ``fresh_per_update`` new ones at each :meth:`sample` (a fraction: one every few);
    with a list of episodes it stays as it is.

    Args:
        module: The module that imitates (its ``max_seq_len`` is the sequence length; with
            ``stored_states`` it plays each episode once as it comes in).
        episodes: ``(obs, actions)`` pairs to start with.
        stream: Where new episodes come from (None: none come).
        capacity: Episodes kept at most.
        fresh_per_update: New stream episodes per :meth:`sample`.
        stored_states: Sequences start at multiples of ``max_seq_len`` from the state the
            module reached there (:class:`StoredStates`); False: at any offset from the
            initial state.
        rng: Draws the sequences.

    Raises:
        ConfigError: No episode is as long as one sequence.
    """

    def __init__(self, module: Any, episodes: list, *, stream: StreamDemonstrations | None,
                 capacity: int, fresh_per_update: float, stored_states: bool,
                 rng: np.random.Generator):
        self.module, self.stream, self.rng = module, stream, rng
        self.capacity, self.fresh_per_update = capacity, fresh_per_update
        self.seq_len = int(module.model_config["max_seq_len"])
        self.stored = StoredStates(module, self.seq_len) if stored_states else None
        self.init = module.get_initial_state()
        self.episodes: list = []
        self.samples = 0
        for episode in episodes:
            self._add(episode)
        if not self.episodes:
            raise ConfigError(f"no demonstration episode is as long as "
                              f"max_seq_len={self.seq_len}")

    def _add(self, episode: tuple) -> None:
        if len(episode[1]) >= self.seq_len:
            self.episodes.append(episode if self.stored is None else self.stored.add(episode))

    def sample(self, batch_size: int) -> tuple[dict, Any]:
        """New songs in (the oldest out), then ``batch_size`` sequences drawn at random.

        Returns:
            ``(batch, actions)``: the module's ``forward_train`` input (``obs``,
            ``state_in``) and the demonstrated actions [shape=(batch_size, max_seq_len, C)].
        """
        import torch
        import tree
        from ray.rllib.core.columns import Columns

        if self.stream is not None:
            k, rate = self.samples, self.fresh_per_update
            for _ in range(int((k + 1) * rate) - int(k * rate)):
                self._add(self.stream.next_episode())
            del self.episodes[: max(len(self.episodes) - self.capacity, 0)]
        self.samples += 1
        L, rng = self.seq_len, self.rng
        picks = [self.episodes[i] for i in rng.integers(len(self.episodes), size=batch_size)]
        if self.stored is not None:
            blocks = [int(rng.integers(len(p[2]))) for p in picks]
            offsets = [b * L for b in blocks]
            state = tree.map_structure(lambda *xs: torch.cat(xs),
                                       *[p[2][b] for p, b in zip(picks, blocks, strict=True)])
        else:
            offsets = [int(rng.integers(0, len(p[1]) - L + 1)) for p in picks]
            state = tree.map_structure(
                lambda x: torch.as_tensor(np.repeat(np.asarray(x)[None], batch_size, 0)),
                self.init)
        seqs = [(tree.map_structure(lambda x, s=s: x[s : s + L], o), a[s : s + L])
                for (o, a, *_), s in zip(picks, offsets, strict=True)]
        obs = tree.map_structure(lambda *xs: torch.as_tensor(np.stack(xs)),
                                 *[o for o, _ in seqs])
        actions = torch.as_tensor(np.stack([a for _, a in seqs]))
        return {Columns.OBS: obs, Columns.STATE_IN: state}, actions


def imitation_loss(module: Any, batch: dict, actions: Any, loss: str) -> Any:
    """How far the module's actions on ``batch`` are from the demonstrated ``actions``.

    Args:
        module: The module (its ``forward_train`` runs with autograd).
        batch: ``obs`` and ``state_in`` of sequences (:meth:`DemonstrationBatches.sample`).
        actions: The demonstrated actions.
        loss: One of :data:`LOSSES` (see :func:`train_behaviour_cloning`).
    """
    from ray.rllib.core.columns import Columns

    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    inputs = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    if loss == "dirichlet":
        return -module.get_train_action_dist_cls().from_logits(inputs).logp(actions).mean()
    return log_gain_error(inputs, actions)
