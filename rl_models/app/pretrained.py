"""The shipped pretrained agent: how it is made, and how it is exported.

``deepmixing mix pretrained <folder>`` and ``deepmixing evaluate pretrained ...`` play the
policy in ``rl_models/pretrained/`` (see :data:`rl_models.checkpoints.PRETRAINED_DIR`). This
module remakes it: sampled songs (:mod:`mixing_env.songs.sampled`, some with a master-bus
reference) -> a cache in the fixed C = 72 layout -> oracle demonstrations -> behaviour
cloning (:func:`rl_models.app.behaviour_cloning.train_behaviour_cloning`) -> the three plain
files of a checkpoint in one folder, no pickle (:func:`export_pretrained`).

The recipe (:class:`PretrainedRecipe`) is the learning benchmark's BC agent: log-mel
observations with causal and whole-stem level features and each stem's BS.1770 loudness; a
shared encoder keeps the weights small and gives slots training rarely saw the same chunk
embedding as the others. By default the module starts at a level prior
(:mod:`rl_models.prior`): each stem's gain ``10 ** ((a * table[slot] - w * LUFS) / 20)``,
the ``instrument_balance`` table fitted on the training songs shrunk by ``a`` toward 0 dB,
the stem's loudness undone only partly (``w``), and the attention, gated at 0, learns a
correction (:func:`prior_model_config`; why these settings: ``docs/transfer.md``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mixing_env.errors import ConfigError

__all__ = ["PRIORS", "PretrainedRecipe", "export_pretrained", "pretrained_env",
           "prior_model_config", "train_pretrained"]

PRIORS = ("instrument_balance", "none")
"""What the module starts from: the fitted table as its level prior, or nothing (the plain
attention-LSTM)."""

_SHIPPED_ENV_KEYS = ("obs_features", "n_track_features", "level_features",
                     "stem_level_features", "stem_loudness_feature", "obs_window", "n_mfcc",
                     "rho", "reward_mode", "mfcc_scale", "level_match")
"""Env settings the exported agent keeps: what it observes and how it is scored. The
training cache's path and song list stay out (they exist only on the machine that trained)."""

_DATA_FIELDS = ("n_songs", "seconds", "n_tracks", "master_bus", "seed", "episode_chunks",
                "demo_episodes_per_song")
_DATA_STAMP = "data.json"
"""Recipe fields that fix the songs and demonstrations; with the env config they are written
to ``data.json`` in the work folder once the demonstrations are complete, and a rerun that
matches reuses them (only the training is redone)."""


@dataclass(frozen=True)
class PretrainedRecipe:
    """Songs, demonstrations and training budget of the pretrained agent.

    The defaults made the shipped agent (16 minutes of training on 2 CPU cores, see
    ``docs/transfer.md``); tests shrink every size.
    """

    n_songs: int = 32
    """Training songs (sampled instruments)."""
    seconds: float = 20.0
    """Length of each song."""
    n_tracks: tuple[int, int] = (6, 11)
    """Stems per song, drawn per song."""
    master_bus: float = 0.5
    """Chance that a song's reference goes through a master bus (EQ, compression, reverb)."""
    seed: int = 2026
    """Seed of the songs, the demonstration windows and the training."""
    episode_chunks: int = 128
    """Length of each demonstration window, in chunks."""
    demo_episodes_per_song: int = 8
    """Oracle demonstration windows per song."""
    n_track_features: int = 16
    """Log-mel bands per track (plus 4 causal and 2 whole-stem level features)."""
    minutes: float = 16.0
    """Behaviour-cloning budget, wall-clock minutes."""
    lr: float = 3e-3
    """Adam learning rate at the start (decays to a tenth over the budget)."""
    max_updates: int | None = None
    """Also stop after this many updates (None: the time budget only)."""
    level_sd_db: float = 6.0
    """Spread of the per-stem recording-level augmentation, dB (0: off; see
    :mod:`rl_models.app.demo_augmentation`)."""
    slot_shuffle: float = 0.0
    """Chance that a training sequence's stems are moved to other slots (0: off)."""
    prior: str = "instrument_balance"
    """What the module starts from (:data:`PRIORS`)."""
    prior_shrink: float = 0.5
    """``a``: the fitted table's levels times this (0: every slot at 0 dB, 1: the table)."""
    prior_weight: float = 0.75
    """``w``: how much of each stem's loudness the prior undoes (1: all, as the loudness and
    instrument_balance baselines; below 1 keeps part of the raw level's balance)."""
    learn_prior: bool = False
    """Let training move ``w`` and the per-slot levels (else they stay as set)."""
    residual_gate: float = 0.0
    """Initial weight of the attention's correction of the prior (0: exactly the prior)."""
    rebase: bool = True
    """With a prior: the demonstrations keep the oracle's moves within each episode but take
    their static balance from the prior (:func:`~rl_models.app.demo_augmentation.
    make_prior_rebase`), so training learns the moves and not our mixing model's levels."""
    model: dict[str, Any] = field(default_factory=lambda: {
        "hidden_size": 48, "mix_hidden_size": 5, "attention_dim": 32, "embed_dim": 16,
        "max_seq_len": 16, "input_norm": "db", "log_rms_feature": False,
        "concentration_scale": 50.0, "share_encoder": True,
    })
    """The reduced attention-LSTM of the learning benchmark (16-chunk training sequences), with
    one shared track encoder."""

    def __post_init__(self) -> None:
        for name in ("n_songs", "episode_chunks", "demo_episodes_per_song", "n_track_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {name}={value!r}")
        if not self.minutes > 0:
            raise ConfigError(f"minutes must be > 0, got {self.minutes!r}")
        if self.prior not in PRIORS:
            raise ConfigError(f"prior must be one of {list(PRIORS)}, got {self.prior!r}")
        for name in ("prior_shrink", "prior_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


def pretrained_env(cache_dir: str | os.PathLike, recipe: PretrainedRecipe) -> dict:
    """The MixingEnv config the agent is trained with on a prepared cache."""
    return {
        "dataset_dir": str(Path(cache_dir).resolve()),
        "episode_chunks": recipe.episode_chunks,
        "obs_features": "logmel",
        "n_track_features": recipe.n_track_features,
        "level_features": True,
        "stem_level_features": True,
        "stem_loudness_feature": recipe.prior != "none",
    }


def prior_model_config(cache_dir: str | os.PathLike, recipe: PretrainedRecipe, *,
                       out: str | os.PathLike) -> dict:
    """The module settings of the recipe's prior, its table fitted on the cache's songs.

    Args:
        cache_dir: The training songs, prepared.
        recipe: ``prior``, ``prior_shrink``, ``prior_weight``, ``learn_prior``,
            ``residual_gate``.
        out: Where the fitted ``instrument_balance`` JSON is written (kept for inspection).

    Returns:
        ``model_config`` keys to merge into the recipe's model ({} with ``prior="none"``).
    """
    if recipe.prior == "none":
        return {}
    from mixing_env.balance import fit_dataset_balance
    from mixing_env.baselines import InstrumentBalance
    from mixing_env.envs.song_source import SongSource
    from rl_models.prior import balance_prior_model_config

    table = InstrumentBalance.read(fit_dataset_balance(cache_dir, out=out))
    slots = SongSource({"dataset_dir": str(cache_dir)}).layout.slot_names
    config = balance_prior_model_config(table, slots, residual_gate=recipe.residual_gate)
    return {**config, "level_prior": recipe.prior_weight, "learn_level_prior": recipe.learn_prior,
            "level_prior_bias_db": [recipe.prior_shrink * v
                                    for v in config["level_prior_bias_db"]]}


def export_pretrained(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                      recipe: dict | None = None) -> Path:
    """Copies a checkpoint's plain files into ``out``: the folder ``pretrained`` resolves to.

    ``policy.json`` and ``policy_weights.pt`` are copied as they are; in ``deepmixing.json``
    the env keeps only what the agent observes (no training cache path), so ``evaluate``
    without ``--dataset`` falls back to the built-in songs. The folder is written beside
    ``out`` and swapped in, so a failure leaves the old one whole.

    Args:
        checkpoint: A checkpoint, trial or experiment folder with the plain policy files.
        out: The folder to (re)place, e.g. ``rl_models/pretrained``.
        recipe: How the agent was made (:class:`PretrainedRecipe` as a dict), recorded under
            ``experiment.recipe`` in ``deepmixing.json``.

    Returns:
        ``out``.

    Raises:
        CheckpointError: ``checkpoint`` holds no loadable policy (checked by loading it).
        ConfigError: ``out`` is a file.
    """
    from rl_models import checkpoints

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, expected a folder")
    _, meta = checkpoints.load_policy(checkpoint)  # refuses a damaged or old checkpoint
    source = Path(meta["checkpoint"])
    experiment = dict(meta.get("experiment", {}))
    env = dict(experiment.get("env", {}))
    experiment["env"] = {k: env[k] for k in _SHIPPED_ENV_KEYS if k in env}
    experiment.pop("demonstrations", None)
    if recipe is not None:
        experiment["recipe"] = dict(recipe)
    layout = {k: meta[k] for k in ("slot_names", "chunk_size", "sample_rate") if k in meta}
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in (checkpoints.POLICY_CONFIG_FILE, checkpoints.WEIGHTS_FILE):
        shutil.copyfile(source / name, staging / name)
    checkpoints.write_metadata(staging, experiment=experiment, layout=layout,
                               iteration=int(meta.get("iteration", 0)))
    checkpoints.load_policy(staging)  # what ships must load
    keep = [p for p in out.iterdir() if p.name not in _exported_names()] if out.is_dir() else []
    for extra in keep:  # e.g. an __init__.py or README beside the weights stays
        shutil.move(str(extra), staging / extra.name)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.is_dir():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def _exported_names() -> set[str]:
    from rl_models import checkpoints

    return {checkpoints.POLICY_CONFIG_FILE, checkpoints.WEIGHTS_FILE, checkpoints.METADATA_FILE}


def train_pretrained(out: str | os.PathLike, *, work_dir: str | os.PathLike,
                     recipe: PretrainedRecipe | None = None,
                     log: Callable[[str], None] = print) -> dict:
    """Remakes the pretrained agent: songs, cache, demonstrations, BC, export to ``out``.

    Args:
        out: Folder the agent is exported to (``rl_models/pretrained`` replaces the shipped
            one).
        work_dir: Where ``songs/``, ``cache/``, ``demonstrations/`` and ``run/`` go (kept, so
            the run can be inspected; a rerun whose songs and demonstrations would be the same
            reuses them and only trains).
        recipe: Sizes and budget; None: :class:`PretrainedRecipe`'s defaults.
        log: Where progress lines go.

    Returns:
        ``{"out", "checkpoint", "updates", "cache", "wall_s"}``; ``recipe.json`` in
        ``work_dir`` records the recipe.
    """
    from mixing_env.data.prepare import prepare_dataset
    from mixing_env.songs.sampled import make_sampled_dataset
    from rl_models.app.behaviour_cloning import train_behaviour_cloning
    from rl_models.app.demo_augmentation import make_demo_augmentation, make_prior_rebase
    from rl_models.app.demonstrations import record_episodes, write_demonstrations

    recipe = recipe or PretrainedRecipe()
    work = Path(work_dir).resolve()  # RLlib saves the module by URI: a relative path fails
    if work.exists() and not work.is_dir():
        raise ConfigError(f"--work {work} is a file, expected a folder")
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file, expected a folder")
    t0 = time.time()
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    env = pretrained_env(work / "cache", recipe)
    demos, stamp = work / "demonstrations", work / _DATA_STAMP
    data_key = json.dumps({**{k: asdict(recipe)[k] for k in _DATA_FIELDS}, "env": env},
                          sort_keys=True)
    if stamp.is_file() and stamp.read_text() == data_key:
        log(f"pretrained: songs, cache and demonstrations of this recipe reused from {work}")
    else:
        stamp.unlink(missing_ok=True)
        songs = make_sampled_dataset(work / "songs", n_songs=recipe.n_songs,
                                     seconds=recipe.seconds, n_tracks=tuple(recipe.n_tracks),
                                     seed=recipe.seed, master_bus=recipe.master_bus)
        log(f"pretrained: {len(songs)} sampled songs in {work / 'songs'} "
            f"({time.time() - t0:.0f} s)")
        dataset = prepare_dataset(work / "songs", work / "cache", progress=False, rebuild=True)
        log(f"pretrained: prepared {len(dataset)} songs, C = {dataset.n_slots} "
            f"({time.time() - t0:.0f} s)")
        shutil.rmtree(demos, ignore_errors=True)
        episodes = record_episodes(env, policy="oracle",
                                   episodes_per_song=recipe.demo_episodes_per_song,
                                   seed=recipe.seed)
        write_demonstrations(episodes, demos)
        stamp.write_text(data_key)
        log(f"pretrained: oracle demonstrations in {demos} ({time.time() - t0:.0f} s)")
    shutil.rmtree(work / "run", ignore_errors=True)
    prior = prior_model_config(work / "cache", recipe, out=work / "instrument_balance.json")
    rebase = make_prior_rebase(prior["level_prior_bias_db"], prior["level_prior"]) \
        if prior and recipe.rebase else None
    augment = make_demo_augmentation(
        level_sd_db=recipe.level_sd_db, slot_shuffle=recipe.slot_shuffle,
        gain_follows_level=prior["level_prior"] if rebase else 1.0)
    bc = train_behaviour_cloning(demos, env_config=env, model={**recipe.model, **prior},
                                 out_dir=work / "run", minutes=recipe.minutes,
                                 max_updates=recipe.max_updates, lr=recipe.lr, seed=recipe.seed,
                                 log=log, augment=augment, episode_transform=rebase)
    exported = export_pretrained(bc["checkpoint"], out, recipe=asdict(recipe))
    log(f"pretrained: {bc['updates']} BC updates; exported to {exported} "
        f"({time.time() - t0:.0f} s)")
    return {"out": str(exported), "checkpoint": bc["checkpoint"], "updates": bc["updates"],
            "cache": env["dataset_dir"],
            "wall_s": time.time() - t0}


# --------------------------------------------------------------------------------------------
# Command line: deepmixing pretrained {train,export}
# --------------------------------------------------------------------------------------------
def _cmd_train(args: Any) -> int:
    from rl_models.checkpoints import PRETRAINED_DIR

    defaults = PretrainedRecipe()
    recipe = PretrainedRecipe(
        n_songs=args.n_songs, seconds=args.seconds,
        n_tracks=(args.tracks, args.tracks_max), master_bus=args.master_bus, seed=args.seed,
        episode_chunks=args.episode_chunks,
        demo_episodes_per_song=args.demo_episodes_per_song, minutes=args.minutes,
        max_updates=args.max_updates, level_sd_db=args.level_sd_db,
        slot_shuffle=args.slot_shuffle, prior=args.prior, prior_shrink=args.prior_shrink,
        prior_weight=args.prior_weight, learn_prior=args.learn_prior,
        rebase=not args.no_rebase,
        model={**defaults.model})
    result = train_pretrained(args.out, work_dir=args.work, recipe=recipe)
    shipped = Path(result["out"]).resolve() == PRETRAINED_DIR
    print(f"pretrained agent: {result['out']}" + (" (the shipped one)" if shipped else
          f"  (play it as: deepmixing mix {result['out']} <folder>)"))
    return 0


def _cmd_export(args: Any) -> int:
    print(f"pretrained agent: {export_pretrained(args.checkpoint, args.out)}")
    return 0


def add_pretrained_parser(sub: Any, formatter_class: Any) -> None:
    """Adds ``deepmixing pretrained {train,export}`` to the CLI's subparsers."""
    from rl_models.checkpoints import PRETRAINED_DIR

    d = PretrainedRecipe()
    p = sub.add_parser(
        "pretrained", formatter_class=formatter_class,
        help="remake or export the shipped pretrained agent",
        description="The agent `deepmixing mix pretrained <folder>` and `deepmixing evaluate "
                    f"pretrained` play lives in {PRETRAINED_DIR} (policy.json, "
                    "policy_weights.pt, deepmixing.json; no pickle). A folder named "
                    "'pretrained' in the working directory wins over it.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                               help="train: make an agent; export: a checkpoint's policy")
    t = actions.add_parser(
        "train", formatter_class=formatter_class,
        help="sampled songs -> cache -> oracle demonstrations -> behaviour cloning -> export",
        description="Remake the pretrained agent from scratch (docs/transfer.md). "
                    f"--out {PRETRAINED_DIR} replaces the shipped one.")
    t.add_argument("--out", type=Path, required=True, help="folder to export the agent to")
    t.add_argument("--work", type=Path, default=Path("runs/pretrained"),
                   help="songs, cache, demonstrations and the BC run go here")
    t.add_argument("--n-songs", type=int, default=d.n_songs, help="training songs")
    t.add_argument("--seconds", type=float, default=d.seconds, help="length of each song")
    t.add_argument("--tracks", type=int, default=d.n_tracks[0], help="fewest stems per song")
    t.add_argument("--tracks-max", type=int, default=d.n_tracks[1], help="most stems per song")
    t.add_argument("--master-bus", type=float, default=d.master_bus, metavar="P",
                   help="chance that a song's reference goes through a master bus")
    t.add_argument("--seed", type=int, default=d.seed, help="songs, demonstrations, training")
    t.add_argument("--episode-chunks", type=int, default=d.episode_chunks,
                   help="chunks per demonstration window")
    t.add_argument("--demo-episodes-per-song", type=int, default=d.demo_episodes_per_song,
                   help="oracle demonstration windows per song")
    t.add_argument("--minutes", type=float, default=d.minutes,
                   help="behaviour-cloning budget (wall clock)")
    t.add_argument("--max-updates", type=int, default=None,
                   help="also stop after this many updates")
    t.add_argument("--level-sd-db", type=float, default=d.level_sd_db,
                   help="spread of the per-stem recording-level augmentation (dB; 0: off)")
    t.add_argument("--slot-shuffle", type=float, default=d.slot_shuffle,
                   help="chance that a training sequence's stems move to other slots")
    t.add_argument("--prior", choices=PRIORS, default=d.prior,
                   help="start from the instrument_balance table fitted on the training songs "
                        "(the attention learns a correction), or from nothing")
    t.add_argument("--prior-shrink", type=float, default=d.prior_shrink, metavar="A",
                   help="the prior's per-slot levels times A, in [0, 1] (0: all at 0 dB)")
    t.add_argument("--prior-weight", type=float, default=d.prior_weight, metavar="W",
                   help="share of each stem's loudness the prior undoes, in [0, 1]")
    t.add_argument("--learn-prior", action="store_true",
                   help="let training move the prior's weight and levels (default: they stay "
                        "as set and only the correction is trained)")
    t.add_argument("--no-rebase", action="store_true",
                   help="clone the oracle's own balance instead of the prior's plus the "
                        "oracle's moves")
    t.set_defaults(func=_cmd_train)
    e = actions.add_parser(
        "export", formatter_class=formatter_class,
        help="copy a trained checkpoint's plain policy files into a folder",
        description="Write policy.json, policy_weights.pt and deepmixing.json (without the "
                    "training cache's path) of a checkpoint into --out.")
    e.add_argument("checkpoint", type=Path, help="checkpoint, trial or experiment folder")
    e.add_argument("--out", type=Path, required=True, help="folder to export the agent to")
    e.set_defaults(func=_cmd_export)
