"""PPO's and PG's learners with the one-pass sequence pipeline (:mod:`rl_models.sequence_batch`)."""

from __future__ import annotations

from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.learner.learner import Learner

from rl_models.algorithms.pg_learner import PGTorchLearner
from rl_models.sequence_batch import SequenceBatchLearner

__all__ = ["SEQUENCE_LEARNERS", "SequencePGTorchLearner", "SequencePPOTorchLearner"]


class SequencePPOTorchLearner(SequenceBatchLearner, PPOTorchLearner):
    """RLlib's PPO torch learner with `SequenceTrainBatch` as its learner pipeline."""


class SequencePGTorchLearner(SequenceBatchLearner, PGTorchLearner):
    """The project's PG learner with `SequenceTrainBatch` as its learner pipeline."""


SEQUENCE_LEARNERS: dict[str, type[Learner]] = {
    "PPO": SequencePPOTorchLearner,
    "PG": SequencePGTorchLearner,
}
"""Algorithm name -> its learner with the one-pass pipeline (algorithms whose default pipeline
is :data:`DEFAULT_PIPELINE`)."""
