"""Registered RLModules, chosen in experiment files by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from mixing_env.errors import ConfigError
from rl_models.attention_lstm import AttentionLSTMModule
from rl_models.modules.config import AttentionLSTMConfig

__all__ = ["CHECKPOINT_MODULE_SUBDIR", "MODULES", "module_spec"]

CHECKPOINT_MODULE_SUBDIR = Path("learner_group", "learner", "rl_module", "default_policy")
"""Where an RLlib algorithm checkpoint keeps the policy module (single-agent default id)."""

MODULES: dict[str, type] = {"deepmixing_attention_lstm": AttentionLSTMModule}
"""Registered module name -> RLModule class."""

_CONFIGS = {"deepmixing_attention_lstm": AttentionLSTMConfig}


def module_spec(name: str, model_config: dict[str, Any] | None = None) -> RLModuleSpec:
    """Returns the RLModuleSpec of a registered module with a validated model_config.

    Args:
        name: A key of MODULES, e.g. ``"deepmixing_attention_lstm"``.
        model_config: The module's hyperparameters; missing keys take their defaults, which
            are written into the spec (so ``max_seq_len`` is always present for RLlib).

    Raises:
        ConfigError: On an unknown name or an invalid model_config.
    """
    if name not in MODULES:
        raise ConfigError(f"unknown model name {name!r}; known: {sorted(MODULES)}")
    config = _CONFIGS[name].from_dict(model_config)
    return RLModuleSpec(module_class=MODULES[name], model_config=config.to_dict())
