"""The one-pass env-runner connectors against RLlib's default pipelines on the same episodes."""

import copy

import numpy as np
import pytest
import torch
import tree
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from rl_models.algorithms import build_algorithm_config
from rl_models.step_connectors import StepActions, StepBatch, use_step_connectors

from .test_sequence_batch import ENV, MODEL


@pytest.fixture(scope="module")
def runner():
    config = build_algorithm_config(
        "PPO", env_config=ENV, model={**MODEL, "max_seq_len": 4},
        training={"train_batch_size_per_learner": 64, "minibatch_size": 32},
        env_runners={"num_envs_per_env_runner": 3}, seed=0)
    runner = SingleAgentEnvRunner(config=config)
    assert [type(c) for c in runner._env_to_module.connectors] == [StepBatch]
    assert [type(c) for c in runner._module_to_env.connectors] == [StepActions]
    runner.sample(num_timesteps=20)
    continued = copy.deepcopy(runner._ongoing_episodes)  # their state is the lookback's
    runner._reset_envs_and_episodes(explore=True)  # fresh: no step yet, the initial state
    return runner, config, continued[:2] + runner._ongoing_episodes[:1]


def _default_pipelines(config):
    default = config.copy(copy_frozen=False).env_runners(
        env_to_module_connector=None, module_to_env_connector=None,
        add_default_connectors_to_env_to_module_pipeline=True,
        add_default_connectors_to_module_to_env_pipeline=True)
    return default.build_env_to_module_connector(), default.build_module_to_env_connector()


def _assert_equal(got, expected):
    tree.map_structure(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                               atol=1e-6, rtol=0),
                       got, expected)


@pytest.mark.parametrize("explore", [True, False], ids=["explore", "inference"])
def test_step_connectors_equal_rllib_default_pipelines(runner, explore):
    runner, config, episodes = runner
    assert [e.t_started > 0 for e in episodes] == [True, True, False]
    env_to_module, module_to_env = _default_pipelines(config)
    module = runner.module

    shared = {}  # RLlib's module-to-env pipeline reads what its env-to-module one left here
    expected = env_to_module(rl_module=module, batch={}, episodes=episodes,
                             explore=explore, shared_data=shared)
    got = StepBatch()(rl_module=module, batch={}, episodes=copy.deepcopy(episodes),
                      explore=explore, shared_data={})
    _assert_equal(got, expected)

    forward = module.forward_exploration if explore else module.forward_inference
    out = forward(got)
    torch.manual_seed(3)
    expected = module_to_env(rl_module=module, batch=copy.deepcopy(out), episodes=episodes,
                             explore=explore, shared_data=shared)
    torch.manual_seed(3)
    got = StepActions()(rl_module=module, batch=copy.deepcopy(out), episodes=episodes,
                        explore=explore, shared_data={})
    assert sorted(got) == sorted(expected)
    for key in got:  # what the env runner stores per env: row i of each column
        for i in range(len(episodes)):
            _assert_equal(tree.map_structure(lambda x, i=i: x[i], got[key])
                          if key != Columns.STATE_OUT else got[key][i], expected[key][i])


def test_use_step_connectors_leaves_configs_with_their_own_connectors():
    config = PPOConfig().env_runners(env_to_module_connector=lambda *a: StepBatch())
    assert not use_step_connectors(config)
    assert not use_step_connectors(PPOConfig().environment(clip_actions=True))


def _sampled(config, monkeypatch, *, reuse):
    """Episodes of 25 steps from a fresh env runner; ``reuse`` False: states always stacked."""
    from rl_models import step_connectors

    calls = {"reused": 0}
    step_batch = step_connectors.StepBatch.__call__

    def counting(self, **kwargs):
        last = (kwargs.get("shared_data") or {}).get(step_connectors._LAST_STATE)
        if not reuse:
            kwargs.get("shared_data", {}).pop(step_connectors._LAST_STATE, None)
        out = step_batch(self, **kwargs)
        calls["reused"] += last is not None and out[Columns.STATE_IN] is last[1]
        return out

    with monkeypatch.context() as m:
        m.setattr(step_connectors.StepBatch, "__call__", counting)
        runner = SingleAgentEnvRunner(config=config)
        episodes = runner.sample(num_timesteps=75)
    return episodes, calls["reused"]


def test_step_batch_reuses_the_last_state_out_exactly(monkeypatch):
    """Reusing the module's last state_out gives the very episodes stacking gives."""
    config = build_algorithm_config(
        "PPO", env_config=ENV, model={**MODEL, "max_seq_len": 4},
        training={"train_batch_size_per_learner": 64, "minibatch_size": 32},
        env_runners={"num_envs_per_env_runner": 3}, seed=0)
    fast, reused = _sampled(config, monkeypatch, reuse=True)
    slow, never = _sampled(config, monkeypatch, reuse=False)
    assert reused > 10 and never == 0
    assert [len(e) for e in fast] == [len(e) for e in slow]
    for a, b in zip(fast, slow, strict=True):
        tree.map_structure(np.testing.assert_array_equal, a.get_observations(),
                           b.get_observations())
        np.testing.assert_array_equal(a.get_actions(), b.get_actions())
        for key in (Columns.STATE_OUT, Columns.ACTION_LOGP, Columns.VF_PREDS):
            tree.map_structure(np.testing.assert_array_equal,
                               a.get_extra_model_outputs(key), b.get_extra_model_outputs(key))
