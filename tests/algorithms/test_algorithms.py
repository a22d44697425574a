"""PPO, APPO, IMPALA and vanilla PG on the real MixingEnv and AttentionLSTMModule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _algo_helpers import OneTrackEnv, deterministic_rollout
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.impala import IMPALAConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

from mixing_env.envs import RAY_ENV_NAME
from mixing_env.errors import ConfigError
from rl_models.algorithms import ALGORITHMS, PGConfig, build_algorithm_config

pytestmark = pytest.mark.ray

# Tiny attention LSTM: k=8, l=3, r=8; episodes of 8 chunks, BPTT over 8 steps.
TINY_MODEL = {
    "embed_dim": 4,
    "hidden_size": 8,
    "mix_hidden_size": 3,
    "attention_dim": 8,
    "max_seq_len": 8,
    "value_hiddens": [16],
}
ENV_CONFIG = {"episode_chunks": 8, "seed": 0}
SMALL_TRAINING = {
    "PPO": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 2},
    "APPO": {"train_batch_size_per_learner": 64},
    "IMPALA": {"train_batch_size_per_learner": 64},
    "PG": {"train_batch_size_per_learner": 64},
}


def _build(algorithm: str, *, training: dict | None = None, seed: int = 0) -> Algorithm:
    config = build_algorithm_config(
        algorithm,
        env_config=ENV_CONFIG,
        model=TINY_MODEL,
        training=training if training is not None else SMALL_TRAINING[algorithm],
        seed=seed,
    )
    # The real MixingEnv, on an in-memory song made by the test (no dataset on disk).
    config.environment(OneTrackEnv)
    return config.build_algo()


# ---------------------------------------------------------------------------- config only


@pytest.mark.parametrize(
    ("name", "config_cls"),
    [("ppo", PPOConfig), ("APPO", APPOConfig), ("Impala", IMPALAConfig), ("pg", PGConfig)],
    ids=["ppo", "appo", "impala", "pg"],
)
def test_config_is_new_stack_with_unchanged_actions(name, config_cls):
    config = build_algorithm_config(name, env_config=ENV_CONFIG, model=TINY_MODEL, seed=3)
    assert type(config) is config_cls
    assert config.enable_rl_module_and_learner and config.enable_env_runner_and_connector_v2
    assert config.env == RAY_ENV_NAME
    assert config.env_config == ENV_CONFIG
    assert config.normalize_actions is False and config.clip_actions is False
    assert config.num_env_runners == 0 and config.num_learners == 0
    assert config.seed == 3
    spec = config.rl_module_spec
    assert spec.module_class.__name__ == "AttentionLSTMModule"
    assert spec.model_config["max_seq_len"] == TINY_MODEL["max_seq_len"]
    assert set(ALGORITHMS) == {"PPO", "APPO", "IMPALA", "PG", "BC", "MARWIL"}


def test_option_dicts_reach_the_config():
    config = build_algorithm_config(
        "PPO",
        env_config=ENV_CONFIG,
        training={"lr": 1e-2, "num_epochs": 7, "train_batch_size_per_learner": 96,
                  "minibatch_size": 48},
        env_runners={"num_env_runners": 1, "rollout_fragment_length": 24},
        resources={"num_learners": 0, "num_cpus_for_main_process": 1},
        evaluation={"evaluation_interval": 2, "evaluation_duration": 3},
        fault_tolerance={"restart_failed_env_runners": False},
    )
    assert (config.lr, config.num_epochs, config.minibatch_size) == (1e-2, 7, 48)
    assert config.train_batch_size_per_learner == 96
    assert (config.num_env_runners, config.rollout_fragment_length) == (1, 24)
    assert config.num_cpus_for_main_process == 1
    assert (config.evaluation_interval, config.evaluation_duration) == (2, 3)
    assert config.restart_failed_env_runners is False


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"algorithm": "DQN"},
         r"unknown algorithm 'DQN'; expected one of \['APPO', 'BC', 'IMPALA'"),
        ({"training": {"learning_rate": 1e-3}}, r"unknown training key\(s\) \['learning_rate'\]"),
        ({"env_runners": {"num_runners": 1}}, r"unknown env_runners key\(s\) \['num_runners'\]"),
        ({"resources": {"gpus": 1}}, r"unknown resources key\(s\) \['gpus'\]"),
        ({"evaluation": {"interval": 1}}, r"unknown evaluation key\(s\) \['interval'\]"),
        ({"fault_tolerance": {"retries": 2}}, r"unknown fault_tolerance key\(s\) \['retries'\]"),
        (
            {"training": {"train_batch_size_per_learner": 32, "minibatch_size": 64}},
            r"invalid PPO configuration: .*`minibatch_size` \(64\) must be <=",
        ),
        ({"algorithm": "PG", "training": {"entropy_coeff": -1.0}}, r"entropy_coeff.*-1\.0"),
        ({"env_config": {"episode_chunk": 8}}, r"episode_chunk"),
        ({"env_config": {"episode_chunks": 0}}, r"episode_chunks must be a positive integer"),
        ({"module": "no_such_module"}, r"unknown model name 'no_such_module'"),
        ({"model": {"hidden_size": 7}}, r"hidden_size"),
        ({"seed": "zero"}, r"seed must be an int or None, got 'zero'"),
    ],
    ids=[
        "unknown-algorithm", "training-key", "env-runners-key", "resources-key",
        "evaluation-key", "fault-tolerance-key", "minibatch-too-large", "pg-negative-entropy",
        "env-config-key", "env-config-value", "unknown-module", "bad-model-value", "bad-seed",
    ],
)
def test_bad_config_raises_config_error(kwargs, match):
    kwargs = {"env_config": ENV_CONFIG, "model": TINY_MODEL} | kwargs
    with pytest.raises(ConfigError, match=match):
        build_algorithm_config(**kwargs)


# ---------------------------------------------------------------------------- training


def _finite(x) -> bool:
    return math.isfinite(float(x))


# Both sampling set-ups on each algorithm family: local sampling (0 env runners) and one
# remote env runner, which builds the env from the Ray registry in its own process.
@pytest.mark.parametrize(
    ("algorithm", "num_env_runners"),
    [("PPO", 0), ("APPO", 1), ("IMPALA", 0), ("PG", 0)],
    ids=["ppo-local", "appo-1-runner", "impala-local", "pg-local"],
)
def test_two_training_iterations_on_registered_env(ray_session, algorithm, num_env_runners):
    # Only plain dicts: the env comes from the "deepmixing" registration, songs synthetic.
    config = build_algorithm_config(
        algorithm,
        env_config={
            "synthetic": {"n_songs": 2, "seconds": 0.2, "n_tracks": 3, "seed": 0},
            "episode_chunks": 8,
        },
        model=TINY_MODEL,
        training=SMALL_TRAINING[algorithm],
        env_runners={"num_env_runners": num_env_runners},
        seed=0,
    )
    algo = config.build_algo()
    try:
        for _ in range(2):
            result = algo.train()
    finally:
        algo.stop()
    learner = result["learners"]["default_policy"]
    policy_loss = learner["pi_loss"] if algorithm == "IMPALA" else learner["policy_loss"]
    for value in (policy_loss, learner["vf_loss"], learner["entropy"], learner["total_loss"]):
        assert _finite(value)
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 2 * 64
    assert result["learners"]["__all_modules__"]["num_env_steps_trained_lifetime"] > 0
    assert 0.0 < result["env_runners"]["episode_return_mean"] <= 8.0


def test_ppo_learns_to_pick_the_matching_track(ray_session):
    # Reference == track 0 alone: the deterministic policy should move gain onto slot 0.
    algo = _build(
        "PPO",
        training={"lr": 5e-3, "train_batch_size_per_learner": 128, "minibatch_size": 64,
                  "num_epochs": 4},
    )
    env = OneTrackEnv({"episode_chunks": 16})
    try:
        actions_before, reward_before = deterministic_rollout(algo.get_module(), env)
        returns = [algo.train()["env_runners"]["episode_return_mean"] for _ in range(6)]
        actions_after, reward_after = deterministic_rollout(algo.get_module(), env)
    finally:
        algo.stop()
    assert reward_after > reward_before + 0.1
    assert actions_after[:, 0].mean() > actions_before[:, 0].mean() + 0.05
    assert np.mean(returns[-2:]) > np.mean(returns[:2])


@pytest.mark.parametrize("algorithm", ["PPO", "PG"], ids=["ppo", "pg"])
def test_checkpoint_restores_identical_deterministic_actions(ray_session, tmp_path, algorithm):
    algo = _build(algorithm, training=SMALL_TRAINING[algorithm] | {"lr": 1e-2})
    env = OneTrackEnv({"episode_chunks": 8})
    try:
        initial, _ = deterministic_rollout(algo.get_module(), env)
        algo.train()
        trained, _ = deterministic_rollout(algo.get_module(), env)
        path = algo.save_to_path(tmp_path / "checkpoint")
    finally:
        algo.stop()
    restored_algo = Algorithm.from_checkpoint(path)
    try:
        assert type(restored_algo).__name__ == algorithm
        restored, _ = deterministic_rollout(restored_algo.get_module(), env)
    finally:
        restored_algo.stop()
    assert not np.allclose(initial, trained)  # training moved the policy...
    np.testing.assert_array_equal(restored, trained)  # ...and the checkpoint kept it


def _pg_learner_batch(algo):
    """On-policy episodes run through the PG learner's own connector pipeline."""
    learner = algo.learner_group._learner
    episodes = algo.env_runner.sample(num_timesteps=32, random_actions=False)
    assert all(e.is_terminated for e in episodes)
    # The pipeline appends an artificial step to each episode: keep the real rewards first.
    rewards = [np.asarray(e.get_rewards(), dtype=np.float64) for e in episodes]
    batch = learner._learner_connector(rl_module=learner.module, batch={}, episodes=episodes,
                                       explore=False, shared_data={}, metrics=learner.metrics)
    return learner, rewards, batch["default_policy"]


def test_pg_learner_targets_are_monte_carlo_returns(ray_session):
    gamma = 0.9
    algo = _build("PG", training=SMALL_TRAINING["PG"] | {"gamma": gamma})
    try:
        learner, episode_rewards, batch = _pg_learner_batch(algo)
    finally:
        algo.stop()
    valid = batch[Columns.LOSS_MASK].numpy().astype(bool)
    targets = batch[Postprocessing.VALUE_TARGETS].numpy()[valid]
    expected = []
    for rewards in episode_rewards:
        expected += [sum(gamma**k * r for k, r in enumerate(rewards[t:]))
                     for t in range(len(rewards))]
    # The learner's pipeline (an artificial last step, GAE at lambda 1) must give the
    # discounted Monte-Carlo returns of terminated episodes, whatever the value predictions.
    np.testing.assert_allclose(targets, expected, rtol=1e-4, atol=1e-5)


def test_pg_learner_loss_is_reinforce_with_a_value_baseline(ray_session):
    import torch

    training = SMALL_TRAINING["PG"] | {"entropy_coeff": 0.01, "vf_loss_coeff": 0.5}
    algo = _build("PG", training=training)
    try:
        learner, _, batch = _pg_learner_batch(algo)
        module = learner.module["default_policy"].unwrapped()
        config = learner.config.get_config_for_module("default_policy")
        with torch.no_grad():
            fwd_out = module.forward_train(batch)
            loss = learner.compute_loss_for_module(module_id="default_policy", config=config,
                                                   batch=batch, fwd_out=fwd_out)
            mask = batch[Columns.LOSS_MASK].float()
            dist = module.get_train_action_dist_cls().from_logits(
                fwd_out[Columns.ACTION_DIST_INPUTS])
            logp, entropy = dist.logp(batch[Columns.ACTIONS]), dist.entropy()
            values = module.compute_values(batch)
    finally:
        algo.stop()
    returns = batch[Postprocessing.VALUE_TARGETS]
    n = mask.sum()
    advantages = returns - values
    if config.standardize_advantages:
        mean = (advantages * mask).sum() / n
        std = (((advantages - mean) ** 2 * mask).sum() / n).sqrt().clamp_min(1e-4)
        advantages = (advantages - mean) / std
    expected = (-(logp * advantages * mask).sum() / n
                + 0.5 * (((values - returns) ** 2) * mask).sum() / n
                - 0.01 * (entropy * mask).sum() / n)
    assert float(loss) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
