"""What each ``deepmixing`` command does, given its parsed arguments (:mod:`rl_models.app.cli`).

Each handler returns the exit status; user mistakes raise the project's errors, which the CLI
turns into one ``deepmixing: error:`` line.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from pathlib import Path

from mixing_env.errors import ConfigError, DatasetError


def cmd_synth(args: argparse.Namespace) -> int:
    """Write synthetic song folders."""
    from mixing_env.engineer import Engineer
    from mixing_env.songs.procedural import make_synthetic_dataset
    from mixing_env.songs.sampled import make_sampled_dataset

    tracks = args.tracks if args.tracks_max is None else (args.tracks, args.tracks_max)
    extra = ({"master_bus": args.master_bus, "recording_level": args.recording_level,
              "engineer": Engineer(args.style, args.inconsistency)}
             if args.kind == "sampled" else {})
    make = make_sampled_dataset if args.kind == "sampled" else make_synthetic_dataset
    paths = make(args.out, n_songs=args.n_songs, seconds=args.seconds, n_tracks=tracks,
                 seed=args.seed, sample_rate=args.sample_rate, **extra)
    print(f"wrote {len(paths)} synthetic song(s) to {args.out}")
    for p in paths:
        print(f"  {p}")
    return 0


def cmd_engineer(args: argparse.Namespace) -> int:
    """Mix a folder of stems with the engineer."""
    from mixing_env.engineer.folder import engineer_folder

    songs = engineer_folder(args.folder, args.out, style=args.style,
                            inconsistency=args.inconsistency, seed=args.seed,
                            mix_pattern=args.mix_pattern)
    print(f"the {args.style} engineer (inconsistency {args.inconsistency} dB) mixed "
          f"{len(songs)} song(s) into {args.out}")
    for song in songs:
        roles = ", ".join(f"{f}={r}" for f, r in song.roles.items())
        print(f"  {song.name} ({song.sample_rate} Hz): {roles}")
    return 0


def _layout_arg(path: Path | None) -> str | None:
    """``--layout``: a layout file, or a checkpoint folder read through its metadata JSON."""
    if path is None or not Path(path).is_dir():
        return None if path is None else str(path)
    from rl_models.checkpoints import METADATA_FILE, find_checkpoint

    return str(find_checkpoint(path) / METADATA_FILE)


def cmd_prepare(args: argparse.Namespace) -> int:
    """Prepare a dataset into a cache."""
    from mixing_env.data.prepare import prepare_dataset

    kwargs = dict(sample_rate=args.sample_rate, chunk_size=args.chunk_size, mono=not args.stereo,
                  n_chunks=args.n_chunks, strict=args.strict, progress=not args.no_progress,
                  rebuild=args.rebuild, layout=_layout_arg(args.layout))
    if args.taxonomy:
        from mixing_env.data.taxonomy import Taxonomy

        kwargs["taxonomy"] = Taxonomy.load(args.taxonomy)
    if args.mix_pattern:
        kwargs["mix_pattern"] = args.mix_pattern
    ds = prepare_dataset(args.source, args.cache, **kwargs)
    skipped = ds.failed
    print(f"prepared {len(ds)} song(s) into {args.cache}, skipped {len(skipped)}: "
          f"C={ds.n_slots} slots, T={ds.n_chunks} chunks of {ds.chunk_size} samples at "
          f"{ds.sample_rate} Hz")
    for name, reason in skipped.items():
        print(f"  skipped {name}: {reason}")
    for song, record in ds.manifest["songs"].items():
        for note in record.get("placement", []):
            print(f"  {song}: {note}")
    return 0


def cmd_taxonomy(args: argparse.Namespace) -> int:
    """Print how each stem is classified and placed."""
    from mixing_env.data.layouts import SongSource, StemSource, scan_songs
    from mixing_env.data.slots import placement_table
    from mixing_env.data.taxonomy import Taxonomy
    from rl_models.app.mix import find_stems

    songs, errors = scan_songs(args.source, mix_pattern=args.mix_pattern)
    # A folder without a mix is a valid mix input (prepare skips it): show its stems too.
    unusable = []
    for folder, err in (errors.items() if songs or errors else [(args.source, None)]):
        try:
            name, files = find_stems(folder, mix_pattern=args.mix_pattern)
        except DatasetError as e:
            unusable.append(err or e)
            continue
        songs.append(SongSource(name=name, layout="stems only", mix_path=None,
                                stems=[StemSource(f, f.stem) for f in files]))
        if err is not None:
            print(f"deepmixing: note: {err} (prepare skips it; its stems are shown)",
                  file=sys.stderr)
    if not songs:
        raise unusable[0]
    for err in unusable:
        print(f"deepmixing: note: {err}; skipped", file=sys.stderr)
    songs.sort(key=lambda song: song.name)
    rows, notes = placement_table(songs, Taxonomy.load(args.taxonomy), _layout_arg(args.layout))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    for note in notes:  # stems in an Extra slot or in none
        print(note)
    return 0


def _load_experiment(args: argparse.Namespace) -> dict:
    from rl_models.app.experiment import load_experiment

    experiment = load_experiment(args.experiment, overrides=args.set or [])
    if getattr(args, "name", None):
        experiment["name"] = args.name
    return experiment


def cmd_train(args: argparse.Namespace, *, sweep: bool = False) -> int:
    """Run an experiment (or, with ``sweep``, a Tune sweep)."""
    from rl_models.app.experiment import sweep_variants
    from rl_models.app.train import (
        check_experiment,
        experiment_dir,
        init_ray,
        plugin_modules,
        resume_experiment,
        resumed_experiments,
        run_experiment,
        summarize_results,
    )
    from rl_models.app.tune_console import RunInterrupted

    command = "tune" if sweep else "train"
    if getattr(args, "resume", None):
        if not Path(args.resume).is_dir():
            raise ConfigError(f"experiment folder to resume not found: {args.resume}")
        path = Path(args.resume).resolve()
        ship = plugin_modules(resumed_experiments(path))
        run = functools.partial(resume_experiment, path, verbose=args.verbose)
    else:
        if args.experiment is None:
            raise ConfigError("give an experiment file (e.g. quickstart) or --resume DIR")
        experiment = _load_experiment(args)
        # Every key, value and sweep setting is checked before Ray starts or a folder exists.
        check_experiment(experiment, sweep=sweep)
        if sweep and not experiment["checkpoint"]["frequency"]:
            print("deepmixing: warning: checkpoint.frequency is 0: an interrupted sweep "
                  "restarts its unfinished trials from the beginning", file=sys.stderr)
        path = experiment_dir(experiment, args.storage_path)
        ship = plugin_modules([v for _, v in sweep_variants(experiment)] if sweep
                              else [experiment])
        run = functools.partial(run_experiment, experiment, sweep=sweep,
                                storage_path=args.storage_path, verbose=args.verbose,
                                checked=True)
    init_ray(num_cpus=args.num_cpus, num_gpus=args.num_gpus, address=args.address,
             py_modules=ship)
    try:
        results = run()
    except RunInterrupted as e:
        e.resume_hint = f"; its state is saved: resume with `deepmixing {command} --resume {path}`"
        raise
    print("\n".join(summarize_results(results)))
    if sweep and len(results) > 1:
        tune_section = _load_experiment(args)["tune"] if args.experiment else {}
        try:
            _report_sweep(results.experiment_path, metric=tune_section.get("metric"),
                          mode=tune_section.get("mode", "max"))
        except ConfigError as e:  # the sweep ran; its ranking metric is missing
            print(f"deepmixing: warning: {e}", file=sys.stderr)
    return 0


def cmd_tune_report(args: argparse.Namespace) -> int:
    """Print a sweep's table and draw its trials' curves."""
    _report_sweep(args.experiment_dir, metric=args.metric, mode=args.mode,
                  plot=not args.no_plot, plot_path=args.plot)
    return 0


def _report_sweep(path: str | Path, *, metric: str | None, mode: str, plot: bool = True,
                  plot_path: Path | None = None) -> None:
    """The sweep's table (markdown) and its picture (default: in the experiment folder)."""
    from rl_models.app.sweep_report import PLOT_FILE, format_markdown, plot_sweep, read_sweep

    table = read_sweep(path, metric=metric, mode=mode)
    print(format_markdown(table))
    if plot:
        print(f"\ncurves: {plot_sweep(table, plot_path or Path(path) / PLOT_FILE)}")


def _env_config_from_args(args: argparse.Namespace) -> dict:
    from rl_models.app.experiment import apply_overrides

    env: dict = {}
    if args.dataset:
        if not Path(args.dataset).is_dir():
            raise ConfigError(f"dataset cache not found: {args.dataset}")
        env["dataset_dir"] = str(args.dataset)
    elif args.synthetic:
        env["synthetic"] = {"n_songs": args.synthetic, "seconds": args.seconds,
                            "n_tracks": args.tracks, "seed": args.seed}
    if args.songs:
        env["songs"] = list(args.songs)
    sets = [s if s.startswith("env.") else f"env.{s}" for s in (args.set or [])]
    return apply_overrides({"env": env}, sets)["env"]


def cmd_demos(args: argparse.Namespace) -> int:
    """Record baseline demonstrations in RLlib's offline format."""
    from rl_models.app.demonstrations import record_episodes, write_demonstrations

    experiment = _load_experiment(args)
    episodes = record_episodes(experiment["env"], policy=args.policy,
                               episodes_per_song=args.episodes_per_song, seed=args.seed)
    out = write_demonstrations(episodes, args.out)
    print(f"demonstrations ({args.policy}): {out}")
    print(f"train on them: deepmixing train {args.experiment} --set algorithm=BC "
          f"--set offline_data.input_={out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score checkpoints and baselines on a dataset."""
    from rl_models.app.evaluate import evaluate, format_table

    rows = evaluate(args.policies, env_config=_env_config_from_args(args), out_dir=args.out,
                    plots=not args.no_plots, progress=not args.no_progress)
    print(format_table(rows, means_only=args.means_only))
    print(f"\ntable: {Path(args.out) / 'evaluation.json'}  {Path(args.out) / 'evaluation.csv'}")
    if not args.no_plots:
        print(f"plots: {Path(args.out) / 'plots'}")
    return 0


def cmd_balance_fit(args: argparse.Namespace) -> int:
    """Fit the instrument_balance table."""
    from mixing_env.balance import fit_dataset_balance

    path = fit_dataset_balance(args.cache, songs=args.songs, out=args.out)
    print(f"instrument balance: {path}  (play it as instrument_balance={path})")
    return 0


def cmd_mix(args: argparse.Namespace) -> int:
    """Mix a multitrack folder with a checkpoint or a baseline."""
    from rl_models.app.mix import mix_song

    result = mix_song(args.checkpoint, args.folder, out_dir=args.out,
                      target_lufs=None if args.peak_only else args.target_lufs,
                      true_peak=args.true_peak, mono=args.mono,
                      full_automation=args.full_automation, mix_pattern=args.mix_pattern,
                      taxonomy=args.taxonomy, progress=not args.no_progress)
    limiter = result["limiter"]
    limited = ("" if limiter is None else
               f", limiter up to {limiter.max_gain_reduction_db:.1f} dB")
    print(f"mixed WAV:       {result['wav']}  ({result['loudness_lufs']:.1f} LUFS, "
          f"{result['true_peak_dbtp']:.1f} dBTP, make-up gain {result['makeup_gain']:.4f}"
          f"{limited})")
    print(f"REAPER project:  {result['rpp']}")
    print(f"automation CSV:  {result['csv']}")
    print(f"automation JSON: {result['json']}")
    print(f"automation PNG:  {result['png']}")
    return 0


def cmd_export_weights(args: argparse.Namespace) -> int:
    """Add plain policy weights to an older checkpoint."""
    from rl_models.checkpoints import export_policy_files

    for path in export_policy_files(args.checkpoint):
        print(f"wrote {path}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Run one of the project's benchmarks."""
    try:
        bench = importlib.import_module(f"benchmarks.bench_{args.which}")
    except ModuleNotFoundError as e:
        if e.name not in ("benchmarks", f"benchmarks.bench_{args.which}"):
            raise
        raise ConfigError("the benchmarks ship with the source tree: run deepmixing from a "
                          "clone installed with `pip install -e .`") from e
    return int(bench.main([a for a in args.args if a != "--"]) or 0)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole job on built-in songs."""
    from rl_models.app.demo import run_demo

    run_demo(args.out, n_songs=args.n_songs, seconds=args.seconds, seed=args.seed,
             bc_updates=args.bc_updates, bc_minutes=args.bc_minutes,
             iterations=args.iterations, imitation=args.imitation, overrides=args.set or [],
             progress=not args.no_progress, num_cpus=args.num_cpus, address=args.address)
    return 0
