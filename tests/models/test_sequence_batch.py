"""The one-pass learner connector against RLlib's default pipeline on the same episodes."""

import copy

import numpy as np
import pytest
import torch
import tree
from ray.rllib.connectors.learner import (
    AddOneTsToEpisodesAndTruncate,
    GeneralAdvantageEstimation,
)
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from rl_models.algorithms import build_algorithm_config
from rl_models.sequence_batch import SequenceTrainBatch, sequence_layout

ENV = {"synthetic": {"n_songs": 3, "seconds": 1.0, "n_tracks": [2, 4], "seed": 0},
       "episode_chunks": 11, "obs_features": "logmel", "n_track_features": 4}
MODEL = {"embed_dim": 4, "hidden_size": 6, "mix_hidden_size": 3, "attention_dim": 5,
         "input_norm": "db", "log_rms_feature": False}


def test_sequence_layout_pads_only_the_last_sequence_of_each_fragment():
    src, seq_lens = sequence_layout([5, 2], 3)
    pad = 7
    np.testing.assert_array_equal(src, [[0, 1, 2], [3, 4, pad], [5, 6, pad]])
    np.testing.assert_array_equal(seq_lens, [3, 2, 2])


def _sampled(max_seq_len, gamma, lambda_):
    config = build_algorithm_config(
        "PPO", env_config=ENV, model={**MODEL, "max_seq_len": max_seq_len},
        training={"gamma": gamma, "lambda_": lambda_, "train_batch_size_per_learner": 64,
                  "minibatch_size": 32},
        env_runners={"num_envs_per_env_runner": 3}, seed=0)
    runner = SingleAgentEnvRunner(config=config)
    runner.sample(num_timesteps=20)
    # The second call continues cut fragments (a state from the lookback) and starts new ones.
    episodes = runner.sample(num_timesteps=30)
    module = config.get_multi_rl_module_spec(
        env=runner.env.unwrapped, spaces=runner.get_spaces(), inference_only=False).build()
    # The learner's weights are the sampler's: stored states are what it would compute.
    module[DEFAULT_MODULE_ID].load_state_dict(runner.module.state_dict(), strict=False)
    return config, episodes, module


def _rllib_batch(config, episodes, module, gamma, lambda_):
    pipeline = config.build_learner_connector(input_observation_space=None,
                                              input_action_space=None)
    pipeline.prepend(AddOneTsToEpisodesAndTruncate())
    pipeline.append(GeneralAdvantageEstimation(gamma=gamma, lambda_=lambda_))
    return pipeline(rl_module=module, batch={}, episodes=copy.deepcopy(episodes),
                    shared_data={})[DEFAULT_MODULE_ID]


def _real_steps(batch, column):
    mask = batch[Columns.LOSS_MASK].bool()
    return tree.map_structure(lambda x: x[mask], batch[column])


def _standardized(x):
    return (x - x.mean()) / x.std(unbiased=False)


@pytest.mark.parametrize("recorded_values", [True, False], ids=["vf-preds", "value-forward"])
@pytest.mark.parametrize(("max_seq_len", "gamma", "lambda_"),
                         [(4, 0.9, 0.95), (5, 0.5, 1.0), (1, 0.0, 1.0)],
                         ids=["T4-gae", "T5-monte-carlo", "T1-gamma0"])
def test_sequence_train_batch_equals_rllib_default_pipeline(max_seq_len, gamma, lambda_,
                                                            recorded_values):
    config, episodes, module = _sampled(max_seq_len, gamma, lambda_)
    assert {e.t_started > 0 for e in episodes} == {True, False}  # continued and new fragments
    assert all(Columns.VF_PREDS in e.extra_model_outputs for e in episodes)
    if not recorded_values:  # a module that records none: the connector runs the network
        for e in episodes:
            del e.extra_model_outputs[Columns.VF_PREDS]
    expected = _rllib_batch(config, episodes, module, gamma, lambda_)
    shared = {}
    got = SequenceTrainBatch(gamma=gamma, lambda_=lambda_)(
        rl_module=module, batch={}, episodes=copy.deepcopy(episodes),
        shared_data=shared)[DEFAULT_MODULE_ID]

    assert shared == {f"_zero_padded_for_mid={DEFAULT_MODULE_ID}": True}
    lengths = [len(e) for e in episodes]
    assert int(got[Columns.LOSS_MASK].sum()) == sum(lengths)
    assert len(got[Columns.SEQ_LENS]) == sum(-(-n // max_seq_len) for n in lengths)  # no
    # sequence of padding only (RLlib adds one wherever max_seq_len divides a fragment + 1)
    for column in (Columns.OBS, Columns.ACTIONS, Columns.REWARDS, Columns.ACTION_LOGP,
                   Columns.ACTION_DIST_INPUTS, "value_targets"):
        tree.map_structure(
            lambda a, b: torch.testing.assert_close(a.float(), b.float(), atol=1e-5, rtol=0),
            _real_steps(got, column), _real_steps(expected, column))
    # RLlib standardizes its advantages with the bootstrap steps among them: the same up to
    # one affine map over the real steps.
    torch.testing.assert_close(_real_steps(got, "advantages"),
                               _standardized(_real_steps(expected, "advantages")),
                               atol=1e-4, rtol=0)
    # Each sequence starts from the state RLlib hands the same sequence.
    expected_seq = np.cumsum([0] + [-(-(n + 1) // max_seq_len) for n in lengths])[:-1]
    same = np.concatenate([start + np.arange(-(-n // max_seq_len))
                           for start, n in zip(expected_seq, lengths, strict=True)])
    tree.map_structure(lambda a, b: torch.testing.assert_close(a, b[same]),
                       got[Columns.STATE_IN], expected[Columns.STATE_IN])


@pytest.mark.parametrize("algorithm", ["PPO", "PG"])
def test_learners_of_stateful_modules_run_one_sequence_pass(algorithm):
    config = build_algorithm_config(
        algorithm, env_config=ENV, model={**MODEL, "max_seq_len": 4},
        training={"gamma": 0.5, "train_batch_size_per_learner": 64,
                  **({"minibatch_size": 32} if algorithm == "PPO" else {})}, seed=0)
    runner = SingleAgentEnvRunner(config=config)
    learner = config.build_learner(env=runner.env.unwrapped, spaces=runner.get_spaces())
    (piece,) = learner._learner_connector.connectors
    assert isinstance(piece, SequenceTrainBatch)
    assert (piece.gamma, piece.lambda_) == (0.5, config.lambda_ if algorithm == "PPO" else 1.0)


def test_episode_baseline_subtracts_themean_of_earlier_value_errors():
    config, episodes, module = _sampled(4, 0.0, 1.0)
    plain = SequenceTrainBatch(gamma=0.0, lambda_=1.0)(
        rl_module=module, batch={}, episodes=copy.deepcopy(episodes))[DEFAULT_MODULE_ID]
    got = SequenceTrainBatch(gamma=0.0, lambda_=1.0, episode_baseline=1)(
        rl_module=module, batch={}, episodes=copy.deepcopy(episodes))[DEFAULT_MODULE_ID]
    # Horizon 1: each step's advantage less the previous step's in its fragment (none first).
    errors = [e.get_rewards() - e.get_extra_model_outputs(Columns.VF_PREDS) for e in episodes]
    expected = np.concatenate([np.append(err[:1], err[1:] - err[:-1]) for err in errors])
    torch.testing.assert_close(_real_steps(got, "advantages"),
                               _standardized(torch.as_tensor(expected, dtype=torch.float32)),
                               atol=1e-4, rtol=0)
    # The value targets are the rewards either way: only the policy's baseline moves.
    torch.testing.assert_close(_real_steps(got, "value_targets"),
                               _real_steps(plain, "value_targets"))


def testmean_of_earlier_is_the_bias_corrected_running_mean():
    from rl_models.sequence_batch import mean_of_earlier

    x = np.array([1.0, 3.0, 5.0, 7.0])
    keep = 0.5  # horizon 2
    expected = [0.0, 1.0, (keep * 1 + 3) / (1 + keep),
                (keep ** 2 * 1 + keep * 3 + 5) / (1 + keep + keep ** 2)]
    np.testing.assert_allclose(mean_of_earlier(x, 2), expected, rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"gamma": 0.5, "episode_baseline": 8}, "needs gamma 0"),
    ({"gamma": 0.0, "episode_baseline": -1}, "int >= 0"),
    ({"gamma": 0.0, "episode_baseline": 2.5}, "int >= 0"),
])
def test_episode_baseline_bad_settings_are_named(kwargs, match):
    from mixing_env.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        SequenceTrainBatch(lambda_=1.0, **kwargs)


def test_learner_reads_the_episode_baseline_from_its_config_dict():
    config = build_algorithm_config(
        "PPO", env_config=ENV, model={**MODEL, "max_seq_len": 4},
        training={"gamma": 0.0, "train_batch_size_per_learner": 64, "minibatch_size": 32},
        resources={"learner_config_dict": {"episode_baseline": 8}}, seed=0)
    runner = SingleAgentEnvRunner(config=config)
    learner = config.build_learner(env=runner.env.unwrapped, spaces=runner.get_spaces())
    (piece,) = learner._learner_connector.connectors
    assert piece.episode_baseline == 8
