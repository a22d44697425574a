"""Fine-tuning a named part of a module: the learner's optimizer holds only the chosen weights.

``learner_config_dict["trainable"]`` lists regular expressions; a parameter trains when one of
them is found in its name (``_core.prior_bias``, ``_value_head.0.weight``, ...), every other
one is frozen (no gradient, not in the optimizer). Why: a policy gradient from one scalar
reward per step is noisy across the module's ~18,000 weights, and after behaviour cloning what
is left to correct can be low-dimensional (a per-instrument level bias), where the same samples
give a far less noisy direction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.annotations import override

from mixing_env.errors import ConfigError

__all__ = ["TrainableSubsetLearner", "trainable_patterns"]


def trainable_patterns(settings: Any) -> list[re.Pattern] | None:
    """Checked ``learner_config_dict["trainable"]``; None where every weight trains.

    Raises:
        ConfigError: Not a non-empty list of strings, or a string that is no regex.
    """
    if settings is None:
        return None
    if (isinstance(settings, str) or not isinstance(settings, Sequence) or not settings
            or not all(isinstance(s, str) for s in settings)):
        raise ConfigError(f"learner_config_dict['trainable'] must be a non-empty list of "
                          f"parameter-name patterns, got {settings!r}")
    try:
        return [re.compile(s) for s in settings]
    except re.error as e:
        raise ConfigError(f"learner_config_dict['trainable']: bad pattern {e.pattern!r}: {e}"
                          ) from e


class TrainableSubsetLearner(TorchLearner):
    """Torch learner mixin: only parameters named by ``trainable`` patterns are optimized.

    Put it before the torch learner among the bases. Without the key every weight trains.
    """

    @override(Learner)
    def configure_optimizers(self) -> None:
        """Freezes the weights no pattern names, then makes the optimizers over the rest.

        The module is built by now (:meth:`Learner.build` builds it, then calls this).
        """
        patterns = trainable_patterns(self.config.learner_config_dict.get("trainable"))
        if patterns is not None:
            self._freeze_unnamed(patterns)
        super().configure_optimizers()

    def _freeze_unnamed(self, patterns: list[re.Pattern]) -> None:
        params = [(n, p) for mid in self.module.keys()
                  for n, p in self.module[mid].named_parameters()]
        for pattern in patterns:
            if not any(pattern.search(n) for n, _ in params):
                raise ConfigError(f"learner_config_dict['trainable']: {pattern.pattern!r} "
                                  f"names no parameter of the module (it has "
                                  f"{[n for n, _ in params[:6]]}...)")
        for name, param in params:
            param.requires_grad_(any(p.search(name) for p in patterns))

    @override(TorchLearner)
    def get_parameters(self, module: Any) -> list:
        """The module's parameters that train (all of them without ``trainable``)."""
        return [p for p in module.parameters() if p.requires_grad]
