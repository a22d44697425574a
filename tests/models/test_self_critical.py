"""The self-critical baseline: the env scores the policy's mean action beside the drawn one,
the env runner sends both, the learner's advantage is the difference."""

import copy

import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.errors import ActionError, ConfigError
from rl_models.algorithms import build_algorithm_config
from rl_models.sequence_batch import SequenceTrainBatch

ENV = {"synthetic": {"n_songs": 3, "seconds": 1.0, "n_tracks": [2, 4], "seed": 0},
       "episode_chunks": 11, "obs_features": "logmel", "n_track_features": 4,
       "self_critical": True}
MODEL = {"embed_dim": 4, "hidden_size": 6, "mix_hidden_size": 3, "attention_dim": 5,
         "input_norm": "db", "log_rms_feature": False, "max_seq_len": 4}
TRAINING = {"gamma": 0.0, "train_batch_size_per_learner": 64, "minibatch_size": 32}


def _draw(rng, n):
    return rng.dirichlet(np.ones(n)).astype(np.float32)


def test_env_plays_the_first_action_and_scores_the_second_from_the_same_state():
    env, alone = MixingEnv(ENV), MixingEnv({**ENV, "self_critical": False})
    env.reset(seed=3)
    alone.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(8):
        played, baseline = _draw(rng, env.n_slots), _draw(rng, env.n_slots)
        counterfactual = copy.deepcopy(env)
        obs, reward, done, _, info = env.step(np.concatenate([played, baseline]))
        obs_alone, reward_alone, _, _, info_alone = alone.step(played)
        # The played action is what counts: the same reward, observation and next state.
        assert reward == reward_alone and info["kl"] == info_alone["kl"]
        np.testing.assert_array_equal(obs["mix_mfcc"], obs_alone["mix_mfcc"])
        # The baseline's reward is what playing it instead would have earned (KL included).
        assert info["baseline_reward"] == pytest.approx(counterfactual.step(baseline)[1],
                                                        abs=1e-12)
        assert not done


def test_env_without_self_critical_refuses_two_actions_and_with_it_takes_one():
    rng = np.random.default_rng(1)
    plain = MixingEnv({**ENV, "self_critical": False})
    plain.reset(seed=0)
    with pytest.raises(ActionError, match=rf"shape \({plain.n_slots},\)"):
        plain.step(_draw(rng, 2 * plain.n_slots))
    env = MixingEnv(ENV)
    env.reset(seed=0)
    assert "baseline_reward" not in env.step(_draw(rng, env.n_slots))[4]
    with pytest.raises(ActionError, match=rf"or \({2 * env.n_slots},\)"):
        env.step(_draw(rng, 3))
    with pytest.raises(ConfigError, match="self_critical must be a bool"):
        MixingEnv({**ENV, "self_critical": "yes"})


@pytest.fixture(scope="module")
def sampled():
    config = build_algorithm_config("PPO", env_config=ENV, model=MODEL, training=TRAINING,
                                    env_runners={"num_envs_per_env_runner": 3}, seed=0)
    runner = SingleAgentEnvRunner(config=config)
    episodes = runner.sample(num_timesteps=40)
    return config, runner, episodes


def test_env_runner_sends_the_policys_mean_and_the_episode_keeps_the_drawn_action(sampled):
    config, runner, episodes = sampled
    module = runner.module
    dist_cls = module.get_exploration_action_dist_cls()
    checked = 0
    for episode in episodes:
        if episode.t_started != 0:
            continue
        infos = episode.get_infos()
        env = MixingEnv({**ENV, "self_critical": False})
        env.reset(options={"song": infos[0]["song"], "start": infos[0]["chunk"]})
        inputs = torch.as_tensor(episode.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS))
        means = dist_cls.from_logits(inputs).to_deterministic().sample().numpy()
        for t, action in enumerate(episode.get_actions()):
            assert action.shape == (env.n_slots,)
            counterfactual = copy.deepcopy(env)
            assert infos[t + 1]["baseline_reward"] == pytest.approx(
                counterfactual.step(means[t])[1], abs=1e-5)
            assert env.step(action)[1] == pytest.approx(episode.get_rewards()[t], abs=1e-6)
            checked += 1
    assert checked >= 10


def test_advantages_are_the_reward_less_the_mean_actions_reward(sampled):
    config, runner, episodes = sampled
    module = config.get_multi_rl_module_spec(
        env=runner.env.unwrapped, spaces=runner.get_spaces(), inference_only=False).build()
    module[DEFAULT_MODULE_ID].load_state_dict(runner.module.state_dict(), strict=False)
    got = SequenceTrainBatch(gamma=0.0, lambda_=1.0, self_critical=True)(
        rl_module=module, batch={}, episodes=copy.deepcopy(episodes))[DEFAULT_MODULE_ID]
    mask = got[Columns.LOSS_MASK].bool()
    rewards = np.concatenate([e.get_rewards() for e in episodes])
    baseline = np.concatenate([[i["baseline_reward"] for i in e.get_infos()[-len(e):]]
                               for e in episodes])
    expected = torch.as_tensor(rewards - baseline, dtype=torch.float32)
    expected = (expected - expected.mean()) / expected.std(unbiased=False)
    torch.testing.assert_close(got["advantages"][mask], expected, atol=1e-4, rtol=0)
    # The value head still learns the rewards.
    torch.testing.assert_close(got["value_targets"][mask],
                               torch.as_tensor(rewards, dtype=torch.float32))


def test_episodes_without_a_baseline_and_bad_settings_are_named(sampled):
    config, runner, episodes = sampled
    plain = copy.deepcopy(episodes)
    for e in plain:
        for info in e.infos:
            info.pop("baseline_reward", None)
    module = runner.module
    with pytest.raises(ConfigError, match="no 'baseline_reward'"):
        SequenceTrainBatch(gamma=0.0, lambda_=1.0, self_critical=True)(
            rl_module=module, batch={}, episodes=plain)
    with pytest.raises(ConfigError, match="gamma 0"):
        SequenceTrainBatch(gamma=0.5, lambda_=1.0, self_critical=True)
    with pytest.raises(ConfigError, match="episode_baseline"):
        SequenceTrainBatch(gamma=0.0, lambda_=1.0, self_critical=True, episode_baseline=4)


def test_builder_checks_self_critical_and_the_learner_reads_it_from_the_env(sampled):
    config, runner, _ = sampled
    learner = config.build_learner(env=runner.env.unwrapped, spaces=runner.get_spaces())
    (piece,) = learner._learner_connector.connectors
    assert piece.self_critical
    with pytest.raises(ConfigError, match="gamma 0"):
        build_algorithm_config("PPO", env_config=ENV, model=MODEL,
                               training={**TRAINING, "gamma": 0.5})
    with pytest.raises(ConfigError, match="self_critical needs"):
        build_algorithm_config("APPO", env_config=ENV, model=MODEL,
                               training={"gamma": 0.0})
