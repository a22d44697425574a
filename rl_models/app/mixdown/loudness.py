"""Loudness and true peak of audio that arrives block by block (ITU-R BS.1770-4).

:class:`LoudnessMeter` gives the integrated loudness pyloudnorm gives for the whole signal
(its K-weighting filters, its 400 ms gating blocks at 75 % overlap, its gates), without
holding the signal: each block is filtered with the filters' state carried over and only the
energy of each 100 ms stretch between two block edges is kept. :class:`TruePeakMeter` and
:func:`true_peak_envelope` read the peak of the signal between its samples by 4x
oversampling with the interpolation filter of BS.1770-4 Annex 2.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.signal

from mixing_env.engineer.analysis import k_weighting

# The project's numba wrapper: cached on disk, compiled per process on a read-only install.
from mixing_env.step_kernels import _compiled

__all__ = [
    "LoudnessMeter",
    "TRUE_PEAK_TAPS",
    "TruePeakMeter",
    "db",
    "true_peak_envelope",
]

TRUE_PEAK_TAPS = np.array([
    [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000, -0.0594482421875,
     0.1373291015625, 0.9721679687500, -0.1022949218750, 0.0476074218750, -0.0266113281250,
     0.0148925781250, -0.0083007812500],
    [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250, -0.1665039062500,
     0.4650878906250, 0.7797851562500, -0.2003173828125, 0.1015625000000, -0.0582275390625,
     0.0330810546875, -0.0189208984375],
    [-0.0189208984375, 0.0330810546875, -0.0582275390625, 0.1015625000000, -0.2003173828125,
     0.7797851562500, 0.4650878906250, -0.1665039062500, 0.0891113281250, -0.0517578125000,
     0.0292968750000, -0.0291748046875],
    [-0.0083007812500, 0.0148925781250, -0.0266113281250, 0.0476074218750, -0.1022949218750,
     0.9721679687500, 0.1373291015625, -0.0594482421875, 0.0332031250000, -0.0196533203125,
     0.0109863281250, 0.0017089843750],
])
"""The 4-phase, 12-tap interpolation filter of BS.1770-4 Annex 2 [shape=(4, 12)]: phase p
gives the signal a quarter sample apart, ``y_p[n] = sum_k taps[p, k] x[n - k]``."""

TRUE_PEAK_DELAY = 6
"""Samples by which the interpolated signal lags the input: phase p of output n lies between
input samples ``n - 6`` and ``n - 5``."""

_HISTORY = TRUE_PEAK_TAPS.shape[1] - 1
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
_BLOCK_OVERLAP = 0.75  # pyloudnorm.Meter's gating blocks overlap by 75 % (BS.1770)
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770: L, R, C, Ls, Rs


def db(gain: float) -> float:
    """A linear gain in dB; ``-inf`` for 0."""
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf


_TAP_BOUND = float(np.abs(TRUE_PEAK_TAPS).sum(axis=1).max())
"""No interpolated value exceeds the largest |sample| of its window times this (2.02)."""


def true_peak_envelope(x: np.ndarray, history: np.ndarray, *,
                       threshold: float = 0.0) -> np.ndarray:
    """The largest oversampled |value| around each sample, over all channels.

    Value n of the result is the largest of ``|x[:, n - 6]|`` and the four interpolated
    values between input samples ``n - 6`` and ``n - 5`` (the filter's delay; see
    :data:`TRUE_PEAK_DELAY`). Where that cannot exceed ``threshold`` (the window's largest
    sample times the filter's gain bound is at most ``threshold``), the value is only
    ``|x[:, n - 6]|``: a limiter at a ceiling, or a meter that has seen a higher peak, needs
    no more, and most of a song is skipped so.

    Args:
        x: A block of audio [shape=(channels, n)].
        history: The 11 samples before it [shape=(channels, 11)] (zeros at the start).
        threshold: Values at or below it need not be exact (0: all exact).

    Returns:
        float64 [shape=(n,)].
    """
    ext = np.ascontiguousarray(np.concatenate([history, x], axis=1), dtype=np.float64)
    out = np.empty(x.shape[1])
    _envelope(ext, TRUE_PEAK_TAPS, _TAP_BOUND, float(threshold), out)
    return out


@_compiled
def _envelope(ext, taps, bound, threshold, out):  # pragma: no cover - compiled
    phases, n_taps = taps.shape
    for i in range(out.shape[0]):
        window_max, sample = 0.0, 0.0
        for c in range(ext.shape[0]):
            sample = max(sample, abs(ext[c, i + n_taps - 1 - TRUE_PEAK_DELAY]))
            for k in range(n_taps):
                window_max = max(window_max, abs(ext[c, i + k]))
        peak = sample
        if window_max * bound > threshold:
            for c in range(ext.shape[0]):
                for p in range(phases):
                    acc = 0.0
                    for k in range(n_taps):
                        acc += taps[p, k] * ext[c, i + n_taps - 1 - k]
                    peak = max(peak, abs(acc))
        out[i] = peak


class TruePeakMeter:
    """The true peak (4x oversampled, BS.1770-4 Annex 2) of audio fed block by block.

    Args:
        channels: Channels of every block.
    """

    def __init__(self, channels: int) -> None:
        self._history = np.zeros((channels, _HISTORY))
        self.peak = 0.0
        """Largest |value| so far, linear."""

    def add(self, x: np.ndarray) -> None:
        """Measures the next block [shape=(channels, n)]."""
        if x.shape[1] == 0:
            return
        envelope = true_peak_envelope(x, self._history, threshold=self.peak)
        self.peak = max(self.peak, float(envelope.max()))
        self._history = np.concatenate([self._history, x], axis=1)[:, -_HISTORY:]

    def finish(self) -> float:
        """Flushes the filter (the signal's last samples ring on) and returns the peak."""
        self.add(np.zeros((self._history.shape[0], _HISTORY)))
        return self.peak

    @property
    def dbtp(self) -> float:
        """The peak so far in dBTP."""
        return db(self.peak)


class LoudnessMeter:
    """Integrated loudness (LUFS) of audio fed block by block, as pyloudnorm measures it whole.

    The gating blocks are laid out from the total length, as ``pyloudnorm.Meter`` lays them
    out, so the number of frames must be known up front; frames fed past it are ignored.

    Args:
        sample_rate: Hz.
        channels: Channels of every block (up to 5, BS.1770's order L, R, C, Ls, Rs).
        total_frames: Frames that will be fed.
        block_s: Gating block length in seconds (BS.1770: 0.4).
    """

    def __init__(self, *, sample_rate: int, channels: int, total_frames: int,
                 block_s: float = 0.4) -> None:
        # pyloudnorm's K-weighting stages as one cascade of biquads (sosfilt: one pass), the
        # project's one copy of them.
        self._sos = k_weighting(sample_rate)
        self._state = [np.zeros((self._sos.shape[0], 2)) for _ in range(channels)]
        self.sample_rate, self.channels, self.block_s = sample_rate, channels, block_s
        step = 1.0 - _BLOCK_OVERLAP
        duration = total_frames / sample_rate
        # Block j spans [lower_j, upper_j), computed exactly as pyloudnorm computes it.
        n_blocks = max(int(np.round((duration - block_s) / (block_s * step))) + 1, 0)
        j = np.arange(n_blocks)
        lower = np.minimum((block_s * (j * step) * sample_rate).astype(np.int64), total_frames)
        upper = np.minimum((block_s * (j * step + 1) * sample_rate).astype(np.int64),
                           total_frames)
        self._edges = np.unique(np.concatenate([lower, upper, [0]]))
        self._first = np.searchsorted(self._edges, lower)  # first stretch of each block
        self._last = np.searchsorted(self._edges, upper)  # one past its last
        self._stretch_energy = np.zeros((channels, max(len(self._edges) - 1, 0)))
        self._frames = 0

    def add(self, x: np.ndarray) -> None:
        """Measures the next block of audio [shape=(channels, n)]."""
        n = x.shape[1]
        start, end = self._frames, self._frames + n
        self._frames = end
        if n == 0 or len(self._edges) < 2 or start >= self._edges[-1]:
            return
        # The stretches between block edges that this block overlaps.
        first = max(int(np.searchsorted(self._edges, start, side="right")) - 1, 0)
        last = min(int(np.searchsorted(self._edges, end, side="left")), len(self._edges) - 1)
        lo = np.clip(self._edges[first:last] - start, 0, n)
        hi = np.clip(self._edges[first + 1 : last + 1] - start, 0, n)
        filled = hi > lo
        if not filled.any():
            return
        for c in range(self.channels):
            y, self._state[c] = scipy.signal.sosfilt(self._sos, np.asarray(x[c], np.float64),
                                                     zi=self._state[c])
            # Each stretch's energy: the stretches are consecutive, so one reduceat.
            sums = np.add.reduceat(np.square(y[: hi[filled][-1]]), lo[filled])
            self._stretch_energy[c, first:last][filled] += sums

    def blocks_energy(self) -> np.ndarray:
        """Mean square of each channel in each gating block [shape=(channels, n_blocks)]."""
        z = np.zeros((self.channels, len(self._first)))
        widest = int((self._last - self._first).max()) if len(self._first) else 0
        for k in range(widest):
            index = self._first + k
            inside = index < self._last
            z[:, inside] += self._stretch_energy[:, index[inside]]
        return z / (self.block_s * self.sample_rate)

    def loudness(self) -> float:
        """The integrated loudness in LUFS of everything fed (``-inf`` for silence)."""
        z = self.blocks_energy()
        if z.shape[1] == 0:
            return -math.inf
        weights = np.array(_CHANNEL_WEIGHTS[: self.channels])[:, None]
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # empty gates, as pyloudnorm
            block_lufs = -0.691 + 10.0 * np.log10((weights * z).sum(axis=0))
            above = block_lufs >= _ABSOLUTE_GATE_LUFS
            relative = (-0.691 + 10.0 * np.log10((weights[:, 0] * z[:, above].mean(axis=1)).sum())
                        + _RELATIVE_GATE_LU)
            gated = (block_lufs > relative) & (block_lufs > _ABSOLUTE_GATE_LUFS)
            mean = np.nan_to_num(z[:, gated].mean(axis=1))
            return float(-0.691 + 10.0 * np.log10((weights[:, 0] * mean).sum()))
