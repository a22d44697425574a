"""The learning benchmark: agents trained on songs without end, scored on held-out songs.

One command (``deepmixing benchmark quality``, :mod:`benchmarks.bench_quality`) fills, for a
seed, one table on held-out songs of the engineer (:mod:`mixing_env.engineer`):

- the baselines: equal gains, loudness, instrument_balance (fitted on training-stream songs),
  the bound (the engineer's own rule: what a perfect listener reaches), the static oracle and
  the per-chunk oracle;
- agents that train on a stream of new songs (:mod:`mixing_env.songs.stream`; held-out songs
  are never drawn): behaviour cloning of the engineer's decisions (``bc``, in-process), BC
  then PPO (``bc_ppo``), PPO from scratch (``ppo``) and vanilla policy gradient from scratch
  (``pg``), all through Ray Tune but ``bc``.

``gap_closed`` puts equal gains at 0 and the oracle at 1; ``headroom_share`` puts
instrument_balance at 0 and the bound at 1. Every agent is also scored on songs of its
training stream, for the generalisation gap (training minus held-out gap closed). "From
scratch" means no demonstration and no fitted table: every agent's module starts at equal
loudness (its level prior reads each stem's loudness) with per-slot biases at 0.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mixing_env.engineer import DEFAULT_INCONSISTENCY_DB, DEFAULT_STYLE, get_style
from mixing_env.errors import ConfigError
from rl_models.app.stream_agent import STREAM_AGENT_MODEL, stream_agent_features

__all__ = [
    "AGENTS",
    "AGENT_LABELS",
    "BC_TRAINING",
    "DEFAULT_AGENTS",
    "TABLE_BASELINES",
    "QualitySetup",
    "agent_experiments",
    "continue_bc",
    "fit_table",
    "demonstrations",
    "heldout_cache",
    "validation_cache",
    "run_benchmark",
    "score_policies",
    "stream_songs",
    "train_sample_songs",
]

AGENTS = ("bc", "bc_more", "bc_ppo", "ppo", "pg")
"""Agent rows in training order (bc_more and bc_ppo start from bc)."""
DEFAULT_AGENTS = ("bc", "bc_ppo", "ppo", "pg")
"""The learning table's agents; ``bc_more`` (BC + PPO's control) is asked for by name."""
AGENT_LABELS = {"bc": "BC (engineer's decisions)",
                "bc_more": "BC continued (BC + PPO's control)", "bc_ppo": "BC + PPO",
                "ppo": "PPO from scratch", "pg": "vanilla PG from scratch"}
TABLE_BASELINES = ("equal", "loudness", "instrument_balance", "bound", "static_oracle",
                   "oracle")
"""The baseline rows of every table, in order."""

BC_TRAINING: dict[str, Any] = {"lr": 2e-3, "batch_size": 16, "loss": "dirichlet",
                               "ema_decay": 0.0}
"""Behaviour cloning's defaults: Adam's rate at the start, sequences per update, the loss,
the weights' moving average (0: none)."""

_VALIDATION_SEED = 1_000_003
"""Added to the seed of the validation songs: neither the held-out songs nor the stream."""

_TABLE_STREAM = 1  # the table is fitted on the first songs the local env runner trains on


@dataclass(frozen=True)
class QualitySetup:
    """What the benchmark trains and scores; the defaults are the 2-core setup of the table."""

    seed: int = 7
    """Seed of the held-out songs, the training stream and the agents."""
    style: str = DEFAULT_STYLE
    """The engineer who mixed every reference."""
    inconsistency: float = DEFAULT_INCONSISTENCY_DB
    """The engineer's random part, dB."""
    seconds: float = 12.0
    """Length of every song."""
    n_tracks: tuple[int, int] = (6, 11)
    """(fewest, most) stems per song."""
    n_heldout: int = 24
    """Held-out songs (stream 0: never drawn in training)."""
    n_table: int = 64
    """Training-stream songs instrument_balance is fitted on."""
    n_train_sample: int = 12
    """Training-stream songs every agent is also scored on (the generalisation gap)."""
    episode_chunks: int = 128
    """Random window per training episode (~1.5 s)."""
    whole_songs: bool = False
    """Train on whole songs, as the agents are scored and mix: an episode is a song from its
    first chunk to its last (``episodes_per_song`` scaled so a song serves as many chunks),
    and behaviour cloning starts each sequence from the state its module reached there (stored
    states, :class:`rl_models.imitation.StoredStates`).
    False: random windows of ``episode_chunks``, so an agent's state never grows older than
    that in training (~1.5 s) but runs through a 12 s song when scored."""
    episodes_per_song: int = 32
    """Episodes a training song serves before a new one replaces it (making a song costs
    about 0.5 CPU s; 32 episodes of 128 steps keep that under a quarter of PPO's time)."""
    songs_per_skeleton: int = 16
    """Training songs drawn from one rendered skeleton."""
    bc_episodes_per_song: int = 8
    """Behaviour cloning's episodes per song, and its pool of songs in play is as large: its
    buffer of 1,024 recent episodes (one new every other update) then spans 128 songs (with
    32 episodes a song and 512 episodes, 16 songs: the clone chased the last few songs)."""
    n_track_features: int = 16
    """Log-mel bands per track in the observation."""
    listening: bool = True
    """Give the agents what the engineer listens to (the env's ``listening_features``)."""
    stem_spectrum: bool = False
    """Give the agents each stem's long-term spectrum (the env's ``stem_spectrum_features``)."""
    minutes: dict[str, float] = field(
        default_factory=lambda: {"bc": 30.0, "bc_ppo": 20.0, "ppo": 40.0, "pg": 40.0})
    """Wall-clock budget per agent, minutes (at most 45 each); ``bc_more`` defaults to
    ``bc_ppo``'s."""
    agents: tuple[str, ...] = DEFAULT_AGENTS
    """Which agent rows to train."""
    bc_training: dict[str, Any] = field(default_factory=lambda: dict(BC_TRAINING))
    """Behaviour cloning's optimisation (:data:`BC_TRAINING`'s keys; see
    :func:`rl_models.app.behaviour_cloning.train_behaviour_cloning`)."""
    bc_ppo_training: dict[str, Any] = field(default_factory=dict)
    """PPO settings of the fine-tuning after BC over :data:`BC_PPO_TRAINING` (e.g. its lr)."""
    bc_ppo_model: dict[str, Any] = field(default_factory=dict)
    """Module settings of the fine-tuning that leave the weights' shapes alone (e.g.
    ``value_detach``: the untrained value head's loss kept out of the cloned policy)."""
    bc_ppo_imitation: float = 0.0
    """Weight of behaviour cloning's loss kept in the fine-tuning's loss (DAPG: on the
    engineer's gains for newly made songs, :mod:`rl_models.algorithms.demonstration_term`);
    0: PPO's loss alone."""
    bc_ppo_baseline: int = 0
    """Horizon (steps) of the fine-tuning's episode baseline: each advantage less the running
    mean of the value's error over the song's steps just before
    (:class:`rl_models.sequence_batch.SequenceTrainBatch`); 0: the value head alone."""
    bc_ppo_self_critical: bool = False
    """The fine-tuning's advantages are each step's reward less the reward of the policy's
    mean action on the same chunk (the env's ``self_critical``; gamma 0): exact where the
    episode baseline estimates."""
    bc_ppo_concentration: float | None = None
    """The fine-tuning starts with the policy's Dirichlet concentration scale set to this
    (:func:`rl_models.checkpoints.with_concentration_scale`): less exploration noise around
    the same mean; None: BC's."""
    bc_ppo_trainable: tuple[str, ...] | None = None
    """Parameter-name patterns of the weights the fine-tuning trains, the rest frozen
    (:mod:`rl_models.algorithms.trainable_subset`; e.g. the per-slot level biases and the value
    head); None: all."""
    bc_checkpoint: str | None = None
    """Start from this BC checkpoint (a ``checkpoint_000000`` behaviour cloning wrote, with
    ``progress.json`` beside it) instead of training BC: its row is scored again and BC + PPO
    fine-tunes it."""
    eval_songs: int = 4
    """Held-out songs the RL agents are scored on while they train (their curves)."""
    n_validation: int = 0
    """Validation songs (made like the held-out ones from their own seed, never trained on):
    behaviour cloning keeps the weights that score best on them, checked every 3 minutes of
    training. 0: it keeps its last weights."""
    model: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(STREAM_AGENT_MODEL))
    """The module (:data:`rl_models.app.stream_agent.STREAM_AGENT_MODEL`: the pretrained
    agent's too)."""

    def __post_init__(self) -> None:
        for name in ("n_heldout", "n_table", "n_train_sample", "episode_chunks",
                     "episodes_per_song", "songs_per_skeleton", "bc_episodes_per_song",
                     "n_track_features", "eval_songs", "n_validation", "bc_ppo_baseline"):
            value, least = getattr(self, name), int(name not in ("n_validation",
                                                                 "bc_ppo_baseline"))
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be an int >= {least}, got {name}={value!r}")
        get_style(self.style)
        unknown = sorted(set(self.agents) - set(AGENTS))
        if unknown:
            raise ConfigError(f"unknown agent(s) {unknown}; expected some of {list(AGENTS)}")
        for agent in ("bc_more", "bc_ppo"):
            if agent in self.agents and "bc" not in self.agents:
                raise ConfigError(f"agent {agent} continues the bc agent: add 'bc' to the agents")
        unknown = sorted(set(self.bc_training) - set(BC_TRAINING))
        if unknown:
            raise ConfigError(f"unknown bc_training key(s) {unknown}; expected some of "
                              f"{sorted(BC_TRAINING)}")
        for key, value in self.bc_training.items():
            kind = type(BC_TRAINING[key])
            if not isinstance(value, int | float if kind is float else kind) or (
                    kind is not bool and isinstance(value, bool)):
                raise ConfigError(f"bc_training[{key!r}] must be of type {kind.__name__}, "
                                  f"got {value!r}")
        if self.bc_ppo_concentration is not None and (
                isinstance(self.bc_ppo_concentration, bool)
                or not isinstance(self.bc_ppo_concentration, int | float)
                or not (math.isfinite(self.bc_ppo_concentration)
                        and self.bc_ppo_concentration > 0)):
            raise ConfigError(f"bc_ppo_concentration must be a positive number or None, got "
                              f"{self.bc_ppo_concentration!r}")
        if not isinstance(self.bc_ppo_self_critical, bool):
            raise ConfigError(f"bc_ppo_self_critical must be a bool, got "
                              f"{self.bc_ppo_self_critical!r}")
        if isinstance(self.bc_ppo_imitation, bool) or not isinstance(
                self.bc_ppo_imitation, int | float) or not (
                math.isfinite(self.bc_ppo_imitation) and self.bc_ppo_imitation >= 0):
            raise ConfigError(f"bc_ppo_imitation must be a finite number >= 0, got "
                              f"{self.bc_ppo_imitation!r}")
        for agent, value in self.minutes.items():
            if not (isinstance(value, int | float) and 0 < value <= 45):
                raise ConfigError(f"minutes[{agent!r}] must be in (0, 45], got {value!r}")

    def minutes_of(self, agent: str) -> float:
        """An agent's budget in minutes (the control ``bc_more`` gets ``bc_ppo``'s)."""
        if agent == "bc_more" and agent not in self.minutes:
            agent = "bc_ppo"
        return self.minutes[agent]

    # -- environments ----------------------------------------------------------------------
    def features(self) -> dict[str, Any]:
        """The observation every agent and evaluation shares."""
        return stream_agent_features(n_track_features=self.n_track_features,
                                     listening=self.listening, stem_spectrum=self.stem_spectrum)

    def stream(self) -> dict[str, Any]:
        """The training stream (the env's ``generated`` mapping)."""
        return {"seed": self.seed, "seconds": self.seconds, "n_tracks": list(self.n_tracks),
                "style": self.style, "inconsistency": self.inconsistency,
                "songs_per_skeleton": self.songs_per_skeleton,
                "episodes_per_song": self.episodes_per_song}

    def song_chunks(self) -> float:
        """Chunks (env steps) in one song."""
        from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE

        return self.seconds * SAMPLE_RATE / CHUNK_SIZE

    def train_env(self) -> dict[str, Any]:
        """Training: songs without end, whole or random windows of them."""
        if not self.whole_songs:
            return {"generated": self.stream(), "episode_chunks": self.episode_chunks,
                    **self.features()}
        per_song = max(1, round(self.episodes_per_song * self.episode_chunks
                                / self.song_chunks()))
        return {"generated": self.stream() | {"episodes_per_song": per_song},
                "episode_chunks": None, **self.features()}

    def heldout_env(self, cache: str, songs: list[str] | None = None) -> dict[str, Any]:
        """Scoring: whole held-out songs."""
        env = {"dataset_dir": cache, "episode_chunks": None, **self.features()}
        return env | ({"songs": list(songs)} if songs else {})

    def songs_key(self) -> dict[str, Any]:
        """What the held-out songs are made of (a cache made with other values is remade)."""
        return {"seed": self.seed, "style": self.style, "inconsistency": self.inconsistency,
                "seconds": self.seconds, "n_tracks": list(self.n_tracks),
                "n_heldout": self.n_heldout}


# -- songs, table ------------------------------------------------------------------------------
def heldout_cache(root: str | Path, setup: QualitySetup, *, progress: bool = False) -> str:
    """The held-out songs written by ``synth`` (stream 0) and prepared; made once per setup.

    Returns:
        The prepared cache folder.
    """
    return _song_cache(root, setup, n_songs=setup.n_heldout, seed=setup.seed,
                       progress=progress)


def validation_cache(root: str | Path, setup: QualitySetup) -> str:
    """``n_validation`` songs made as the held-out ones from another seed; made once."""
    return _song_cache(root, setup, n_songs=setup.n_validation,
                       seed=setup.seed + _VALIDATION_SEED)


def _song_cache(root: str | Path, setup: QualitySetup, *, n_songs: int, seed: int,
                progress: bool = False) -> str:
    from mixing_env.data.prepare import prepare_dataset
    from mixing_env.engineer import Engineer
    from mixing_env.songs.sampled import make_sampled_dataset

    root = Path(root)
    cache, key_file = root / "cache", root / "songs.json"
    key = setup.songs_key() | {"seed": seed, "n_heldout": n_songs}
    if (cache / "manifest.json").is_file() and key_file.is_file() and json.loads(
            key_file.read_text()) == key:
        return str(cache.resolve())
    make_sampled_dataset(root / "songs", n_songs=n_songs, seconds=setup.seconds,
                         n_tracks=setup.n_tracks, seed=seed,
                         engineer=Engineer(setup.style, setup.inconsistency))
    prepare_dataset(root / "songs", cache, progress=progress, rebuild=True)
    key_file.write_text(json.dumps(key))
    return str(cache.resolve())


def stream_songs(generated: dict[str, Any], n: int):
    """The first ``n`` songs of a training stream (what an agent trained on it saw first).

    Args:
        generated: The stream (an env config's ``generated`` mapping).
        n: Songs to make.

    Returns:
        ``(songs, CPU seconds per song spent making them)``.
    """
    from mixing_env.songs.stream import SongStream, StreamConfig

    stream = SongStream(StreamConfig.from_dict(generated), stream=_TABLE_STREAM)
    songs = [stream.next_song() for _ in range(n)]
    return songs, stream.cpu_seconds / max(stream.songs_made, 1)


def train_sample_songs(setup: QualitySetup, n: int):
    """The first ``n`` songs of the benchmark's training stream (see :func:`stream_songs`)."""
    return stream_songs(setup.stream(), n)


def fit_table(setup: QualitySetup):
    """instrument_balance fitted on ``n_table`` training-stream songs (none held out).

    Returns:
        ``(table, CPU seconds per song spent making the songs)``.
    """
    from mixing_env.balance import fit_instrument_balance

    songs, cost = train_sample_songs(setup, setup.n_table)
    return fit_instrument_balance(songs), cost


# -- agents ------------------------------------------------------------------------------------
_PPO_TRAINING = {"lr": 1e-3, "gamma": 0.0, "lambda_": 1.0, "train_batch_size_per_learner": 4096,
                 "minibatch_size": 1024, "num_epochs": 1, "entropy_coeff": 0.0,
                 "use_kl_loss": False}
"""PPO: the reward is nearly immediate (one chunk's mix), so gamma 0; Adam moves each weight
about lr per update whatever the gradient's scale."""
BC_PPO_TRAINING = {**_PPO_TRAINING, "lr": 3e-4}
"""PPO after BC: a smaller step than from scratch, the cloned policy is already near the rule."""
_PG_TRAINING = {"lr": 1e-3, "gamma": 0.0, "train_batch_size_per_learner": 4096,
                "vf_loss_coeff": 0.5, "entropy_coeff": 0.0}
_ENV_RUNNERS = {"num_env_runners": 0, "num_envs_per_env_runner": 32}


def _experiment(name: str, algorithm: str, setup: QualitySetup, *, cache: str,
                eval_songs: list[str], storage: str, training: dict,
                **sections: Any) -> dict:
    from rl_models.app.experiment import DEFAULTS, merge_trees

    heldout = setup.heldout_env(cache, eval_songs)
    exp = merge_trees(DEFAULTS, {
        "name": name, "algorithm": algorithm, "env": setup.train_env(),
        "model": dict(setup.model), "training": training, "env_runners": _ENV_RUNNERS,
        "evaluation": {"interval": 50, "env": heldout},
        "checkpoint": {"frequency": 0, "num_to_keep": 1},
        "storage_path": storage, "seed": setup.seed,
    })
    exp = merge_trees(exp, sections)
    exp["stop"] = {"time_total_s": int(setup.minutes_of(name.removeprefix("quality_")) * 60)}
    return exp


def agent_experiments(setup: QualitySetup, *, cache: str, eval_songs: list[str],
                      storage: str | Path) -> dict[str, Callable[[dict], dict]]:
    """Experiment dicts of the agents trained through Ray Tune (all but ``bc``).

    Returns:
        Agent name -> function of the checkpoints trained so far (name -> path) giving the
        experiment dict to run through :func:`rl_models.app.train.run_experiment`.
    """
    storage = str(Path(storage).resolve())
    common = {"cache": cache, "eval_songs": eval_songs, "storage": storage}

    def bc_ppo(done: dict) -> dict:
        if "bc" not in done:
            raise ConfigError("bc_ppo fine-tunes the bc agent: train 'bc' first")
        learner: dict[str, Any] = {}
        if setup.bc_ppo_imitation:  # DAPG: BC's loss on the engineer's gains stays in PPO's
            bc = {**BC_TRAINING, **setup.bc_training}
            learner["demonstrations"] = demonstrations(setup) | {
                "coeff": setup.bc_ppo_imitation, "seed": setup.seed, "loss": bc["loss"],
                "batch_size": bc["batch_size"]}
        if setup.bc_ppo_baseline:
            learner["episode_baseline"] = setup.bc_ppo_baseline
        if setup.bc_ppo_trainable:
            learner["trainable"] = list(setup.bc_ppo_trainable)
        sections: dict[str, Any] = {}
        if learner:
            sections["resources"] = {"learner_config_dict": learner}
        if setup.bc_ppo_self_critical:
            sections["env"] = {"self_critical": True}
        start = done["bc"]
        if setup.bc_ppo_concentration is not None:
            from rl_models.checkpoints import with_concentration_scale

            start = str(with_concentration_scale(start, setup.bc_ppo_concentration,
                                                 Path(storage) / "bc_ppo_start"))
        return _experiment("quality_bc_ppo", "PPO", setup,
                           training={**BC_PPO_TRAINING, **setup.bc_ppo_training}, **sections,
                           model={**setup.model, **setup.bc_ppo_model},
                           init_module_from=start, **common)

    def ppo(_: dict) -> dict:
        return _experiment("quality_ppo", "PPO", setup, training=_PPO_TRAINING, **common)

    def pg(_: dict) -> dict:
        return _experiment("quality_pg", "PG", setup, training=_PG_TRAINING, **common)

    table = {"bc_ppo": bc_ppo, "ppo": ppo, "pg": pg}
    return {name: table[name] for name in setup.agents if name in table}


def demonstrations(setup: QualitySetup) -> dict[str, Any]:
    """Where behaviour cloning's demonstrations come from and how many are kept.

    Returns:
        ``env`` (the training stream, ``bc_episodes_per_song`` songs in play), ``capacity``
        (episodes kept: windows, 1,024 recent ones; whole songs, as many chunks),
        ``fresh_per_update`` (one new window every other update, whole songs as many chunks)
        and ``stored_states`` (whole songs).
    """
    batch_size = {**BC_TRAINING, **setup.bc_training}["batch_size"]
    env = setup.train_env()
    env["generated"] = {**env["generated"], "episodes_per_song": setup.bc_episodes_per_song,
                        "pool": setup.bc_episodes_per_song}
    per_episode = 1.0
    if setup.whole_songs:  # one episode a song
        env["generated"] |= {"episodes_per_song": 1}
        per_episode = setup.episode_chunks / setup.song_chunks()
    return {"env": env, "capacity": max(int(1024 * per_episode), 2 * batch_size),
            "fresh_per_update": 0.5 * per_episode, "stored_states": setup.whole_songs}


def train_bc(setup: QualitySetup, out: Path, *, held_out_env: dict | None = None,
             validation_env: dict | None = None, log: Callable[[str], None] = print) -> dict:
    """Behaviour cloning of the engineer's decisions on the training stream, in-process.

    With ``held_out_env``, the held-out curve is scored every 5 minutes of training; with
    ``validation_env`` the weights that score best there are kept.
    """
    from rl_models.app.evaluate import HeldOutScore

    return _clone(setup, out, minutes=setup.minutes_of("bc"), held_out_env=held_out_env,
                  log=log, validation=HeldOutScore(validation_env) if validation_env else None,
                  validation_every_s=180.0)


def continue_bc(setup: QualitySetup, bc_checkpoint: str, out: Path, *,
                held_out_env: dict | None = None, log: Callable[[str], None] = print) -> dict:
    """BC + PPO's control: the BC agent trained on for BC + PPO's minutes, without PPO.

    Same demonstrations as BC + PPO's imitation term (the training stream from its start) and
    BC + PPO's learning rate (decaying as BC's does), BC's other settings: what imitation
    alone adds in the time PPO gets.
    """
    return _clone(setup, out, minutes=setup.minutes_of("bc_more"), held_out_env=held_out_env,
                  log=log, initial_weights=Path(bc_checkpoint) / "policy_weights.pt",
                  lr={**BC_PPO_TRAINING, **setup.bc_ppo_training}["lr"])


def _clone(setup: QualitySetup, out: Path, *, minutes: float, held_out_env: dict | None,
           log: Callable[[str], None], **overrides: Any) -> dict:
    """Behaviour cloning on the setup's demonstrations, BC's settings with ``overrides``."""
    from rl_models.app.behaviour_cloning import StreamDemonstrations, train_behaviour_cloning
    from rl_models.app.evaluate import HeldOutScore

    demos = demonstrations(setup)
    return train_behaviour_cloning(
        StreamDemonstrations(demos["env"], seed=setup.seed), env_config=demos["env"],
        model=setup.model, out_dir=out, minutes=minutes, seed=setup.seed, log=log,
        buffer_episodes=demos["capacity"], fresh_per_update=demos["fresh_per_update"],
        stored_states=demos["stored_states"],
        held_out=HeldOutScore(held_out_env) if held_out_env else None,
        **{**BC_TRAINING, **setup.bc_training, **overrides})


def reused_bc(checkpoint: str | Path) -> dict:
    """An earlier BC run's result (as :func:`train_bc` returns it) from its checkpoint."""
    progress = Path(checkpoint).resolve().parent / "progress.json"
    if not progress.is_file():
        raise ConfigError(f"bc_checkpoint {checkpoint}: no progress.json beside it (a "
                          f"checkpoint_000000 written by behaviour cloning is expected)")
    bc = json.loads(progress.read_text())
    return bc | {"checkpoint": str(Path(checkpoint).resolve()),
                 "wall_s": bc["curve"][-1][1] if bc["curve"] else 0.0}


# -- scoring -----------------------------------------------------------------------------------
def score_policies(policies: dict[str, Any], setup: QualitySetup, cache: str,
                   out_dir: str | Path) -> list[dict]:
    """Scores baselines and checkpoints on the held-out songs with the product's evaluation.

    Args:
        policies: Row label -> baseline spec or checkpoint path.
        setup: The benchmark setup.
        cache: The held-out songs.
        out_dir: Where the evaluation tables and plots go.

    Returns:
        One MEAN row per policy, with ``label``, ``gap_closed`` and ``headroom_share``.
    """
    from rl_models.app.evaluate import evaluate

    rows = evaluate(list(policies.values()), env_config=setup.heldout_env(cache),
                    out_dir=out_dir, plots=False, progress=False)
    label_of = {str(spec): label for label, spec in policies.items()}
    means = {label_of.get(r["policy"], r["policy"]): r for r in rows if r["song"] == "MEAN"}
    ib, bound = (means[k]["gap_closed"] for k in ("instrument_balance", "bound"))
    return [{"label": label, **row,
             "headroom_share": (row["gap_closed"] - ib) / (bound - ib) if bound > ib else None}
            for label, row in means.items()]


def training_gap_closed(checkpoints: dict[str, str], setup: QualitySetup, songs: list
                        ) -> dict[str, float]:
    """Each checkpoint's gap closed on training-stream songs (in memory)."""
    import numpy as np

    from mixing_env.baselines import make_baseline
    from mixing_env.envs.song_source import SongSource
    from mixing_env.metrics import gap_closed
    from rl_models.app.evaluate import play_songs
    from rl_models.app.module_policy import ModulePolicy
    from rl_models.checkpoints import load_policy

    env = {**setup.features(), "episode_chunks": None}
    source = SongSource(env, songs=songs)

    def distance(policy) -> float:
        return float(np.mean([r.mfcc_distance.mean()
                              for r in play_songs(policy, env, source=source)]))

    d_equal, d_oracle = distance(make_baseline("equal")), distance(make_baseline("oracle"))
    return {name: gap_closed(d_agent=distance(ModulePolicy(load_policy(path)[0])),
                             d_equal=d_equal, d_oracle=d_oracle)
            for name, path in checkpoints.items()}


# -- the whole benchmark ---------------------------------------------------------------------------
def results_markdown(rows: list[dict], *, setup: QualitySetup, command: str,
                     wall_s: dict[str, float], train_gap: dict[str, float]) -> str:
    """One seed's table: gap closed, headroom share, generalisation gap, wall time."""

    def f(v: Any, digits: int = 3) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    lines = ["| policy | gap closed | share of the headroom | on training songs "
             "| generalisation gap | gain err median dB | train wall min |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = next((a for a, label in AGENT_LABELS.items() if label == r["label"]), None)
        train = train_gap.get(name) if name else None
        gen = None if train is None else train - r["gap_closed"]
        wall = wall_s.get(r["label"])
        lines.append(f"| {r['label']} | {f(r['gap_closed'])} | {f(r['headroom_share'], 2)} | "
                     f"{f(train)} | {f(gen)} | {f(r['gain_err_median_db'], 2)} | "
                     f"{f(None if wall is None else wall / 60, 1)} |")
    return "\n".join([f"## Seed {setup.seed}, {setup.style} engineer (held-out songs)", "",
                      *lines, "", f"Command: `{command}`", "", "Setup:", "", "```json",
                      json.dumps(asdict(setup), indent=1), "```", ""])


def run_benchmark(out: str | Path, setup: QualitySetup, *, command: str = "",
                  log: Callable[[str], None] = print) -> dict:
    """Runs one seed of the benchmark into ``out``; returns its rows.

    Writes ``out/results.json``, ``out/results.md``, ``out/learning_curves.png`` and the
    evaluation tables and plots under ``out/evaluation``.
    """
    from rl_models.app.plots import plot_learning_curves, read_learning_curve
    from rl_models.app.train import run_experiment

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    load = [os.getloadavg()[0]]
    cache = heldout_cache(out / "heldout", setup)
    from mixing_env.data.cache import PreparedDataset

    heldout = sorted(PreparedDataset(cache).names)
    table, song_cpu_s = fit_table(setup)
    table_path = table.write(out / "instrument_balance.json")
    log(f"{len(heldout)} held-out songs, table fitted on {setup.n_table} training songs "
        f"({song_cpu_s:.2f} CPU s per training song) in {time.time() - t0:.0f} s")
    experiments = agent_experiments(setup, cache=cache, eval_songs=heldout[: setup.eval_songs],
                                    storage=out / "runs")
    checkpoints: dict[str, str] = {}
    wall: dict[str, float] = {}
    curves: dict[str, list[dict]] = {}
    songs_drawn: dict[str, Any] = {}
    for name in AGENTS:
        if name not in setup.agents:
            continue
        label, t = AGENT_LABELS[name], time.time()
        if name == "bc":
            validation = (setup.heldout_env(validation_cache(out / "validation", setup))
                          if setup.n_validation and not setup.bc_checkpoint else None)
            bc = (reused_bc(setup.bc_checkpoint) if setup.bc_checkpoint else
                  train_bc(setup, out / "runs" / "bc", log=log, validation_env=validation,
                           held_out_env=setup.heldout_env(cache, heldout[: setup.eval_songs])))
            checkpoints[name] = bc["checkpoint"]
            curves[name] = _bc_curve(bc)
            songs_drawn[name] = {"songs": bc["songs"], "demo_cpu_s": bc["demo_cpu_s"]}
            if "selected" in bc:  # (update, seconds, validation gap) of the weights kept
                songs_drawn[name] |= {"selected": bc["selected"],
                                      "validation_curve": bc["validation_curve"]}
        elif name == "bc_more":
            more = continue_bc(setup, checkpoints["bc"], out / "runs" / "bc_more", log=log,
                               held_out_env=setup.heldout_env(cache, heldout[: setup.eval_songs]))
            checkpoints[name] = more["checkpoint"]
            curves[name] = _bc_curve(more)
            songs_drawn[name] = {"songs": more["songs"], "demo_cpu_s": more["demo_cpu_s"]}
        else:
            results = run_experiment(copy.deepcopy(experiments[name](checkpoints)), verbose=0)
            best = results[0]
            checkpoints[name] = best.checkpoint.path
            curves[name] = read_learning_curve(Path(best.path) / "result.json")
            songs_drawn[name] = _stream_use(Path(best.path) / "result.json")
        wall[label] = (bc["wall_s"] if name == "bc" and setup.bc_checkpoint
                       else time.time() - t)
        load.append(os.getloadavg()[0])
        log(f"{label}: {wall[label] / 60:.1f} min, songs {songs_drawn[name]}")
    policies: dict[str, Any] = {b: f"{b}={table_path}" if b == "instrument_balance" else b
                                for b in TABLE_BASELINES}
    policies |= {AGENT_LABELS[n]: p for n, p in checkpoints.items()}
    rows = score_policies(policies, setup, cache, out / "evaluation")
    train_songs, _ = train_sample_songs(setup, setup.n_train_sample)
    train_gap = training_gap_closed(checkpoints, setup, train_songs) if checkpoints else {}
    by_label = {r["label"]: r["gap_closed"] for r in rows}
    png = plot_learning_curves(curves, out / "learning_curves.png", labels=AGENT_LABELS,
                               loss_curves=("bc", "bc_more"),
                               references={k: by_label[k] for k in ("instrument_balance",
                                                                    "bound")}) if curves else None
    page = results_markdown(rows, setup=setup, command=command, wall_s=wall,
                            train_gap=train_gap)
    (out / "results.md").write_text(page + (f"\n![learning curves]({png.name})\n" if png
                                            else ""))
    payload = {"seed": setup.seed, "style": setup.style, "rows": rows, "wall_s": wall,
               "train_gap_closed": train_gap, "songs": songs_drawn,
               "training_song_cpu_s": song_cpu_s, "setup": asdict(setup), "curves": curves,
               "load_average": load, "total_wall_s": time.time() - t0,
               "date": time.strftime("%Y-%m-%d"), "command": command}
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    log(page)
    return payload


def _bc_curve(bc: dict) -> list[dict]:
    """Behaviour cloning's loss and held-out curves as learning-curve points."""
    gaps = {u: g for u, _, g in bc["held_out_curve"]}
    points = [{"iteration": u, "time_s": s, "policy_loss": loss, "gap_closed": gaps.get(u),
               "return_mean": None, "env_steps": None} for u, s, loss in bc["curve"]]
    return points + [{"iteration": u, "time_s": s, "policy_loss": None, "gap_closed": g,
                      "return_mean": None, "env_steps": None}
                     for u, s, g in bc["held_out_curve"] if u % 25]


def _stream_use(result_json: Path) -> dict[str, Any]:
    """Songs made and their CPU cost over a Tune run (the last result's custom metrics)."""
    last = {}
    for line in result_json.read_text().splitlines():
        if line.strip():
            last = json.loads(line)
    metrics = last.get("deepmixing", {}) if isinstance(last.get("deepmixing"), dict) else {}
    return {k: metrics.get(k) for k in ("songs_made", "song_cpu_s")} | {
        "time_total_s": last.get("time_total_s"),
        "env_steps": last.get("num_env_steps_sampled_lifetime")}


def with_seed(setup: QualitySetup, seed: int) -> QualitySetup:
    """The same setup on another seed (other songs, other held-out set)."""
    return dataclasses.replace(setup, seed=seed)
