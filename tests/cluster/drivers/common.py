"""The tiniest DeepMixing training setup, shared by the cluster drivers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["TINY_MODEL", "TINY_TRAINING", "make_tiny_cache"]

SAMPLE_RATE = 44100

#: A model small enough that an iteration is dominated by Ray, not by torch.
TINY_MODEL = {"embed_dim": 4, "hidden_size": 4, "mix_hidden_size": 2, "attention_dim": 4,
              "max_seq_len": 8}

TINY_TRAINING = {"train_batch_size_per_learner": 32, "minibatch_size": 16, "num_epochs": 1}


def make_tiny_cache(root: Path) -> Path:
    """Two 0.5 s songs of two stems as WAV folders, prepared into a cache; returns the cache.

    The env runners on every node open this cache by path, as they would on shared storage.
    """
    from mixing_env.data.prepare import prepare_dataset

    rng = np.random.default_rng(0)
    n = SAMPLE_RATE // 2
    t = np.arange(n) / SAMPLE_RATE
    for s in range(2):
        song = root / "src" / f"Song{s}"
        song.mkdir(parents=True, exist_ok=True)
        kick = 0.3 * rng.standard_normal(n)
        bass = 0.3 * np.sin(2 * np.pi * (110 + 20 * s) * t)
        sf.write(song / "01_Kick.wav", kick, SAMPLE_RATE)
        sf.write(song / "02_Bass.wav", bass, SAMPLE_RATE)
        sf.write(song / f"Song{s}_Mix.wav", 0.6 * kick + 0.4 * bass, SAMPLE_RATE)
    cache = root / "cache"
    prepare_dataset(root / "src", cache, progress=False)
    return cache


if __name__ == "__main__":
    import sys

    print(make_tiny_cache(Path(sys.argv[1])))
