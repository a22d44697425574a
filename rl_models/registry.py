"""The algorithms and RLModules an experiment can name: the project's own, or a user's class.

``algorithm`` is a built-in name (:data:`ALGORITHMS`, any case) or a class path
``"package.module:ConfigClass"`` / ``"path/to/file.py:ConfigClass"`` of an ``AlgorithmConfig``
subclass. ``module`` is a registered name (:data:`MODULES`) or the class path of a
``TorchRLModule`` subclass (the contract is in ``docs/extending.md``). Every part of the
project resolves names here, in the driver before Ray starts and again in each trial process.

A module declares the ``model_config`` keys it reads with a ``model_config_class`` (a
dataclass, optionally with ``from_dict`` and ``validate``); an experiment's ``model`` key it
does not declare is an error (:func:`check_model_config`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule

from mixing_env.errors import ConfigError
from rl_models.attention_lstm import AttentionLSTMModule
from rl_models.modules.config import RLLIB_INJECTED_KEYS, AttentionLSTMConfig
from rl_models.modules.rllib_default import RLlibDefaultModule
from rl_models.plugins import class_path, import_class, is_class_path

__all__ = [
    "ALGORITHMS",
    "DEFAULT_MODULE",
    "MODULES",
    "RLLIB_DEFAULT_MODULE",
    "algorithm_config_class",
    "algorithm_name",
    "builtin_algorithm_of",
    "check_model_config",
    "model_config_class",
    "module_class",
    "module_name_of",
    "module_spec",
]

ALGORITHMS: dict[str, str] = {
    "PPO": "ray.rllib.algorithms.ppo:PPOConfig",
    "APPO": "ray.rllib.algorithms.appo:APPOConfig",
    "IMPALA": "ray.rllib.algorithms.impala:IMPALAConfig",
    "PG": "rl_models.algorithms.pg:PGConfig",
    "BC": "ray.rllib.algorithms.bc:BCConfig",
    "MARWIL": "ray.rllib.algorithms.marwil:MARWILConfig",
}
"""Built-in algorithm name -> the class path of its AlgorithmConfig (imported when named)."""

DEFAULT_MODULE = "deepmixing_attention_lstm"
"""The registered module used when an experiment names none."""

RLLIB_DEFAULT_MODULE = "rllib_default"
"""RLlib's default encoder (MLP, or its LSTM with ``use_lstm``) over the flattened Dict
observation with the project's Dirichlet head: the throughput benchmark's reference."""

MODULES: dict[str, type] = {DEFAULT_MODULE: AttentionLSTMModule,
                            RLLIB_DEFAULT_MODULE: RLlibDefaultModule}
"""Registered module name -> RLModule class."""

_MODEL_CONFIGS: dict[type, type] = {AttentionLSTMModule: AttentionLSTMConfig}
"""Model config classes of registered modules that do not carry ``model_config_class``."""


# --------------------------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------------------------
def algorithm_name(name: Any) -> str:
    """The canonical form of an ``algorithm`` value.

    A built-in name is upper-cased; a class path stays as given.

    Raises:
        ConfigError: Neither a built-in name nor a class path.
    """
    if isinstance(name, str) and name.upper() in ALGORITHMS:
        return name.upper()
    if is_class_path(name):
        return name
    raise ConfigError(f"unknown algorithm {name!r}; expected one of {sorted(ALGORITHMS)} or "
                      "'package.module:ConfigClass' (an AlgorithmConfig subclass)")


def algorithm_config_class(name: Any) -> type[AlgorithmConfig]:
    """The AlgorithmConfig class an ``algorithm`` value names (imports a user's class).

    Raises:
        ConfigError: Unknown name, or a class path that does not import or is not an
            AlgorithmConfig subclass.
    """
    name = algorithm_name(name)
    return import_class(ALGORITHMS.get(name, name), base=AlgorithmConfig, what="algorithm")


def builtin_algorithm_of(config_class: type) -> str | None:
    """The built-in algorithm a config class is or derives from (``PPO`` for a PPO variant).

    A user's algorithm takes that one's small-machine defaults; None if it derives from none.
    """
    builtins = {algorithm_config_class(n): n for n in ALGORITHMS}
    return next((builtins[k] for k in config_class.__mro__ if k in builtins), None)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------
def module_class(name: Any) -> type[TorchRLModule]:
    """The RLModule class a ``module`` value names (imports a user's class).

    Raises:
        ConfigError: Unknown name, or a class path that does not import or is not a
            TorchRLModule subclass.
    """
    if isinstance(name, str) and name in MODULES:
        return MODULES[name]
    if is_class_path(name):
        return import_class(name, base=TorchRLModule, what="module")
    raise ConfigError(f"unknown model name {name!r}; known: {sorted(MODULES)} or "
                      "'package.module:ModuleClass' (a TorchRLModule subclass)")


def model_config_class(cls: type) -> type | None:
    """The dataclass whose fields are the ``model_config`` keys module class ``cls`` reads."""
    config = _MODEL_CONFIGS.get(cls) or getattr(cls, "model_config_class", None)
    if config is not None and not dataclasses.is_dataclass(config):
        raise ConfigError(f"{class_path(cls)}.model_config_class must be a dataclass, "
                          f"got {config!r}")
    return config


def _config_dict(config_cls: type, values: dict[str, Any], name: str) -> dict[str, Any]:
    """``values`` validated by the module's config class, every default filled in."""
    if hasattr(config_cls, "from_dict"):
        config = config_cls.from_dict(values)
    else:
        try:
            config = config_cls(**values)
        except TypeError as e:
            raise ConfigError(f"model_config for {name}: {e}") from e
        if hasattr(config, "validate"):
            config.validate()
    return config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)


def check_model_config(name: Any, model: Any) -> dict[str, Any]:
    """Checks an experiment's ``model`` section against what the module reads.

    Stricter than :func:`module_spec`: a key of RLlib's own model config that the module
    never reads (``use_lstm`` for the attention-LSTM) is an error here, not ignored.

    Returns:
        The full model_config (defaults filled in).

    Raises:
        ConfigError: Unknown module, a key it does not read (named, with the keys it reads),
            or a bad value.
    """
    cls = module_class(name)
    if model is not None and not isinstance(model, dict):
        raise ConfigError(f"model must be a mapping of model_config values, got {model!r}")
    model = dict(model or {})
    config_cls = model_config_class(cls)
    reads = sorted(f.name for f in dataclasses.fields(config_cls)) if config_cls else []
    unread = sorted(set(model) - set(reads))
    if unread:
        why = (f"it reads {reads}" if reads else
               "it declares no model_config_class, so it reads none")
        raise ConfigError(f"model key(s) {unread} are not read by module {name!r}; {why}")
    return _config_dict(config_cls, model, str(name)) if config_cls else {}


def module_spec(name: Any, model_config: dict[str, Any] | None = None) -> RLModuleSpec:
    """Returns the RLModuleSpec of a module with a validated model_config.

    Keys RLlib merges into every model_config (``RLLIB_INJECTED_KEYS``) are dropped when the
    module does not read them, so a checkpoint's recorded config builds the module again.

    Args:
        name: A key of :data:`MODULES` or a class path ``"package.module:ModuleClass"``.
        model_config: The module's hyperparameters; missing keys take their defaults, which
            are written into the spec (so ``max_seq_len`` is present for RLlib when the
            module reads it).

    Raises:
        ConfigError: On an unknown name or an invalid model_config.
    """
    cls = module_class(name)
    values = dict(model_config or {})
    config_cls = model_config_class(cls)
    if config_cls is None:
        config = {k: v for k, v in values.items() if k not in RLLIB_INJECTED_KEYS}
    else:
        reads = {f.name for f in dataclasses.fields(config_cls)}
        config = _config_dict(config_cls, {k: v for k, v in values.items()
                                           if k in reads or k not in RLLIB_INJECTED_KEYS},
                              str(name))
    return RLModuleSpec(module_class=cls, model_config=config)


def module_name_of(module: Any) -> str:
    """The name that rebuilds a module's class: its registered name, else its class path."""
    for name, cls in MODULES.items():
        if type(module) is cls:
            return name
    return class_path(type(module))
