"""The learning benchmark: agents trained on songs without end, scored on held-out songs.

    deepmixing benchmark quality -- --out runs/quality --seeds 7 11 --results   # the table
    deepmixing benchmark quality -- --out runs/q --agents bc bc_ppo --minutes bc=5 bc_ppo=5
    deepmixing benchmark quality -- --out runs/tiny --tiny      # the same pipeline, minutes
    deepmixing benchmark quality -- --out runs/rock --style rock --agents bc   # another engineer

Per seed, writes results.md / results.json / learning_curves.png / evaluation/ under
``--out/seed<N>``; with ``--results``, the rows of every seed go to
docs/results/learning.json (``{"seed", "policy", "gap_closed", ...}``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.quality import (  # noqa: E402
    AGENT_LABELS,
    AGENTS,
    DEFAULT_AGENTS,
    QualitySetup,
    run_benchmark,
    with_seed,
)

RESULTS_FILE = Path(__file__).resolve().parents[1] / "docs" / "results" / "learning.json"
"""Where ``--results`` writes the learning table the results page leads with."""
_POLICY_NAMES = {label: name for name, label in AGENT_LABELS.items()}
_TABLE_NAMES = {"ppo": "ppo_scratch", "pg": "pg_scratch"}
"""The learning table's names of the agents trained from scratch (the issue's rows)."""


def parse_setup(argv: list[str] | None = None) -> tuple[argparse.Namespace, QualitySetup]:
    """The command line -> its arguments and the benchmark setup they describe."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/quality", help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[QualitySetup().seed],
                   help="one table per seed (other songs, other held-out set)")
    p.add_argument("--agents", nargs="+", choices=AGENTS, default=list(DEFAULT_AGENTS),
                   help="agent rows to train (default: the table's; bc_more, the control of "
                        "BC + PPO, by name)")
    p.add_argument("--minutes", nargs="+", default=[], metavar="AGENT=MIN",
                   help="one agent's training budget in minutes, e.g. ppo=10")
    p.add_argument("--minutes-scale", type=float, default=1.0,
                   help="multiply every agent's training budget")
    p.add_argument("--style", default=None, help="the engineer of every reference")
    p.add_argument("--inconsistency", type=float, default=None, help="its random part, dB")
    p.add_argument("--heldout", type=int, default=None, help="held-out songs per seed")
    p.add_argument("--no-listening", action="store_true",
                   help="agents without the listening features (an ablation)")
    p.add_argument("--bc-checkpoint", default=None,
                   help="score and fine-tune this BC checkpoint instead of training BC")
    p.add_argument("--bc-ppo-training", nargs="+", default=[], metavar="KEY=VALUE",
                   help="PPO settings of the fine-tuning after BC (YAML), e.g. lr=1e-4")
    p.add_argument("--bc-ppo-model", nargs="+", default=[], metavar="KEY=VALUE",
                   help="module settings of the fine-tuning (YAML), e.g. value_detach=true")
    p.add_argument("--bc-ppo-imitation", type=float, default=None, metavar="COEFF",
                   help="keep BC's loss in the fine-tuning's loss with this weight (DAPG)")
    p.add_argument("--bc-ppo-baseline", type=int, default=None, metavar="STEPS",
                   help="the fine-tuning's advantages less the running mean (horizon STEPS) "
                        "of the value's error over the song's steps just before (gamma 0)")
    p.add_argument("--bc-ppo-self-critical", action="store_true",
                   help="the fine-tuning's advantages are each step's reward less the reward "
                        "of the policy's mean action on the same chunk (gamma 0)")
    p.add_argument("--bc-ppo-concentration", type=float, default=None, metavar="KAPPA",
                   help="start the fine-tuning with the policy's Dirichlet concentration scale "
                        "set to KAPPA (less exploration noise around the same mean)")
    p.add_argument("--bc-ppo-trainable", nargs="+", default=None, metavar="PATTERN",
                   help="the fine-tuning trains only the weights whose names match (regex), "
                        "e.g. prior_bias slot_embedding _value_head")
    p.add_argument("--whole-songs", action="store_true",
                   help="train on whole songs (BC from stored states) instead of windows")
    p.add_argument("--stem-spectrum", action="store_true",
                   help="agents also read each stem's long-term spectrum")
    p.add_argument("--model", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override model_config values (YAML), e.g. hidden_size=64")
    p.add_argument("--bc", nargs="+", default=[], metavar="KEY=VALUE",
                   help="behaviour cloning's lr, batch_size, loss or ema_decay, e.g. "
                        "loss=log_gain")
    p.add_argument("--validation", type=int, default=None, metavar="N",
                   help="BC keeps the weights that score best on N validation songs")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs given to Ray")
    p.add_argument("--tiny", action="store_true", help="a few short songs and a minute an agent")
    p.add_argument("--merge", nargs="+", default=None, metavar="RUN",
                   help="train nothing: gather the seeds of earlier runs (each RUN/seed<N>/"
                        "results.json, e.g. two seeds run side by side) into one learning.json")
    p.add_argument("--results", action="store_true",
                   help="also write the rows of every seed to docs/results/learning.json")
    args = p.parse_args(argv)

    base = QualitySetup()
    overrides: dict = {"agents": tuple(args.agents)}
    if args.tiny:
        overrides |= {"n_heldout": 2, "n_table": 4, "n_train_sample": 2, "seconds": 3.0,
                      "n_tracks": (4, 6), "episode_chunks": 32, "eval_songs": 1,
                      "minutes": {k: 1.0 for k in base.minutes}}
    overrides["model"] = {**base.model, **_yaml_pairs(args.model)}
    overrides["bc_ppo_training"] = _yaml_pairs(args.bc_ppo_training)
    overrides["bc_ppo_model"] = _yaml_pairs(args.bc_ppo_model)
    if args.bc_ppo_trainable:
        overrides["bc_ppo_trainable"] = tuple(args.bc_ppo_trainable)
    if args.bc_checkpoint:
        overrides["bc_checkpoint"] = str(Path(args.bc_checkpoint).resolve())
    overrides["bc_training"] = _yaml_pairs(args.bc)
    for name, key in (("style", "style"), ("inconsistency", "inconsistency"),
                      ("heldout", "n_heldout"), ("validation", "n_validation"),
                      ("bc_ppo_imitation", "bc_ppo_imitation"),
                      ("bc_ppo_baseline", "bc_ppo_baseline"),
                      ("bc_ppo_concentration", "bc_ppo_concentration")):
        if getattr(args, name) is not None:
            overrides[key] = getattr(args, name)
    if args.no_listening:
        overrides["listening"] = False
    if args.stem_spectrum:
        overrides["stem_spectrum"] = True
    if args.whole_songs:
        overrides["whole_songs"] = True
    if args.bc_ppo_self_critical:
        overrides["bc_ppo_self_critical"] = True
    budgets = dict(overrides.get("minutes", base.minutes))
    for item in args.minutes:
        agent, _, value = item.partition("=")
        if agent not in AGENTS:
            p.error(f"--minutes {item}: unknown agent {agent!r}; expected one of "
                    f"{sorted(AGENTS)}")
        try:
            budgets[agent] = float(value)
        except ValueError:
            p.error(f"--minutes {item}: {value!r} is not a number of minutes")
    overrides["minutes"] = {k: v * args.minutes_scale for k, v in budgets.items()}
    return args, dataclasses.replace(base, **overrides)


def _yaml_pairs(pairs: list[str]) -> dict:
    """``["key=value", ...]`` -> ``{key: value}``, each value read as experiment overrides are."""
    from rl_models.app.experiment import parse_override

    return {".".join(path): value for path, value in map(parse_override, pairs)}


def learning_rows(payloads: list[dict]) -> list[dict]:
    """The rows of docs/results/learning.json from the seeds' results."""
    rows = []
    for payload in payloads:
        for r in payload["rows"]:
            name = _POLICY_NAMES.get(r["label"], r["label"])
            train = payload["train_gap_closed"].get(name)
            rows.append({"seed": payload["seed"], "style": payload["style"],
                         "policy": _TABLE_NAMES.get(name, name),
                         "gap_closed": r["gap_closed"], "headroom_share": r["headroom_share"],
                         "train_gap_closed": train,
                         "generalisation_gap": None if train is None
                         else train - r["gap_closed"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    args, setup = parse_setup(argv)
    if args.merge:
        return merge_runs([Path(run) for run in args.merge], Path(args.out), args.results)
    import ray

    from rl_models.app.train import init_ray

    started_ray = not ray.is_initialized()
    init_ray(num_cpus=args.num_cpus)
    t0 = time.time()
    command = "deepmixing benchmark quality -- " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    payloads = []
    try:
        for seed in args.seeds:
            payloads.append(run_benchmark(Path(args.out) / f"seed{seed}",
                                          with_seed(setup, seed), command=command))
    finally:
        if started_ray:
            ray.shutdown()
    write_table(payloads, Path(args.out), args.results, command=command)
    print(f"total wall time {time.time() - t0:.0f} s, load average now {os.getloadavg()[0]:.2f}")
    return 0


def write_table(payloads: list[dict], out: Path, results: bool, command: str) -> dict:
    """learning.json under ``out`` (and docs/results/ with ``results``) from seeds' results."""
    table = {"command": command, "date": time.strftime("%Y-%m-%d"),
             "commands": {p["seed"]: p["command"] for p in payloads},
             "load_average": {p["seed"]: p["load_average"] for p in payloads},
             "wall_min": {p["seed"]: {k: round(v / 60, 1) for k, v in p["wall_s"].items()}
                          for p in payloads},
             "songs": {p["seed"]: p["songs"] for p in payloads},
             "rows": learning_rows(payloads)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning.json").write_text(json.dumps(table, indent=1, default=str))
    if results:
        RESULTS_FILE.write_text(json.dumps(table, indent=1, default=str))
    return table


def merge_runs(runs: list[Path], out: Path, results: bool) -> int:
    """Gathers every ``RUN/seed<N>/results.json`` of ``runs`` into one table.

    Runs of the same seed score the same held-out songs: they are combined in the order given,
    a later run's agent rows replacing an earlier run's (e.g. BC and BC + PPO retrained in a
    new setup beside PPO and PG from scratch of the first run). Their baseline rows must agree.
    """
    files = [f for run in runs for f in sorted(run.glob("seed*/results.json"))]
    if not files:
        raise SystemExit(f"bench_quality: no seed*/results.json under {', '.join(map(str, runs))}")
    payloads: dict[int, dict] = {}
    for f in files:
        payload = json.loads(f.read_text())
        seed = payload["seed"]
        payloads[seed] = (_combine(payloads[seed], payload, f) if seed in payloads
                          else payload)
    ordered = [payloads[seed] for seed in sorted(payloads)]
    command = "deepmixing benchmark quality -- --merge " + " ".join(map(str, runs))
    table = write_table(ordered, out, results, command=command)
    print(f"{len(table['rows'])} rows of seeds {sorted(payloads)} -> {out / 'learning.json'}")
    return 0


def _combine(first: dict, later: dict, later_file: Path) -> dict:
    """One seed's results from two runs: the later run's agents over the first's."""
    from benchmarks.quality import TABLE_BASELINES

    base = {r["label"]: r["gap_closed"] for r in first["rows"] if r["label"] in TABLE_BASELINES}
    for r in later["rows"]:
        if r["label"] in base and abs(r["gap_closed"] - base[r["label"]]) > 1e-6:
            raise SystemExit(
                f"bench_quality: {later_file} scores {r['label']} {r['gap_closed']:.4f}, an "
                f"earlier run of seed {later['seed']} {base[r['label']]:.4f}: other held-out "
                f"songs, not one table")
    agents = {r["label"]: r for r in later["rows"] if r["label"] not in TABLE_BASELINES}
    rows = [agents.pop(r["label"], r) for r in first["rows"]] + list(agents.values())
    return first | {
        "rows": rows,
        "train_gap_closed": first["train_gap_closed"] | later["train_gap_closed"],
        "wall_s": first["wall_s"] | later["wall_s"],
        "songs": first["songs"] | later["songs"],
        "load_average": first["load_average"] + later["load_average"],
        "command": f"{first['command']} + {later['command']}"}


if __name__ == "__main__":
    raise SystemExit(main())
