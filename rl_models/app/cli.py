"""The ``deepmixing`` command line (synth, prepare, taxonomy, train, tune, evaluate, mix, ...).

Commands: synth, engineer, prepare, taxonomy, train, tune, tune-report, demos, balance,
evaluate, mix, pretrained, benchmark, demo.

User mistakes (the project's errors, bad paths, bad overrides) print one line
``deepmixing: error: ...`` and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from mixing_env.errors import DeepMixingError
from rl_models.app import commands

__all__ = ["main", "build_parser"]

BENCHMARKS = ("env", "headroom", "mix", "model", "prepare", "quality", "reward_noise", "songs",
              "style", "throughput", "transfer")
"""``deepmixing benchmark <which>`` runs ``benchmarks.bench_<which>.main``."""
SONG_KINDS = ("sampled", "procedural")
"""Kinds of synthetic songs ``synth`` writes; the first is the default."""
_READS = ("Reads only the checkpoint's deepmixing.json, policy.json and policy_weights.pt "
          "(weights loaded with torch.load(weights_only=True): nothing is unpickled); "
          "RLlib's own files in the checkpoint are for resuming training.")


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------
def _add_ray_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray")
    g.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs for the local Ray (None: all local cores)")
    g.add_argument("--num-gpus", type=int, default=None, help="GPUs for the local Ray")
    g.add_argument("--address", default=None,
                   help="join a running Ray cluster ('auto' or host:port) instead of starting one")


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dataset (default: the checkpoint's, else built-in synthetic songs)")
    g.add_argument("--dataset", type=Path, help="a prepared cache (deepmixing prepare)")
    g.add_argument("--synthetic", type=int, metavar="N",
                   help="N synthetic songs in memory instead of a cache")
    g.add_argument("--seconds", type=float, default=2.0, help="synthetic song length")
    g.add_argument("--tracks", type=int, default=4, help="synthetic tracks per song")
    g.add_argument("--seed", type=int, default=1, help="synthetic songs' seed")
    g.add_argument("--songs", nargs="+", help="only these songs (by name)")
    g.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="env setting override, e.g. --set level_match=none (repeatable)")


def _add_engineer_args(p: argparse.ArgumentParser, *, prefix: str) -> None:
    from mixing_env.engineer import DEFAULT_INCONSISTENCY_DB, DEFAULT_STYLE, STYLES

    p.add_argument("--engineer", "--style", dest="style", default=DEFAULT_STYLE,
                   metavar="NAME",
                   help=f"{prefix}the engineer's style: {', '.join(STYLES)} (docs/engineer.md)")
    p.add_argument("--inconsistency", type=float, default=DEFAULT_INCONSISTENCY_DB,
                   metavar="DB", help=f"{prefix}the engineer's random part: SD of a per-stem "
                                      f"level offset in dB (0: perfectly consistent)")


def build_parser() -> argparse.ArgumentParser:
    """The ``deepmixing`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="deepmixing",
        description="Reinforcement learning for automatic multitrack level mixing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("synth", help="make synthetic multitrack songs with known gains",
                       formatter_class=fmt,
                       description="Write Cambridge-MT-style song folders (stems, a reference "
                                   "mix, true_gains) made from known gain automation.")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--n-songs", type=int, default=4, help="songs to write")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each song")
    p.add_argument("--tracks", type=int, default=6, help="tracks per song (or the minimum)")
    p.add_argument("--tracks-max", type=int, default=None,
                   help="if set, each song gets between --tracks and this many tracks")
    p.add_argument("--seed", type=int, default=0, help="seed: the same seed writes the same songs")
    p.add_argument("--sample-rate", type=int, default=44100, help="sample rate of the WAVs (Hz)")
    p.add_argument("--kind", choices=SONG_KINDS, default="sampled",
                   help="sampled: General MIDI soundfont instruments mixed by a consistent "
                        "engineer (docs/engineer.md); procedural: fast wavetable songs")
    _add_engineer_args(p, prefix="sampled: ")
    p.add_argument("--master-bus", type=float, default=0.0, metavar="P",
                   help="sampled: chance that a song's reference goes through a master bus")
    p.add_argument("--recording-level", choices=("random", "natural"), default="random",
                   help="sampled: raw stem levels, a random peak per stem or the soundfont's own")
    p.set_defaults(func=commands.cmd_synth)

    p = sub.add_parser("engineer", help="mix a folder of stems with the project's engineer",
                       formatter_class=fmt,
                       description="Mix every song under FOLDER (any layout prepare reads; "
                                   "a mix of its own is not needed) with a consistent "
                                   "engineer, writing <Song>_Mix.wav, true_gains.npz and "
                                   "engineer.json beside links to the stems: a benchmark "
                                   "with a known engineer that prepare reads.")
    p.add_argument("folder", type=Path, help="a song folder or a folder of songs")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_engineer_args(p, prefix="")
    p.add_argument("--seed", type=int, default=0, help="seed of the engineer's random part")
    p.add_argument("--mix-pattern", default="*Mix*",
                   help="how a song's own mix is named (left out of the stems)")
    p.set_defaults(func=commands.cmd_engineer)

    p = sub.add_parser("prepare", help="turn a multitrack dataset into a chunked cache",
                       formatter_class=fmt,
                       description="Read Cambridge-MT, MedleyDB or MUSDB18 folders (or synth "
                                   "output), classify stems into slots, resample, chunk and "
                                   "write a memory-mappable cache. Resumable.")
    p.add_argument("source", type=Path, help="dataset folder")
    p.add_argument("cache", type=Path, help="cache folder to write")
    p.add_argument("--sample-rate", type=int, default=44100,
                   help="rate every song is resampled to (Hz)")
    p.add_argument("--chunk-size", type=int, default=500,
                   help="samples per chunk (one agent step)")
    p.add_argument("--stereo", action="store_true",
                   help="refused with a clear error: the env, evaluate and mix read mono caches")
    p.add_argument("--n-chunks", type=int, default=None,
                   help="pad/trim every song to this many chunks (None: the longest)")
    p.add_argument("--taxonomy", type=Path, default=None, help="taxonomy YAML overriding rules")
    p.add_argument("--layout", type=Path, default=None,
                   help="slot layout: a layout file (YAML/JSON) or a checkpoint folder "
                        "or compact (derived from the dataset); None: the fixed C = 72 layout")
    p.add_argument("--mix-pattern", default=None, help="glob of the mix file (None: *Mix*)")
    p.add_argument("--strict", action="store_true", help="fail on a bad song instead of skipping")
    p.add_argument("--rebuild", action="store_true",
                   help="replace a cache prepared with other options or from another dataset "
                        "(without it, prepare refuses)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=commands.cmd_prepare)

    p = sub.add_parser("taxonomy", help="show how each stem of a dataset is classified",
                       formatter_class=fmt,
                       description="Print stem file -> section/instrument -> slot for every "
                                   "song found under SOURCE.")
    p.add_argument("source", type=Path, help="dataset or song folder")
    p.add_argument("--taxonomy", type=Path, default=None, help="taxonomy YAML overriding rules")
    p.add_argument("--layout", type=Path, default=None,
                   help="slot layout file or checkpoint folder (None: the fixed C = 72 layout)")
    p.add_argument("--mix-pattern", default="*Mix*", help="glob of the mix file")
    p.set_defaults(func=commands.cmd_taxonomy)

    for name, sweep in (("train", False), ("tune", True)):
        p = sub.add_parser(
            name, formatter_class=fmt,
            help=("train one experiment through Ray Tune" if not sweep
                  else "run an experiment's hyperparameter sweep (ASHA/PBT)"),
            description=("Train one experiment file through Ray Tune: checkpoints, TensorBoard "
                         "logs, custom metrics. --resume continues an interrupted run."
                         if not sweep else
                         "Run the sweep in the experiment's tune section (search space, "
                         "scheduler, num_samples) through Ray Tune."))
        p.add_argument("experiment", nargs="?",
                       help="experiment file or name in tune_configs/ (e.g. quickstart)")
        p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                       help="override any value, e.g. --set training.lr=1e-4 (repeatable)")
        p.add_argument("--name", default=None, help="experiment name (results folder)")
        p.add_argument("--storage-path", default=None,
                       help="where results go (None: the file's storage_path)")
        p.add_argument("--resume", type=Path, default=None, metavar="EXPERIMENT_DIR",
                       help="resume an interrupted experiment from its folder")
        p.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2, 3),
                       help="0: one line per finished trial and the table at the end; "
                            "1-3: Ray Tune's own progress output")
        _add_ray_args(p)
        p.set_defaults(func=(lambda a, s=sweep: commands.cmd_train(a, sweep=s)))

    p = sub.add_parser("tune-report", help="print a finished sweep's table (markdown)",
                       formatter_class=fmt,
                       description="Read a Tune experiment folder (deepmixing tune's output) "
                                   "and print one row per trial: the settings that differ "
                                   "between trials, iterations reached, whether the scheduler "
                                   "stopped it early, the final metric; the best is marked. "
                                   "Then PBT's perturbations over time, and a PNG of every "
                                   "trial's curve.")
    p.add_argument("experiment_dir", type=Path, help="the sweep's folder, e.g. runs/sweep_asha")
    p.add_argument("--metric", default=None,
                   help="result key, nested keys joined by / (None: deepmixing/gap_closed if "
                        "evaluated, else env_runners/episode_return_mean)")
    p.add_argument("--mode", choices=("max", "min"), default="max", help="which end is best")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="picture of every trial's metric per iteration, PBT's perturbations "
                        "marked (default: sweep_curves.png in the experiment folder)")
    p.add_argument("--no-plot", action="store_true", help="print the table only")
    p.set_defaults(func=commands.cmd_tune_report)

    p = sub.add_parser("demos", help="record baseline demonstrations for behaviour cloning",
                       formatter_class=fmt,
                       description="Play a baseline (the oracle by default) through the "
                                   "experiment's env and write the episodes in RLlib's offline "
                                   "format, which BC and MARWIL read (offline_data.input_).")
    p.add_argument("experiment", help="experiment file or name (its env section is used)")
    p.add_argument("--out", type=Path, default=Path("runs/demos"), help="output folder")
    p.add_argument("--policy", default="oracle",
                   help="the baseline whose episodes are recorded (mixing_env.baselines)")
    p.add_argument("--episodes-per-song", type=int, default=4,
                   help="episodes (random windows when env.episode_chunks is set) per song")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes' windows")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                   help="override any value of the experiment (repeatable)")
    p.add_argument("--name", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=commands.cmd_demos)

    p = sub.add_parser("balance", help="fit the instrument_balance baseline", formatter_class=fmt)
    p = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                         help="fit: write the table").add_parser(
        "fit", formatter_class=fmt, help="per slot, the mean level relative to the stem's "
        "loudness while it plays, fitted on a prepared cache's songs -> a JSON table")
    p.add_argument("cache", type=Path, help="a prepared cache (deepmixing prepare)")
    p.add_argument("--out", type=Path, help="JSON to write (default: in the cache folder)")
    p.add_argument("--songs", nargs="+", help="only these (training) songs")
    p.set_defaults(func=commands.cmd_balance_fit)

    p = sub.add_parser("evaluate", help="score checkpoints and baselines on a dataset",
                       formatter_class=fmt,
                       description="Run each policy (a checkpoint, or a baseline: equal, "
                                   "loudness, oracle, static_oracle, instrument_balance[=table."
                                   "json]) over every song and write "
                                   "evaluation.json, evaluation.csv and PNG plots. " + _READS)
    p.add_argument("policies", nargs="+", help="checkpoint folders and/or baseline names")
    p.add_argument("--out", type=Path, default=Path("runs/evaluation"), help="output folder")
    _add_dataset_args(p)
    p.add_argument("--means-only", action="store_true", help="print only the mean rows")
    p.add_argument("--no-plots", action="store_true", help="write the tables only, no PNG plots")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=commands.cmd_evaluate)

    p = sub.add_parser("mix", help="mix a multitrack folder with a trained checkpoint",
                       formatter_class=fmt,
                       description="Write the stereo mix (WAV at the stems' sample rate, at the "
                                   "loudness asked for under a true-peak ceiling), a REAPER "
                                   "project of the stems with the gains as envelopes, the gain "
                                   "automation as CSV and JSON and a PNG of it. The song is "
                                   "streamed: memory does not grow with its length. " + _READS)
    p.add_argument("checkpoint", type=Path, help="checkpoint, trial or experiment folder")
    p.add_argument("folder", type=Path, help="the song's multitrack folder")
    p.add_argument("--out", type=Path, default=Path("runs/mix"), help="output folder")
    p.add_argument("--target-lufs", type=float, default=-14.0,
                   help="integrated loudness of the WAV (BS.1770), -70..0")
    p.add_argument("--true-peak", dest="true_peak", type=float, default=-1.0,
                   help="largest true peak of the WAV (4x oversampled), dBTP, -70..0; a "
                        "look-ahead limiter holds it")
    p.add_argument("--peak-dbfs", dest="true_peak", type=float,
                   help=argparse.SUPPRESS)  # its name before the limiter; still read
    p.add_argument("--peak-only", action="store_true",
                   help="no loudness target: bring the true peak to --true-peak by one gain, "
                        "no limiter")
    p.add_argument("--mono", action="store_true",
                   help="no stereo placement: mono stems in every channel (a mono WAV when "
                        "every stem is mono)")
    p.add_argument("--full-automation", action="store_true",
                   help="write every chunk's gain, not only the points where it moves")
    p.add_argument("--mix-pattern", default="*Mix*", help="glob of a mix file to leave out")
    p.add_argument("--taxonomy", type=Path, default=None, help="taxonomy YAML overriding rules")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=commands.cmd_mix)

    p = sub.add_parser("export-weights", formatter_class=fmt,
                       help="add plain policy weights to an older checkpoint (trusted only)",
                       description="Write policy.json and policy_weights.pt into a checkpoint "
                                   "written before they existed, so evaluate and mix can read "
                                   "it. This unpickles RLlib's module files: run it only on "
                                   "checkpoints you trust.")
    p.add_argument("checkpoint", type=Path, help="checkpoint, trial or experiment folder")
    p.set_defaults(func=commands.cmd_export_weights)

    from rl_models.app.pretrained import add_pretrained_parser

    add_pretrained_parser(sub, fmt)

    p = sub.add_parser("benchmark", help="run one of the project's benchmarks",
                       formatter_class=fmt,
                       description="Run benchmarks/bench_<which>.py's main; arguments after "
                                   "the name are passed through (e.g. deepmixing benchmark "
                                   "env -- -h).")
    p.add_argument("which", choices=BENCHMARKS, help="which benchmark")
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script")
    p.set_defaults(func=commands.cmd_benchmark)

    p = sub.add_parser("demo", help="the whole job on built-in songs, in minutes",
                       formatter_class=fmt,
                       description="Held-out songs (synth, prepare) -> an agent that learns "
                                   "the engineer from new songs (behaviour cloning, then PPO "
                                   "through Ray Tune) -> evaluation against the baselines -> "
                                   "a mixed WAV.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--n-songs", type=int, default=4, help="held-out songs to make")
    p.add_argument("--seconds", type=float, default=8.0, help="length of every song")
    p.add_argument("--seed", type=int, default=0, help="seed of the songs and the training")
    p.add_argument("--bc-updates", type=int, default=2400,
                   help="behaviour cloning's updates (the same clone on every machine)")
    p.add_argument("--bc-minutes", type=float, default=10.0,
                   help="a cap on behaviour cloning's wall-clock minutes")
    p.add_argument("--iterations", type=int, default=12,
                   help="PPO iterations after behaviour cloning (the quickstart experiment)")
    p.add_argument("--imitation", type=float, default=10.0,
                   help="weight of behaviour cloning's loss kept in PPO's (DAPG; 0: plain PPO)")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                   help="override a quickstart value (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_ray_args(p)
    p.set_defaults(func=commands.cmd_demo)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepmixing")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # The default format adds the warning's source line, which means nothing to a user.
    print(f"deepmixing: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deepmixing`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _one_line_warning
            return int(args.func(args) or 0)
    except (DeepMixingError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError) as e:
        if args.debug:
            raise
        print(f"deepmixing: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"deepmixing: interrupted{getattr(e, 'resume_hint', '')}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
