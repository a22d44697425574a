"""Registered RLModules, chosen in experiment files by name."""

from __future__ import annotations

from typing import Any

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from mixing_env.errors import ConfigError
from rl_models.attention_lstm import AttentionLSTMModule
from rl_models.modules.config import AttentionLSTMConfig

__all__ = ["DEFAULT_MODULE", "MODULES", "module_name_of", "module_spec"]

DEFAULT_MODULE = "deepmixing_attention_lstm"
"""The registered module used when an experiment names none."""

MODULES: dict[str, type] = {DEFAULT_MODULE: AttentionLSTMModule}
"""Registered module name -> RLModule class."""

_CONFIGS = {DEFAULT_MODULE: AttentionLSTMConfig}


def module_spec(name: str, model_config: dict[str, Any] | None = None) -> RLModuleSpec:
    """Returns the RLModuleSpec of a registered module with a validated model_config.

    Args:
        name: A key of MODULES, e.g. :data:`DEFAULT_MODULE`.
        model_config: The module's hyperparameters; missing keys take their defaults, which
            are written into the spec (so ``max_seq_len`` is always present for RLlib).

    Raises:
        ConfigError: On an unknown name or an invalid model_config.
    """
    if name not in MODULES:
        raise ConfigError(f"unknown model name {name!r}; known: {sorted(MODULES)}")
    config = _CONFIGS[name].from_dict(model_config)
    return RLModuleSpec(module_class=MODULES[name], model_config=config.to_dict())


def module_name_of(module: Any) -> str:
    """The registered name of a built module's class.

    Raises:
        ConfigError: The class is not registered (e.g. RLlib's own default module).
    """
    for name, cls in MODULES.items():
        if type(module) is cls:
            return name
    raise ConfigError(f"{type(module).__name__} is not a registered module; known: "
                      f"{sorted(MODULES)}")
