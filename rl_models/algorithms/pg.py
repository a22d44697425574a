"""Vanilla policy gradient (REINFORCE with a learned value baseline) on RLlib's new API stack.

RLlib 2.60 removed its PG algorithm, so this module provides the report's update rule as a
small custom algorithm: sample a batch of episodes (or episode fragments), compute the
discounted Monte-Carlo return of every step, and take one gradient step on

    loss = -mean(logp(a|s) * A) + vf_loss_coeff * mean((V(s) - G)^2) - entropy_coeff * mean(H)

with the advantage ``A = G - V(s)`` (V stop-gradient, optionally standardized over the batch).

The returns come from RLlib's own learner connector pipeline with
:class:`~ray.rllib.connectors.learner.GeneralAdvantageEstimation` at ``lambda_=1``: at
lambda 1 GAE's value targets are exactly the discounted Monte-Carlo returns, bootstrapped with
V only where a fragment was cut before its episode ended (``batch_mode="truncate_episodes"``);
with ``batch_mode="complete_episodes"`` they are pure Monte-Carlo returns. Reusing the default
pipeline also gives stateful modules (the attention LSTM) their STATE_IN, zero-padded
``max_seq_len`` sequences and LOSS_MASK exactly as PPO gets them.
"""

from __future__ import annotations

from typing import Any, Self

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

__all__ = ["PG", "PGConfig"]


class PGConfig(AlgorithmConfig):
    """Configuration of :class:`PG` (vanilla policy gradient with a value baseline).

    Example:
        >>> config = PGConfig().environment("CartPole-v1").training(lr=1e-3)  # doctest: +SKIP
        >>> algo = config.build_algo()  # doctest: +SKIP
        >>> algo.train()  # doctest: +SKIP

    PG-specific ``training()`` settings:
        vf_loss_coeff: Weight of the value-baseline regression loss.
        entropy_coeff: Weight of the entropy bonus (>= 0).
        standardize_advantages: Whether to scale advantages to zero mean and unit std over the
            (unpadded) train batch before the policy loss.
        grad_clip: Inherited; clips the global gradient norm when set.
    """

    def __init__(self, algo_class: type | None = None):
        """Initializes a PGConfig with the defaults of one small on-policy update per batch."""
        super().__init__(algo_class=algo_class or PG)
        # One gradient step on the whole batch per iteration: that is what makes it vanilla PG.
        self.lr = 1e-3
        self.train_batch_size_per_learner = 1000
        # Fragments sized so the env runners together return one train batch per iteration.
        self.rollout_fragment_length = "auto"
        self.num_epochs = 1
        self.minibatch_size = None
        self.gamma = 0.99
        self.vf_loss_coeff = 0.5
        self.entropy_coeff = 0.0
        self.standardize_advantages = True
        self.grad_clip = None
        self.num_env_runners = 1

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        vf_loss_coeff: float = NotProvided,
        entropy_coeff: float = NotProvided,
        standardize_advantages: bool = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """Sets the training-related configuration.

        Args:
            vf_loss_coeff: Weight of the value-baseline loss in the total loss.
            entropy_coeff: Weight of the entropy bonus (subtracted from the loss).
            standardize_advantages: Standardize ``G - V`` over the batch before the policy loss.
            **kwargs: Passed on to :meth:`AlgorithmConfig.training` (lr, gamma,
                train_batch_size_per_learner, grad_clip, ...).

        Returns:
            This updated config.
        """
        super().training(**kwargs)
        if vf_loss_coeff is not NotProvided:
            self.vf_loss_coeff = vf_loss_coeff
        if entropy_coeff is not NotProvided:
            self.entropy_coeff = entropy_coeff
        if standardize_advantages is not NotProvided:
            self.standardize_advantages = standardize_advantages
        return self

    @override(AlgorithmConfig)
    def validate(self) -> None:
        """Checks PG's settings on top of AlgorithmConfig's checks."""
        super().validate()
        self.validate_train_batch_size_vs_rollout_fragment_length()
        if not isinstance(self.entropy_coeff, int | float) or self.entropy_coeff < 0.0:
            self._value_error(f"`entropy_coeff` must be a float >= 0.0, got {self.entropy_coeff!r}")
        if not isinstance(self.vf_loss_coeff, int | float) or self.vf_loss_coeff < 0.0:
            self._value_error(f"`vf_loss_coeff` must be a float >= 0.0, got {self.vf_loss_coeff!r}")

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        """PG has no default module of its own; PPO's default (policy + value head) fits."""
        from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
            DefaultPPOTorchRLModule,
        )

        return RLModuleSpec(module_class=DefaultPPOTorchRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        """Returns :class:`~rl_models.algorithms.pg_learner.PGTorchLearner`."""
        if self.framework_str != "torch":
            raise ValueError(f"PG supports framework='torch' only, got {self.framework_str!r}")
        from rl_models.algorithms.pg_learner import PGTorchLearner

        return PGTorchLearner


class PG(Algorithm):
    """Vanilla policy gradient: sample on-policy, one learner update, sync weights."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> PGConfig:
        """Returns a fresh :class:`PGConfig`."""
        return PGConfig()

    @override(Algorithm)
    def training_step(self) -> None:
        """Samples ``total_train_batch_size`` env steps, updates once, syncs the env runners."""
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=self.config.total_train_batch_size,
                sample_timeout_s=self.config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
            if not episodes:
                return
            self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)

        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
                    ),
                    NUM_MODULE_STEPS_TRAINED_LIFETIME: self.metrics.peek(
                        (LEARNER_RESULTS, ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME),
                        default=0,
                    ),
                },
                num_epochs=self.config.num_epochs,
                minibatch_size=self.config.minibatch_size,
                shuffle_batch_per_epoch=False,
            )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=set(learner_results[0].keys()) - {ALL_MODULES},
                inference_only=True,
            )
