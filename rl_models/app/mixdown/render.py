"""The mix before mastering: every stem times its gain curve, placed, summed, block by block.

Stem i's gain at a source sample is read off its per-chunk gains as the automation files and
the DAW project draw them: linearly from one chunk's centre to the next, held before the first
centre and after the last (:func:`~rl_models.app.mixdown.automation.gain_at`), so the WAV, the
CSV and the .rpp describe one curve and no gain jumps between chunks. The stems' channels
reach the mix through :func:`~rl_models.app.mixdown.panning.channel_matrix`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mixing_env.step_kernels import _compiled  # cached on disk where it can be
from rl_models.app.mixdown.stems import StemFile, StemReader

__all__ = ["BLOCK_FRAMES", "chunk_centres_s", "render_blocks"]

BLOCK_FRAMES = 1 << 16
"""Frames per block read, mixed and written (1.5 s at 44.1 kHz)."""


def chunk_centres_s(n_chunks: int, *, chunk_size: int, env_rate: int) -> np.ndarray:
    """The time of each chunk's gain: the chunk's centre, seconds [shape=(T,)]."""
    return (np.arange(n_chunks) + 0.5) * chunk_size / env_rate


def _positions(start: int, frames: int, *, source_rate: int, env_rate: int, chunk_size: int,
               n_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """For frames [start, start + frames): the chunk before each and how far past it (0..1)."""
    u = (np.arange(start, start + frames) * (env_rate / (source_rate * chunk_size))) - 0.5
    left = np.clip(np.floor(u), 0, n_chunks - 1).astype(np.int64)
    frac = np.clip(u - left, 0.0, 1.0)
    frac[u < 0] = 0.0
    return left, frac


@_compiled
def _add_stem(out, stem, gains, left, frac, matrix):  # pragma: no cover - compiled
    """``out[:, j] += g(j) * matrix @ stem[:, j]``, g linear between chunk gains."""
    last = gains.shape[0] - 1
    for j in range(out.shape[1]):
        a = left[j]
        b = min(a + 1, last)
        g = gains[a] + (gains[b] - gains[a]) * frac[j]
        for c in range(out.shape[0]):
            acc = 0.0
            for k in range(stem.shape[0]):
                acc += matrix[c, k] * stem[k, j]
            out[c, j] += g * acc


def render_blocks(stems: Sequence[StemFile], gains: np.ndarray, matrices: Sequence[np.ndarray],
                  *, source_rate: int, env_rate: int, chunk_size: int, total_frames: int,
                  write: Callable[[np.ndarray], None]) -> None:
    """Renders ``sum_i g_i(t) * matrix_i @ stem_i`` and hands it to ``write`` block by block.

    Args:
        stems: The placed stems.
        gains: Their per-chunk gains [shape=(A, T)].
        matrices: Per stem, how its channels reach the mix [shape=(out, stem channels)].
        source_rate: The mix's rate, Hz (stems at another rate are resampled).
        env_rate: The rate the chunks were cut at, Hz.
        chunk_size: Samples per chunk at ``env_rate``.
        total_frames: The mix's length in frames.
        write: Receives each block, float64 [shape=(out channels, n)].
    """
    out_channels = matrices[0].shape[0]
    n_chunks = gains.shape[1]
    gains = np.ascontiguousarray(gains, dtype=np.float64)
    readers = [StemReader(s, sample_rate=source_rate, mono=False, total_frames=total_frames)
               for s in stems]
    try:
        for start in range(0, total_frames, BLOCK_FRAMES):
            frames = min(BLOCK_FRAMES, total_frames - start)
            left, frac = _positions(start, frames, source_rate=source_rate, env_rate=env_rate,
                                    chunk_size=chunk_size, n_chunks=n_chunks)
            block = np.zeros((out_channels, frames))
            for reader, g, matrix in zip(readers, gains, matrices, strict=True):
                _add_stem(block, reader.read(frames), g, left, frac,
                          np.ascontiguousarray(matrix, dtype=np.float64))
            write(block)
    finally:
        for reader in readers:
            reader.close()
