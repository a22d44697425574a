"""The headroom: what a perfect listener adds to the instrument_balance table, on held-out songs.

For each seed and engineer style, the benchmark

1. makes the held-out songs the learning benchmark scores on (``synth``: sampled songs of stream
   0, mixed by the engineer with its random part) and prepares them (the learning benchmark's
   :func:`~benchmarks.quality.heldout_cache`);
2. fits instrument_balance on songs of the training stream (never a held-out song; the
   learning benchmark's :func:`~benchmarks.quality.fit_table`);
3. scores, on the held-out songs with the env's own MFCC distance: equal gains, loudness,
   instrument_balance, the ``bound`` (the engineer's own rule, its random part at 0), the
   static bound (the bound's gains held static per song), the static oracle and the oracle.

Gap closed puts equal gains at 0 and the oracle at 1. The headroom is ``bound -
instrument_balance``; the share of the table-to-static-oracle distance that is the engineer's
inconsistency is ``(static_oracle - static_bound) / (static_oracle - instrument_balance)``:
the static oracle knows each song's random offsets, the static bound knows only the rule.

    deepmixing benchmark headroom -- --out runs/headroom     # 2 seeds x 2 styles, ~15 min
    deepmixing benchmark headroom -- --tiny --out runs/h     # the same pipeline in ~1 min

Writes ``headroom.json`` under ``--out`` (rows ``{"seed", "style", "policy", "gap_closed",
"mfcc_distance"}`` and a summary per seed and style); ``--results`` also copies it where the
results page reads it (docs/results/headroom.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixing_env.baselines import BaselinePolicy, EngineerBound, make_baseline  # noqa: E402
from mixing_env.data.song import Song  # noqa: E402
from mixing_env.metrics import gap_closed  # noqa: E402
from mixing_env.reward import to_simplex  # noqa: E402

POLICIES = ("equal", "loudness", "instrument_balance", "bound", "static_bound", "static_oracle",
            "oracle")
"""The rows of every table, in order."""


class StaticBound(BaselinePolicy):
    """The bound's gains held static: per stem, its energy-weighted mean gain over the song."""

    name = "static_bound"

    def __init__(self, bound: EngineerBound):
        super().__init__()
        self.bound = bound

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        g = self.bound.gains(song).astype(np.float64)
        n = song.n_valid_chunks or song.n_chunks
        energy = (np.asarray(song.stems[:, :n], np.float64) ** 2).sum(axis=-1)
        mean = np.sqrt((energy * g[:, :n] ** 2).sum(axis=1) / np.maximum(energy.sum(axis=1),
                                                                          1e-30))
        static = to_simplex(mean, song.track_mask)
        return np.repeat(static[:, None], song.n_chunks, axis=1).astype(np.float32)


def distance_scorer(cache: str):
    """``mean_distance(policy, songs) -> float``: the env's mean MFCC distance over whole songs.

    Every call plays through one shared song source.
    """
    from mixing_env.envs.song_source import SongSource
    from rl_models.app.evaluate import play_songs

    config = {"dataset_dir": cache}
    source = SongSource(config)

    def mean_distance(policy, songs: list[str] | None = None) -> float:
        records = play_songs(policy, config, names=songs, source=source)
        return float(np.mean([r.mfcc_distance.mean() for r in records]))

    return mean_distance


def score_seed(out: Path, setup) -> dict:
    """Every policy's gap closed on one seed's held-out songs of one style.

    The held-out songs and the table are the learning benchmark's
    (:func:`benchmarks.quality.heldout_cache`, :func:`benchmarks.quality.fit_table`), so the
    two tables share their baseline rows.
    """
    from benchmarks.quality import fit_table, heldout_cache

    t0 = time.time()
    cache = heldout_cache(out / "heldout", setup)
    made = time.time() - t0
    table, song_cpu_s = fit_table(setup)
    table.write(out / "instrument_balance.json")
    mean_distance = distance_scorer(cache)
    bound = EngineerBound(setup.style)
    policies = {"instrument_balance": table, "bound": bound, "static_bound": StaticBound(bound)}
    distances = {name: mean_distance(policies.get(name) or make_baseline(name))
                 for name in POLICIES}
    gaps = {name: gap_closed(d_agent=d, d_equal=distances["equal"],
                             d_oracle=distances["oracle"]) for name, d in distances.items()}
    span = gaps["static_oracle"] - gaps["instrument_balance"]
    summary = {
        "seed": setup.seed, "style": setup.style,
        "headroom": gaps["bound"] - gaps["instrument_balance"],
        "inconsistency_share_of_table_to_static_oracle": (
            (gaps["static_oracle"] - gaps["static_bound"]) / span if span > 0 else None),
        "training_song_cpu_s": song_cpu_s,
        "heldout_songs": setup.n_heldout, "table_songs": setup.n_table,
        "seconds": setup.seconds, "wall_s": time.time() - t0, "heldout_making_s": made,
    }
    rows = [{"seed": setup.seed, "style": setup.style, "policy": name, "gap_closed": gaps[name],
             "mfcc_distance": distances[name]} for name in POLICIES]
    return {"rows": rows, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.quality import QualitySetup

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/headroom", help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[7, 11])
    p.add_argument("--styles", nargs="+", default=["pop", "rock"])
    p.add_argument("--heldout", type=int, default=QualitySetup().n_heldout,
                   help="held-out songs per seed")
    p.add_argument("--tiny", action="store_true", help="2 held-out and 4 table songs of 4 s, "
                                                       "one seed and style")
    p.add_argument("--results", action="store_true",
                   help="also write docs/results/headroom.json")
    args = p.parse_args(argv)
    base = QualitySetup(n_heldout=args.heldout)
    if args.tiny:
        args.seeds, args.styles = args.seeds[:1], args.styles[:1]
        base = dataclasses.replace(base, n_heldout=2, n_table=4, seconds=4.0)
    out = Path(args.out)
    load = [os.getloadavg()]
    rows, summaries = [], []
    for style in args.styles:
        for seed in args.seeds:
            result = score_seed(out / f"{style}_seed{seed}",
                                dataclasses.replace(base, seed=seed, style=style))
            rows += result["rows"]
            summaries.append(result["summary"])
            load.append(os.getloadavg())
            s = result["summary"]
            print(f"{style} seed {seed}: " + ", ".join(
                f"{r['policy']} {r['gap_closed']:.3f}" for r in result["rows"])
                + f"; headroom {s['headroom']:.3f}, inconsistency share "
                  f"{s['inconsistency_share_of_table_to_static_oracle']:.2f}", flush=True)
    payload = {"command": "deepmixing benchmark headroom -- " + " ".join(argv or sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d"), "rows": rows, "summary": summaries,
               "load_average": [round(x[0], 2) for x in load]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "headroom.json").write_text(json.dumps(payload, indent=1))
    if args.results:
        dest = Path(__file__).resolve().parents[1] / "docs" / "results" / "headroom.json"
        dest.write_text(json.dumps(payload, indent=1))
    print(f"wrote {out / 'headroom.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
