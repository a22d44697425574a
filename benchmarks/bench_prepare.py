"""Preparation throughput and peak memory for songs of growing length.

For each size, one Cambridge-style song (24-bit WAV stems, every other one stereo, plus a
stereo mix) is written to a temporary folder, then ``prepare_dataset`` runs in a fresh
subprocess per repeat, so each run's peak RSS (``ru_maxrss``) is its own. A last subprocess
runs under ``tracemalloc`` for the peak of Python/NumPy allocations (the memory map's pages
are not allocations, so this is the working memory beside the cache file).

Reported per size: audio seconds prepared per wall second (all stems plus the mix, median
over repeats), the peak RSS above the interpreter's baseline after imports, the tracemalloc
peak, and both as a ratio of the song's float32 size ((stems + mix) x samples x 4 bytes,
mono, at the target rate).

Usage:
    python benchmarks/bench_prepare.py                # 10x8, 60x16, 180x24, 60x16@48000
    python benchmarks/bench_prepare.py --quick        # 10 s x 8 and 60 s x 16 only
    python benchmarks/bench_prepare.py --sizes 600x24 # a 10-minute 24-track song
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf

from mixing_env.constants import SAMPLE_RATE

_NAMES = (
    "Kick Snare HiHat Overheads Tom Room Bass BassDI ElecGtr1 ElecGtr2 ElecGtr3 AcGtr Piano "
    "Organ Synth Pad LeadVox LeadVoxDT BackingVox1 BackingVox2 BackingVox3 Shaker Crash Sax"
).split()

_CHILD = textwrap.dedent("""
    import json, resource, sys, time, tracemalloc
    from mixing_env.data.prepare import prepare_dataset
    src, cache, trace = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    t = time.perf_counter()
    ds = prepare_dataset(src, cache, progress=False)
    wall = time.perf_counter() - t
    peak_traced = tracemalloc.get_traced_memory()[1] if trace else None
    print(json.dumps({"wall": wall, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "base_kb": base, "traced": peak_traced, "C": ds.n_slots, "T": ds.n_chunks}))
""")


def write_song(folder: Path, *, seconds: float, tracks: int, sr: int, seed: int = 0) -> None:
    """Write one song block by block (the benchmark itself stays small in memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    block = sr * 5
    names = [f"{i + 1:02d}_{_NAMES[i % len(_NAMES)]}" for i in range(tracks)]
    files = [
        sf.SoundFile(folder / f"{name}.wav", "w", sr, 1 + (i % 2), "PCM_24")
        for i, name in enumerate(names)
    ]
    mix = sf.SoundFile(folder / f"{folder.name}_Mix.wav", "w", sr, 2, "PCM_24")
    try:
        for start in range(0, n, block):
            m = min(block, n - start)
            t = (start + np.arange(m)) / sr
            acc = np.zeros(m)
            for i, f in enumerate(files):
                y = 0.1 * np.sin(2 * np.pi * (55 * (i + 1)) * t) + 0.02 * rng.standard_normal(m)
                acc += y / tracks
                f.write(np.stack([y, 0.8 * y], axis=1) if f.channels == 2 else y)
            mix.write(np.stack([acc, acc], axis=1))
    finally:
        for f in [*files, mix]:
            f.close()


def run_child(src: Path, cache: Path, *, trace: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(cache), "1" if trace else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_size(text: str) -> tuple[float, int, int]:
    """``"60x16"`` or ``"60x16@48000"`` -> (seconds, tracks, source rate)."""
    size, _, rate = text.partition("@")
    seconds, tracks = size.split("x")
    return float(seconds), int(tracks), int(rate or SAMPLE_RATE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["10x8", "60x16", "180x24", "60x16@48000"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only 10x8 and 60x16, 2 repeats")
    args = parser.parse_args(argv)
    sizes = ["10x8", "60x16"] if args.quick else args.sizes
    repeats = 2 if args.quick else args.repeats

    header = (
        f"{'song':>14} {'C':>3} {'T':>6} {'audio s/s':>10} {'float32 MB':>10} "
        f"{'RSS+ MB':>8} {'RSS+/song':>9} {'traced MB':>9} {'traced/song':>11}"
    )
    print(header)
    print("-" * len(header))
    for text in sizes:
        seconds, tracks, rate = parse_size(text)
        with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
            src = Path(tmp) / "src"
            write_song(src / "BenchSong", seconds=seconds, tracks=tracks, sr=rate)
            runs = [run_child(src, Path(tmp) / f"cache{r}", trace=False) for r in range(repeats)]
            traced = run_child(src, Path(tmp) / "cache_traced", trace=True)
        n = seconds * SAMPLE_RATE
        song_mb = (tracks + 1) * n * 4 / 2**20
        audio_seconds = (tracks + 1) * seconds
        wall = statistics.median(r["wall"] for r in runs)
        rss = statistics.median((r["maxrss_kb"] - r["base_kb"]) / 1024 for r in runs)
        traced_mb = traced["traced"] / 2**20
        label = f"{seconds:g}s x{tracks}" + (f" @{rate // 1000}k" if rate != SAMPLE_RATE else "")
        print(
            f"{label:>14} {runs[0]['C']:>3} {runs[0]['T']:>6} {audio_seconds / wall:>10.0f} "
            f"{song_mb:>10.1f} {rss:>8.1f} {rss / song_mb:>9.2f} {traced_mb:>9.1f} "
            f"{traced_mb / song_mb:>11.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
