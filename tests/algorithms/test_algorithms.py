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
from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets

from mixing_env.errors import ConfigError
from rl_models.algorithms import ALGORITHMS, ENV_NAME, PGConfig, build_algorithm_config

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
    assert config.env == ENV_NAME
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


def test_gae_at_lambda_one_gives_monte_carlo_returns():
    # PG's learner takes its returns from GAE at lambda=1; on a terminated episode these
    # must be the discounted Monte-Carlo returns, whatever the value predictions are.
    rng = np.random.default_rng(0)
    rewards = rng.random(6).astype(np.float32)
    values = rng.normal(size=7).astype(np.float32)  # last entry: the artificial bootstrap ts
    rewards_ext = np.append(rewards, 0.0).astype(np.float32)
    terminateds = np.zeros(7, bool)
    terminateds[-1] = True
    targets = compute_value_targets(
        values=values, rewards=rewards_ext, terminateds=terminateds,
        truncateds=np.zeros(7, bool), gamma=0.9, lambda_=1.0,
    )
    expected = [sum(0.9**k * r for k, r in enumerate(rewards[t:])) for t in range(6)]
    np.testing.assert_allclose(targets[:6], expected, rtol=1e-5)


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
