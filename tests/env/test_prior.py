"""The level prior: the env's stem-loudness feature and a module started at a table with it."""

import math

import numpy as np
import pytest
import torch
import tree
from _env_songs import make_song
from ray.rllib.core.columns import Columns

from mixing_env.baselines import InstrumentBalance
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.errors import ConfigError
from mixing_env.features import STEM_LOUDNESS_FLOOR, stem_loudness
from rl_models.attention_lstm import AttentionLSTMModule

TINY = {"embed_dim": 5, "hidden_size": 8, "mix_hidden_size": 3, "attention_dim": 6,
        "max_seq_len": 8, "input_norm": "db", "log_rms_feature": False}
ENV = {"obs_features": "logmel", "stem_loudness_feature": True, "n_track_features": 8,
       "stem_level_features": True}


def balance_prior_model_config(balance, slot_names):
    """The module's generic level-prior keys that start it at ``balance``'s gains."""
    levels = [balance.level_db(name) for name in slot_names]
    return {"level_prior": 1.0, "level_prior_feature": -1, "level_prior_bias_db": levels,
            "residual_gate": 0.0}


@pytest.fixture(scope="module")
def prior_song():
    # 48 chunks (0.54 s): longer than BS.1770's 400 ms block, so the gated measure is used.
    song = make_song("prior", n_real=4, n_dummy=2, n_chunks=48, seed=3)
    song.slot_names = ["Drums/Kick#1", "Bass/Bass#1", "Keys/Piano#1", "Vocals/Lead#1",
                       "Extra/Track#1", "Extra/Track#2"]
    return song


@pytest.fixture(scope="module")
def balance():
    return InstrumentBalance({"Drums/Kick#1": 3.0, "Bass/Bass#1": -2.0},
                             {"Keys/Piano": 1.5}, {"Vocals": 6.0})


def test_stem_loudness_is_the_last_feature(prior_song):
    env = MixingEnv({**ENV}, songs=[prior_song])
    obs, _ = env.reset(seed=0)
    plain = MixingEnv({**ENV, "stem_loudness_feature": False}, songs=[prior_song])
    plain_obs, _ = plain.reset(seed=0)
    assert obs["chunks"].shape[-1] == plain_obs["chunks"].shape[-1] + 1
    np.testing.assert_array_equal(obs["chunks"][..., :-1], plain_obs["chunks"])
    lufs = stem_loudness(prior_song)
    np.testing.assert_allclose(obs["chunks"][:4, -1, -1], lufs[:4], rtol=1e-5)
    assert np.all(obs["chunks"][4:, :, -1] == STEM_LOUDNESS_FLOOR)  # dummy slots: the floor
    assert env.observation_space.contains(obs)
    # The same value at every step: a whole-song measure.
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_allclose(obs["chunks"][:4, -1, -1], lufs[:4], rtol=1e-5)


def test_stem_loudness_feature_needs_logmel():
    with pytest.raises(ConfigError, match="stem_loudness_feature=True needs obs_features"):
        MixingEnv({"stem_loudness_feature": True})
    with pytest.raises(ConfigError, match="stem_loudness_feature must be a bool"):
        MixingEnv({"obs_features": "logmel", "stem_loudness_feature": 1})


def _module(env, model_config):
    return AttentionLSTMModule(observation_space=env.observation_space,
                               action_space=env.action_space,
                               model_config={**TINY, **model_config})


def _betas(module, env, song, steps):
    """The module's beta over ``steps`` env steps of ``song`` (equal gains played)."""
    obs, _ = env.reset(options={"song": song.name})
    state = tree.map_structure(lambda s: torch.from_numpy(s)[None], module.get_initial_state())
    betas = []
    for _ in range(steps):
        obs_t = tree.map_structure(lambda x: torch.from_numpy(np.array(x))[None], obs)
        batch = {Columns.OBS: obs_t, Columns.STATE_IN: state}
        out = module._run(module._core, batch, need_features=False)
        betas.append(out["beta"][0, 0].detach().numpy())
        state = out["state_out"]
        obs, *_ = env.step(np.ones(env.n_slots, np.float32))
    return np.stack(betas)


def test_prior_module_starts_at_instrument_balance(prior_song, balance):
    env = MixingEnv(ENV, songs=[prior_song])
    torch.manual_seed(0)
    config = balance_prior_model_config(balance, prior_song.slot_names)
    assert config["level_prior_bias_db"][0] - config["level_prior_bias_db"][1] == 5.0
    module = _module(env, config)
    betas = _betas(module, env, prior_song, 6)
    expected = balance.gains(prior_song)[:, 0]
    assert np.all(np.abs(betas - expected) < 1e-4), (betas, expected)
    # Not trivially equal gains: the table moves the tracks apart.
    assert np.ptp(expected[:4]) > 0.05


def test_gate_at_zero_is_exactly_the_prior_and_a_gate_lets_attention_in(prior_song, balance):
    env = MixingEnv(ENV, songs=[prior_song])
    config = balance_prior_model_config(balance, prior_song.slot_names)
    torch.manual_seed(1)
    gated = _module(env, config)
    with torch.no_grad():  # whatever the attention's weights, gate 0 leaves the prior
        gated._core.H.mul_(50.0)
        gated._core.F.mul_(50.0)
    np.testing.assert_allclose(_betas(gated, env, prior_song, 4),
                               np.repeat(balance.gains(prior_song)[:, :1].T, 4, 0), atol=1e-4)
    with torch.no_grad():
        gated._core.residual_gate.fill_(1.0)
    opened = _betas(gated, env, prior_song, 4)
    assert np.abs(opened - balance.gains(prior_song)[:, 0]).max() > 1e-3
    assert isinstance(gated._core.residual_gate, torch.nn.Parameter)


@pytest.mark.parametrize("override, match", [
    ({"level_prior_bias_db": [0.0, 1.0]}, "has 2 values, the slot layout 6 slots"),
    ({"level_prior_bias_db": [0.0, math.nan, 0, 0, 0, 0]}, "must be finite, got nan at slot 1"),
    ({"level_prior_bias_db": ["a"] * 6}, "must be a non-empty list of numbers"),
    ({"level_prior": None, "level_prior_bias_db": [0.0] * 6}, "needs model_config"),
    ({"residual_gate": math.inf}, "residual_gate'] must be a finite number"),
    ({"residual_gate": True}, "residual_gate'] must be a finite number"),
], ids=["wrong-length", "nan", "not-numbers", "no-prior", "inf-gate", "bool-gate"])
def test_bad_prior_config_raises(prior_song, override, match):
    env = MixingEnv(ENV, songs=[prior_song])
    with pytest.raises(ConfigError, match=match):
        _module(env, {"level_prior": 1.0, **override})
