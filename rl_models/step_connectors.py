"""Env-runner connectors for a stateful single-agent module: one pass each way per step.

At every env step RLlib's default env-to-module pipeline (five pieces) and module-to-env
pipeline (six) handle each env's data item by item: add a time axis to every observation and
state array one at a time, batch them, convert them; then sample, convert back, unbatch every
column, drop the time axis item by item and listify. On the learning benchmark's module that
took a third of the sampling time, as long as the env itself.

`StepBatch` and `StepActions` do the same work column by column: one ``np.stack`` per
observation and state array, one distribution for the batch, one conversion per column. They
equal the default pipelines on the same episodes (tested). :func:`use_step_connectors` puts
them in an AlgorithmConfig that has no connectors of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import tree
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.utils.annotations import override

__all__ = ["StepActions", "StepBatch", "use_step_connectors"]


def _single_agent(episodes: list[Any]) -> None:
    if episodes and isinstance(episodes[0], MultiAgentEpisode):
        raise ValueError("the step connectors handle single-agent env runners only")


class StepBatch(ConnectorV2):
    """Env-to-module: each env's newest observation and state, batched with a time axis.

    Gives ``obs`` (B, 1, ...) and ``state_in`` (B, ...) tensors: the episode's last
    ``state_out``, or the module's initial state where an episode has not stepped yet.
    """

    @override(ConnectorV2)
    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 explore: bool | None = None, shared_data: dict | None = None,
                 **kwargs) -> Any:
        """Returns ``batch`` with ``obs`` and ``state_in`` (see the class docstring)."""
        _single_agent(episodes)
        initial = None
        states = []
        for e in episodes:
            if (e.t_started == 0 and len(e) == 0) or (
                    Columns.STATE_OUT not in e.extra_model_outputs):
                if initial is None:
                    initial = tree.map_structure(np.asarray, rl_module.get_initial_state())
                states.append(initial)
            else:
                states.append(e.get_extra_model_outputs(key=Columns.STATE_OUT, indices=-1))
        observations = [e.get_observations(-1) for e in episodes]
        batch[Columns.OBS] = tree.map_structure(
            lambda *xs: torch.from_numpy(np.stack(xs)[:, None]), *observations)
        batch[Columns.STATE_IN] = tree.map_structure(
            lambda *xs: torch.from_numpy(np.stack(xs)), *states)
        return batch


class StepActions(ConnectorV2):
    """Module-to-env: actions for the vector env and each env's extra model outputs.

    Samples the action distribution of ``action_dist_inputs`` (its mean when not exploring)
    unless the module gave actions, adds ``action_logp``, drops the time axis, and returns
    numpy columns indexable by env (``state_out`` a list of per-env dicts). Actions go to
    the env as sampled: the builder keeps RLlib's action normalizing and clipping off.
    """

    @override(ConnectorV2)
    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 explore: bool | None = None, shared_data: dict | None = None,
                 **kwargs) -> Any:
        """Returns the env-side columns (see the class docstring)."""
        _single_agent(episodes)
        state = batch.pop(Columns.STATE_OUT, None)
        out = {k: v.squeeze(1) if v.dim() > 1 and v.shape[1] == 1 else v
               for k, v in batch.items()}
        if Columns.ACTIONS not in out:
            dist_cls = (rl_module.get_exploration_action_dist_cls() if explore
                        else rl_module.get_inference_action_dist_cls())
            dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
            if not explore:
                dist = dist.to_deterministic()
            out[Columns.ACTIONS] = dist.sample()
            if Columns.ACTION_LOGP not in out:
                out[Columns.ACTION_LOGP] = dist.logp(out[Columns.ACTIONS])
        to_env = {k: v.detach().cpu().numpy() for k, v in out.items()}
        if state is not None:
            state = tree.map_structure(lambda x: x.detach().cpu().numpy(), state)
            to_env[Columns.STATE_OUT] = [tree.map_structure(lambda x, i=i: x[i], state)
                                         for i in range(len(episodes))]
        return to_env


def _step_batch(env: Any = None, spaces: Any = None, device: Any = None) -> StepBatch:
    return StepBatch()


def _step_actions(env: Any = None, spaces: Any = None) -> StepActions:
    return StepActions()


def use_step_connectors(config: AlgorithmConfig) -> bool:
    """Puts `StepBatch` and `StepActions` in place of RLlib's default env-runner pipelines.

    Only where the config has neither connectors of its own nor multi-agent policies and
    hands actions to the env unchanged (``normalize_actions`` and ``clip_actions`` off).

    Returns:
        Whether the connectors were put in place.
    """
    if (config._env_to_module_connector is not None
            or config._module_to_env_connector is not None
            or not config.add_default_connectors_to_env_to_module_pipeline
            or not config.add_default_connectors_to_module_to_env_pipeline
            or config.is_multi_agent or config.normalize_actions or config.clip_actions):
        return False
    config.env_runners(env_to_module_connector=_step_batch,
                       module_to_env_connector=_step_actions,
                       add_default_connectors_to_env_to_module_pipeline=False,
                       add_default_connectors_to_module_to_env_pipeline=False)
    return True
