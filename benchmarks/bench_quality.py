"""Learning benchmark (issue 7): train agents on synthetic songs, score them on held-out songs.

The songs are sampled-instrument songs (docs/mixing_model.md) unless ``--kind procedural``.

    python benchmarks/bench_quality.py --out runs/quality            # the <= 60 min table
    python benchmarks/bench_quality.py --out runs/q --agents bc bc_ppo --minutes-scale 0.5
    python benchmarks/bench_quality.py --out runs/tiny --tiny        # a smoke run, ~3 min
    python benchmarks/bench_quality.py --out runs/p --prior instrument_balance  # agents start
                                                                     # at the fitted table

Writes results.md / results.json / learning_curves.png / evaluation/ under --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.quality import (  # noqa: E402
    AGENTS,
    DEFAULT_TRACKS,
    PRIORS,
    QualitySetup,
    run_benchmark,
)


def parse_setup(argv: list[str] | None = None) -> tuple[argparse.Namespace, QualitySetup]:
    """The command line -> its arguments and the benchmark setup they describe."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/quality", help="output folder")
    p.add_argument("--agents", nargs="+", choices=AGENTS, default=list(AGENTS),
                   help="agent rows to train (default: all)")
    p.add_argument("--minutes-scale", type=float, default=1.0,
                   help="multiply every agent's training budget")
    p.add_argument("--minutes", nargs="+", default=[], metavar="AGENT=MIN",
                   help="one agent's training budget in minutes, e.g. ppo=10 (before the scale)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-heldout", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--kind", choices=tuple(DEFAULT_TRACKS), default=None,
                   help="songs: sampled instruments (default) or the procedural wavetable ones")
    p.add_argument("--n-tracks", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="stems per song (default: 6 11 sampled, 8 24 procedural)")
    p.add_argument("--master-bus", type=float, default=None, metavar="P",
                   help="sampled: chance that a song's reference goes through a master bus")
    p.add_argument("--masking-db", type=float, default=None, metavar="DB",
                   help="sampled: the mixing model's content term, dB of lift per unit of "
                        "masking (default 0: off)")
    p.add_argument("--own-sd-scale", type=float, default=None, metavar="X",
                   help="sampled: multiply the spread of the random per-stem level offsets")
    p.add_argument("--group-sd-scale", type=float, default=None, metavar="X",
                   help="sampled: multiply the spread of the random per-group level offsets")
    p.add_argument("--stem-spectrum", action="store_true", default=None,
                   help="agents also see each stem's long-term spectrum")
    p.add_argument("--seed", type=int, default=None,
                   help="dataset and training seed (other songs, other held-out set)")
    p.add_argument("--model", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override model_config values (YAML), e.g. hidden_size=64")
    p.add_argument("--prior", choices=PRIORS, default=None,
                   help="start the agents bc, bc_ppo, ppo and pg at this baseline (fitted on "
                        "the training songs) and learn a correction; default: no prior")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs given to Ray")
    p.add_argument("--tiny", action="store_true", help="a few short songs and 20 s per agent")
    args = p.parse_args(argv)

    base = QualitySetup()
    overrides: dict = {"agents": tuple(args.agents)}
    if args.tiny:
        overrides |= {"n_train": 4, "n_heldout": 2, "seconds": 2.0, "n_tracks": (4, 6),
                      "episode_chunks": 64, "demo_episodes_per_song": 2,
                      "minutes": {k: 1 / 3 for k in base.minutes}}
    if args.model:
        import yaml

        overrides["model"] = {**base.model, **{k: yaml.safe_load(v) for k, v in
                                               (kv.split("=", 1) for kv in args.model)}}
    for name in ("n_train", "n_heldout", "seconds", "seed", "kind", "master_bus", "masking_db",
                 "own_sd_scale", "group_sd_scale", "stem_spectrum", "prior"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.n_tracks is not None:
        overrides["n_tracks"] = tuple(args.n_tracks)
    elif args.kind is not None and not args.tiny:
        overrides["n_tracks"] = None  # the kind's default
    if args.minutes:
        budgets = dict(overrides.get("minutes", base.minutes))
        for item in args.minutes:
            agent, _, value = item.partition("=")
            if agent not in budgets:
                p.error(f"--minutes {item}: unknown agent {agent!r}; expected one of "
                        f"{sorted(budgets)}")
            try:
                budgets[agent] = float(value)
            except ValueError:
                p.error(f"--minutes {item}: {value!r} is not a number of minutes")
        overrides["minutes"] = budgets
    setup = dataclasses.replace(base, **overrides)
    setup = dataclasses.replace(
        setup, minutes={k: v * args.minutes_scale for k, v in setup.minutes.items()})
    return args, setup


def main(argv: list[str] | None = None) -> int:
    args, setup = parse_setup(argv)
    import ray

    from rl_models.app.train import init_ray

    started_ray = not ray.is_initialized()
    init_ray(num_cpus=args.num_cpus)
    t0 = time.time()
    try:
        command = "deepmixing benchmark quality -- " + shlex.join(
            sys.argv[1:] if argv is None else argv)
        run_benchmark(args.out, setup, command=command)
    finally:
        if started_ray:
            ray.shutdown()
    print(f"total wall time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
