"""Env step speed: MixingEnv vs a naive librosa env vs the NumPy floor, at C = 8, 24, 72.

Run: ``python benchmarks/bench_env.py [--steps 2000] [--repeats 5]``. Prints the median time
per step of each, steps/s, and the median per-repeat ratios the spec sets targets for
(at C = 72, chunk 500): naive / env >= 20 and env / floor <= 2.

* env: ``MixingEnv.step`` (default config: raw obs, per-chunk level match, normalized reward).
* naive: the same env whose step calls ``librosa.feature.mfcc`` on the mix (twice: the
  level-matched mix for the reward, the raw mix for the observation, as the env needs both).
* floor: mix (one matmul) + rFFT + mel + log + DCT alone, NumPy, no env around it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import librosa
import numpy as np

from mixing_env.data.song import Song
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.features import AMIN, ChunkMFCC
from mixing_env.reward import kl_divergence, level_gain, mixing_reward

SR, CHUNK = 44100, 500


def make_song(n_slots: int, n_chunks: int, seed: int = 0) -> Song:
    rng = np.random.default_rng(seed)
    stems = (0.1 * rng.standard_normal((n_slots, n_chunks, CHUNK))).astype(np.float32)
    gains = rng.random((n_slots, 1, 1)).astype(np.float32)
    return Song(
        name=f"bench{n_slots}",
        stems=stems,
        reference=(gains * stems).sum(0),
        track_mask=np.ones(n_slots, np.float32),
        slot_names=[f"Extra/T#{i}" for i in range(n_slots)],
        sample_rate=SR,
        n_valid_chunks=n_chunks,
    )


class NaiveMixingEnv(MixingEnv):
    """MixingEnv with librosa.feature.mfcc per step instead of the precomputed pipeline."""

    def step(self, action):
        feats, t = self._current, self._t
        gains = self._gains(action).copy()  # the env's buffer is reused next step
        mix = gains.astype(np.float32) @ feats.stems[:, t, :]
        g = level_gain(float(np.sqrt(np.mean(mix**2))), feats.reference_rms[t])
        kw = self._mfcc.librosa_kwargs
        scored = librosa.feature.mfcc(y=g * mix, sr=SR, **kw)[:, 0]
        raw = librosa.feature.mfcc(y=mix, sr=SR, **kw)[:, 0]
        distance = float(np.linalg.norm(scored - feats.reference_mfcc[t]))
        prev = getattr(self, "_naive_prev", gains)
        kl = float(kl_divergence(prev, gains)) if t > self._start else 0.0
        reward = float(mixing_reward(distance, kl))
        self._naive_prev, self._mix_mfcc, self._t = gains, raw.astype(np.float32), t + 1
        info = {"mfcc_distance": distance, "kl": kl, "gains": gains.astype(np.float32),
                "song": feats.song.name, "chunk": t}
        return self._observation(), reward, self._t >= self._end, False, info


def time_env(env: MixingEnv, action: np.ndarray, steps: int) -> float:
    """Seconds per step, resets excluded."""
    env.reset(seed=0, options={"start": 0})
    total = 0.0
    done = 0
    while done < steps:
        n = 0
        t0 = time.perf_counter()
        while done + n < steps:
            n += 1
            if env.step(action)[2]:
                break
        total += time.perf_counter() - t0
        done += n
        env.reset(options={"start": 0})
    return total / steps


def time_floor(song: Song, action: np.ndarray, steps: int) -> float:
    mfcc = ChunkMFCC(SR, CHUNK)
    window, mel_t, dct_t = mfcc.mel.window, mfcc.mel._mel_t, mfcc._dct_t
    stems, T = song.stems, song.n_chunks
    t0 = time.perf_counter()
    for i in range(steps):
        mix = action @ stems[:, i % T, :]
        spec = np.fft.rfft(mix * window)
        power = spec.real**2 + spec.imag**2
        db = 10.0 * np.log10(np.maximum(AMIN, power @ mel_t))
        db @ dct_t
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--naive-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slots", type=int, nargs="+", default=[8, 24, 72])
    args = parser.parse_args(argv)

    print(f"{'C':>4} {'env us':>9} {'naive us':>9} {'floor us':>9} {'env st/s':>9} "
          f"{'naive/env':>9} {'env/floor':>9}")
    for C in args.slots:
        song = make_song(C, n_chunks=1000)
        action = np.full(C, 1.0 / C, np.float32)
        env, naive = MixingEnv(songs=[song]), NaiveMixingEnv(songs=[song])
        fast, slow, floor, vs_naive, vs_floor = [], [], [], [], []
        for _ in range(args.repeats):
            # Back to back, so each ratio compares runs under the same machine load.
            fl = time_floor(song, action, args.steps)
            f = time_env(env, action, args.steps)
            s = time_env(naive, action, args.naive_steps)
            fast.append(f), slow.append(s), floor.append(fl)
            vs_naive.append(s / f), vs_floor.append(f / fl)
        f, s, fl = (statistics.median(x) for x in (fast, slow, floor))
        print(f"{C:>4} {f * 1e6:>9.1f} {s * 1e6:>9.1f} {fl * 1e6:>9.1f} {1 / f:>9.0f} "
              f"{statistics.median(vs_naive):>9.1f} {statistics.median(vs_floor):>9.2f}")
    print("targets at C=72: naive/env >= 20, env/floor <= 2")


if __name__ == "__main__":
    main()
