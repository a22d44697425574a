import numpy as np
import pytest

from mixing_env import metrics
from mixing_env.errors import ConfigError
from mixing_env.reward import to_simplex


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_si_sdr_matches_hand_computation(rng):
    ref = rng.standard_normal(1000)
    noise = rng.standard_normal(1000)
    est = 0.5 * ref + 0.1 * noise
    r, e = ref - ref.mean(), est - est.mean()
    target = (e @ r) / (r @ r) * r
    expected = 10 * np.log10((target @ target) / ((e - target) @ (e - target)))
    assert metrics.si_sdr(estimate=est, reference=ref) == pytest.approx(expected, rel=1e-6)
    # scale invariance: a louder estimate scores the same
    assert metrics.si_sdr(estimate=3 * est, reference=ref) == pytest.approx(expected, rel=1e-6)


def test_si_sdr_rejects_shape_mismatch():
    with pytest.raises(ConfigError, match="same shape"):
        metrics.si_sdr(estimate=np.zeros(3), reference=np.zeros(4))


def test_mrstft_zero_for_identical_and_grows_with_noise(rng):
    ref = rng.standard_normal(8000).astype(np.float32)
    assert metrics.multi_resolution_stft_distance(estimate=ref, reference=ref) == pytest.approx(0)
    small = metrics.multi_resolution_stft_distance(estimate=ref + 0.01 * rng.standard_normal(8000),
                                                   reference=ref)
    large = metrics.multi_resolution_stft_distance(estimate=ref + 1.0 * rng.standard_normal(8000),
                                                   reference=ref)
    assert 0 < small < large


def test_loudness_difference_of_doubling_is_6_db(rng):
    sr = 44100
    ref = 0.1 * rng.standard_normal(sr)
    diff = metrics.loudness_difference_lufs(estimate=2 * ref, reference=ref, sample_rate=sr)
    assert diff == pytest.approx(20 * np.log10(2), abs=1e-3)


def test_gain_error_by_hand():
    mask = np.array([1.0, 1.0, 0.0])
    true = np.array([[0.5, 0.25], [0.5, 0.75], [0.0, 0.0]])
    est = np.array([[1.0, 1.0], [1.0, 3.0], [0.0, 0.0]])  # same balance at t=1, not at t=0
    active = np.array([[True, True], [True, True], [False, False]])
    out = metrics.gain_error_db(estimated=est, true=true, track_mask=mask, active=active)
    # t=0 matches (0.5/0.5); t=1: est simplex (0.25, 0.75) equals true: all errors are 0
    assert out["median_db"] == pytest.approx(0.0, abs=1e-9)
    est2 = np.array([[2.0, 1.0], [1.0, 3.0], [0.0, 0.0]])  # t=0: (2/3, 1/3) vs (0.5, 0.5)
    out2 = metrics.gain_error_db(estimated=est2, true=true, track_mask=mask, active=active)
    e0 = abs(20 * np.log10((2 / 3) / 0.5))
    e1 = abs(20 * np.log10((1 / 3) / 0.5))
    np.testing.assert_allclose(out2["per_track_db"][:2], [np.median([e0, 0]), np.median([e1, 0])])
    assert out2["mean_db"] == pytest.approx((e0 + e1) / 4)
    assert np.isnan(out2["per_track_db"][2]) and out2["n_active"] == 4


def test_gain_error_skips_inactive_chunks():
    mask = np.ones(2)
    true = np.array([[0.5, 0.5], [0.5, 0.5]])
    est = np.array([[0.9, 0.5], [0.1, 0.5]])
    active = np.array([[False, True], [False, True]])
    out = metrics.gain_error_db(estimated=est, true=true, track_mask=mask, active=active)
    assert out["mean_db"] == pytest.approx(0.0) and out["n_active"] == 2


def test_active_chunks_threshold():
    stems = np.zeros((2, 3, 10))
    stems[0, 0] = 1.0
    stems[0, 1] = 1e-4  # -80 dB below the peak chunk
    stems[1, 2] = 0.5
    act = metrics.active_chunks(stems, track_mask=np.array([1.0, 1.0]))
    np.testing.assert_array_equal(act, [[True, False, False], [False, False, True]])


def test_render_mix_and_gap_closed():
    stems = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    gains = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    mix = metrics.render_mix(stems, gains).reshape(3, 4)
    np.testing.assert_allclose(mix[0], stems[0, 0])
    np.testing.assert_allclose(mix[1], stems[1, 1])
    np.testing.assert_allclose(mix[2], 0.5 * (stems[0, 2] + stems[1, 2]))
    assert metrics.gap_closed(d_agent=15, d_equal=20, d_oracle=10) == pytest.approx(0.5)
    assert np.isnan(metrics.gap_closed(d_agent=1, d_equal=1, d_oracle=1))


def test_to_simplex_and_least_squares_gain():
    g = to_simplex(np.array([[2.0, 0.0], [2.0, 0.0], [5.0, 5.0]]), np.array([1, 1, 0]), axis=0)
    np.testing.assert_allclose(g, [[0.5, 0.5], [0.5, 0.5], [0, 0]])
    x = np.array([1.0, 2.0, 3.0])
    assert metrics.least_squares_gain(x, 4 * x) == pytest.approx(4)


def test_gain_error_ignores_gain_on_silent_tracks():
    # Track 2 is silent at t=0: the agent's weight on it changes nothing in the mix, so the
    # balance of the two playing tracks (equal in both) must score 0 dB.
    mask = np.ones(3)
    true = np.array([[0.2], [0.2], [0.6]])
    est = np.array([[0.05], [0.05], [0.9]])
    active = np.array([[True], [True], [False]])
    out = metrics.gain_error_db(estimated=est, true=true, track_mask=mask, active=active)
    assert out["mean_db"] == pytest.approx(0.0, abs=1e-9) and out["n_active"] == 2
