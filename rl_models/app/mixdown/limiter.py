"""A look-ahead true-peak limiter for the master bus, fed block by block.

Why the project's own: pedalboard's limiter is GPL-3 (the project keeps GPL out of its code
path) and limits the sample peak, not the true peak; cylimiter (Apache-2.0) is a mono,
feedback envelope follower on sample peaks whose smoothed gain overshoots, so it is no
brickwall; the true-peak limiters on PyPI are young single-author packages. This one is a
few vectorized steps, each with an obvious per-sample twin in the tests.

How the gain is made, per sample n (``r``: the gain the true peak needs there):

1. ``r[n] = min(1, ceiling / tp[n])``, tp the 4x-oversampled peak over all channels around
   n (:func:`~rl_models.app.mixdown.loudness.true_peak_envelope`), widened to the
   interpolation filter's reach: ``q[n] = min(r[n - 6 .. n + 6])``.
2. Look-ahead: ``h[n] = min(q[n .. n + L])``, L the look-ahead in samples.
3. Release: the gain reduction in dB, ``-20 log10 h``, may fall no faster than an
   exponential with time constant ``release_s``: ``R[n] = max(R_h[n], R[n - 1] * beta)``.
4. Attack: the gain is the mean of the released gain over ``[n - L, n]``. Every value in
   that window is at most ``q[n]`` (each window of step 2 that ends in it covers n), so the
   output never needs more than the gain step 1 asks for, with an L-sample linear fade in.

The output is the input times that gain; the gain of a sample is known ``L + 12`` samples
later (the look-ahead and the filter's reach on both sides), so :meth:`TruePeakLimiter.process`
returns its output that many samples late and :meth:`TruePeakLimiter.flush` the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter1d

from rl_models.app.mixdown.loudness import _HISTORY, TRUE_PEAK_DELAY, true_peak_envelope

__all__ = ["LimiterReport", "TruePeakLimiter"]

_REACH = TRUE_PEAK_DELAY  # interpolated values depend on the samples this far around them
_GAIN_REDUCTION_MARK_DB = 1.0


@dataclass(frozen=True)
class LimiterReport:
    """What the limiter did.

    Attributes:
        ceiling_dbtp: The true-peak ceiling it held, dBTP.
        max_gain_reduction_db: The largest gain reduction, dB (0: it never acted).
        seconds_above_1db: Time during which it reduced the gain by more than 1 dB.
        lookahead_ms: Look-ahead (and attack) time.
        release_ms: Release time constant.
    """

    ceiling_dbtp: float
    max_gain_reduction_db: float
    seconds_above_1db: float
    lookahead_ms: float
    release_ms: float


class TruePeakLimiter:
    """Holds the true peak of a multichannel signal at a ceiling, block by block.

    Feed blocks with :meth:`process`, which returns the output up to :attr:`delay` samples
    behind the input, then call :meth:`flush` for the rest: together they return exactly as
    many samples as were fed.

    Args:
        sample_rate: Hz.
        channels: Channels of every block.
        ceiling_dbtp: Largest true peak of the output, dBTP.
        lookahead_s: Look-ahead, which is also the attack time.
        release_s: Time constant of the release (the gain reduction in dB decays as
            ``exp(-t / release_s)``).
    """

    def __init__(self, *, sample_rate: int, channels: int, ceiling_dbtp: float,
                 lookahead_s: float = 0.003, release_s: float = 0.08) -> None:
        self.sample_rate, self.channels = sample_rate, channels
        self.ceiling_dbtp = ceiling_dbtp
        self.ceiling = 10.0 ** (ceiling_dbtp / 20.0)
        self.lookahead = max(1, round(lookahead_s * sample_rate))
        self.release_s = release_s
        self._log_beta = -1.0 / (release_s * sample_rate)  # log of the per-sample decay
        self.delay = self.lookahead + 2 * _REACH
        """Samples by which the output lags the input."""
        L = self.lookahead
        # Carried state: the last input samples (peak interpolation and the output delay),
        # the step-1 gains step 2 still reads, the released gains the boxcar still reads.
        self._input = np.zeros((channels, self.delay + _HISTORY))
        self._needed = np.ones(self.delay)  # r of samples [m - L - 2 REACH, m) for the next m
        self._pending = self.delay  # leading outputs that belong to no input sample
        self._released = np.ones(L)  # the last L released gains
        self._reduction_db = 0.0  # released gain reduction of the last sample
        self._max_reduction_db = 0.0
        self._samples_above = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        """Limits the next block [shape=(channels, n)]; returns the output that is final.

        With s the block's first sample, value i of each step below belongs to input sample
        ``s + i - delay``; the first :attr:`delay` of the whole stream are dropped.
        """
        n = x.shape[1]
        if n == 0:
            return np.zeros((self.channels, 0))
        L = self.lookahead
        # Value i: the true peak around sample s + i - REACH (the filter's delay).
        tp = true_peak_envelope(x, self._input[:, -_HISTORY:], threshold=self.ceiling)
        with np.errstate(divide="ignore"):
            r = np.minimum(1.0, self.ceiling / np.maximum(tp, 1e-30))
        needed = np.concatenate([self._needed, r])
        # Step 1 widening and step 2 look-ahead as one forward-looking minimum: the gain of
        # sample m must not exceed r anywhere in [m - REACH, m + L + REACH].
        span = 2 * _REACH + L + 1
        h = _forward_min(needed, span)[: n]
        self._needed = needed[n:]
        released = self._release(h)
        window = np.concatenate([self._released, released])
        gain = _moving_mean(window, L + 1)
        self._released = window[-L:]
        buffered = np.concatenate([self._input, x], axis=1)
        self._input = buffered[:, -self._input.shape[1]:]
        start = buffered.shape[1] - n - self.delay
        out = buffered[:, start : start + n] * gain
        drop = min(self._pending, n)
        self._pending -= drop
        out, gain = out[:, drop:], gain[drop:]
        if gain.size:
            reduction = -20.0 * np.log10(np.maximum(gain, 1e-30))
            self._max_reduction_db = max(self._max_reduction_db, float(reduction.max()))
            self._samples_above += int(np.count_nonzero(reduction > _GAIN_REDUCTION_MARK_DB))
        return out

    def flush(self) -> np.ndarray:
        """The output samples :meth:`process` still holds back (the input's tail, limited)."""
        return self.process(np.zeros((self.channels, self.delay)))

    def _release(self, h: np.ndarray) -> np.ndarray:
        """Step 3: ``R[n] = max(R_h[n], R[n - 1] beta)`` in closed form (a running max)."""
        wanted = -20.0 * np.log10(np.maximum(h, 1e-30))
        with np.errstate(divide="ignore"):
            # log R[n] = max_k (log R_h[k] + (n - k) log beta), k including the carried one.
            steps = np.arange(1, len(h) + 1) * self._log_beta
            logs = np.log(np.concatenate([[self._reduction_db], wanted]))
            logs[1:] -= steps
            reduction = np.exp(np.maximum.accumulate(logs)[1:] + steps)
        self._reduction_db = float(reduction[-1])
        return 10.0 ** (-reduction / 20.0)

    def report(self) -> LimiterReport:
        """What the limiter did over everything processed so far."""
        return LimiterReport(
            ceiling_dbtp=self.ceiling_dbtp,
            max_gain_reduction_db=round(self._max_reduction_db, 4),
            seconds_above_1db=round(self._samples_above / self.sample_rate, 4),
            lookahead_ms=round(1000.0 * self.lookahead / self.sample_rate, 3),
            release_ms=round(1000.0 * self.release_s, 3),
        )


def _forward_min(a: np.ndarray, size: int) -> np.ndarray:
    """``out[i] = min(a[i : i + size])`` where the window fits [shape=(len(a) - size + 1,)]."""
    # minimum_filter1d centres its window: shift it to start at i.
    return minimum_filter1d(a, size, origin=-(size // 2))[: len(a) - size + 1]


def _moving_mean(a: np.ndarray, size: int) -> np.ndarray:
    """``out[i] = mean(a[i : i + size])`` [shape=(len(a) - size + 1,)]."""
    cumulative = np.concatenate([[0.0], np.cumsum(a)])
    return (cumulative[size:] - cumulative[:-size]) / size

