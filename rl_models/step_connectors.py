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


_LAST_STATE = "_step_connectors_last_state"
"""``shared_data`` key: (the per-env ``state_out`` rows StepActions handed to the env runner,
the batched tensors they are rows of)."""


def _map(fn: Any, structs: list[Any]) -> Any:
    """``tree.map_structure(fn, *structs)``, without its checks for a flat dict of arrays."""
    first = structs[0]
    if isinstance(first, dict) and all(isinstance(v, np.ndarray | torch.Tensor)
                                       for v in first.values()):
        return {k: fn(*(s[k] for s in structs)) for k in first}
    return tree.map_structure(fn, *structs)


def _single_agent(episodes: list[Any]) -> None:
    if episodes and isinstance(episodes[0], MultiAgentEpisode):
        raise ValueError("the step connectors handle single-agent env runners only")


class StepBatch(ConnectorV2):
    """Env-to-module: each env's newest observation and state, batched with a time axis.

    Gives ``obs`` (B, 1, ...) and ``state_in`` (B, ...) tensors: the episode's last
    ``state_out``, or the module's initial state where an episode has not stepped yet.

    Most steps stack no state: where every env's last ``state_out`` is the row `StepActions`
    handed out of the module's last ``state_out`` (the env runner stores those objects), the
    module's tensors are used as they are. After a reset or a new fragment the states are
    stacked item by item.
    """

    @override(ConnectorV2)
    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 explore: bool | None = None, shared_data: dict | None = None,
                 **kwargs) -> Any:
        """Returns ``batch`` with ``obs`` and ``state_in`` (see the class docstring)."""
        _single_agent(episodes)
        observations = [e.get_observations(-1) for e in episodes]
        batch[Columns.OBS] = _map(lambda *xs: torch.from_numpy(np.stack(xs)[:, None]),
                                  observations)
        last = (shared_data or {}).get(_LAST_STATE)
        states = []
        for e in episodes:
            if (e.t_started == 0 and len(e) == 0) or (
                    Columns.STATE_OUT not in e.extra_model_outputs):
                states.append(None)
            else:
                states.append(e.get_extra_model_outputs(key=Columns.STATE_OUT, indices=-1))
        if last is not None and len(last[0]) == len(states) and all(
                s is r for s, r in zip(states, last[0], strict=True)):
            batch[Columns.STATE_IN] = last[1]  # the module's last state_out, row for row
            return batch
        if any(s is None for s in states):
            initial = tree.map_structure(np.asarray, rl_module.get_initial_state())
            states = [initial if s is None else s for s in states]
        batch[Columns.STATE_IN] = _map(lambda *xs: torch.from_numpy(np.stack(xs)), states)
        return batch


class StepActions(ConnectorV2):
    """Module-to-env: actions for the vector env and each env's extra model outputs.

    Samples the action distribution of ``action_dist_inputs`` (its mean when not exploring)
    unless the module gave actions, adds ``action_logp``, drops the time axis, and returns
    numpy columns indexable by env (``state_out`` a list of per-env dicts). Actions go to
    the env as sampled: the builder keeps RLlib's action normalizing and clipping off.

    With ``self_critical`` each exploring env also gets the distribution's mean after its
    drawn action (``actions_for_env``, (B, 2C)), which a ``self_critical`` MixingEnv scores
    on the same chunk as the step's baseline; the episode stores the drawn action alone.
    """

    def __init__(self, input_observation_space=None, input_action_space=None, *,
                 self_critical: bool = False) -> None:
        super().__init__(input_observation_space, input_action_space)
        self.self_critical = bool(self_critical)

    @override(ConnectorV2)
    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 explore: bool | None = None, shared_data: dict | None = None,
                 **kwargs) -> Any:
        """Returns the env-side columns (see the class docstring)."""
        _single_agent(episodes)
        state = batch.pop(Columns.STATE_OUT, None)
        out = {k: v.squeeze(1) if v.dim() > 1 and v.shape[1] == 1 else v
               for k, v in batch.items()}
        dist = None
        if Columns.ACTIONS not in out:
            dist_cls = (rl_module.get_exploration_action_dist_cls() if explore
                        else rl_module.get_inference_action_dist_cls())
            dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
            if not explore:
                dist = dist.to_deterministic()
            out[Columns.ACTIONS] = dist.sample()
            if Columns.ACTION_LOGP not in out:
                out[Columns.ACTION_LOGP] = dist.logp(out[Columns.ACTIONS])
        if self.self_critical and explore:
            if dist is None:  # the module drew its own actions
                dist = rl_module.get_exploration_action_dist_cls().from_logits(
                    out[Columns.ACTION_DIST_INPUTS])
            mean = dist.to_deterministic().sample()
            out[Columns.ACTIONS_FOR_ENV] = torch.cat([out[Columns.ACTIONS], mean], dim=-1)
        to_env = {k: v.detach().cpu().numpy() for k, v in out.items()}
        if state is not None:
            arrays = _map(lambda x: x.detach().cpu().numpy(), [state])
            rows = [_map(lambda x, i=i: x[i], [arrays]) for i in range(len(episodes))]
            to_env[Columns.STATE_OUT] = rows
            if shared_data is not None:  # StepBatch's next state_in, where nothing changed
                shared_data[_LAST_STATE] = (rows, _map(lambda x: x.detach(), [state]))
        return to_env


def _step_batch(env: Any = None, spaces: Any = None, device: Any = None) -> StepBatch:
    return StepBatch()


def _step_actions(env: Any = None, spaces: Any = None) -> StepActions:
    return StepActions()


def _self_critical_step_actions(env: Any = None, spaces: Any = None) -> StepActions:
    return StepActions(self_critical=True)


def use_step_connectors(config: AlgorithmConfig) -> bool:
    """Puts `StepBatch` and `StepActions` in place of RLlib's default env-runner pipelines.

    Only where the config has neither connectors of its own nor multi-agent policies and
    hands actions to the env unchanged (``normalize_actions`` and ``clip_actions`` off).
    An env config with ``self_critical`` gets the policy's mean action with each drawn one.

    Returns:
        Whether the connectors were put in place.
    """
    if (config._env_to_module_connector is not None
            or config._module_to_env_connector is not None
            or not config.add_default_connectors_to_env_to_module_pipeline
            or not config.add_default_connectors_to_module_to_env_pipeline
            or config.is_multi_agent or config.normalize_actions or config.clip_actions):
        return False
    self_critical = bool((config.env_config or {}).get("self_critical"))
    config.env_runners(env_to_module_connector=_step_batch,
                       module_to_env_connector=(_self_critical_step_actions if self_critical
                                                else _step_actions),
                       add_default_connectors_to_env_to_module_pipeline=False,
                       add_default_connectors_to_module_to_env_pipeline=False)
    return True
