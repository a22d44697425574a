"""The env's config-only routes: built-in synthetic songs and a prepared cache."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mixing_env  # noqa: F401
from mixing_env.baselines import EqualGains, OraclePolicy
from mixing_env.data import prepare
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.episodes import run_episode
from mixing_env.songs import procedural as synthetic

SYNTH = {"n_songs": 2, "seconds": 0.4, "n_tracks": 3, "seed": 0}


def test_make_with_synthetic_config():
    env = gymnasium.make("DeepMixing-v0", config={"synthetic": SYNTH, "obs_features": "logmel"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    base = env.unwrapped
    expected = synthetic.synthetic_songs(**SYNTH)
    assert base.song_names == [s.name for s in expected]
    assert base.n_slots == expected[0].n_slots


def test_prepared_cache_route(tmp_path):
    src = tmp_path / "src"
    synthetic.make_synthetic_dataset(src, **SYNTH)
    ds = prepare.prepare_dataset(src, tmp_path / "cache", progress=False)
    env = MixingEnv({"dataset_dir": str(tmp_path / "cache"), "songs": [ds.names[0]]})
    assert env.song_names == [ds.names[0]]
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info["song"] == ds.names[0]
    oracle = run_episode(env, OraclePolicy(), seed=0)
    equal = run_episode(env, EqualGains(), seed=0)
    assert oracle.mfcc_distance.mean() < equal.mfcc_distance.mean()
    assert oracle.reward.mean() > 0.95
    # the cache is memory-mapped; the env never writes into it
    with pytest.raises(ValueError):
        obs["chunks"][0, 0, 0] = 1.0
    np.testing.assert_array_equal(env.song.track_mask, obs["track_mask"])
