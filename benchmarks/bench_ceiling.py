"""How much of the learning benchmark's gap a policy that reads the stems could close at all.

The reference of a sampled song (docs/mixing_model.md) is ``target - loudness + section + duck
+ ride`` with per-song random offsets in ``target``. A policy sees the stems, never the
reference, so it can know each stem's loudness (instrument_balance uses it) and the dynamics
(sections, the lead's activity and level), but not the random offsets. This benchmark scores,
on the held-out songs of a learning-benchmark split, policies that are *given* more than any
stem-reading policy can know, so their gap closed bounds what an agent could add:

- ``balance + true dynamics``: instrument_balance's static gains times the reference's own
  per-chunk automation (each stem's true gain over its energy-weighted mean: the section moves,
  ducking and lead rides exactly), i.e. a policy that learned every dynamic move perfectly;
- ``reward-fitted table``: a per-slot table fitted on the training songs to the environment's
  MFCC distance itself (coordinate descent from instrument_balance's levels), i.e. what an RL
  agent maximising the reward with a static policy could reach on held-out songs;
- ``table fitted on held-out``: the same descent run on the held-out songs themselves (it has
  seen the test songs: a bound for any per-slot table, not a policy).

    python benchmarks/bench_ceiling.py --from runs/prior_seed7 --out runs/ceiling_seed7
    python benchmarks/bench_ceiling.py --seed 11 --out runs/ceiling_seed11   # makes the split

``--from`` takes a learning-benchmark output folder (its ``data/cache`` and ``balance.json``);
without it the benchmark's default split is made for ``--seed`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixing_env.baselines import BaselinePolicy, InstrumentBalance, make_baseline  # noqa: E402
from mixing_env.data.song import Song  # noqa: E402
from mixing_env.metrics import gap_closed  # noqa: E402
from mixing_env.reward import to_simplex  # noqa: E402

_FLOOR = 1e-30  # energy / squared gain below which a stem counts as silent


def true_moves_db(song: Song) -> np.ndarray:
    """Each stem's true gain in dB over its energy-weighted mean, per chunk [shape=(C, T)].

    The reference's automation inside the song (section moves, ducking, rides) without its
    static level, which the static oracle and the table estimate.
    """
    true = np.asarray(song.true_gains, dtype=np.float64)
    n = true.shape[1]
    energy = (np.asarray(song.stems[:, :n], dtype=np.float64) ** 2).sum(axis=-1)
    weight = energy / np.maximum(energy.sum(axis=1, keepdims=True), _FLOOR)
    mean_db = 10 * np.log10(np.maximum((weight * true**2).sum(axis=1, keepdims=True), _FLOOR))
    return 20 * np.log10(np.maximum(true, 1e-15)) - mean_db


def moved_gains(static: np.ndarray, moves_db: np.ndarray, track_mask: np.ndarray) -> np.ndarray:
    """Static weights [shape=(C,)] moved per chunk by ``moves_db``, on the simplex (C, T)."""
    return np.stack([to_simplex(static * 10 ** (moves_db[:, t] / 20), track_mask)
                     for t in range(moves_db.shape[1])], axis=1).astype(np.float32)


class BalancePlusTrueDynamics(BaselinePolicy):
    """instrument_balance's static gains moved, chunk by chunk, by the reference's automation
    (:func:`true_moves_db`): the static balance stays the table's, only the moves inside the
    song come from the reference."""

    name = "balance + true dynamics"

    def __init__(self, table: InstrumentBalance):
        super().__init__()
        self.table = table

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        static = self.table.gains(song)[:, 0].astype(np.float64)
        return moved_gains(static, true_moves_db(song), song.track_mask)


def shifted_table(table: InstrumentBalance, offsets: dict[str, float]) -> InstrumentBalance:
    """The table with ``offsets`` (dB per slot name) added to its slot levels."""
    slots = {k: v + offsets.get(k, 0.0) for k, v in table.slots.items()}
    return InstrumentBalance(slots, table.instruments, table.sections, table.meta)


def fit_table_to_reward(table: InstrumentBalance, mean_distance, *, steps=(3.0, 1.5, 0.75),
                        sweeps: int = 2, log=print) -> tuple[dict[str, float], float]:
    """Coordinate descent of per-slot offsets on ``mean_distance(policy) -> float``.

    Each slot in turn moves by +-step dB when that lowers the distance; a step size repeats
    until a sweep changes nothing (at most ``sweeps`` times), then halves.

    Returns:
        The offsets (dB per slot name) and the distance they reach.
    """
    offsets: dict[str, float] = {}
    best = mean_distance(table)
    for step in steps:
        for _ in range(sweeps):
            changed = False
            for slot in sorted(table.slots):
                for move in (step, -step):
                    trial = {**offsets, slot: offsets.get(slot, 0.0) + move}
                    value = mean_distance(shifted_table(table, trial))
                    if value < best - 1e-3:
                        best, offsets, changed = value, trial, True
                        break
            log(f"  step {step} dB: mean MFCC distance {best:.3f}")
            if not changed:
                break
    return {k: v for k, v in offsets.items() if v}, best


def fitted_split(out: Path, setup) -> tuple[str, list[str], list[str], Path]:
    """The learning benchmark's split for ``setup`` under ``out``, the table fitted on it.

    instrument_balance is fitted on the split's training songs only.

    Returns:
        (cache dir, training songs, held-out songs, the table's JSON path).
    """
    from benchmarks.quality import make_split
    from mixing_env.balance import fit_dataset_balance

    split = make_split(out / "data", setup, progress=True)
    table = fit_dataset_balance(split.cache_dir, songs=split.train, out=out / "balance.json")
    return split.cache_dir, list(split.train), list(split.heldout), table


def distance_scorer(cache: str):
    """``mean_distance(policy, songs) -> float`` over whole songs of a prepared cache.

    The env's mean MFCC distance; every call plays through one shared song source.
    """
    from mixing_env.envs.song_source import SongSource
    from rl_models.app.evaluate import play_songs

    config = {"dataset_dir": cache}
    source = SongSource(config)

    def mean_distance(policy, songs: list[str]) -> float:
        records = play_songs(policy, config, names=songs, source=source)
        return float(np.mean([r.mfcc_distance.mean() for r in records]))

    return mean_distance


def gap_rows(distances: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per policy: its distance, gap closed and balance gap closed.

    Gap closed puts equal gains at 0 and the oracle at 1; balance gap closed puts
    instrument_balance at 0. ``distances`` must hold those three.
    """
    d_eq, d_or, d_ib = (distances[k] for k in ("equal", "oracle", "instrument_balance"))
    return {name: {"mfcc_distance": d,
                   "gap_closed": gap_closed(d_agent=d, d_equal=d_eq, d_oracle=d_or),
                   "balance_gap_closed": gap_closed(d_agent=d, d_equal=d_ib, d_oracle=d_or)}
            for name, d in distances.items()}


def _split(args: argparse.Namespace) -> tuple[str, list[str], list[str], Path]:
    """(cache dir, training songs, held-out songs, balance table path) of the split to score."""
    from benchmarks.quality import QualitySetup

    if args.source is None:
        return fitted_split(Path(args.out), dataclasses.replace(QualitySetup(), seed=args.seed))
    run = Path(args.source)
    cache, table = run / "data" / "cache", run / "balance.json"
    for path in (cache, table):
        if not path.exists():
            raise SystemExit(f"bench_ceiling: error: {path} not found: --from takes a "
                             f"learning-benchmark output folder (bench_quality.py --out)")
    names = sorted(json.loads((cache / "manifest.json").read_text())["songs"])
    n_train = QualitySetup().n_train
    return str(cache), names[:n_train], names[n_train:], table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", default=None, metavar="RUN",
                   help="a learning-benchmark output folder to reuse (data/cache, balance.json)")
    p.add_argument("--seed", type=int, default=7, help="dataset seed when no --from is given")
    p.add_argument("--out", default="runs/ceiling", help="output folder (ceiling.json)")
    p.add_argument("--no-fit", action="store_true", help="skip the two table fits (slow part)")
    args = p.parse_args(argv)

    t0 = time.time()
    cache, train, heldout, table_path = _split(args)
    mean_distance = distance_scorer(cache)

    table = InstrumentBalance.read(table_path)
    held = {name: mean_distance(make_baseline(name), heldout)
            for name in ("equal", "loudness", "static_oracle", "oracle")}
    held["instrument_balance"] = mean_distance(table, heldout)
    held["balance + true dynamics"] = mean_distance(BalancePlusTrueDynamics(table), heldout)
    fitted: dict[str, dict[str, float]] = {}
    if not args.no_fit:
        print("reward-fitted table, on the training songs:")
        offsets, _ = fit_table_to_reward(table, lambda pol: mean_distance(pol, train))
        held["reward-fitted table"] = mean_distance(shifted_table(table, offsets), heldout)
        print("table fitted on the held-out songs themselves:")
        offsets_h, held["table fitted on held-out"] = fit_table_to_reward(
            table, lambda pol: mean_distance(pol, heldout))
        fitted = {"reward-fitted table": offsets, "table fitted on held-out": offsets_h}

    rows = [{"policy": name, **row} for name, row in gap_rows(held).items()]
    print(f"\nheld-out songs ({len(heldout)}), {cache}")
    print("| policy | MFCC dist | gap closed | balance gap closed |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {r['mfcc_distance']:.2f} | {r['gap_closed']:.3f} "
              f"| {r['balance_gap_closed']:.3f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ceiling.json").write_text(json.dumps(
        {"cache": cache, "train": train, "heldout": heldout, "rows": rows,
         "fitted_offsets_db": fitted, "wall_s": time.time() - t0}, indent=1))
    print(f"wrote {out / 'ceiling.json'} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
