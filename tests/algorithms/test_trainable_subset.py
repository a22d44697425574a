"""Fine-tuning a named part of the module: only those weights are optimized and move."""

import copy

import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from mixing_env.errors import ConfigError
from rl_models.algorithms import build_algorithm_config
from rl_models.algorithms.trainable_subset import trainable_patterns

ENV = {"synthetic": {"n_songs": 3, "seconds": 1.0, "n_tracks": [2, 4], "seed": 0},
       "episode_chunks": 8, "obs_features": "logmel", "n_track_features": 4,
       "stem_loudness_feature": True}
MODEL = {"embed_dim": 4, "hidden_size": 6, "mix_hidden_size": 3, "attention_dim": 5,
         "input_norm": "db", "log_rms_feature": False, "max_seq_len": 4,
         "level_prior": 1.0, "level_prior_feature": -1}
SUBSET = [r"prior_bias$", r"^_value_head\."]


def _learner(trainable):
    learner_dict = {} if trainable is None else {"trainable": trainable}
    config = build_algorithm_config(
        "PPO", env_config=ENV, model=MODEL, seed=0,
        training={"gamma": 0.0, "train_batch_size_per_learner": 32, "minibatch_size": 32,
                  "num_epochs": 1, "lr": 1e-2},
        resources={"learner_config_dict": learner_dict})
    runner = SingleAgentEnvRunner(config=config)
    return runner, config.build_learner(env=runner.env.unwrapped, spaces=runner.get_spaces())


def test_only_the_named_weights_are_optimized_and_move():
    runner, learner = _learner(SUBSET)
    module = learner.module[DEFAULT_MODULE_ID]
    named = {n for n, p in module.named_parameters() if p.requires_grad}
    assert named == {n for n, _ in module.named_parameters()
                     if n.endswith("prior_bias") or n.startswith("_value_head.")}
    optimized = {id(p) for opt in learner._optimizer_parameters for p in opt.param_groups[0]
                 ["params"]}
    assert optimized == {id(p) for p in module.parameters() if p.requires_grad}
    before = copy.deepcopy(module.state_dict())
    learner.update(episodes=runner.sample(num_timesteps=32), num_epochs=1, minibatch_size=32)
    after = module.state_dict()
    moved = {k for k in after if not torch.equal(before[k], after[k])}
    assert moved and all(k in named for k in moved)
    assert "_core.prior_bias" in moved


def test_without_the_key_every_weight_trains():
    _, learner = _learner(None)
    module = learner.module[DEFAULT_MODULE_ID]
    assert all(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize(("settings", "match"), [
    ("prior_bias", "non-empty list"), ([], "non-empty list"), (["("], "bad pattern"),
])
def test_bad_trainable_settings_are_named(settings, match):
    with pytest.raises(ConfigError, match=match):
        trainable_patterns(settings)


def test_a_pattern_naming_no_weight_is_an_error():
    with pytest.raises(ConfigError, match="'no_such_weight' names no parameter"):
        _learner(["no_such_weight"])
