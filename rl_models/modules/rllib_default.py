"""RLlib's default model (its MLP, or its LSTM with ``use_lstm``) on the env's Dict observation.

RLlib's default RLModules read a flat Box observation and give a Gaussian over the action
box. :class:`RLlibDefaultModule` keeps RLlib's own encoder, heads and value function
(``DefaultAPPOTorchRLModule``, which every algorithm of the project can train: value function
for PPO, IMPALA, PG and MARWIL, target networks for APPO) and changes only the two ends:

- the observation Dict is flattened inside the module (``chunks``, ``mix_mfcc``,
  ``track_mask`` in the space's key order), so RLlib's env runners, learners, evaluation and
  ``deepmixing evaluate`` feed it the env's observation unchanged, and
- the policy head gives C logits that become the project's masked Dirichlet
  (:class:`~rl_models.distributions.TorchMaskedDirichlet`): concentration
  ``kappa * n_real * softmax(logits over real tracks) + floor``, so its mean is the softmax and
  actions lie on the simplex of the song's real tracks, as the env expects.

It is the reference the throughput benchmark compares the attention-LSTM against, and the
``module: rllib_default`` of an experiment.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.algorithms.appo.torch.default_appo_torch_rl_module import (
    DefaultAPPOTorchRLModule,
)
from ray.rllib.algorithms.ppo.ppo_catalog import PPOCatalog
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.configs import MLPHeadConfig
from ray.rllib.core.rl_module.apis import TARGET_NETWORK_ACTION_DIST_INPUTS
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.utils.annotations import override

from mixing_env.errors import ConfigError
from rl_models.distributions import TorchMaskedDirichlet
from rl_models.modules.core import masked_softmax

__all__ = ["RLlibDefaultModelConfig", "RLlibDefaultModule"]

_UNUSED_RLLIB_KEYS = ("conv_", "fusionnet_", "free_log_std", "log_std_clip_param",
                      "lstm_use_prev_")
"""DefaultModelConfig keys this module does not read: image and multi-stream encoders, the
Gaussian's log-std, and previous actions/rewards (no connector adds them here)."""


def _rllib_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    out = []
    for f in dataclasses.fields(DefaultModelConfig):
        if f.name.startswith(_UNUSED_RLLIB_KEYS):
            continue
        default = (dataclasses.field(default_factory=f.default_factory)
                   if f.default_factory is not dataclasses.MISSING
                   else dataclasses.field(default=f.default))
        out.append((f.name, f.type, default))
    return out


RLlibDefaultModelConfig = dataclasses.make_dataclass(
    "RLlibDefaultModelConfig",
    [*_rllib_fields(),
     ("concentration_scale", float, dataclasses.field(default=10.0)),
     ("concentration_floor", float, dataclasses.field(default=0.05))],
    namespace={"__doc__": (
        "The model_config keys of :class:`RLlibDefaultModule`: RLlib's ``DefaultModelConfig`` "
        "(``fcnet_hiddens``, ``head_fcnet_hiddens``, ``vf_share_layers``, ``use_lstm``, "
        "``lstm_cell_size``, ``max_seq_len``, initializers) without its image, multi-stream, "
        "log-std and previous-action keys, plus the Dirichlet's ``concentration_scale`` "
        "(kappa, the mean real-slot concentration) and ``concentration_floor`` (> 0).")},
)
RLlibDefaultModelConfig.__module__ = __name__


def _validate(config: Any) -> None:
    for name in ("concentration_scale", "concentration_floor"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"model_config[{name!r}] must be a number > 0, got {value!r}")


RLlibDefaultModelConfig.validate = _validate


class _DirichletCatalog(PPOCatalog):
    """PPO's catalog over the flattened observation, with a C-logit policy head."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 model_config_dict: dict):
        if isinstance(observation_space, gym.spaces.Dict):
            observation_space = gym.spaces.flatten_space(observation_space)
        super().__init__(observation_space, action_space, model_config_dict)

    def get_action_dist_cls(self, framework: str) -> type:
        """The project's masked Dirichlet."""
        return TorchMaskedDirichlet

    def build_pi_head(self, framework: str):
        """An MLP head with one logit per track slot (RLlib's head sizes and activation)."""
        self.pi_head_config = MLPHeadConfig(
            input_dims=self.latent_dims,
            hidden_layer_dims=self.pi_and_vf_head_hiddens,
            hidden_layer_activation=self.pi_and_vf_head_activation,
            hidden_layer_use_layernorm=self._model_config_dict.get(
                "head_fcnet_use_layernorm", False),
            output_layer_dim=int(self.action_space.shape[0]),
            output_layer_activation="linear",
        )
        return self.pi_head_config.build(framework=framework)


class RLlibDefaultModule(DefaultAPPOTorchRLModule):
    """RLlib's default encoder and heads over the flattened observation, a Dirichlet policy.

    Observation: the env's Dict (``chunks`` (C, W_obs, F), ``mix_mfcc`` (n_mfcc,),
    ``track_mask`` (C,)), flattened in the module. Action: the masked Dirichlet over the C
    slots (see the module docstring). State: RLlib's LSTM state (``h``, ``c``) with
    ``use_lstm: true``, none otherwise. Model config: :class:`RLlibDefaultModelConfig`.
    """

    model_config_class = RLlibDefaultModelConfig

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["catalog_class"] = kwargs.get("catalog_class") or _DirichletCatalog
        super().__init__(*args, **kwargs)

    @override(DefaultAPPOTorchRLModule)
    def setup(self) -> None:
        """Checks the spaces, then builds RLlib's encoder, policy and value heads."""
        obs, act = self.observation_space, self.action_space
        if not isinstance(obs, gym.spaces.Dict) or "track_mask" not in obs.spaces:
            raise ConfigError(f"rllib_default reads the mixing env's Dict observation with a "
                              f"track_mask, got {obs}")
        if not isinstance(act, gym.spaces.Box) or act.shape != obs["track_mask"].shape:
            raise ConfigError(f"action_space must be Box(0, 1, {obs['track_mask'].shape}), "
                              f"got {act}")
        config = RLlibDefaultModelConfig(**{
            f.name: self.model_config[f.name]
            for f in dataclasses.fields(RLlibDefaultModelConfig) if f.name in self.model_config})
        config.validate()
        self._kappa, self._floor = config.concentration_scale, config.concentration_floor
        # What a checkpoint records: every key RLlib's catalog used, defaults included.
        self.model_config = {**self.catalog._model_config_dict, **dataclasses.asdict(config)}
        super().setup()

    def _flat(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` with its observation flattened as ``gym.spaces.flatten_space`` orders it."""
        obs, spaces = batch[Columns.OBS], self.observation_space.spaces
        parts = []
        for key, space in spaces.items():
            x = obs[key]
            lead = x.shape[: x.dim() - len(space.shape)]
            parts.append(x.reshape(*lead, -1).to(torch.float32))
        return {**batch, Columns.OBS: torch.cat(parts, -1)}

    def _dirichlet_inputs(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        mask = batch[Columns.OBS]["track_mask"].to(logits.dtype)
        beta = masked_softmax(logits, mask > 0.5)
        concentration = self._kappa * mask.sum(-1, keepdim=True) * beta + self._floor
        return torch.cat([concentration, mask], -1)

    @override(DefaultAPPOTorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = super()._forward(self._flat(batch), **kwargs)
        out[Columns.ACTION_DIST_INPUTS] = self._dirichlet_inputs(
            out[Columns.ACTION_DIST_INPUTS], batch)
        return out

    @override(DefaultAPPOTorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = super()._forward_train(self._flat(batch), **kwargs)
        out[Columns.ACTION_DIST_INPUTS] = self._dirichlet_inputs(
            out[Columns.ACTION_DIST_INPUTS], batch)
        return out

    @override(DefaultAPPOTorchRLModule)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """RLlib's value head, on the flattened observation."""
        return super().compute_values(batch if embeddings is not None else self._flat(batch),
                                      embeddings)

    @override(DefaultAPPOTorchRLModule)
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The target network's Dirichlet inputs (APPO)."""
        out = super().forward_target(self._flat(batch))
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: self._dirichlet_inputs(
            out[TARGET_NETWORK_ACTION_DIST_INPUTS], batch)}
