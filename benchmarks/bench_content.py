"""What reading the stems could add over instrument_balance on sampled songs (no training).

Makes the learning benchmark's songs (:func:`benchmarks.quality.make_split`, optionally with
the mixing model's content term, ``--masking-db`` / ``--own-sd-scale``), fits
instrument_balance on the training songs, and scores on the held-out songs: the baselines
and two bounds that know part of the truth, instrument_balance plus each stem's true content
lift (from ``sampled.json``), and that plus the true per-chunk dynamics (section moves,
ducking, riding). If instrument_balance falls well short of the first bound, a policy that
reads the stems has something to learn.

    python benchmarks/bench_content.py --out runs/content7 --seed 7 --masking-db 8 \\
        --own-sd-scale 0.5

Writes ``content.json`` under ``--out``: gap closed (equal = 0, oracle = 1) and the share
of the instrument_balance-to-oracle gap per row, and per role the song-to-song spread of the
target level and of the content lift over all the songs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ceiling import (  # noqa: E402
    distance_scorer,
    fitted_split,
    gap_rows,
    moved_gains,
    true_moves_db,
)
from benchmarks.quality import QualitySetup  # noqa: E402
from mixing_env.baselines import BaselinePolicy, InstrumentBalance, make_baseline  # noqa: E402
from mixing_env.data.sampled.mixing_model import ROLE_LEVEL_DB  # noqa: E402
from mixing_env.reward import to_simplex  # noqa: E402


def _mixing(stem_path: str) -> tuple[dict, str]:
    """The ``mixing`` decisions of the song a stem file belongs to, and the stem's file name."""
    path = Path(stem_path)
    return json.loads((path.parent / "sampled.json").read_text())["mixing"], path.name


class TrueContentLift(BaselinePolicy):
    """instrument_balance, each stem lifted by its true content lift (and true dynamics).

    Args:
        table: The fitted instrument_balance.
        dynamics: Also apply the true per-chunk moves around each stem's mean gain.
    """

    name = "ib_true_lift"

    def __init__(self, table: InstrumentBalance, *, dynamics: bool = False):
        super().__init__()
        self.table, self.dynamics = table, dynamics

    def gains(self, song) -> np.ndarray:  # noqa: D102
        static = self.table.gains(song)[:, 0].astype(np.float64)
        lift = np.zeros(song.n_slots)
        for i, slot in enumerate(song.slot_names):
            if song.track_mask[i] and slot in song.stem_files:
                mixing, fname = _mixing(song.stem_files[slot])
                lift[i] = mixing.get("masking_lift_db", {}).get(fname, 0.0)
        weights = static * 10 ** (lift / 20)
        if not self.dynamics:
            g = to_simplex(weights, song.track_mask)
            return np.repeat(g[:, None], song.n_chunks, axis=1).astype(np.float32)
        return moved_gains(weights, true_moves_db(song), song.track_mask)


def role_spread(songs_dir: Path) -> dict[str, dict[str, float]]:
    """Per role over the songs: SD of the target (vs the role mean) and of the content lift."""
    offset, lift = defaultdict(list), defaultdict(list)
    for meta_file in sorted(songs_dir.glob("*/sampled.json")):
        meta = json.loads(meta_file.read_text())
        for fname, target in meta["mixing"]["target_lu_vs_lead"].items():
            role = meta["parts"][fname]["role"]
            offset[role].append(target - ROLE_LEVEL_DB[role][0])
            lift[role].append(meta["mixing"].get("masking_lift_db", {}).get(fname, 0.0))
    return {role: {"n": len(offset[role]), "target_sd_db": float(np.std(offset[role])),
                   "lift_sd_db": float(np.std(lift[role])),
                   "lift_share_of_variance": float(np.var(lift[role]) / max(
                       np.var(offset[role]), 1e-12))}
            for role in sorted(offset) if role != "lead"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (songs, cache, content.json)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--masking-db", type=float, default=0.0)
    p.add_argument("--own-sd-scale", type=float, default=1.0)
    p.add_argument("--group-sd-scale", type=float, default=1.0)
    args = p.parse_args(argv)
    setup = QualitySetup(seed=args.seed, masking_db=args.masking_db,
                         own_sd_scale=args.own_sd_scale, group_sd_scale=args.group_sd_scale)
    out = Path(args.out)
    cache, _, heldout, table_path = fitted_split(out, setup)
    table = InstrumentBalance.read(table_path)
    policies = {name: make_baseline(name) for name in ("equal", "loudness")}
    policies |= {"instrument_balance": table,
                 "static_oracle": make_baseline("static_oracle"),
                 "oracle": make_baseline("oracle"),
                 "ib + true content lift": TrueContentLift(table),
                 "ib + true content lift + true dynamics": TrueContentLift(table, dynamics=True)}
    mean_distance = distance_scorer(cache)
    rows = gap_rows({label: mean_distance(policy, heldout)
                     for label, policy in policies.items()})
    result = {"seed": args.seed, "masking_db": args.masking_db,
              "own_sd_scale": args.own_sd_scale, "group_sd_scale": args.group_sd_scale,
              "heldout": heldout,
              "rows": rows, "role_spread": role_spread(out / "data" / "songs")}
    (out / "content.json").write_text(json.dumps(result, indent=1))
    for label, r in rows.items():
        print(f"{label:40s} mfcc {r['mfcc_distance']:7.3f} gap {r['gap_closed']:6.3f} "
              f"ib-gap {r['balance_gap_closed']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
