"""A behaviour-cloning term in an RL learner's loss: fine-tuning that keeps imitating.

Fine-tuning a behaviour-cloned policy with PPO alone drifted away from what it had cloned
(the learning benchmark: PPO at lr 3e-4 after BC collapsed from 0.64 to 0.05 of the gap after
340 iterations; at 1e-4 it found nothing in 10 minutes). DAPG (Rajeswaran et al. 2018,
"Learning Complex Dexterous Manipulation with Deep RL and Demonstrations") keeps a
behaviour-cloning term in the policy-gradient loss: the policy moves where the reward says,
and stays near the demonstrations elsewhere.

:class:`DemonstrationTermLearner` adds ``coeff * imitation loss`` on a batch of demonstrated
sequences (:class:`rl_models.imitation.DemonstrationBatches`, the engineer's own
gains on newly made songs) to every minibatch's loss. It is configured by
``learner_config_dict["demonstrations"]`` (:data:`DEMONSTRATION_TERM`'s keys; in an
experiment ``resources: {learner_config_dict: {demonstrations: {coeff: ..., env: ...}}}``,
as ``deepmixing benchmark quality --bc-ppo-imitation`` writes it); without it the loss is
the algorithm's own. PPO's learner has it (:mod:`rl_models.algorithms.sequence_learners`).
"""

from __future__ import annotations

import math
from typing import Any

from ray.rllib.core.learner.learner import Learner
from ray.rllib.utils.annotations import override

from mixing_env.errors import ConfigError
from rl_models.imitation import (
    LOSSES,
    DemonstrationBatches,
    StreamDemonstrations,
    imitation_loss,
)

__all__ = ["DEMONSTRATION_TERM", "DemonstrationTermLearner", "demonstration_term"]

DEMONSTRATION_TERM: dict[str, Any] = {
    "coeff": 0.0, "env": None, "batch_size": 16, "loss": "log_gain", "stored_states": False,
    "capacity": 1024, "fresh_per_update": 0.5, "seed": 0,
}
"""``learner_config_dict["demonstrations"]``: the term's weight (0: no term), the MixingEnv
config of generated songs the demonstrations are played on, sequences per minibatch, the
imitation loss (:data:`rl_models.imitation.LOSSES`), stored states (whole-song
demonstrations), episodes kept, new episodes per minibatch, the seed of the draws."""


def demonstration_term(settings: Any) -> dict[str, Any] | None:
    """Checked settings over :data:`DEMONSTRATION_TERM`; None where there is no term.

    Raises:
        ConfigError: An unknown key, a negative or non-finite coeff, a term without an env.
    """
    if not settings:
        return None
    if not isinstance(settings, dict):
        raise ConfigError(f"learner_config_dict['demonstrations'] must be a dict, got "
                          f"{settings!r}")
    unknown = sorted(set(settings) - set(DEMONSTRATION_TERM))
    if unknown:
        raise ConfigError(f"unknown demonstrations key(s) {unknown}; expected some of "
                          f"{sorted(DEMONSTRATION_TERM)}")
    term = DEMONSTRATION_TERM | settings
    coeff = term["coeff"]
    if isinstance(coeff, bool) or not isinstance(coeff, int | float) or not (
            math.isfinite(coeff) and coeff >= 0):
        raise ConfigError(f"demonstrations coeff must be a finite number >= 0, got {coeff!r}")
    if coeff == 0:
        return None
    if not isinstance(term["env"], dict) or not term["env"].get("generated"):
        raise ConfigError("demonstrations need 'env': a MixingEnv config with 'generated' songs")
    if term["loss"] not in LOSSES:
        raise ConfigError(f"demonstrations loss must be one of {list(LOSSES)}, got "
                          f"{term['loss']!r}")
    for key in ("batch_size", "capacity"):
        if isinstance(term[key], bool) or not isinstance(term[key], int) or term[key] < 1:
            raise ConfigError(f"demonstrations {key} must be an int >= 1, got {term[key]!r}")
    return term


class DemonstrationTermLearner(Learner):
    """Learner mixin: each module's loss plus ``coeff`` times its imitation loss.

    Put it first among the bases. The demonstrations (one buffer per module) are made in the
    learner's process when its first loss is computed; the imitation loss is logged as
    ``demonstration_loss``.
    """

    @override(Learner)
    def build(self) -> None:
        """Builds as the base learner does; a bad ``demonstrations`` setting fails here."""
        super().build()
        self._demonstration_term = demonstration_term(
            self.config.learner_config_dict.get("demonstrations"))
        self._demonstrations: dict[str, Any] = {}

    def _batches(self, module_id: str, module: Any) -> Any:
        import numpy as np

        if module_id not in self._demonstrations:
            term = self._demonstration_term
            stream = StreamDemonstrations(term["env"], seed=term["seed"])
            first = [stream.next_episode() for _ in range(min(term["capacity"],
                                                              4 * term["batch_size"]))]
            self._demonstrations[module_id] = DemonstrationBatches(
                module, first, stream=stream, capacity=term["capacity"],
                fresh_per_update=term["fresh_per_update"],
                stored_states=term["stored_states"], rng=np.random.default_rng(term["seed"]))
        return self._demonstrations[module_id]

    @override(Learner)
    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict,
                                fwd_out: dict) -> Any:
        """The algorithm's loss, plus the imitation term where one is configured."""
        loss = super().compute_loss_for_module(module_id=module_id, config=config,
                                               batch=batch, fwd_out=fwd_out)
        term = self._demonstration_term
        if term is None:
            return loss
        module = self.module[module_id].unwrapped()
        demo_batch, actions = self._batches(module_id, module).sample(term["batch_size"])
        imitation = imitation_loss(module, demo_batch, actions, term["loss"])
        self.metrics.log_value((module_id, "demonstration_loss"), float(imitation.detach()),
                               window=1)
        return loss + term["coeff"] * imitation
