"""The shipped pretrained agent: how it is made, and how it is exported.

``deepmixing mix pretrained <folder>`` and ``deepmixing evaluate pretrained ...`` play the
policy in ``rl_models/pretrained/`` (see :data:`rl_models.checkpoints.PRETRAINED_DIR`). This
module remakes it: behaviour cloning (:func:`rl_models.app.behaviour_cloning.
train_behaviour_cloning`) of the engineer's true gains on a stream of new songs
(:class:`~rl_models.app.behaviour_cloning.StreamDemonstrations`; the default engineer, a share
of the references through a master bus) for a wall-clock budget, then the three plain files
of a checkpoint in one folder, no pickle (:func:`export_pretrained`).

The agent is the learning benchmark's best one (``docs/results.md``): its module
(:data:`~rl_models.app.stream_agent.STREAM_AGENT_MODEL`, an attention-LSTM with attention
across tracks that starts at equal loudness) and its observation
(:func:`~rl_models.app.stream_agent.stream_agent_features`: log-mel, levels, what the
engineer listens to, each stem's loudness). The stream never repeats a song and never makes
one of a dataset written to disk, so the agent learns the engineer's rule and not songs.
How it does on songs unlike its training songs: ``docs/transfer.md``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mixing_env.engineer import DEFAULT_INCONSISTENCY_DB, DEFAULT_STYLE
from mixing_env.errors import ConfigError
from rl_models.app.stream_agent import STREAM_AGENT_MODEL, stream_agent_features

__all__ = ["PretrainedRecipe", "export_pretrained", "train_pretrained"]

_SHIPPED_ENV_KEYS = ("obs_features", "n_track_features", "level_features",
                     "stem_level_features", "stem_spectrum_features", "listening_features",
                     "stem_loudness_feature", "obs_window", "n_mfcc", "rho", "reward_mode",
                     "mfcc_scale", "level_match")
"""Env settings the exported agent keeps: what it observes and how it is scored. Where its
songs came from (a training cache's path, a stream) stays out."""


@dataclass(frozen=True)
class PretrainedRecipe:
    """The training stream, observation, module and budget of the pretrained agent.

    The defaults made the shipped agent (``docs/transfer.md``); tests shrink every size.
    """

    seed: int = 2026
    """Seed of the training stream, its episodes' windows and the module."""
    seconds: float = 12.0
    """Length of each training song."""
    n_tracks: tuple[int, int] = (6, 11)
    """(fewest, most) stems per training song."""
    style: str = DEFAULT_STYLE
    """The engineer who mixes the training songs' references."""
    inconsistency: float = DEFAULT_INCONSISTENCY_DB
    """The engineer's random part, dB."""
    master_bus: float = 0.3
    """Share of the training references that go through a master bus (EQ, compression,
    reverb), so a bus-processed reference does not surprise the agent."""
    songs_per_skeleton: int = 8
    """Training songs drawn from one rendered skeleton (as the learning benchmark)."""
    episodes_per_song: int = 32
    """Demonstration windows a training song serves before a new one replaces it."""
    episode_chunks: int = 128
    """Length of each demonstration window, in chunks (~1.5 s)."""
    n_track_features: int = 16
    """Log-mel bands per track in the observation."""
    listening: bool = True
    """Observe what the engineer listens to (the env's ``listening_features``)."""
    minutes: float = 40.0
    """Behaviour-cloning budget, wall-clock minutes."""
    max_updates: int | None = None
    """Also stop after this many updates (None: the time budget only)."""
    lr: float = 2e-3
    """Adam learning rate at the start (decays to a tenth over the budget)."""
    batch_size: int = 16
    """Sequences per update."""
    model: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(STREAM_AGENT_MODEL))
    """The module's ``model_config`` (the learning benchmark's)."""

    def __post_init__(self) -> None:
        for name in ("songs_per_skeleton", "episodes_per_song", "episode_chunks",
                     "n_track_features", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {name}={value!r}")
        if not self.minutes > 0:
            raise ConfigError(f"minutes must be > 0, got {self.minutes!r}")
        if self.max_updates is not None and (isinstance(self.max_updates, bool)
                                             or not isinstance(self.max_updates, int)
                                             or self.max_updates < 1):
            raise ConfigError(f"max_updates must be an int >= 1 or None, got "
                              f"{self.max_updates!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        from mixing_env.songs.stream import StreamConfig

        StreamConfig.from_dict(self.stream())  # names a bad style, master_bus or length

    def stream(self) -> dict[str, Any]:
        """The training stream (the env's ``generated`` mapping)."""
        return {"seed": self.seed, "seconds": self.seconds, "n_tracks": list(self.n_tracks),
                "style": self.style, "inconsistency": self.inconsistency,
                "master_bus": self.master_bus, "songs_per_skeleton": self.songs_per_skeleton,
                "episodes_per_song": self.episodes_per_song}

    def train_env(self) -> dict[str, Any]:
        """The MixingEnv config of training: random windows of songs without end."""
        return {"generated": self.stream(), "episode_chunks": self.episode_chunks,
                **stream_agent_features(n_track_features=self.n_track_features,
                                        listening=self.listening)}


def export_pretrained(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                      recipe: dict | None = None) -> Path:
    """Copies a checkpoint's plain files into ``out``: the folder ``pretrained`` resolves to.

    ``policy.json`` and ``policy_weights.pt`` are copied as they are; in ``deepmixing.json``
    the env keeps only what the agent observes (not where its songs came from), so ``evaluate``
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
    """Remakes the pretrained agent: behaviour cloning on the stream, then export to ``out``.

    Args:
        out: Folder the agent is exported to (``rl_models/pretrained`` replaces the shipped
            one; the old folder is swapped out only once the new one loads).
        work_dir: Where the BC run (``run/``: its checkpoint and ``progress.json``) and
            ``recipe.json`` go (kept, so the run can be inspected).
        recipe: Stream, sizes and budget; None: :class:`PretrainedRecipe`'s defaults.
        log: Where progress lines go.

    Returns:
        ``{"out", "checkpoint", "updates", "songs", "wall_s"}``: ``songs`` is how many new
        songs the stream made for training.

    Raises:
        ConfigError: ``out`` or ``work_dir`` is a file.
    """
    from rl_models.app.behaviour_cloning import StreamDemonstrations, train_behaviour_cloning

    recipe = recipe or PretrainedRecipe()
    work = Path(work_dir).resolve()  # RLlib saves the module by URI: a relative path fails
    for flag, path in (("--work", work), ("--out", Path(out))):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{flag} {path} is a file, expected a folder")
    t0 = time.time()
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    shutil.rmtree(work / "run", ignore_errors=True)
    env = recipe.train_env()
    bc = train_behaviour_cloning(
        StreamDemonstrations(env, seed=recipe.seed), env_config=env, model=recipe.model,
        out_dir=work / "run", minutes=recipe.minutes, max_updates=recipe.max_updates,
        lr=recipe.lr, batch_size=recipe.batch_size, seed=recipe.seed, log=log)
    exported = export_pretrained(bc["checkpoint"], out, recipe=asdict(recipe))
    log(f"pretrained: {bc['updates']} BC updates on {bc['songs']} new songs; exported to "
        f"{exported} ({time.time() - t0:.0f} s)")
    return {"out": str(exported), "checkpoint": bc["checkpoint"], "updates": bc["updates"],
            "songs": bc["songs"], "wall_s": time.time() - t0}


# --------------------------------------------------------------------------------------------
# Command line: deepmixing pretrained {train,export}
# --------------------------------------------------------------------------------------------
def _cmd_train(args: Any) -> int:
    from rl_models.checkpoints import PRETRAINED_DIR

    recipe = PretrainedRecipe(
        seed=args.seed, seconds=args.seconds, n_tracks=(args.tracks, args.tracks_max),
        style=args.style, inconsistency=args.inconsistency, master_bus=args.master_bus,
        episode_chunks=args.episode_chunks, minutes=args.minutes,
        max_updates=args.max_updates, lr=args.lr, batch_size=args.batch_size)
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
    from mixing_env.engineer import STYLES
    from rl_models.checkpoints import PRETRAINED_DIR

    # The recipe's defaults without building one: its check imports the song generator
    # (scipy.signal, 0.8 s), which every CLI command would pay for at start.
    d = SimpleNamespace(**{f.name: f.default for f in fields(PretrainedRecipe)
                           if f.default is not MISSING})
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
        help="behaviour cloning of the engineer on a stream of new songs -> export",
        description="Remake the pretrained agent from scratch (docs/transfer.md): behaviour "
                    "cloning of the engineer's gains on songs made as training asks for "
                    "them, for a wall-clock budget. "
                    f"--out {PRETRAINED_DIR} replaces the shipped one.")
    t.add_argument("--out", type=Path, required=True, help="folder to export the agent to")
    t.add_argument("--work", type=Path, default=Path("runs/pretrained"),
                   help="the BC run and recipe.json go here")
    t.add_argument("--minutes", type=float, default=d.minutes,
                   help="behaviour-cloning budget (wall clock)")
    t.add_argument("--max-updates", type=int, default=None,
                   help="also stop after this many updates")
    t.add_argument("--seed", type=int, default=d.seed, help="training stream and module")
    t.add_argument("--seconds", type=float, default=d.seconds, help="length of each song")
    t.add_argument("--tracks", type=int, default=d.n_tracks[0], help="fewest stems per song")
    t.add_argument("--tracks-max", type=int, default=d.n_tracks[1], help="most stems per song")
    t.add_argument("--style", choices=sorted(STYLES), default=d.style,
                   help="the engineer who mixes the training references")
    t.add_argument("--inconsistency", type=float, default=d.inconsistency, metavar="DB",
                   help="the engineer's random part")
    t.add_argument("--master-bus", type=float, default=d.master_bus, metavar="P",
                   help="share of the training references through a master bus")
    t.add_argument("--episode-chunks", type=int, default=d.episode_chunks,
                   help="chunks per demonstration window")
    t.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="sequences per update")
    t.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate at the start")
    t.set_defaults(func=_cmd_train)
    e = actions.add_parser(
        "export", formatter_class=formatter_class,
        help="copy a trained checkpoint's plain policy files into a folder",
        description="Write policy.json, policy_weights.pt and deepmixing.json (without the "
                    "training songs' source) of a checkpoint into --out.")
    e.add_argument("checkpoint", type=Path, help="checkpoint, trial or experiment folder")
    e.add_argument("--out", type=Path, required=True, help="folder to export the agent to")
    e.set_defaults(func=_cmd_export)
