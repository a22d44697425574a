import numpy as np
import pytest
from _env_songs import make_song

from mixing_env.baselines import (
    BASELINES,
    EqualGains,
    LoudnessGains,
    OraclePolicy,
    StaticOracle,
    make_baseline,
)
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.episodes import run_episode


@pytest.fixture(scope="module")
def long_song():
    return make_song("long", n_real=4, n_dummy=2, n_chunks=60, seed=3)


@pytest.mark.parametrize("name", sorted(set(BASELINES) - {"instrument_balance"}))
def test_gains_on_simplex_with_silent_dummies(long_song, name):
    g = make_baseline(name).gains(long_song)
    assert g.shape == (6, 60) and g.dtype == np.float32
    assert np.all(g >= 0)
    np.testing.assert_allclose(g.sum(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(g[4:], 0.0)


def test_oracle_is_near_perfect_and_beats_equal_gains(long_song):
    env = MixingEnv(songs=[long_song])
    oracle = run_episode(env, OraclePolicy(), seed=0)
    equal = run_episode(env, EqualGains(), seed=0)
    assert oracle.mfcc_distance.mean() < 1e-2
    assert oracle.reward.mean() > 0.99
    assert equal.mfcc_distance.mean() > 1.0
    assert equal.reward.mean() < oracle.reward.mean() - 0.05
    assert 0.05 < equal.reward.mean() < 0.95  # normalized reward is informative
    # The oracle recovers the true balance (gains up to scale).
    truth = long_song.true_gains / long_song.true_gains.sum(axis=0)
    np.testing.assert_allclose(oracle.gains, truth, atol=1e-3)


def test_static_oracle_recovers_constant_gains():
    song = make_song("static", n_real=3, n_dummy=1, n_chunks=20, seed=5)
    true = np.array([0.2, 0.5, 0.3, 0.0], np.float32)
    song.reference = np.einsum("c,ctn->tn", true, song.stems).astype(np.float32)
    np.testing.assert_allclose(StaticOracle().gains(song)[:, 7], true, atol=1e-4)


def test_loudness_gains_equalize_loudness(long_song):
    import pyloudnorm

    from mixing_env.engineer.analysis import gated_loudness, k_weighted_power

    g = LoudnessGains().gains(long_song)[:, 0]
    gained = np.stack([g[i] * long_song.stems[i].reshape(-1).astype(np.float64)
                       for i in range(4)])
    power = k_weighted_power(gained, sample_rate=long_song.sample_rate,
                             chunk_size=long_song.chunk_size)
    lufs = gated_loudness(power, chunk_s=long_song.chunk_size / long_song.sample_rate)
    assert np.ptp(lufs) < 1e-6  # the project's one BS.1770 measure: exactly equal
    meter = pyloudnorm.Meter(long_song.sample_rate)  # and pyloudnorm's within half an LU
    assert np.ptp([meter.integrated_loudness(y) for y in gained]) < 0.5
    silent = make_song("quiet", n_real=3, n_dummy=0, n_chunks=60)
    silent.stems[1] = 0.0
    g = LoudnessGains().gains(silent)
    np.testing.assert_array_equal(g[1], 0.0)


def test_oracle_keeps_static_gains_on_silent_chunks():
    song = make_song("gap", n_chunks=10)
    song.stems[:, 4] = 0.0
    song.reference[4] = 0.0
    np.testing.assert_allclose(
        OraclePolicy().gains(song)[:, 4], StaticOracle().gains(song)[:, 4], rtol=1e-6
    )


def test_oracle_keeps_static_weight_of_a_silent_track():
    song = make_song("gap", n_chunks=10)
    # Track 0 rests in chunk 4 (and so is absent from the reference there).
    song.reference[4] -= song.true_gains[0, 4] * song.stems[0, 4]
    song.stems[0, 4] = 0.0
    gains = OraclePolicy().gains(song)[:, 4]
    static = StaticOracle().weights(song)
    truth = song.true_gains[:, 4]
    # The playing tracks keep the true balance; track 0 holds its static weight (no zero).
    np.testing.assert_allclose(gains[1] / gains[2], truth[1] / truth[2], rtol=1e-4)
    np.testing.assert_allclose(gains[0] / gains[1], static[0] / truth[1], rtol=1e-3)


def test_run_episode_on_a_named_song(songs):
    env = MixingEnv({"episode_chunks": 4}, songs=songs)
    out = run_episode(env, EqualGains(), song="song1", start=2)
    assert out.song.name == "song1"
    np.testing.assert_array_equal(out.chunks, [2, 3, 4, 5])
    assert out.gains.shape == (4, 4) and out.reward.shape == (4,)
    assert out.kl[0] == 0.0
