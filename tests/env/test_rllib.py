"""MixingEnv inside RLlib env runners (new API stack), with RLlib's default module."""

import numpy as np
import pytest
from _env_songs import make_song

from mixing_env.envs import register_with_ray
from mixing_env.envs.mixing_env import MixingEnv

pytestmark = pytest.mark.ray


class RecordingMixingEnv(MixingEnv):
    """Keeps every action that reaches step(), to compare with what RLlib stored."""

    instances: list["RecordingMixingEnv"] = []

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self.received: list[np.ndarray] = []
        RecordingMixingEnv.instances.append(self)

    def step(self, action):
        self.received.append(np.array(action, copy=True))
        return super().step(action)


def _ppo_config(env, env_config):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.connectors.env_to_module import FlattenObservations

    return (
        PPOConfig()
        # Required: RLlib must not rescale or clip the env's Box(0, 1) actions.
        .environment(env, env_config=env_config, normalize_actions=False, clip_actions=False)
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=2,
            rollout_fragment_length=8,
            env_to_module_connector=lambda env, spaces, device: FlattenObservations(),
        )
        .training(train_batch_size_per_learner=32, minibatch_size=16, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [16]})
        .debugging(seed=0)
    )


def test_rllib_hands_module_actions_to_env_unchanged(ray_session):
    from ray.tune.registry import register_env

    songs = [make_song(f"r{i}", seed=i, n_chunks=6) for i in range(2)]
    register_env("deepmixing_recording", lambda cfg: RecordingMixingEnv(cfg, songs=songs))
    RecordingMixingEnv.instances.clear()
    algo = _ppo_config("deepmixing_recording", {"obs_features": "logmel"}).build_algo()
    try:
        episodes = algo.env_runner.sample(num_timesteps=20, random_actions=False)
        stored = np.concatenate([np.asarray(e.get_actions()) for e in episodes])
        received = np.concatenate([np.stack(env.received) for env in RecordingMixingEnv.instances
                                   if env.received])
        assert stored.shape == received.shape and stored.shape[1] == 4
        # Gaussian actions leave [0, 1] often: a rescale or clip would show here.
        assert (stored < 0).any() or (stored > 1).any()
        order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
        np.testing.assert_array_equal(order(stored), order(received.astype(stored.dtype)))
    finally:
        algo.stop()


def test_ppo_trains_one_step_via_registry(ray_session):
    name = register_with_ray()
    config = {"synthetic": {"n_songs": 2, "seconds": 0.3, "n_tracks": 3, "seed": 0},
              "obs_features": "logmel", "episode_chunks": 8}
    algo = _ppo_config(name, config).build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 32
        assert np.isfinite(result["learners"]["default_policy"]["total_loss"])
    finally:
        algo.stop()
