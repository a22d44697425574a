"""What making songs costs: written songs per generator, and the training stream per song.

Written songs: for each generator, N songs (default 6) with 6-11 stems are generated in this
process and written as song folders (32-bit float WAV stems, the mix, true_gains.npz, the
JSON notes); reported per song: the median wall and CPU time to generate (on a shared machine
the CPU time is the steadier number), the wall time to write, stems per song, disk size. The
first sampled song also pays for loading the soundfont; it is timed apart ("warm-up").

The training stream: ``--stream`` songs of the learning benchmark's stream
(``benchmarks.quality.QualitySetup``: 12 s, 16 songs per rendered skeleton) made as training
makes them, then their observation features as the env computes them; reported per song: the
CPU time of each part, and the env steps a song must feed at a given PPO rate for making it to
cost at most a quarter of the training.

Usage:
    deepmixing benchmark songs                        # 6 written songs x 20 s per generator
    deepmixing benchmark songs -- --songs 3 --seconds 10 --stream 32 --ppo-rate 2000
"""

from __future__ import annotations

import argparse
import json
import os
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream", type=int, default=32,
                        help="training-stream songs to time (0: none)")
    parser.add_argument("--ppo-rate", type=float, default=2000.0,
                        help="PPO env steps/s the stream must keep up with")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
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
    stream = _stream_cost(args.stream, args.ppo_rate) if args.stream else None
    print(json.dumps(stream, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"written": rows, "stream": stream}, indent=1))


def _stream_cost(n_songs: int, ppo_rate: float) -> dict:
    """CPU seconds per training-stream song, to make it and to compute its features."""
    from benchmarks.quality import QualitySetup
    from mixing_env.envs.config import EnvConfig
    from mixing_env.envs.song_features import SongPrecompute
    from mixing_env.songs.stream import SongStream, StreamConfig

    setup = QualitySetup()
    stream = SongStream(StreamConfig.from_dict(setup.stream()), stream=1)
    stream.next_song()  # warm-up: the soundfont, the first skeleton's imports
    made0 = stream.cpu_seconds
    precompute = None
    features_s = 0.0
    for _ in range(n_songs):
        song = stream.next_song()
        if precompute is None:
            precompute = SongPrecompute(EnvConfig.from_dict(setup.train_env()),
                                        n_slots=song.n_slots, chunk_size=song.chunk_size,
                                        sample_rate=song.sample_rate)
        c0 = time.process_time()
        precompute._compute(song)
        features_s += time.process_time() - c0
    make = (stream.cpu_seconds - made0) / n_songs
    per_song = make + features_s / n_songs
    steps = per_song * ppo_rate * 4  # a quarter of the training time
    return {"songs": n_songs, "seconds": setup.seconds,
            "songs_per_skeleton": setup.songs_per_skeleton,
            "make_cpu_s_per_song": round(make, 3),
            "features_cpu_s_per_song": round(features_s / n_songs, 3),
            "total_cpu_s_per_song": round(per_song, 3), "ppo_rate": ppo_rate,
            "steps_per_song_for_a_quarter": int(steps),
            "episodes_of_128_for_a_quarter": round(steps / 128, 1),
            "setup_episodes_per_song": setup.episodes_per_song,
            "load_average": os.getloadavg()}


if __name__ == "__main__":
    main()
