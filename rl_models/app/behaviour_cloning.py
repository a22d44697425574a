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
from rl_models.imitation import (
    LOSSES,
    DemonstrationBatches,
    StreamDemonstrations,
    imitation_loss,
    log_gain_error,
)

__all__ = ["LOSSES", "DemonstrationBatches", "StreamDemonstrations", "imitation_loss",
           "log_gain_error", "train_behaviour_cloning"]


def _episode_arrays(episode: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    import tree

    observations = episode.get_observations()[:-1]  # the last one follows the last action
    obs = tree.map_structure(lambda *xs: np.stack(xs).astype(np.float32), *observations)
    return obs, np.asarray(episode.get_actions(), dtype=np.float32)


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
            (:class:`rl_models.imitation.StoredStates`), for whole-song demonstrations.
            False: sequences cut at any offset start from the initial state, so the module
            never learns what its state looks like after more than ``max_seq_len`` chunks
            (scored on whole held-out songs, one such agent closed 0.60 of the gap, 0.65
            with its state reset every 32 chunks).
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
