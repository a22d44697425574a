"""The streaming loudness and true-peak meters and the limiter, against their slow twins."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from rl_models.app.mixdown.limiter import TruePeakLimiter
from rl_models.app.mixdown.loudness import TRUE_PEAK_TAPS, LoudnessMeter, TruePeakMeter


@pytest.fixture
def rng():
    return np.random.default_rng(1770)


def feed(meter_or_limiter, x, rng, method="add"):
    """Feeds ``x`` in blocks of random sizes; returns what the calls returned."""
    out, i = [], 0
    while i < x.shape[1]:
        size = int(rng.integers(1, 9000))
        out.append(getattr(meter_or_limiter, method)(x[:, i : i + size]))
        i += size
    return out


def music_like(rng, channels, seconds, sample_rate=44100):
    n = int(seconds * sample_rate)
    x = rng.standard_normal((channels, n)) * np.linspace(0.02, 0.4, n)
    x[:, n // 4 : n // 3] *= 1e-3  # a quiet passage the relative gate removes
    x[:, : n // 10] = 0.0  # silence the absolute gate removes
    return x


@pytest.mark.parametrize("channels, seconds, sample_rate", [
    (1, 3.0, 44100), (2, 2.3, 48000), (2, 0.45, 44100)], ids=["mono", "stereo-48k", "short"])
def test_loudness_meter_equals_pyloudnorm_on_the_whole_signal(rng, channels, seconds,
                                                               sample_rate):
    x = music_like(rng, channels, seconds, sample_rate)
    meter = LoudnessMeter(sample_rate=sample_rate, channels=channels, total_frames=x.shape[1])
    feed(meter, x, rng)
    whole = pyloudnorm.Meter(sample_rate).integrated_loudness(x.T if channels > 1 else x[0])
    assert meter.loudness() == pytest.approx(whole, abs=1e-9)


def test_loudness_of_silence_is_minus_infinity():
    meter = LoudnessMeter(sample_rate=8000, channels=2, total_frames=8000)
    meter.add(np.zeros((2, 8000)))
    assert meter.loudness() == -np.inf


def slow_true_peak(x: np.ndarray) -> float:
    """Every sample and the three points between it and the next, each a plain dot product."""
    channels, n = x.shape
    padded = np.concatenate([np.zeros((channels, 11)), x, np.zeros((channels, 11))], axis=1)
    peak = np.abs(x).max()
    for c in range(channels):
        for out in range(n + 11):
            window = padded[c, out : out + 12][::-1]  # x[out - k] for k = 0..11
            for phase in range(4):
                peak = max(peak, abs(float(TRUE_PEAK_TAPS[phase] @ window)))
    return peak


def test_true_peak_meter_finds_the_peak_between_samples(rng):
    n = 2000
    t = np.arange(n)
    # A quarter-rate sine sampled at +-45 degrees: every sample at 0.707, the wave at 1.
    x = np.sin(np.pi / 2 * t + np.pi / 4)[None, :].repeat(2, axis=0)
    meter = TruePeakMeter(2)
    feed(meter, x, rng)
    assert np.abs(x).max() == pytest.approx(0.7071, abs=1e-4)
    assert meter.finish() == pytest.approx(slow_true_peak(x), rel=1e-12)
    assert meter.peak > 0.95  # the meter sees the wave, not the samples


def slow_limiter(x, *, sample_rate, ceiling_db, lookahead, release_s):
    """The limiter's four steps written per sample (x is zero outside it)."""
    channels, n = x.shape
    ceiling = 10 ** (ceiling_db / 20)
    reach = 6
    first, last = -lookahead - 3 * reach - 2, n + lookahead + 3 * reach + 2

    def sample(c, m):
        return x[c, m] if 0 <= m < n else 0.0

    def needed(m):  # step 1: ceiling over the true peak around sample m
        peak = max(abs(sample(c, m)) for c in range(channels))
        for c in range(channels):
            window = np.array([sample(c, m + reach - k) for k in range(12)])
            peak = max(peak, float(np.abs(TRUE_PEAK_TAPS @ window).max()))
        return min(1.0, ceiling / peak) if peak > 0 else 1.0

    r = {m: needed(m) for m in range(first, last)}
    h = {m: min(r[k] for k in range(m - reach, m + lookahead + reach + 1))
         for m in range(first + reach, last - lookahead - reach)}
    beta = np.exp(-1.0 / (release_s * sample_rate))
    released, reduction = {}, 0.0
    for m in sorted(h):
        reduction = max(-20 * np.log10(h[m]), reduction * beta)
        released[m] = 10 ** (-reduction / 20)
    gain = np.array([np.mean([released[k] for k in range(m - lookahead, m + 1)])
                     for m in range(n)])
    return x * gain


def test_limiter_equals_its_slow_twin_and_holds_the_ceiling(rng):
    sample_rate = 8000
    x = 0.3 * rng.standard_normal((2, 1500))
    x[:, 700:720] *= 6.0  # a burst well over the ceiling
    limiter = TruePeakLimiter(sample_rate=sample_rate, channels=2, ceiling_dbtp=-1.0,
                              lookahead_s=0.002, release_s=0.01)
    y = np.concatenate([*feed(limiter, x, rng, "process"), limiter.flush()], axis=1)
    assert y.shape == x.shape
    twin = slow_limiter(x, sample_rate=sample_rate, ceiling_db=-1.0,
                        lookahead=limiter.lookahead, release_s=0.01)
    np.testing.assert_allclose(y, twin, rtol=0, atol=1e-9)
    meter = TruePeakMeter(2)
    meter.add(y)
    assert 20 * np.log10(meter.finish()) <= -1.0 + 0.05
    report = limiter.report()
    assert report.max_gain_reduction_db > 10.0  # the burst was 6x over: it acted
    assert 0 < report.seconds_above_1db < x.shape[1] / sample_rate


def test_limiter_leaves_quiet_audio_untouched(rng):
    x = 0.01 * rng.standard_normal((1, 5000))
    limiter = TruePeakLimiter(sample_rate=44100, channels=1, ceiling_dbtp=-1.0)
    y = np.concatenate([*feed(limiter, x, rng, "process"), limiter.flush()], axis=1)
    np.testing.assert_array_equal(y, x)
    assert limiter.report().max_gain_reduction_db == 0.0
