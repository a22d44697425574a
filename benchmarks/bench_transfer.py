"""Transfer check: the pretrained agent on songs unlike its training songs.

    deepmixing benchmark transfer -- --out runs/transfer              # 6 songs per kind, 12 s
    python benchmarks/bench_transfer.py --out runs/t --agent runs/my-agent --kinds rock
    python benchmarks/bench_transfer.py --out runs/transfer --reuse    # keep the songs made

The agent trains on a stream of new songs mixed by the default (pop) engineer, a share of
them through a master bus. Held-out songs of six kinds (:data:`KIND_SPECS`) are written to
disk (another seed, and a dataset's stream, which training never draws) and prepared:

- ``clean``: sampled songs, the pop engineer, no master bus;
- ``master_bus``: the same through a master bus (EQ, compression, reverb), every song;
- ``rock``: the other engineer's style (band-forward, the voice in the band);
- ``natural``: stems at the soundfont's own recording level (``recording_level="natural"``:
  raw levels near a balance) where training saw random ones, the pop engineer;
- ``natural_rock_bus``: natural levels, the rock engineer, every song through the bus;
- ``procedural``: the procedural wavetable songs (:mod:`mixing_env.songs.procedural`), with
  their own instruments and their own mixing: another generator altogether.

Each kind is scored with the product's evaluation: the agent (default: the shipped
``pretrained``), equal, loudness, instrument_balance (fitted on the first songs of the
agent's training stream, its recipe read from the agent's ``deepmixing.json``), the bound
(the engineer's own rule; not for ``procedural``, which no engineer mixed), static_oracle
and oracle. ``gap_closed`` puts equal gains at 0 and the oracle at 1. The agent does **no
harm** on a kind when its mean MFCC distance is below equal gains'. Writes ``results.md``
and ``results.json`` (with the load average) in --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixing_env.engineer import DEFAULT_STYLE  # noqa: E402

_SAMPLED = {"generator": "sampled", "style": DEFAULT_STYLE, "master_bus": 0.0,
            "recording_level": "random"}
KIND_SPECS: dict[str, dict[str, Any]] = {
    "clean": _SAMPLED,
    "master_bus": {**_SAMPLED, "master_bus": 1.0},
    "rock": {**_SAMPLED, "style": "rock"},
    "natural": {**_SAMPLED, "recording_level": "natural"},
    "natural_rock_bus": {**_SAMPLED, "style": "rock", "master_bus": 1.0,
                         "recording_level": "natural"},
    "procedural": {"generator": "procedural"},
}
"""Per kind of held-out song: the generator, and for sampled songs the engineer's style, the
chance of the master bus and the stems' raw recording levels."""

KINDS = tuple(KIND_SPECS)
"""Kinds scored, in table order."""

BASELINE_ROWS = ("equal", "loudness", "instrument_balance", "bound", "static_oracle", "oracle")
"""Baselines scored beside the agent (``bound`` only where the engineer made the songs)."""

SUMMARY_ROWS = ("equal", "loudness", "instrument_balance", "bound", "oracle")
"""The baselines of the summary table."""

_TRACKS = (6, 11)  # stems per held-out song


def make_kind(root: Path, kind: str, *, n_songs: int, seconds: float, seed: int,
              reuse: bool = False) -> str:
    """Writes and prepares one kind of held-out songs; returns its cache.

    With ``reuse``, a cache an earlier run made of the same songs is kept as it is.
    """
    from mixing_env.data.prepare import prepare_dataset
    from mixing_env.engineer import Engineer
    from mixing_env.songs.procedural import make_synthetic_dataset
    from mixing_env.songs.sampled import make_sampled_dataset

    spec = KIND_SPECS[kind]
    songs, cache, key_file = (root / kind / name for name in ("songs", "cache", "songs.json"))
    key = {"kind": kind, **spec, "n_songs": n_songs, "seconds": seconds, "seed": seed}
    if reuse and (cache / "manifest.json").is_file() and key_file.is_file() and json.loads(
            key_file.read_text()) == key:
        return str(cache)
    if spec["generator"] == "procedural":
        make_synthetic_dataset(songs, n_songs=n_songs, seconds=seconds, n_tracks=_TRACKS,
                               seed=seed)
    else:
        make_sampled_dataset(songs, n_songs=n_songs, seconds=seconds, n_tracks=_TRACKS,
                             seed=seed, engineer=Engineer(spec["style"]),
                             master_bus=spec["master_bus"],
                             recording_level=spec["recording_level"])
    prepare_dataset(songs, cache, progress=False, rebuild=True)
    key_file.write_text(json.dumps(key))
    return str(cache)


def agent_recipe(agent: str):
    """The :class:`~rl_models.app.pretrained.PretrainedRecipe` the agent was made with.

    Read from ``experiment.recipe`` in its ``deepmixing.json``; the default recipe when the
    agent records none or one of another design.
    """
    from rl_models import checkpoints
    from rl_models.app.pretrained import PretrainedRecipe

    folder = checkpoints.find_checkpoint(checkpoints.resolve_checkpoint_path(agent))
    meta = json.loads((folder / checkpoints.METADATA_FILE).read_text())
    recorded = dict(meta.get("experiment", {}).get("recipe") or {})
    try:
        return PretrainedRecipe(**{**recorded, "n_tracks": tuple(recorded.get(
            "n_tracks", PretrainedRecipe().n_tracks))})
    except TypeError:  # a recipe of the earlier design (fixed songs): its songs are gone
        return PretrainedRecipe()


def fit_training_balance(out: Path, recipe, *, n_table: int) -> Path:
    """instrument_balance fitted on the first ``n_table`` songs of the agent's stream."""
    from benchmarks.quality import stream_songs
    from mixing_env.balance import fit_instrument_balance

    songs, _ = stream_songs(recipe.stream(), n_table)
    return fit_instrument_balance(songs).write(out / "instrument_balance.json")


def score_kind(cache: str, *, agent: str, balance: Path, out: Path, bound: bool) -> dict:
    """The agent and the baselines on one kind's cache.

    Returns:
        ``{"rows": MEAN rows (the agent's first, labelled "agent"), "songs": how many songs,
        "songs_below_equal": on how many the agent's MFCC distance is below equal gains'}``.
    """
    from rl_models.app.evaluate import evaluate

    baselines = [b for b in BASELINE_ROWS if bound or b != "bound"]
    specs = [agent] + [f"{b}={balance}" if b == "instrument_balance" else b for b in baselines]
    rows = evaluate(specs, env_config={"dataset_dir": cache}, out_dir=out, plots=False,
                    progress=False)
    label = {spec: spec.split("=", 1)[0] for spec in specs} | {agent: "agent"}
    rows = [{**r, "policy": label.get(r["policy"], r["policy"])} for r in rows]
    per_song = {(r["policy"], r["song"]): r["mfcc_distance"] for r in rows if r["song"] != "MEAN"}
    songs = sorted({s for _, s in per_song})
    below = sum(per_song[("agent", s)] < per_song[("equal", s)] for s in songs)
    return {"rows": [r for r in rows if r["song"] == "MEAN"], "songs": len(songs),
            "songs_below_equal": below}


def no_harm(rows: list[dict]) -> bool:
    """Whether the agent's mean MFCC distance is below equal gains'."""
    d = {r["policy"]: r["mfcc_distance"] for r in rows}
    return d["agent"] < d["equal"]


def _f(v: Any, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def summary_markdown(results: dict[str, dict]) -> str:
    """One table: per kind, the agent against the baselines (MFCC distance / gap closed)."""
    head = ["kind", "agent", *SUMMARY_ROWS, "no harm (songs below equal)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, result in results.items():
        by = {r["policy"]: r for r in result["rows"]}
        cells = [f"{_f(by[p]['mfcc_distance'])} / {by[p]['gap_closed']:+.2f}" if p in by
                 else "-" for p in ("agent", *SUMMARY_ROWS)]
        verdict = "yes" if no_harm(result["rows"]) else "**no**"
        lines.append(f"| {kind} | " + " | ".join(cells) +
                     f" | {verdict} ({result['songs_below_equal']} of {result['songs']}) |")
    return "\n".join(lines)


def kind_markdown(kind: str, rows: list[dict]) -> str:
    """One kind's table: MFCC distance, gaps closed, gain error, SI-SDR."""
    out = [f"### {kind}", "",
           "| policy | MFCC dist | gap closed | balance gap closed | gain err median dB |"
           " SI-SDR dB |", "|---|---|---|---|---|---|"]
    out += [f"| {r['policy']} | {_f(r['mfcc_distance'])} | {_f(r.get('gap_closed'))} | "
            f"{_f(r.get('balance_gap_closed'))} | {_f(r['gain_err_median_db'])} | "
            f"{_f(r['si_sdr_db'], 1)} |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/transfer"), help="output folder")
    p.add_argument("--agent", default="pretrained",
                   help="checkpoint to score (default: the shipped pretrained agent)")
    p.add_argument("--n-songs", type=int, default=6, help="held-out songs per kind")
    p.add_argument("--seconds", type=float, default=12.0, help="length of each song")
    p.add_argument("--seed", type=int, default=4242,
                   help="held-out songs' seed (the shipped agent's stream: seed 2026)")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--n-table", type=int, default=64,
                   help="songs of the agent's training stream instrument_balance is fitted on")
    p.add_argument("--reuse", action="store_true",
                   help="keep held-out songs an earlier run made in --out")
    args = p.parse_args(argv)

    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    load = [os.getloadavg()[0]]
    recipe = agent_recipe(args.agent)
    balance = fit_training_balance(args.out, recipe, n_table=args.n_table)
    print(f"instrument_balance: {balance} ({time.time() - t0:.0f} s)", flush=True)
    results: dict[str, dict] = {}
    for kind in args.kinds:
        cache = make_kind(args.out, kind, n_songs=args.n_songs, seconds=args.seconds,
                          seed=args.seed, reuse=args.reuse)
        results[kind] = score_kind(cache, agent=args.agent, balance=balance,
                                   out=args.out / kind / "evaluation",
                                   bound=KIND_SPECS[kind]["generator"] == "sampled")
        results[kind]["no_harm"] = no_harm(results[kind]["rows"])
        load.append(os.getloadavg()[0])
        print(f"{kind}: no harm = {results[kind]['no_harm']} ({time.time() - t0:.0f} s)",
              flush=True)
    command = "deepmixing benchmark transfer -- " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    page = "\n\n".join([
        f"## The agent ({args.agent}) on songs unlike its training songs",
        "MFCC distance / gap closed (equal 0, oracle 1), mean over the kind's songs.",
        summary_markdown(results),
        *[kind_markdown(k, r["rows"]) for k, r in results.items()],
        f"Command: `{command}`; {time.time() - t0:.0f} s; load average (1 min) "
        f"{min(load):.1f}-{max(load):.1f} on {os.cpu_count()} cores."]) + "\n"
    (args.out / "results.md").write_text(page)
    (args.out / "results.json").write_text(json.dumps(
        {"results": results, "kinds": {k: KIND_SPECS[k] for k in args.kinds},
         "args": {k: str(v) for k, v in vars(args).items()}, "recipe": asdict(recipe),
         "load_average": load, "cpu_count": os.cpu_count(), "wall_s": time.time() - t0,
         "date": time.strftime("%Y-%m-%d"), "command": command}, indent=1, default=str))
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
