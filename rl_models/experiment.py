"""Experiment files: load a YAML experiment, apply command-line overrides, build Tune spaces.

An experiment file is plain data (see ``tune_configs/``). Its top-level keys:

========================  ==========================================================
key                       what it holds
========================  ==========================================================
``name``                  experiment name (the folder under ``storage_path``)
``algorithm``             ``PPO`` | ``APPO`` | ``IMPALA`` | ``PG``
``env``                   the :class:`MixingEnv` config dict (``EnvConfig`` keys)
``model``                 the RLModule's ``model_config`` dict
``module``                registered module name (``deepmixing_attention_lstm``)
``training``              ``AlgorithmConfig.training(...)`` keyword arguments
``env_runners``           ``AlgorithmConfig.env_runners(...)`` keyword arguments
``resources``             learners / GPUs (``AlgorithmConfig.learners(...)`` etc.)
``evaluation``            held-out evaluation for the ``gap_closed`` metric:
                          ``interval`` (iterations; 0 = off), ``env`` (EnvConfig keys
                          merged over ``env``, e.g. other songs), ``rllib`` (optional
                          ``AlgorithmConfig.evaluation(...)`` keyword arguments)
``tune``                  ``num_samples``, ``metric``, ``mode``, ``scheduler``
                          (``{type: asha|pbt, ...}``), ``param_space`` (a tree
                          mirroring this file with search specs at the leaves)
``stop``                  Tune stop criteria, e.g. ``{training_iteration: 20}``
``checkpoint``            ``frequency`` (iterations), ``num_to_keep``
``fault_tolerance``       ``AlgorithmConfig.fault_tolerance(...)`` keyword arguments,
                          plus ``max_failures`` (Tune trial retries)
``reporting``             ``AlgorithmConfig.reporting(...)`` keyword arguments
``storage_path``          where Tune writes results (local path or shared storage)
``seed``                  base seed
``description``           free text
========================  ==========================================================

Search specs are data: ``{grid_search: [a, b]}``, ``{choice: [a, b]}``,
``{loguniform: [lo, hi]}``, ``{uniform: [lo, hi]}``, ``{randint: [lo, hi]}``,
``{qloguniform: [lo, hi, q]}``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from mixing_env.errors import ConfigError

__all__ = [
    "TOP_LEVEL_KEYS",
    "CONFIG_DIR",
    "DEFAULTS",
    "resolve_experiment_path",
    "load_experiment",
    "apply_overrides",
    "parse_override",
    "validate_experiment",
    "to_search_space",
    "has_search_space",
    "list_experiments",
]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "tune_configs"
"""The experiment files shipped with the project."""

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "algorithm",
    "env",
    "model",
    "module",
    "training",
    "env_runners",
    "resources",
    "evaluation",
    "tune",
    "stop",
    "checkpoint",
    "fault_tolerance",
    "reporting",
    "offline_data",
    "init_module_from",
    "storage_path",
    "seed",
)

DEFAULTS: dict[str, Any] = {
    "name": "deepmixing",
    "description": "",
    "algorithm": "PPO",
    "env": {},
    "model": {},
    "module": "deepmixing_attention_lstm",
    "training": {},
    "env_runners": {},
    "resources": {},
    "evaluation": {"interval": 0, "env": {}},
    "tune": {"num_samples": 1, "metric": None, "mode": "max", "scheduler": None,
             "param_space": {}},
    "stop": {"training_iteration": 10},
    "checkpoint": {"frequency": 5, "num_to_keep": None},
    "fault_tolerance": {},
    "reporting": {},
    "offline_data": {},
    "init_module_from": None,
    "storage_path": "runs",
    "seed": 0,
}

_DICT_KEYS = ("env", "model", "training", "env_runners", "resources", "evaluation", "tune",
              "stop", "checkpoint", "fault_tolerance", "reporting", "offline_data")
_SEARCH_KEYS = ("grid_search", "choice", "loguniform", "uniform", "randint", "qloguniform",
                "quniform")
_ALGORITHMS = ("PPO", "APPO", "IMPALA", "PG", "BC", "MARWIL")


def list_experiments() -> list[str]:
    """Names of the experiment files shipped in ``tune_configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_experiment_path(name_or_path: str | Path) -> Path:
    """A path to an experiment file, or the name of one in ``tune_configs/`` (``quickstart``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / f"{name_or_path}.yaml", CONFIG_DIR / str(name_or_path)):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"experiment file not found: {str(name_or_path)!r}; expected a YAML file or one of "
        f"{list_experiments()}"
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"training.lr=1e-4"`` into ``(["training", "lr"], 1e-4)``; the value is YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override must look like KEY.PATH=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from e
    # YAML 1.1 reads "1e-4" as a string; Python's float() does not.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return [part for part in key.strip().split(".")], value


def apply_overrides(experiment: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Return a copy of ``experiment`` with each ``KEY.PATH=VALUE`` override set.

    Raises:
        ConfigError: An override is malformed, names an unknown top-level key, or goes through
            a value that is not a mapping.
    """
    experiment = copy.deepcopy(experiment)
    for text in overrides:
        path, value = parse_override(text)
        if path[0] not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"override {text!r}: unknown top-level key {path[0]!r}; expected one of "
                f"{list(TOP_LEVEL_KEYS)}"
            )
        node = experiment
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {text!r}: {'.'.join(path[: i + 1])} is "
                    f"{type(child).__name__} {child!r}, not a mapping"
                )
            node = child
        node[path[-1]] = value
    return experiment


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not has_search_space(
            value
        ):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_experiment(experiment: dict, *, source: str = "experiment") -> dict:
    """Fill defaults and check the top-level schema.

    Args:
        experiment: The parsed experiment mapping.
        source: Where it came from, for error messages.

    Returns:
        A new dict with every top-level key present.

    Raises:
        ConfigError: Unknown top-level keys, an unknown algorithm, or a section of the wrong type.
    """
    if not isinstance(experiment, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got "
                          f"{type(experiment).__name__}")
    unknown = sorted(set(experiment) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {unknown}; expected some of {list(TOP_LEVEL_KEYS)}"
        )
    for key in _DICT_KEYS:
        if experiment.get(key) is not None and not isinstance(experiment[key], dict):
            raise ConfigError(f"{source}: {key!r} must be a mapping, got "
                              f"{type(experiment[key]).__name__} {experiment[key]!r}")
    out = _merge(DEFAULTS, {k: v for k, v in experiment.items() if v is not None})
    algorithm = str(out["algorithm"]).upper()
    if algorithm not in _ALGORITHMS:
        raise ConfigError(f"{source}: algorithm must be one of {list(_ALGORITHMS)}, "
                          f"got {out['algorithm']!r}")
    out["algorithm"] = algorithm
    frequency = out["checkpoint"].get("frequency", 0)
    if not isinstance(frequency, int) or frequency < 0:
        raise ConfigError(f"{source}: checkpoint.frequency must be an integer >= 0, "
                          f"got {frequency!r}")
    interval = out["evaluation"].get("interval", 0)
    if not isinstance(interval, int) or interval < 0:
        raise ConfigError(f"{source}: evaluation.interval must be an integer >= 0, "
                          f"got {interval!r}")
    return out


def load_experiment(name_or_path: str | Path, *, overrides: list[str] | tuple[str, ...] = ()
                    ) -> dict:
    """Read an experiment file, apply overrides, fill defaults and validate.

    Args:
        name_or_path: A YAML file, or the name of one in ``tune_configs/``.
        overrides: ``KEY.PATH=VALUE`` strings, applied in order.

    Returns:
        The experiment as a plain dict with every top-level key.

    Raises:
        ConfigError: The file is missing or not valid YAML, or the schema check fails.
    """
    path = resolve_experiment_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return validate_experiment(apply_overrides(raw, overrides), source=str(path))


def has_search_space(tree: Any) -> bool:
    """Whether ``tree`` is, or holds, a search spec such as ``{grid_search: [...]}``."""
    if isinstance(tree, dict):
        if len(tree) == 1 and next(iter(tree)) in _SEARCH_KEYS:
            return True
        return any(has_search_space(v) for v in tree.values())
    if isinstance(tree, list):
        return any(has_search_space(v) for v in tree)
    return False


def to_search_space(tree: Any) -> Any:
    """Replace the search specs in a tree with ``ray.tune`` search objects.

    Raises:
        ConfigError: A spec has the wrong arguments.
    """
    from ray import tune

    if isinstance(tree, list):
        return [to_search_space(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1 and next(iter(tree)) in _SEARCH_KEYS:
        kind, args = next(iter(tree.items()))
        if not isinstance(args, list) or not args:
            raise ConfigError(f"search spec {tree!r}: expected a non-empty list of values")
        try:
            if kind == "grid_search":
                return tune.grid_search(args)
            if kind == "choice":
                return tune.choice(args)
            return getattr(tune, kind)(*[float(a) if kind != "randint" else int(a)
                                         for a in args])
        except (TypeError, ValueError) as e:
            raise ConfigError(f"search spec {tree!r}: {e}") from e
    return {k: to_search_space(v) for k, v in tree.items()}
