"""Tiny deterministic songs for the env tests: a few tracks, reference = known gains * stems.

A module of its own (not conftest.py) so tests import it by a name no other test folder uses.
"""

from __future__ import annotations

import numpy as np

from mixing_env.data.song import Song

SR = 44100
CHUNK = 500


def make_song(
    name: str = "tiny",
    *,
    n_real: int = 3,
    n_dummy: int = 1,
    n_chunks: int = 24,
    seed: int = 0,
    chunk_size: int = CHUNK,
) -> Song:
    """Stems of distinct timbre (harmonic tone, noise, low sine...), reference = sum g_i[t] x_i[t].

    The gains vary smoothly per chunk and are known exactly (``true_gains``); dummy slots are
    zeros after the real ones.
    """
    rng = np.random.default_rng(seed)
    n = n_chunks * chunk_size
    time = np.arange(n) / SR
    stems = []
    for i in range(n_real):
        f0 = 110.0 * (1.5 ** i) * (1 + 0.05 * rng.random())
        tone = sum(np.sin(2 * np.pi * k * f0 * time + rng.random() * 6.28) / k for k in range(1, 5))
        noise = np.convolve(rng.standard_normal(n), np.ones(2 + 3 * i) / (2 + 3 * i), "same")
        env = 0.6 + 0.4 * np.sin(2 * np.pi * (0.5 + i) * time + i)
        stems.append(0.3 * env * (tone * (i % 2 == 0) + noise * (1 + (i % 2)) + 0.2 * tone))
    x = np.zeros((n_real + n_dummy, n_chunks, chunk_size), np.float32)
    x[:n_real] = np.stack(stems).reshape(n_real, n_chunks, chunk_size)
    t = np.arange(n_chunks)
    gains = np.zeros((n_real + n_dummy, n_chunks), np.float32)
    for i in range(n_real):
        phase = 2 * np.pi * t / n_chunks * (i + 1) + rng.random() * 6
        gains[i] = 0.2 + 0.8 * (0.5 + 0.5 * np.sin(phase))
    reference = np.einsum("ct,ctn->tn", gains, x).astype(np.float32)
    mask = np.zeros(n_real + n_dummy, np.float32)
    mask[:n_real] = 1
    return Song(
        name=name,
        stems=x,
        reference=reference,
        track_mask=mask,
        slot_names=[f"Extra/Track#{i + 1}" for i in range(n_real + n_dummy)],
        sample_rate=SR,
        true_gains=gains,
        n_valid_chunks=n_chunks,
    )
