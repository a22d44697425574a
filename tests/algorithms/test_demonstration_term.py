"""The imitation term in PPO's loss (DAPG): configured, computed, and it moves the weights."""

import copy

import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from mixing_env.errors import ConfigError
from rl_models.algorithms import build_algorithm_config
from rl_models.algorithms.demonstration_term import demonstration_term

GENERATED = {"seed": 3, "seconds": 1.0, "n_tracks": [4, 5], "episodes_per_song": 2}
ENV = {"generated": GENERATED, "episode_chunks": 8, "obs_features": "logmel",
       "n_track_features": 4, "stem_loudness_feature": True}
MODEL = {"embed_dim": 4, "hidden_size": 6, "mix_hidden_size": 3, "attention_dim": 5,
         "input_norm": "db", "log_rms_feature": False, "max_seq_len": 4}


def _learner(coeff: float):
    term = {"coeff": coeff, "env": ENV, "batch_size": 4, "capacity": 8}
    config = build_algorithm_config(
        "PPO", env_config=ENV, model=MODEL, seed=0,
        training={"gamma": 0.0, "train_batch_size_per_learner": 32, "minibatch_size": 32,
                  "num_epochs": 1},
        resources={"learner_config_dict": {"demonstrations": term}})
    runner = SingleAgentEnvRunner(config=config)
    learner = config.build_learner(env=runner.env.unwrapped, spaces=runner.get_spaces())
    return runner, learner


def test_the_imitation_term_is_logged_and_changes_the_update():
    runner, with_term = _learner(coeff=5.0)
    _, without = _learner(coeff=0.0)
    weights = with_term.module[DEFAULT_MODULE_ID].state_dict()
    without.module[DEFAULT_MODULE_ID].load_state_dict(copy.deepcopy(weights))
    episodes = runner.sample(num_timesteps=32)
    results = with_term.update(episodes=copy.deepcopy(episodes), num_epochs=1,
                               minibatch_size=32)
    plain = without.update(episodes=copy.deepcopy(episodes), num_epochs=1, minibatch_size=32)
    imitation = results[DEFAULT_MODULE_ID]["demonstration_loss"].peek()
    assert imitation > 0 and torch.isfinite(torch.tensor(imitation))
    assert "demonstration_loss" not in plain[DEFAULT_MODULE_ID]
    after = with_term.module[DEFAULT_MODULE_ID].state_dict()
    plain_after = without.module[DEFAULT_MODULE_ID].state_dict()
    assert any(not torch.equal(after[k], plain_after[k]) for k in after)


def test_bad_demonstration_settings_are_named():
    assert demonstration_term(None) is None and demonstration_term({"coeff": 0.0}) is None
    with pytest.raises(ConfigError, match=r"unknown demonstrations key\(s\) \['weight'\]"):
        demonstration_term({"weight": 1.0})
    with pytest.raises(ConfigError, match="coeff must be a finite number >= 0"):
        demonstration_term({"coeff": -1.0, "env": ENV})
    with pytest.raises(ConfigError, match="need 'env'"):
        demonstration_term({"coeff": 1.0})
    with pytest.raises(ConfigError, match="loss must be one of"):
        demonstration_term({"coeff": 1.0, "env": ENV, "loss": "mse"})
    with pytest.raises(ConfigError, match="batch_size must be an int >= 1"):
        demonstration_term({"coeff": 1.0, "env": ENV, "batch_size": 0})
