"""Mixing a long song with the shipped agent: time, memory, loudness, true peak, file sizes.

    python benchmarks/bench_mix.py --out runs/bench-mix                 # 3 and 10 minutes
    deepmixing benchmark mix -- --out runs/bench-mix --lengths 180
    deepmixing benchmark mix -- --quick                                 # 20 s, a smoke run

For each length, ``deepmixing synth`` writes one song of sampled instruments (19 stems by
default; kept in --out and reused by a later run), then ``deepmixing mix pretrained`` mixes
it in a child process. Reported per song: the child's wall time and real-time factor (audio
seconds per second), its CPU time (user + system: what it costs on a machine of its own), its
peak memory (RSS high-water mark, from ``os.wait4``), the WAV's
integrated loudness measured again here with pyloudnorm and its true peak (4x oversampled),
the limiter's largest gain reduction, and the size of the automation files and the REAPER
project. A 2-second mix runs first so the numba kernels are compiled and cached (a fresh
install compiles them once, a few seconds). The load average is printed before and after:
the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def _child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def make_song(out: Path, *, seconds: float, tracks: int, seed: int) -> Path:
    """One sampled song folder (reused when it is already there).

    ``deepmixing synth`` runs in a child: this process stays small, so the mix's child
    (forked from it) starts small too (Linux counts a child's memory before its exec).
    """
    folder = out / f"song_{int(seconds)}s_{tracks}stems_seed{seed}"
    songs = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []
    if not songs:
        subprocess.run([sys.executable, "-m", "rl_models.app.cli", "synth", str(folder),
                        "--n-songs", "1", "--seconds", str(seconds), "--tracks", str(tracks),
                        "--seed", str(seed)], env=_child_env(), check=True,
                       stdout=subprocess.DEVNULL)
        songs = sorted(p for p in folder.glob("*") if p.is_dir())
    return songs[0]


def mix_in_child(song: Path, out: Path, checkpoint: str) -> dict:
    """``deepmixing mix`` in a child process: its wall time and peak RSS (``os.wait4``)."""
    import tempfile

    command = [sys.executable, "-m", "rl_models.app.cli", "mix", checkpoint, str(song),
               "--out", str(out), "--no-progress"]
    env = _child_env()
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    if child.returncode:
        raise SystemExit(f"mix failed ({child.returncode}):\n{output[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "output": output}


def measure(wav: Path) -> tuple[float, float]:
    """Loudness (pyloudnorm on the whole file) and true peak (4x) of the WAV, in a child."""
    code = ("import json, sys; from benchmarks.bench_mix import measure_here; "
            "print(json.dumps(measure_here(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(wav)], env=_child_env(),
                          check=True, capture_output=True, text=True)
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def measure_here(wav: str) -> tuple[float, float]:
    """:func:`measure` in this process."""
    import numpy as np
    import pyloudnorm
    import soundfile as sf

    from rl_models.app.mixdown.loudness import TruePeakMeter

    y, sr = sf.read(wav, always_2d=True)
    lufs = float(pyloudnorm.Meter(sr).integrated_loudness(y))
    meter = TruePeakMeter(y.shape[1])
    for start in range(0, len(y), 1 << 16):
        meter.add(np.ascontiguousarray(y[start : start + (1 << 16)].T))
    return lufs, float(20 * np.log10(meter.finish()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-mix"), help="work folder")
    parser.add_argument("--lengths", type=float, nargs="+", default=[180.0, 600.0],
                        help="song lengths in seconds")
    parser.add_argument("--tracks", type=int, default=19, help="stems per song")
    parser.add_argument("--seed", type=int, default=7, help="synth seed")
    parser.add_argument("--checkpoint", default="pretrained", help="agent to mix with")
    parser.add_argument("--quick", action="store_true", help="one 20 s song (a smoke run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    lengths = [20.0] if args.quick else args.lengths
    args.out.mkdir(parents=True, exist_ok=True)

    warm = make_song(args.out, seconds=2.0, tracks=min(args.tracks, 4), seed=args.seed)
    mix_in_child(warm, args.out / "mix_warmup", args.checkpoint)
    rows = []
    load_before = os.getloadavg()
    for seconds in lengths:
        song = make_song(args.out, seconds=seconds, tracks=args.tracks, seed=args.seed)
        mix_dir = args.out / f"mix_{int(seconds)}s"
        child = mix_in_child(song, mix_dir, args.checkpoint)
        meta = json.loads((mix_dir / f"{song.name}_automation.json").read_text())
        lufs, peak = measure(mix_dir / f"{song.name}_mix.wav")
        sizes = {k: (mix_dir / f"{song.name}{suffix}").stat().st_size / 1024 for k, suffix in
                 (("csv", "_automation.csv"), ("json", "_automation.json"), ("rpp", ".rpp"))}
        rows.append({
            "seconds": seconds, "stems": args.tracks, "wall_s": round(child["wall_s"], 2),
            "realtime_x": round(seconds / child["wall_s"], 1),
            "cpu_s": round(child["cpu_s"], 2),
            "peak_rss_mb": round(child["peak_rss_mb"]),
            "lufs": round(lufs, 2), "target_lufs": meta["target_lufs"],
            "true_peak_dbtp": round(peak, 2),
            "limiter_max_db": (meta["limiter"] or {}).get("max_gain_reduction_db"),
            "passes": meta["mastering_passes"],
            "csv_kb": round(sizes["csv"], 1), "json_kb": round(sizes["json"], 1),
            "rpp_kb": round(sizes["rpp"], 1),
        })
    load_after = os.getloadavg()
    header = (f"{'song':>8} {'stems':>5} {'time s':>7} {'x real':>7} {'CPU s':>6} {'peak MB':>8} "
              f"{'LUFS':>7} {'dBTP':>6} {'limiter dB':>10} {'CSV KB':>7} {'JSON KB':>7} "
              f"{'RPP KB':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['seconds'] / 60:>6.1f} m {r['stems']:>5} {r['wall_s']:>7.1f} "
              f"{r['realtime_x']:>7.1f} {r['cpu_s']:>6.1f} {r['peak_rss_mb']:>8.0f} "
              f"{r['lufs']:>7.2f} "
              f"{r['true_peak_dbtp']:>6.2f} {r['limiter_max_db'] or 0:>10.2f} "
              f"{r['csv_kb']:>7.1f} {r['json_kb']:>7.1f} {r['rpp_kb']:>7.1f}")
    print(f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after: {', '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load_before": load_before,
                                         "load_after": load_after}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
