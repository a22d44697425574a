"""Behaviour cloning of the attention-LSTM from recorded demonstrations, in-process.

RLlib's BC reads the same demonstrations (``deepmixing train bc``), but its offline pipeline
(Ray Data + ``OfflinePreLearner``) spends about a minute per update on 2 CPU cores with this
stateful module. This trainer does the same thing - maximise the Dirichlet log-likelihood of
the demonstrated actions over sequences cut from the episodes, each starting from the module's
initial state as RLlib's learner connectors do - in a plain PyTorch loop, and writes a
checkpoint in the layout of ``deepmixing train`` (so ``evaluate``, ``mix`` and a PPO
experiment's ``init_module_from`` take it).
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mixing_env.errors import ConfigError

__all__ = ["LOSSES", "DemonstrationBatches", "StreamDemonstrations", "imitation_loss",
           "log_gain_error", "train_behaviour_cloning"]

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


def _episode_arrays(episode: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    import tree

    observations = episode.get_observations()[:-1]  # the last one follows the last action
    obs = tree.map_structure(lambda *xs: np.stack(xs).astype(np.float32), *observations)
    return obs, np.asarray(episode.get_actions(), dtype=np.float32)


class _StoredStates:
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
            module reached there (:class:`_StoredStates`); False: at any offset from the
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
        self.stored = _StoredStates(module, self.seq_len) if stored_states else None
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


def train_behaviour_cloning(
    demonstrations: str | os.PathLike | StreamDemonstrations,
    *,
    env_config: dict,
    model: dict,
    out_dir: str | os.PathLike,
    minutes: float,
    max_updates: int | None = None,
    lr: float = 2e-3,
    lr_final_fraction: float = 0.1,
    batch_size: int = 16,
    seed: int = 0,
    log_every_s: float = 30.0,
    log: Any = print,
    initial_weights: str | os.PathLike | None = None,
    buffer_episodes: int = 512,
    fresh_per_update: float = 1.0,
    loss: str = "dirichlet",
    held_out: Any = None,
    held_out_every_s: float = 300.0,
    torch_threads: int | None = 1,
    stored_states: bool = False,
    ema_decay: float = 0.0,
    validation: Any = None,
    validation_every_s: float = 150.0,
) -> dict:
    """Fits the module to the demonstrated actions for a wall-clock budget.

    Args:
        demonstrations: Folder written by :mod:`rl_models.app.demonstrations`, or a
            :class:`StreamDemonstrations` (new songs as training goes: a buffer of the last
            ``buffer_episodes`` episodes, ``fresh_per_update`` new ones before each update).
        env_config: The MixingEnv config the demonstrations were recorded with (for the
            observation and action spaces, and for the checkpoint's metadata).
        model: The module's ``model_config`` (its ``max_seq_len`` is the sequence length).
        out_dir: Where ``checkpoint_000000/`` and ``progress.json`` go.
        minutes: Training budget (> 0).
        max_updates: Also stop after this many updates (None: the time budget only); the
            learning rate then decays with whichever budget is used up faster.
        lr: Adam learning rate at the start.
        lr_final_fraction: The rate decays linearly with elapsed time to ``lr *`` this at the
            end of the budget (fine convergence once the loss plateaus).
        batch_size: Sequences per update.
        seed: Seeds the module initialisation and the sequence sampling.
        log_every_s: Seconds between progress lines.
        log: Where progress lines go.
        initial_weights: A ``policy_weights.pt`` of the same module to start from (a warm
            restart, read with ``weights_only=True``); None: a fresh initialisation.

        buffer_episodes: Stream demonstrations kept at once.
        fresh_per_update: New stream episodes per update (a fraction: one every few).
        loss: ``"dirichlet"``, the log-likelihood of the demonstrated actions (as RLlib's
            BC); or ``"log_gain"``, the squared error of the Dirichlet mean's log-gains
            against the demonstrated ones, each row centred (the mix's level is free): a dB
            error, as the ear and the MFCC weigh a level.

        held_out: ``held_out(module) -> {"gap_closed": ..., ...}`` (e.g. :class:`~rl_models.
            app.evaluate.HeldOutScore`): the held-out curve, scored every
            ``held_out_every_s`` seconds of training and at the end; None: no curve.
        held_out_every_s: Seconds of training between held-out scores.
        torch_threads: torch's intra-op threads while training (None: leave torch's
            setting). One by default: the module is small, and two processes each spinning
            two threads on a 2-core machine ran 20 times slower than either alone.
        stored_states: Sequences start at multiples of ``max_seq_len`` from the state the
            module reached there when it played the episode on its way into the buffer
            (:class:`_StoredStates`), for whole-song demonstrations. False: sequences cut at
            any offset start from the initial state, so the module never learns what its
            state looks like after more than ``max_seq_len`` chunks (scored on whole held-out
            songs, one such agent closed 0.60 of the gap, 0.65 with its state reset every
            32 chunks).
        ema_decay: Keep an exponential moving average of the weights (``0.999``: about the
            last 1,000 updates), and score, select and save it instead of the last weights:
            the noise of the last updates averages out (seed 7's held-out curve wandered
            0.63-0.67 while the training loss stayed flat). 0: the last weights.
        validation: ``validation(module) -> {"gap_closed": ...}`` on songs neither trained
            on nor held out, every ``validation_every_s`` seconds of training and at the end:
            the weights that score best there are the ones saved (early stopping without
            looking at the held-out songs). None: the weights at the end.
        validation_every_s: Seconds of training between validations.

    Returns:
        ``{"checkpoint": path, "updates": n, "curve": [(update, seconds, loss), ...]}``, for
        a stream ``songs`` (made) and ``demo_cpu_s`` (spent making demonstrations), with
        ``held_out`` the ``held_out_curve``: ``[(update, seconds of training, gap_closed)]``,
        with ``validation`` the ``validation_curve`` (same rows) and ``selected`` (its row
        whose weights were saved).
    """
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from mixing_env.envs.song_source import SongSource
    from rl_models import checkpoints
    from rl_models.app.demonstrations import read_demonstrations
    from rl_models.registry import DEFAULT_MODULE, module_spec

    if not minutes > 0:
        raise ConfigError(f"minutes must be > 0, got {minutes!r}")
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    if max_updates is not None and (isinstance(max_updates, bool) or max_updates < 1):
        raise ConfigError(f"max_updates must be an int >= 1 or None, got {max_updates!r}")
    if isinstance(ema_decay, bool) or not isinstance(ema_decay, int | float) or not (
            0.0 <= ema_decay < 1.0):
        raise ConfigError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
    stream = demonstrations if isinstance(demonstrations, StreamDemonstrations) else None
    if stream is None:
        episodes = [_episode_arrays(e) for e in read_demonstrations(demonstrations)]
    else:
        episodes = [stream.next_episode() for _ in range(min(buffer_episodes, 4 * batch_size))]
    source = SongSource(dict(env_config))
    observation_space, action_space = source.spaces()
    torch.manual_seed(seed)
    spec = module_spec(DEFAULT_MODULE, dict(model))
    spec.observation_space, spec.action_space = observation_space, action_space
    module = spec.build()
    if initial_weights is not None:
        module.load_state_dict(torch.load(initial_weights, map_location="cpu", weights_only=True))
    if episodes[0][0]["chunks"].shape[1:] != observation_space["chunks"].shape:
        raise ConfigError(
            f"demonstrations have chunks of shape {episodes[0][0]['chunks'].shape[1:]}, the "
            f"env config gives {observation_space['chunks'].shape}: record them with this "
            f"config")
    rng = np.random.default_rng(seed)
    batches = DemonstrationBatches(module, episodes, stream=stream, capacity=buffer_episodes,
                                   fresh_per_update=fresh_per_update,
                                   stored_states=stored_states, rng=rng)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    averaged = None if not ema_decay else AveragedModel(
        module, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    curve: list[tuple[int, float, float]] = []
    held_out_curve: list[tuple[int, float, float]] = []
    validation_curve: list[tuple[int, float, float]] = []
    best: tuple[tuple[int, float, float], dict] | None = None  # (row, weights) validated best
    start = last_log = last_score = last_validation = time.time()
    scoring_s = 0.0  # time spent scoring, left out of the budget and the curves' clock
    update = 0

    def kept() -> Any:
        """The weights that are scored and saved: the average, or the last."""
        return module if averaged is None else averaged.module

    def score(scorer: Any, rows: list, what: str) -> float:
        nonlocal scoring_s
        t0 = time.time()
        trained_s = t0 - start - scoring_s
        kept().eval()
        gap = scorer(kept())["gap_closed"]
        kept().train()
        scoring_s += time.time() - t0
        rows.append((update, trained_s, gap))
        log(f"bc update {update}: {what} gap closed {gap:.3f}")
        return gap

    def validate() -> None:
        nonlocal best
        gap = score(validation, validation_curve, "validation")
        if best is None or gap > best[0][2]:
            best = validation_curve[-1], copy.deepcopy(kept().state_dict())
    while (elapsed := time.time() - start - scoring_s) < minutes * 60 and (
            max_updates is None or update < max_updates):
        used = max(elapsed / (minutes * 60), update / max_updates if max_updates else 0.0)
        for group in optimizer.param_groups:
            group["lr"] = lr * (1.0 - (1.0 - lr_final_fraction) * used)
        value = imitation_loss(module, *batches.sample(batch_size), loss)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        if averaged is not None:
            averaged.update_parameters(module)
        update += 1
        if update % 25 == 0:
            curve.append((update, time.time() - start - scoring_s, float(value.detach())))
        if time.time() - last_log > log_every_s:
            last_log = time.time()
            log(f"bc update {update}: loss {float(value.detach()):.3f} "
                f"({time.time() - start - scoring_s:.0f} s)")
        if held_out is not None and time.time() - last_score > held_out_every_s:
            score(held_out, held_out_curve, "held-out")
            last_score = time.time()
        if validation is not None and time.time() - last_validation > validation_every_s:
            validate()
            last_validation = time.time()
    if validation is not None:
        validate()
    module.load_state_dict(best[1] if best is not None else kept().state_dict())
    averaged = None  # from here on kept() is the module with the weights saved below
    if held_out is not None:
        score(held_out, held_out_curve, "held-out")
    out = Path(out_dir)
    ckpt = out / "checkpoint_000000"
    # RLlib's module folder lets a PPO experiment start from it (init_module_from).
    module.save_to_path(str(ckpt / checkpoints.MODULE_SUBDIR))
    layout = source.layout.to_dict()
    checkpoints.write_metadata(
        ckpt, experiment={"algorithm": "BC", "env": dict(env_config), "model": dict(model),
                          "module": DEFAULT_MODULE,
                          "demonstrations": "stream" if stream else str(demonstrations)},
        layout=layout, iteration=update)
    checkpoints.write_policy_files(
        ckpt, state=module.state_dict(), module_name=DEFAULT_MODULE,
        model_config=module.model_config, observation_space=observation_space,
        action_space=action_space, layout=layout)
    result = {"checkpoint": str(ckpt), "updates": update, "curve": curve}
    if held_out is not None:
        result["held_out_curve"] = held_out_curve
    if best is not None:
        result |= {"validation_curve": validation_curve, "selected": best[0]}
    if stream is not None:
        result |= {"songs": stream.songs_made, "demo_cpu_s": stream.seconds}
    (out / "progress.json").write_text(json.dumps(result, indent=1))
    return result
