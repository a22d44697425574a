import numpy as np
import pytest

from mixing_env.baselines import EqualGains, OraclePolicy
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.episodes import run_episode
from mixing_env.errors import ConfigError
from mixing_env.reward import (
    evaluate_gains,
    kl_divergence,
    level_gain,
    level_match,
    mixing_reward,
    rms,
    to_simplex,
)


def test_level_match_brings_mix_to_reference_rms():
    rng = np.random.default_rng(0)
    mix, ref = rng.standard_normal((5, 500)), 3.0 * rng.standard_normal((5, 500))
    out = level_match(mix, ref)
    np.testing.assert_allclose(rms(out), rms(ref))
    np.testing.assert_allclose(out, mix * (rms(ref) / rms(mix))[:, None])


def test_level_match_is_zero_safe():
    ref = np.ones((2, 500))
    mix = np.zeros((2, 500))
    np.testing.assert_array_equal(level_match(mix, ref), 0)  # silent mix stays silent
    np.testing.assert_array_equal(level_match(ref, np.zeros((2, 500))), 0)  # silent reference
    assert level_gain(0.0, 1.0) == 1.0 and level_gain(2.0, 1.0) == 0.5


def test_to_simplex():
    mask = np.array([1, 1, 0, 1])
    np.testing.assert_allclose(to_simplex([2, -1, 5, 2], mask), [0.5, 0, 0, 0.5])
    np.testing.assert_allclose(to_simplex([0, 0, 5, 0], mask), [1 / 3, 1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(to_simplex(np.ones((2, 4)), mask).sum(-1), 1.0)


def test_kl_divergence():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.9, 0.1, 0.0])
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    direct = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    assert kl_divergence(p, q, track_mask=[1, 1, 0]) == pytest.approx(direct, rel=1e-4)
    assert np.isfinite(kl_divergence([1.0, 0.0], [0.0, 1.0]))


def test_mixing_reward_modes():
    assert mixing_reward(2.0, 0.0, reward_mode="raw") == pytest.approx(np.exp(-4.0))
    assert mixing_reward(20.0, 0.0, mfcc_scale=20.0) == pytest.approx(np.exp(-1.0))
    assert mixing_reward(0.0, 3.0, rho=0.5) == pytest.approx(np.exp(-1.5))
    with pytest.raises(ConfigError, match="reward_mode"):
        mixing_reward(1.0, 0.0, reward_mode="log")


@pytest.mark.parametrize("config", [{}, {"reward_mode": "raw", "level_match": "none"}],
                         ids=["normalized", "raw"])
def test_evaluate_gains_matches_env(song, config):
    env = MixingEnv(config, songs=[song])
    policy = OraclePolicy()
    steps = run_episode(env, EqualGains() if config else policy, seed=0)
    gains = (EqualGains() if config else policy).gains(song)
    bulk = evaluate_gains(
        song, gains, level_match_mode=env.config.level_match, reward_mode=env.config.reward_mode
    )
    np.testing.assert_allclose(bulk["distances"], steps.mfcc_distance, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bulk["kl"], steps.kl, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(bulk["rewards"], steps.reward, rtol=1e-4, atol=1e-12)
