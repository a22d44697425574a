"""The env's per-step numerics, fused into compiled kernels (numba, which librosa already needs).

A step maps the action onto the simplex, mixes one chunk of every track, takes its MFCC twice
(as is and level-matched), scores it against the reference and computes the KL. Written with
NumPy that is about 25 calls of 1-2 us each on 13- to 72-element arrays: the step's cost was
call overhead, not arithmetic. Here everything but the BLAS mix and the FFT is four compiled
calls. Each kernel computes what the bulk NumPy code computes (:func:`~mixing_env.reward.
to_simplex`, :class:`~mixing_env.features.ChunkMFCC`, :func:`~mixing_env.reward.
kl_divergence`); the env tests compare them.

Kernels compile on first use and are cached on disk (``cache=True``), so a new process, such
as a Ray env runner, loads them instead of compiling again.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from mixing_env.features import AMIN, TOP_DB, ChunkMFCC

__all__ = ["ChunkScorer", "kl_step", "simplex_gains", "window_and_rms"]


def _compiled(function):
    """``numba.njit``, with an on-disk cache where numba finds a writable place.

    That is next to this file or in the user's cache folder; a read-only install without
    either compiles once per process instead of failing at import.
    """
    try:
        return numba.njit(cache=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(function)


@_compiled
def simplex_gains(action: np.ndarray, mask: np.ndarray, equal: np.ndarray,
                  gains: np.ndarray) -> int:
    """:func:`~mixing_env.reward.to_simplex` of one action, written into ``gains``.

    Args:
        action: Weights per slot [shape=(C,)].
        mask: 1.0 real track / 0.0 dummy slot, float64 [shape=(C,)].
        equal: Equal gains over the real tracks, float64 [shape=(C,)] (all weights zero).
        gains: Output, float64 [shape=(C,)].

    Returns:
        -1, or the first slot whose weight is NaN or inf (``gains`` is then undefined).
    """
    n = action.shape[0]
    for c in range(n):  # every slot, dummies included: a bad value is a bug upstream
        if not math.isfinite(action[c]):
            return c
    total = 0.0
    for c in range(n):
        w = max(float(action[c]), 0.0) * mask[c]
        gains[c] = w
        total += w
    if total > 0.0:
        scale = 1.0 / total
        for c in range(n):
            gains[c] *= scale
    else:
        gains[:] = equal
    return -1


@_compiled
def window_and_rms(mix: np.ndarray, window: np.ndarray, windowed: np.ndarray) -> float:
    """Window one mix chunk for its FFT and return the chunk's RMS (before the window).

    Args:
        mix: Mix chunk [shape=(n,)].
        window: Analysis window, float64 [shape=(n,)].
        windowed: Output ``mix * window``, float64 [shape=(n,)].
    """
    energy = 0.0
    for i in range(mix.shape[0]):
        x = np.float64(mix[i])
        energy += x * x
        windowed[i] = x * window[i]
    return math.sqrt(energy / mix.shape[0])


@_compiled
def _score_spectrum(spectrum, mel_starts, mel_bins, mel_weights, dct_db, reference_mfcc,
                    power_gain, top_bels, mfcc_out):
    """MFCC of the chunk (into ``mfcc_out``) and the L2 distance of the level-matched one.

    As :meth:`ChunkMFCC.from_mel_power` on the power spectrum ``|spectrum|^2`` and on it times
    ``power_gain``: in bels, floored at AMIN and at the chunk's own top minus TOP_DB.
    """
    n_mels, n_mfcc = dct_db.shape
    raw = np.empty(n_mels)
    matched = np.empty(n_mels)
    for m in range(n_mels):  # the mel basis is sparse: about 12 bins per band
        power = 0.0
        for j in range(mel_starts[m], mel_starts[m + 1]):
            z = spectrum[mel_bins[j]]
            power += mel_weights[j] * (z.real * z.real + z.imag * z.imag)
        raw[m] = math.log10(max(power, AMIN))
        matched[m] = math.log10(max(power * power_gain, AMIN))
    raw_floor = raw.max() - top_bels
    matched_floor = matched.max() - top_bels
    distance2 = 0.0
    for q in range(n_mfcc):
        coefficient = 0.0
        matched_coefficient = 0.0
        for m in range(n_mels):
            coefficient += max(raw[m], raw_floor) * dct_db[m, q]
            matched_coefficient += max(matched[m], matched_floor) * dct_db[m, q]
        mfcc_out[q] = coefficient
        diff = matched_coefficient - reference_mfcc[q]
        distance2 += diff * diff
    return math.sqrt(distance2)


@_compiled
def kl_step(gains, kl_scale, kl_offset, prev_p, prev_log_p, has_prev, p_out, log_p_out):
    """``KL(a_{t-1} || a_t)`` as :func:`~mixing_env.reward.kl_divergence` computes it.

    Keeps step t's smoothed distribution and its log (``p_out``, ``log_p_out``) for step t+1.
    ``gains * kl_scale + kl_offset`` is the smoothed distribution
    (:func:`~mixing_env.reward.smoothing_affine`: 1 on dummy slots, which then add 0).
    Returns 0 when ``has_prev`` is False (an episode's first step).
    """
    kl = 0.0
    for c in range(gains.shape[0]):
        p = gains[c] * kl_scale + kl_offset[c]
        log_p = math.log(p)
        if has_prev:
            kl += prev_p[c] * (prev_log_p[c] - log_p)
        p_out[c] = p
        log_p_out[c] = log_p
    return kl


class ChunkScorer:
    """One chunk's MFCC and its distance to the reference, from the chunk's spectrum.

    Holds the constants of a :class:`ChunkMFCC` in the form the kernel reads: the mel basis as
    sparse rows, the DCT in dB.

    Args:
        mfcc: The MFCC definition the env scores with.
    """

    def __init__(self, mfcc: ChunkMFCC) -> None:
        basis = mfcc.mel.mel_basis
        bands, bins = np.nonzero(basis)  # row-major: bands in order
        self.window = mfcc.mel.window
        self._mel_starts = np.searchsorted(bands, np.arange(basis.shape[0] + 1)).astype(np.int64)
        self._mel_bins = bins.astype(np.int64)
        self._mel_weights = basis[bands, bins].astype(np.float64)
        self._dct_db = mfcc.dct_db_t
        self._top_bels = TOP_DB / 10.0

    def __call__(self, spectrum: np.ndarray, reference_mfcc: np.ndarray, power_gain: float,
                 mfcc_out: np.ndarray) -> float:
        """Score one chunk.

        Args:
            spectrum: rFFT of the windowed chunk, complex128 [shape=(chunk_size // 2 + 1,)].
            reference_mfcc: The reference chunk's MFCC, float64 [shape=(n_mfcc,)].
            power_gain: The level match's gain, squared (1.0: no level match).
            mfcc_out: Receives the chunk's own MFCC (not level-matched) [shape=(n_mfcc,)].

        Returns:
            ``||MFCC(g * chunk) - reference_mfcc||`` with ``g**2 = power_gain``.
        """
        return _score_spectrum(spectrum, self._mel_starts, self._mel_bins, self._mel_weights,
                               self._dct_db, reference_mfcc, power_gain, self._top_bels,
                               mfcc_out)
