"""What the engineer hears of each stem, on the environment's chunk grid.

An engineer balances what is heard, not peaks: the loudness of each stem while it plays, its
tone (where its energy sits in frequency), when it plays, and how it sits against the others.
:func:`analyse_stems` measures these once per song from the raw stems, chunk by chunk, so the
rules (:mod:`mixing_env.engineer.rules`) are cheap arithmetic on small arrays and their gains
hold per chunk, as the environment's actions do.

Loudness follows ITU-R BS.1770-4: K-weighting (pyloudnorm's filters), 400 ms blocks with 75 %
overlap, an absolute gate at -70 LUFS and a relative gate 10 LU below. Blocks are made of whole
chunks (35 chunks of 500 samples at 44.1 kHz = 397 ms), so a gain that changes per chunk
changes the measure exactly; on a whole stem it agrees with pyloudnorm within a few tenths of
an LU (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mixing_env.errors import ConfigError

__all__ = [
    "ACTIVE_BELOW_PEAK_DB",
    "N_MELS",
    "SPECTRUM_HOP_CHUNKS",
    "StemAnalysis",
    "analyse_stems",
    "db",
    "gated_loudness",
    "moving_mean",
]

N_MELS = 40
"""Mel bands of the engineer's spectra (2048-point frames centred on each chunk)."""
ACTIVE_BELOW_PEAK_DB = 30.0
"""A chunk within this many dB of the stem's loudest chunk counts as playing."""
_N_FFT = 2048
SPECTRUM_HOP_CHUNKS = 4
"""A long-term spectrum needs no frame per chunk: one 2048-point frame every 4 chunks."""
_BLOCK_S, _BLOCK_OVERLAP = 0.4, 0.75
_ABSOLUTE_GATE, _RELATIVE_GATE = -70.0, -10.0
_FLOOR = 1e-20


def db(power: np.ndarray | float) -> np.ndarray:
    """Power to dB, floored at -200 dB."""
    return 10.0 * np.log10(np.maximum(power, _FLOOR))


def moving_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along the last axis, edges held at the edge value.

    Args:
        x: Any array [shape=(..., T)].
        width: Window in samples of the last axis (>= 1).
    """
    width = max(int(width), 1)
    pad = (width // 2, width - 1 - width // 2)
    xp = np.pad(np.asarray(x, dtype=np.float64), [(0, 0)] * (np.ndim(x) - 1) + [pad],
                mode="edge")
    c = np.cumsum(xp, axis=-1)
    c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)
    return (c[..., width:] - c[..., :-width]) / width


def gated_loudness(chunk_power: np.ndarray, *, chunk_s: float) -> np.ndarray:
    """BS.1770 gated loudness (LUFS) from K-weighted mean squares per chunk.

    Args:
        chunk_power: K-weighted mean square of each chunk [shape=(..., T)].
        chunk_s: Seconds per chunk.

    Returns:
        LUFS [shape=(...)]; -inf where no block passes the absolute gate.
    """
    p = np.asarray(chunk_power, dtype=np.float64)
    T = p.shape[-1]
    block = min(max(int(round(_BLOCK_S / chunk_s)), 1), T)
    hop = max(int(round(block * (1 - _BLOCK_OVERLAP))), 1)
    c = np.concatenate([np.zeros(p.shape[:-1] + (1,)), np.cumsum(p, axis=-1)], axis=-1)
    starts = np.arange(0, T - block + 1, hop)
    z = (c[..., starts + block] - c[..., starts]) / block
    level = -0.691 + db(z)
    gate = level > _ABSOLUTE_GATE
    relative = -0.691 + db(_masked_mean(z, gate)) + _RELATIVE_GATE
    gate &= level > relative[..., None]
    out = -0.691 + db(_masked_mean(z, gate))
    return np.where(gate.any(axis=-1), out, -np.inf)


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(axis=-1)
    return np.where(n > 0, (x * mask).sum(axis=-1) / np.maximum(n, 1), 0.0)


@lru_cache(maxsize=4)
def _k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770 K-weighting as second-order sections (pyloudnorm's two biquads)."""
    import pyloudnorm

    shelf = pyloudnorm.IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, sample_rate, "high_shelf")
    highpass = pyloudnorm.IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")
    return np.array([np.concatenate([f.b, f.a]) for f in (shelf, highpass)])


@lru_cache(maxsize=4)
def _mel_basis(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    basis = librosa.filters.mel(sr=sample_rate, n_fft=_N_FFT, n_mels=N_MELS)
    centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmax=sample_rate / 2)[1:-1]
    return basis, centres


@dataclass(frozen=True)
class StemAnalysis:
    """One song's stems as the engineer hears them (``n`` stems, ``T`` chunks, ``B`` bands).

    Attributes:
        sample_rate: Hz.
        chunk_size: Samples per chunk.
        power: K-weighted mean square per chunk [shape=(n, T)].
        freqs: Centre frequency of each mel band, Hz [shape=(B,)].
        active: Whether each stem plays in each chunk (within
            :data:`ACTIVE_BELOW_PEAK_DB` of its loudest chunk) [shape=(n, T)].
        loudness: Gated loudness of each stem, LUFS [shape=(n,)]; -inf for a silent stem.
        spectrum: Long-term spectrum: the mean mel power of 2048-point frames, one every
            :data:`SPECTRUM_HOP_CHUNKS` chunks, over the frames where the stem plays
            [shape=(n, B)].
        centroid_oct: Spectral centroid of ``spectrum`` in octaves re 1 kHz [shape=(n,)].
    """

    sample_rate: int
    chunk_size: int
    power: np.ndarray
    freqs: np.ndarray
    active: np.ndarray
    loudness: np.ndarray
    spectrum: np.ndarray
    centroid_oct: np.ndarray

    @property
    def chunk_s(self) -> float:
        """Seconds per chunk."""
        return self.chunk_size / self.sample_rate

    @property
    def n_chunks(self) -> int:
        """T."""
        return int(self.power.shape[1])

    def chunks(self, seconds: float) -> int:
        """How many chunks make ``seconds`` (at least 1)."""
        return max(int(round(seconds / self.chunk_s)), 1)

    def loudness_of(self, gains_db: np.ndarray, stems: np.ndarray | list[int]) -> float:
        """Gated loudness of the sum of ``stems`` at ``gains_db`` (their powers add)."""
        idx = np.asarray(stems, dtype=np.int64)
        if idx.size == 0:
            return -math.inf
        g = np.asarray(gains_db, dtype=np.float64)[idx]
        g = g if g.ndim == 2 else g[:, None]
        total = (10.0 ** (g / 10.0) * self.power[idx]).sum(axis=0)
        return float(gated_loudness(total, chunk_s=self.chunk_s))


def analyse_stems(stems: np.ndarray, *, sample_rate: int, chunk_size: int) -> StemAnalysis:
    """Measure each stem on the chunk grid.

    Args:
        stems: Mono stems, float [shape=(n, n_samples)] at ``sample_rate``; the last chunk
            is zero-padded.
        sample_rate: Hz.
        chunk_size: Samples per chunk (the environment's step).

    Returns:
        The :class:`StemAnalysis`.

    Raises:
        ConfigError: ``stems`` is not 2-D, empty, or holds NaN or infinity.
    """
    import librosa
    from scipy.signal import sosfilt

    x = np.asarray(stems, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ConfigError(f"stems must be (n_stems, n_samples) with both > 0, got {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError("stems hold NaN or infinite samples")
    n, n_samples = x.shape
    T = math.ceil(n_samples / chunk_size)
    # Whole chunks: a stem read back from a cache (zero-padded to whole chunks) measures the
    # same as the stem it was made from.
    x = np.pad(x, ((0, 0), (0, T * chunk_size - n_samples)))
    k_weighted = sosfilt(_k_weighting(sample_rate), x, axis=-1)
    power = (k_weighted.reshape(n, T, chunk_size) ** 2).mean(axis=-1)
    peak = power.max(axis=1, keepdims=True)
    active = (power > peak * 10 ** (-ACTIVE_BELOW_PEAK_DB / 10)) & (peak > 0)
    loudness = gated_loudness(power, chunk_s=chunk_size / sample_rate)
    # Frame k is centred on chunk k * SPECTRUM_HOP_CHUNKS; keep the frames where it plays.
    frames = np.abs(librosa.stft(x.astype(np.float32), n_fft=_N_FFT,
                                 hop_length=chunk_size * SPECTRUM_HOP_CHUNKS,
                                 center=True)) ** 2  # (n, F, K)
    playing = active[:, ::SPECTRUM_HOP_CHUNKS][:, : frames.shape[-1]]
    frames = frames[..., : playing.shape[1]]
    basis, freqs = _mel_basis(sample_rate)
    summed = np.einsum("nfk,nk->nf", frames, playing.astype(np.float32))
    spectrum = (summed @ basis.T).astype(np.float64) / np.maximum(playing.sum(axis=1),
                                                                    1)[:, None]
    octaves = np.log2(freqs / 1000.0)
    total = spectrum.sum(axis=1)
    centroid = np.where(total > 0, (spectrum * octaves).sum(axis=1) / np.maximum(total, _FLOOR),
                        0.0)
    return StemAnalysis(sample_rate=sample_rate, chunk_size=chunk_size, power=power,
                        freqs=freqs, active=active, loudness=loudness, spectrum=spectrum,
                        centroid_oct=centroid)
