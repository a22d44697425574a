"""The env's compiled step kernels against the bulk NumPy code they replace on the hot path."""

import numpy as np
import pytest
from _env_songs import make_song

from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.errors import ActionError
from mixing_env.features import ChunkMFCC
from mixing_env.reward import kl_divergence, level_gain, smoothing_affine, to_simplex
from mixing_env.step_kernels import ChunkScorer, kl_step, simplex_gains, window_and_rms

MASK = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simplex_gains_equals_to_simplex(dtype):
    rng = np.random.default_rng(0)
    equal = MASK / MASK.sum()
    actions = [rng.normal(size=6) for _ in range(20)] + [np.zeros(6), -np.ones(6),
                                                          np.array([0, 0, 5.0, 0, 0, 3.0])]
    for action in actions:
        action = action.astype(dtype)
        gains = np.full(6, np.nan)
        assert simplex_gains(action, MASK, equal, gains) == -1
        np.testing.assert_allclose(gains, to_simplex(action, MASK), rtol=1e-12, atol=0)


def test_simplex_gains_reports_the_first_non_finite_slot():
    equal = MASK / MASK.sum()
    gains = np.zeros(6)
    assert simplex_gains(np.array([0.1, np.inf, 0, np.nan, 0, 0]), MASK, equal, gains) == 1
    assert simplex_gains(np.array([0.1, 0.2, np.nan, 0, 0, 0]), MASK, equal, gains) == 2  # dummy


def test_window_and_rms():
    rng = np.random.default_rng(1)
    mix = rng.normal(size=500).astype(np.float32)
    window = np.hanning(500)
    out = np.empty(500)
    rms = window_and_rms(mix, window, out)
    np.testing.assert_allclose(out, mix.astype(np.float64) * window, rtol=1e-15)
    np.testing.assert_allclose(rms, np.sqrt(np.mean(mix.astype(np.float64) ** 2)), rtol=1e-12)


@pytest.mark.parametrize(
    "level, power_gain",
    [(1.0, 1.0), (1e-2, 30.0), (1e-3, 1e-4), (0.0, 1.0), (1e-6, 1e8)],
    ids=["loud", "boosted", "cut", "silent", "faint-boosted"],
)
def test_scorer_equals_chunk_mfcc(level, power_gain):
    """Both the chunk's own MFCC and the level-matched distance, with the AMIN and top-dB floors."""
    mfcc = ChunkMFCC(44100, 500, 13)
    scorer = ChunkScorer(mfcc)
    rng = np.random.default_rng(2)
    # Noise plus a loud low tone: a wide spectral range, so the 80 dB floor bites.
    chunk = level * (rng.normal(size=500) * 1e-4 + np.sin(np.arange(500) * 0.05))
    reference = mfcc.from_mel_power(mfcc.mel_power(rng.normal(size=500) * 0.1))
    own = np.empty(13, np.float32)
    distance = scorer(np.fft.rfft(chunk * scorer.window), reference, power_gain, own)
    expected_own = mfcc.from_mel_power(mfcc.mel_power(chunk))
    matched = mfcc.from_mel_power(mfcc.mel_power(chunk) * power_gain)
    scale = np.abs(expected_own).max()
    np.testing.assert_allclose(own, expected_own, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(distance, np.linalg.norm(matched - reference), rtol=1e-9)


def test_kl_step_equals_kl_divergence():
    rng = np.random.default_rng(3)
    prev, now = (to_simplex(rng.random(6), MASK) for _ in range(2))
    now[0] = 0.0  # a zero gain: smoothing keeps the KL finite
    now = to_simplex(now, MASK)
    scale, offset = smoothing_affine(MASK)
    p_prev, log_prev, p_now, log_now = (np.empty(6) for _ in range(4))
    assert kl_step(prev, scale, offset, p_prev, log_prev, False, p_prev, log_prev) == 0.0
    kl = kl_step(now, scale, offset, p_prev, log_prev, True, p_now, log_now)
    np.testing.assert_allclose(kl, kl_divergence(prev, now, track_mask=MASK), rtol=1e-12)
    np.testing.assert_allclose(log_now, np.log(p_now), rtol=1e-15)


def test_step_outputs_are_fresh_arrays():
    """The env reuses work buffers; what it hands out must not change on the next step."""
    song = make_song(n_real=3, n_dummy=1, n_chunks=8)
    env = MixingEnv(songs=[song])
    env.reset(seed=0)
    obs1, _, _, _, info1 = env.step(np.array([0.2, 0.3, 0.5, 0.0], np.float32))
    kept_mfcc, kept_gains = obs1["mix_mfcc"].copy(), info1["gains"].copy()
    obs2, _, _, _, info2 = env.step(np.array([0.9, 0.05, 0.05, 0.0], np.float32))
    np.testing.assert_array_equal(obs1["mix_mfcc"], kept_mfcc)
    np.testing.assert_array_equal(info1["gains"], kept_gains)
    assert not np.array_equal(info2["gains"], kept_gains)
    assert not np.array_equal(obs2["mix_mfcc"], kept_mfcc)


def test_step_level_match_uses_the_reference_rms():
    song = make_song(n_real=3, n_dummy=1, n_chunks=8)
    mfcc = ChunkMFCC()
    env = MixingEnv(songs=[song])
    env.reset(seed=0, options={"start": 2})
    action = np.array([0.6, 0.3, 0.1, 0.0])
    _, _, _, _, info = env.step(action)
    mix = action.astype(np.float32) @ song.stems[:, 2]
    g = level_gain(float(np.sqrt(np.mean(mix.astype(np.float64) ** 2))),
                   float(np.sqrt(np.mean(song.reference[2].astype(np.float64) ** 2))))
    expected = np.linalg.norm(mfcc.from_mel_power(mfcc.mel_power(g * mix.astype(np.float64)))
                              - mfcc.from_mel_power(mfcc.mel_power(song.reference[2])))
    np.testing.assert_allclose(info["mfcc_distance"], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "action",
    [np.array([1, 0, 2, 0]), np.array([True, False, True, False]),
     np.arange(8, dtype=np.float32)[::2], np.array([1.0, 2.0, 3.0, 4.0], ">f4")],
    ids=["int", "bool", "strided", "big-endian"],
)
def test_any_numeric_action_layout_is_weights(action):
    env = MixingEnv(songs=[make_song(n_real=3, n_dummy=1, n_chunks=8)])
    env.reset(seed=0)
    _, _, _, _, info = env.step(action)
    np.testing.assert_allclose(info["gains"], to_simplex(np.asarray(action, float), [1, 1, 1, 0]),
                               rtol=1e-6)


def test_non_numeric_action_raises():
    env = MixingEnv(songs=[make_song(n_real=3, n_dummy=1, n_chunks=8)])
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"numeric, got dtype <U1 at step 0"):
        env.step(np.array(["a", "b", "c", "d"]))


def test_kernels_compile_where_no_cache_can_be_written(monkeypatch):
    from mixing_env import step_kernels

    real_njit = step_kernels.numba.njit

    def njit(*args, **kwargs):
        if kwargs.get("cache"):  # what numba raises for a read-only install
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(step_kernels.numba, "njit", njit)

    def add_one(x):
        return x + 1

    assert step_kernels._compiled(add_one)(41) == 42
