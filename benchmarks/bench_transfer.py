"""Transfer check (issue 16): the pretrained agent on sampled songs it never saw.

    python benchmarks/bench_transfer.py --out runs/transfer                 # 8 songs per kind
    python benchmarks/bench_transfer.py --out runs/t --agent runs/pretrained/run
    deepmixing benchmark transfer -- --out runs/transfer --n-songs 4

Held-out sampled songs (another seed than the agent's training songs; 20 s, 6-11 stems) are
written with five kinds of reference (:data:`KIND_SPECS`), from the same notes:

- ``clean``: the project's mixing model (docs/mixing_model.md), no master bus;
- ``master_bus``: the same mixes through a master bus (EQ, compression, reverb), every song;
- ``shifted``: a different engineer: every role's mean level moved by :data:`ROLE_SHIFT_DB`
  and its song-to-song spread scaled by :data:`SPREAD_SCALE`;
- ``natural``: stems at the soundfont's own level (``recording_level="natural"``: raw levels
  near a balance, as in the hidden set, where equal gains were within about 3 dB) mixed by a
  third engineer (:data:`OTHER_SHIFT_DB`, spread times :data:`OTHER_SPREAD_SCALE`);
- ``natural_bus``: ``natural`` through the master bus.

The shifted and natural kinds stand in for mixing models the agent was not trained on (the
hidden real-instrument set has its own, which we do not know).

Each kind is prepared and scored with the product's evaluation: the agent (default: the
shipped ``pretrained``), its level prior alone (the agent with its residual gate at 0, when
it has one), equal, loudness, instrument_balance (fitted on the agent's training
songs: the pretrained recipe's seed), static_oracle and oracle. ``gap_closed`` is the share
of the equal-to-oracle MFCC-distance gap a policy closes, ``balance_gap_closed`` the share of
the instrument_balance-to-oracle gap. Writes ``results.md`` and ``results.json`` in --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixing_env.songs.sampled import mixing_model  # noqa: E402

KIND_SPECS = {
    "clean": {"master_bus": 0.0, "engineer": None, "recording_level": "random"},
    "master_bus": {"master_bus": 1.0, "engineer": None, "recording_level": "random"},
    "shifted": {"master_bus": 0.0, "engineer": "shifted", "recording_level": "random"},
    "natural": {"master_bus": 0.0, "engineer": "other", "recording_level": "natural"},
    "natural_bus": {"master_bus": 1.0, "engineer": "other", "recording_level": "natural"},
}
"""Per reference kind: chance of the master bus, the engineer (None: the project's mixing
model; else a key of :data:`ENGINEERS`) and the raw recording levels of the stems."""

KINDS = tuple(KIND_SPECS)
"""Reference kinds scored, in table order."""

ROLE_SHIFT_DB = {
    "kick": -3.0, "snare": -2.0, "hihat": 5.0, "toms": 2.0, "overheads": 4.0, "bass": -3.0,
    "guitar": 3.0, "keys": 3.0, "pad": 4.0, "strings": 4.0, "brass": 3.0, "lead": 0.0,
    "backing": 3.0,
}
"""Per role, dB added to the mean level relative to the lead in the ``shifted`` kind: a
brighter, less drum-and-bass-heavy engineer (roles are the keys of
:data:`mixing_env.songs.sampled.mixing_model.ROLE_LEVEL_DB`)."""

SPREAD_SCALE = 1.5
"""The ``shifted`` kind's song-to-song spread of each role's level, times the model's."""

OTHER_SHIFT_DB = {
    "kick": -1.0, "snare": 1.0, "hihat": 2.0, "toms": 0.0, "overheads": -2.0, "bass": 2.0,
    "guitar": -2.0, "keys": 4.0, "pad": -1.0, "strings": 2.0, "brass": 3.0, "lead": 0.0,
    "backing": -1.0,
}
"""Per role, dB added to the mean level in the ``natural`` kinds: a third engineer, with
louder keys, brass and bass and quieter guitars and overheads (neither ours nor
``shifted``'s)."""

OTHER_SPREAD_SCALE = 1.25
"""The ``natural`` kinds' song-to-song spread of each role's level, times the model's."""

ENGINEERS = {"shifted": (ROLE_SHIFT_DB, SPREAD_SCALE),
             "other": (OTHER_SHIFT_DB, OTHER_SPREAD_SCALE)}
"""Engineer name -> (dB per role added to the mean level, factor on the spread)."""

POLICY_ROWS = ("equal", "loudness", "instrument_balance", "static_oracle", "oracle")
"""Baselines scored beside the agent."""


@contextlib.contextmanager
def engineer_mixing_model(engineer: str | None) -> Iterator[None]:
    """The mixing model with an engineer's per-role levels (while the block runs).

    Args:
        engineer: A key of :data:`ENGINEERS`; None leaves the model as it is.
    """
    if engineer is None:
        yield
        return
    shift_db, spread = ENGINEERS[engineer]
    moved = {role: (mean + shift_db.get(role, 0.0), sd * spread)
             for role, (mean, sd) in mixing_model.ROLE_LEVEL_DB.items()}
    with mock.patch.dict(mixing_model.ROLE_LEVEL_DB, moved):
        yield


def make_kind(root: Path, kind: str, *, n_songs: int, seconds: float, seed: int,
              reuse: bool = False) -> str:
    """Writes and prepares one reference kind of the held-out songs; returns its cache.

    With ``reuse``, a cache an earlier run left (its manifest written) is kept as it is.
    """
    from mixing_env.data.cache import MANIFEST
    from mixing_env.data.prepare import prepare_dataset
    from mixing_env.songs.sampled import make_sampled_dataset

    songs = root / kind / "songs"
    cache = root / kind / "cache"
    if reuse and (cache / MANIFEST).is_file():
        return str(cache)
    spec = KIND_SPECS[kind]
    with engineer_mixing_model(spec["engineer"]):
        make_sampled_dataset(songs, n_songs=n_songs, seconds=seconds, n_tracks=(6, 11),
                             seed=seed, master_bus=spec["master_bus"],
                             recording_level=spec["recording_level"])
    prepare_dataset(songs, cache, progress=False, rebuild=True)
    return str(cache)


def fit_training_balance(root: Path, *, train_cache: str | None, n_train: int) -> Path:
    """instrument_balance fitted on the agent's training songs (its recipe's seed)."""
    from mixing_env.balance import fit_dataset_balance

    if train_cache is None:
        from mixing_env.data.prepare import prepare_dataset
        from mixing_env.songs.sampled import make_sampled_dataset
        from rl_models.app.pretrained import PretrainedRecipe

        recipe = PretrainedRecipe()
        make_sampled_dataset(root / "train" / "songs", n_songs=n_train, seconds=recipe.seconds,
                             n_tracks=recipe.n_tracks, seed=recipe.seed,
                             master_bus=recipe.master_bus)
        prepare_dataset(root / "train" / "songs", root / "train" / "cache", progress=False,
                        rebuild=True)
        train_cache = str(root / "train" / "cache")
    return Path(fit_dataset_balance(train_cache, out=root / "balance.json"))


def prior_only_checkpoint(agent: str, out: Path) -> Path | None:
    """A copy of the agent with its residual gate at 0: its level prior alone.

    Returns:
        The copy's folder, or None when the agent has no residual gate (no prior).
    """
    import shutil

    import torch

    from rl_models import checkpoints

    source = checkpoints.find_checkpoint(checkpoints.resolve_checkpoint_path(agent))
    state = torch.load(source / checkpoints.WEIGHTS_FILE, map_location="cpu", weights_only=True)
    gates = [k for k in state if k.endswith("residual_gate")]
    if not gates:
        return None
    out.mkdir(parents=True, exist_ok=True)
    for name in (checkpoints.POLICY_CONFIG_FILE, checkpoints.METADATA_FILE):
        shutil.copyfile(source / name, out / name)
    torch.save({**state, **{k: torch.zeros_like(state[k]) for k in gates}},
               out / checkpoints.WEIGHTS_FILE)
    return out


def score_kind(cache: str, *, agent: str, balance: Path, out: Path,
               prior_only: Path | None = None) -> list[dict]:
    """MEAN rows of the agent (and its prior alone) and the baselines on one kind's cache."""
    from rl_models.app.evaluate import evaluate

    extra = [str(prior_only)] if prior_only is not None else []
    specs = [agent, *extra] + [f"{b}={balance}" if b == "instrument_balance" else b
                               for b in POLICY_ROWS]
    rows = evaluate(specs, env_config={"dataset_dir": cache}, out_dir=out, plots=False,
                    progress=False)
    label = {spec: spec.split("=", 1)[0] for spec in specs}
    label[agent] = "agent" if agent != "pretrained" else "pretrained"
    if prior_only is not None:
        label[str(prior_only)] = "its prior alone"
    return [{**r, "policy": label.get(r["policy"], r["policy"])}
            for r in rows if r["song"] == "MEAN"]


def table_markdown(results: dict[str, list[dict]]) -> str:
    """One table per reference kind: MFCC distance, gaps closed, gain error."""

    def f(v, digits=2) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    out = []
    for kind, rows in results.items():
        out += [f"### {kind}", "",
                "| policy | MFCC dist | gap closed | balance gap closed | gain err median dB |"
                " SI-SDR dB |", "|---|---|---|---|---|---|"]
        out += [f"| {r['policy']} | {f(r['mfcc_distance'])} | {f(r.get('gap_closed'))} | "
                f"{f(r.get('balance_gap_closed'))} | {f(r['gain_err_median_db'])} | "
                f"{f(r['si_sdr_db'], 1)} |" for r in rows]
        out.append("")
    return "\n".join(out)


def no_harm(rows: list[dict], agent: str) -> bool:
    """Whether the agent's MFCC distance is below both equal and loudness gains."""
    d = {r["policy"]: r["mfcc_distance"] for r in rows}
    return d[agent] < min(d["equal"], d["loudness"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/transfer"), help="output folder")
    p.add_argument("--agent", default="pretrained",
                   help="checkpoint to score (default: the shipped pretrained agent)")
    p.add_argument("--n-songs", type=int, default=8, help="held-out songs per reference kind")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each song")
    p.add_argument("--seed", type=int, default=4242,
                   help="held-out songs' seed (the agent trained on seed 2026)")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--train-cache", default=None,
                   help="the agent's training cache, for instrument_balance (default: write "
                        "--n-train songs of the pretrained recipe)")
    p.add_argument("--reuse", action="store_true",
                   help="keep held-out caches an earlier run left in --out")
    p.add_argument("--n-train", type=int, default=16,
                   help="training songs for instrument_balance when --train-cache is not given")
    args = p.parse_args(argv)

    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    balance = fit_training_balance(args.out, train_cache=args.train_cache, n_train=args.n_train)
    print(f"instrument_balance: {balance} ({time.time() - t0:.0f} s)", flush=True)
    prior_only = prior_only_checkpoint(args.agent, args.out / "prior_only")
    results: dict[str, list[dict]] = {}
    for kind in args.kinds:
        cache = make_kind(args.out, kind, n_songs=args.n_songs, seconds=args.seconds,
                          seed=args.seed, reuse=args.reuse)
        results[kind] = score_kind(cache, agent=args.agent, balance=balance,
                                   out=args.out / kind / "evaluation", prior_only=prior_only)
        agent = results[kind][0]["policy"]
        print(f"{kind}: no harm = {no_harm(results[kind], agent)} "
              f"({time.time() - t0:.0f} s)", flush=True)
    page = table_markdown(results)
    command = "python benchmarks/bench_transfer.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    (args.out / "results.md").write_text(f"{page}\nCommand: `{command}`\n")
    (args.out / "results.json").write_text(json.dumps(
        {"rows": results, "args": {k: str(v) for k, v in vars(args).items()},
         "kinds": {k: KIND_SPECS[k] for k in args.kinds}, "engineers": ENGINEERS,
         "wall_s": time.time() - t0}, indent=1, default=str))
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
