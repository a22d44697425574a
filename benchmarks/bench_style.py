"""The style check: an agent trained on one engineer scores better on that engineer's mixes.

For each engineer style (pop, rock), a behaviour-cloning agent of the learning benchmark
(:func:`benchmarks.quality.train_bc`) learns that style from its own stream of songs; then
every agent is scored on every style's held-out songs (the same songs, stems and all, mixed by
each engineer: one seed of :func:`benchmarks.quality.heldout_cache`). The check holds when, on
each style's songs, that style's agent closes more of the gap than the other's.

    deepmixing benchmark style -- --out runs/style --seed 7
    deepmixing benchmark style -- --out runs/style --agent pop=runs/q/seed7/runs/bc/checkpoint_0*

``--agent STYLE=CHECKPOINT`` reuses an agent already trained on that style (e.g. the learning
benchmark's BC). Writes ``style.json`` under ``--out`` (``--results``: also
docs/results/style.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.quality import QualitySetup, heldout_cache, train_bc  # noqa: E402

STYLES = ("pop", "rock")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/style"))
    p.add_argument("--seed", type=int, default=QualitySetup().seed)
    p.add_argument("--minutes", type=float, default=QualitySetup().minutes["bc"],
                   help="behaviour cloning's budget per agent it trains")
    p.add_argument("--agent", nargs="*", default=[], metavar="STYLE=CHECKPOINT",
                   help="an agent already trained on a style")
    p.add_argument("--heldout", type=int, default=QualitySetup().n_heldout)
    p.add_argument("--results", action="store_true", help="also write docs/results/style.json")
    args = p.parse_args(argv)

    from rl_models.app.evaluate import evaluate

    t0, load = time.time(), [os.getloadavg()[0]]
    base = QualitySetup(seed=args.seed, n_heldout=args.heldout)
    agents = dict(item.split("=", 1) for item in args.agent)
    for style in STYLES:
        if style not in agents:
            setup = dataclasses.replace(base, style=style,
                                        minutes={**base.minutes, "bc": args.minutes})
            agents[style] = train_bc(setup, args.out / "agents" / style)["checkpoint"]
            load.append(os.getloadavg()[0])
    rows = []
    for songs in STYLES:
        setup = dataclasses.replace(base, style=songs)
        cache = heldout_cache(args.out / "heldout" / songs, setup)
        table = evaluate([agents[s] for s in STYLES] + ["equal", "oracle"],
                         env_config=setup.heldout_env(cache), out_dir=args.out / "eval" / songs,
                         plots=False, progress=False)
        by_spec = {r["policy"]: r for r in table if r["song"] == "MEAN"}
        for style in STYLES:
            rows.append({"seed": args.seed, "songs": songs, "agent": style,
                         "gap_closed": by_spec[agents[style]]["gap_closed"]})
        load.append(os.getloadavg()[0])
    gap = {(r["songs"], r["agent"]): r["gap_closed"] for r in rows}
    holds = all(gap[(s, s)] > gap[(s, o)] for s in STYLES for o in STYLES if o != s)
    payload = {"command": "deepmixing benchmark style -- " + " ".join(argv or sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d"), "agents": agents, "rows": rows,
               "holds": holds, "load_average": load, "wall_s": time.time() - t0}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "style.json").write_text(json.dumps(payload, indent=1))
    if args.results:
        (Path(__file__).resolve().parents[1] / "docs" / "results" / "style.json").write_text(
            json.dumps(payload, indent=1))
    print("| songs of | pop agent | rock agent |\n|---|---|---|")
    for songs in STYLES:
        print(f"| {songs} | {gap[(songs, 'pop')]:.3f} | {gap[(songs, 'rock')]:.3f} |")
    print(f"each style's agent wins on its own songs: {holds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
