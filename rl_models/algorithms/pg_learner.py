"""The torch learner of :mod:`rl_models.algorithms.pg`: REINFORCE with a value baseline."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.connectors.learner import (
    AddOneTsToEpisodesAndTruncate,
    GeneralAdvantageEstimation,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY, Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.annotations import override
from ray.rllib.utils.torch_utils import explained_variance
from ray.rllib.utils.typing import ModuleID, TensorType

__all__ = ["PGTorchLearner", "ADVANTAGE_MEAN_KEY", "VF_EXPLAINED_VAR_KEY"]

ADVANTAGE_MEAN_KEY = "advantage_mean"
VF_EXPLAINED_VAR_KEY = "vf_explained_var"


class PGTorchLearner(TorchLearner):
    """Computes ``-(logp * A) + c_v * (V - G)^2 - c_e * H`` on batches of on-policy data.

    The learner connector pipeline is RLlib's default one (observations, STATE_IN, time-major
    padding to ``max_seq_len`` and LOSS_MASK for stateful modules) plus, as PPO has it, one
    artificial bootstrap timestep per episode fragment and GAE with ``lambda_=1`` whose value
    targets are the discounted Monte-Carlo returns ``G``.
    """

    @override(Learner)
    def build(self) -> None:
        """Adds the return computation to the learner connector pipeline."""
        super().build()
        if (
            self._learner_connector is not None
            and self.config.add_default_connectors_to_learner_pipeline
        ):
            self._learner_connector.prepend(AddOneTsToEpisodesAndTruncate())
            # lambda=1: value targets are the discounted returns, bootstrapped only at cuts.
            self._learner_connector.append(
                GeneralAdvantageEstimation(gamma=self.config.gamma, lambda_=1.0)
            )

    @classmethod
    @override(Learner)
    def rl_module_required_apis(cls) -> list[type]:
        """The baseline needs ``compute_values``."""
        return [ValueFunctionAPI]

    @override(TorchLearner)
    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: Any,
        batch: dict[str, Any],
        fwd_out: dict[str, TensorType],
    ) -> TensorType:
        """Returns the PG loss of one module and logs policy_loss, vf_loss and entropy."""
        module = self.module[module_id].unwrapped()

        if Columns.LOSS_MASK in batch:
            # Padded timesteps of stateful modules' sequences carry no data.
            mask = batch[Columns.LOSS_MASK].float()
        else:
            mask = torch.ones_like(batch[Columns.REWARDS], dtype=torch.float32)
        num_valid = mask.sum().clamp_min(1.0)

        def masked_mean(x: torch.Tensor) -> torch.Tensor:
            return (x * mask).sum() / num_valid

        action_dist = module.get_train_action_dist_cls().from_logits(
            fwd_out[Columns.ACTION_DIST_INPUTS]
        )
        logp = action_dist.logp(batch[Columns.ACTIONS])
        entropy = action_dist.entropy()

        returns = batch[Postprocessing.VALUE_TARGETS]
        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        advantages = returns - values.detach()
        if config.standardize_advantages:
            adv_mean = masked_mean(advantages)
            adv_std = masked_mean((advantages - adv_mean) ** 2).sqrt()
            advantages = (advantages - adv_mean) / adv_std.clamp_min(1e-4)

        policy_loss = -masked_mean(logp * advantages)
        vf_loss = masked_mean((values - returns) ** 2)
        mean_entropy = masked_mean(entropy)
        total_loss = (
            policy_loss + config.vf_loss_coeff * vf_loss - config.entropy_coeff * mean_entropy
        )

        valid = mask > 0
        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: policy_loss,
                VF_LOSS_KEY: vf_loss,
                ENTROPY_KEY: mean_entropy,
                ADVANTAGE_MEAN_KEY: masked_mean(returns - values.detach()),
                VF_EXPLAINED_VAR_KEY: explained_variance(returns[valid], values[valid]),
            },
            key=module_id,
            window=1,
        )
        return total_loss
