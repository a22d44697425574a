"""Algorithms of your own, trained by ``deepmixing train`` without editing the package.

Name them in an experiment as ``algorithm: my_algos:TinyPPOConfig`` (run the command in this
folder, or give the file: ``algorithm: path/to/my_algos.py:TinyPPOConfig``). Any
``AlgorithmConfig`` subclass works; one that derives from a built-in algorithm (PPO here)
starts from that algorithm's small-machine defaults. See ``docs/extending.md``.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns

__all__ = ["EqualGainsPPOConfig", "EqualGainsPPOLearner", "TinyPPOConfig"]


class TinyPPOConfig(PPOConfig):
    """PPO exactly, under a name of your own: the smallest plug-in there is."""


class EqualGainsPPOConfig(PPOConfig):
    """PPO with one more loss term: the policy's mean gains are pulled towards equal gains.

    ``loss = PPO's loss + equal_gains_coeff * mean_t ||E[a_t] - 1/n_real||^2`` over the real
    tracks: a prior that a track needs a reason (reward) to leave the equal balance.
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class)
        self.equal_gains_coeff = 0.1

    def training(self, *, equal_gains_coeff: float = NotProvided, **kwargs: Any
                 ) -> EqualGainsPPOConfig:
        """PPO's ``training()`` settings plus ``equal_gains_coeff`` (>= 0).

        An experiment sets it as ``training: {equal_gains_coeff: 0.1}``.
        """
        super().training(**kwargs)
        if equal_gains_coeff is not NotProvided:
            self.equal_gains_coeff = equal_gains_coeff
        return self

    def validate(self) -> None:
        """PPO's checks, and a non-negative ``equal_gains_coeff``."""
        super().validate()
        if not isinstance(self.equal_gains_coeff, int | float) or self.equal_gains_coeff < 0:
            self._value_error(f"equal_gains_coeff must be >= 0, got {self.equal_gains_coeff!r}")

    def get_default_learner_class(self) -> type:
        """The learner that adds the loss term."""
        return EqualGainsPPOLearner


class EqualGainsPPOLearner(PPOTorchLearner):
    """PPO's torch learner with the equal-gains term added to each module's loss."""

    def compute_loss_for_module(self, *, module_id: str, config: EqualGainsPPOConfig,
                                batch: dict[str, Any], fwd_out: dict[str, Any]) -> torch.Tensor:
        """PPO's loss plus ``equal_gains_coeff`` times the mean squared distance to equal gains."""
        loss = super().compute_loss_for_module(module_id=module_id, config=config,
                                               batch=batch, fwd_out=fwd_out)
        module = self.module[module_id].unwrapped()
        dist = module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        mean = dist.to_deterministic().sample()  # the Dirichlet's mean gains, (B, T, C)
        real = batch[Columns.OBS]["track_mask"].to(mean.dtype)
        equal = real / real.sum(-1, keepdim=True).clamp_min(1.0)
        per_step = ((mean - equal) ** 2 * real).sum(-1)
        valid = batch.get(Columns.LOSS_MASK)  # zero-padded steps of a stateful module
        penalty = (per_step[valid].mean() if valid is not None and valid.any()
                   else per_step.mean())
        self.metrics.log_value((module_id, "equal_gains_penalty"), penalty.item(), window=1)
        return loss + config.equal_gains_coeff * penalty
