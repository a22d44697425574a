"""Render time and disk use per song: procedural vs sampled (General MIDI) songs.

For each generator, N songs (default 6) of 20 s with 6-11 stems are generated in this process
and written as song folders (32-bit float WAV stems, the mix, true_gains.npz, the JSON
notes). Reported per song: the median wall time and CPU time of this process to generate
(render stems and mix; on a shared machine the CPU time is the steadier number) and the wall
time to write, stems per song, and the folder's size on disk. The first sampled song also
pays for loading the soundfont; it is timed apart ("warm-up") and left out of the medians.

Usage:
    python benchmarks/bench_songs.py                 # 6 songs x 20 s per generator
    python benchmarks/bench_songs.py --songs 3 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from mixing_env.songs.procedural import generate_song
from mixing_env.songs.sampled.songs import generate_sampled_song, write_song_folder


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _run(kind: str, make, args, out: Path) -> dict:
    t0 = time.perf_counter()
    make(10_000)  # warm-up: imports, soundfont load, numba/JIT caches
    warm = time.perf_counter() - t0
    gen, cpu, write, stems, disk = [], [], [], [], []
    for i in range(args.songs):
        c0, t0 = time.process_time(), time.perf_counter()
        song = make(i)
        c1, t1 = time.process_time(), time.perf_counter()
        folder = write_song_folder(out / kind / song.name, song)
        t2 = time.perf_counter()
        gen.append(t1 - t0)
        cpu.append(c1 - c0)
        write.append(t2 - t1)
        stems.append(len(song.stem_files))
        disk.append(_folder_bytes(folder))
    return {
        "generator": kind,
        "songs": args.songs,
        "seconds": args.seconds,
        "warm_up_s": round(warm, 3),
        "generate_s_median": round(statistics.median(gen), 3),
        "generate_s_max": round(max(gen), 3),
        "generate_cpu_s_median": round(statistics.median(cpu), 3),
        "write_s_median": round(statistics.median(write), 3),
        "stems_mean": round(statistics.mean(stems), 2),
        "ms_per_stem_second": round(1000 * sum(gen) / (sum(stems) * args.seconds), 2),
        "disk_mb_per_song": round(statistics.mean(disk) / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    kw = dict(seconds=args.seconds, n_tracks=(6, 11), seed=args.seed)
    makers = {
        "procedural": lambda i: generate_song(i, **kw),
        "sampled": lambda i: generate_sampled_song(i, **kw),
        "sampled+bus": lambda i: generate_sampled_song(i, master_bus=True, **kw),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in makers.items():
            rows.append(_run(kind, make, args, Path(tmp)))
            print(json.dumps(rows[-1]))
    header = (f"{'generator':<13}{'gen s/song':>11}{'cpu s':>7}{'write s':>9}{'stems':>7}"
              f"{'ms/stem-s':>11}{'MB/song':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['generator']:<13}{r['generate_s_median']:>11.2f}"
              f"{r['generate_cpu_s_median']:>7.2f}{r['write_s_median']:>9.2f}"
              f"{r['stems_mean']:>7.1f}{r['ms_per_stem_second']:>11.2f}"
              f"{r['disk_mb_per_song']:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
