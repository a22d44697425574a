"""PPO's and PG's learners with the one-pass sequence pipeline (:mod:`rl_models.sequence_batch`)."""

from __future__ import annotations

from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.learner.learner import Learner

from rl_models.algorithms.demonstration_term import DemonstrationTermLearner
from rl_models.algorithms.pg_learner import PGTorchLearner
from rl_models.algorithms.trainable_subset import TrainableSubsetLearner
from rl_models.sequence_batch import SequenceBatchLearner

__all__ = ["SEQUENCE_LEARNERS", "SequencePGTorchLearner", "SequencePPOTorchLearner"]


class SequencePPOTorchLearner(DemonstrationTermLearner, TrainableSubsetLearner,
                              SequenceBatchLearner, PPOTorchLearner):
    """RLlib's PPO learner: `SequenceTrainBatch` pipeline, imitation term, trainable subset.

    The term (:mod:`rl_models.algorithms.demonstration_term`) is added where
    ``learner_config_dict["demonstrations"]`` asks for one; only the weights
    ``learner_config_dict["trainable"]`` names train where it is given
    (:mod:`rl_models.algorithms.trainable_subset`).
    """


class SequencePGTorchLearner(SequenceBatchLearner, PGTorchLearner):
    """The project's PG learner with `SequenceTrainBatch` as its learner pipeline."""


SEQUENCE_LEARNERS: dict[str, type[Learner]] = {
    "PPO": SequencePPOTorchLearner,
    "PG": SequencePGTorchLearner,
}
"""Algorithm name -> its learner with the one-pass pipeline (algorithms whose default pipeline
is :data:`DEFAULT_PIPELINE`)."""
