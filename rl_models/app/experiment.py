"""Experiment files: load a YAML experiment, apply command-line overrides, build Tune spaces.

An experiment file is plain data (see ``tune_configs/``). Its schema is
:class:`ExperimentConfig`, one field per top-level key with its documentation and default
(``env``: the MixingEnv config; ``model``/``module``: the RLModule; ``training``,
``env_runners``, ``resources``, ``fault_tolerance``, ``reporting``, ``offline_data``: the
AlgorithmConfig methods of the same name; ``evaluation``, ``tune``, ``checkpoint``: typed
sections). It is validated once, at the edge; errors name the key, and the file or the
``--set`` override that set it.

Search specs are data: ``{grid_search: [a, b]}``, ``{choice: [a, b]}``,
``{loguniform: [lo, hi]}``, ``{uniform: [lo, hi]}``, ``{randint: [lo, hi]}``,
``{qloguniform: [lo, hi, q]}``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixing_env.errors import ConfigError
from rl_models.plugins import absolute_class_path, is_class_path
from rl_models.registry import DEFAULT_MODULE, MODULES, algorithm_name

__all__ = [
    "TOP_LEVEL_KEYS",
    "CONFIG_DIR",
    "DEFAULTS",
    "CheckpointSection",
    "EvaluationSection",
    "ExperimentConfig",
    "TuneSection",
    "resolve_experiment_path",
    "load_experiment",
    "apply_overrides",
    "merge_trees",
    "parse_override",
    "validate_experiment",
    "to_search_space",
    "has_search_space",
    "search_candidates",
    "sweep_variants",
    "list_experiments",
]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "tune_configs"
"""The experiment files shipped with the project."""

_SEARCH_KEYS = ("grid_search", "choice", "loguniform", "uniform", "randint", "qloguniform",
                "quniform")
_NUMERIC_TRAINING_KEYS = ("lr", "gamma", "lambda_", "entropy_coeff", "vf_loss_coeff",
                          "grad_clip", "clip_param", "vf_clip_param", "kl_coeff", "kl_target",
                          "train_batch_size_per_learner", "minibatch_size", "num_epochs")
"""``training`` values that must be numbers (``lr`` and ``entropy_coeff`` may be schedules)."""


def _check_int(source: str, key: str, value: Any, *, minimum: int, allow_none: bool = False
               ) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{source}: {key} must be an integer >= {minimum}, got {value!r}")


def _section(cls: type, source: str, key: str, value: Any) -> Any:
    """A section dataclass from a mapping, naming unknown keys."""
    if value is None:
        return cls()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {key!r} must be a mapping, got "
                          f"{type(value).__name__} {value!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ConfigError(f"{source}: unknown {key} key(s) {unknown}; expected some of {names}")
    return cls(**{k: copy.deepcopy(v) for k, v in value.items()})


@dataclass(frozen=True)
class EvaluationSection:
    """Held-out evaluation that gives the ``gap_closed`` metric during training."""

    interval: int = 0
    """Evaluate every this many iterations (and at the last one); 0 turns it off."""
    env: dict = field(default_factory=dict)
    """EnvConfig keys laid over the experiment's ``env`` (e.g. other songs)."""
    rllib: dict | None = None
    """Optional ``AlgorithmConfig.evaluation(...)`` keyword arguments."""


@dataclass(frozen=True)
class CheckpointSection:
    """How often Tune saves a checkpoint (always at the end too)."""

    frequency: int = 5
    """Iterations between checkpoints; 0 = only at the end."""
    num_to_keep: int | None = None
    """Newest checkpoints kept per trial; None = all."""


@dataclass(frozen=True)
class TuneSection:
    """The sweep run by ``deepmixing tune``."""

    num_samples: int = 1
    """Samples of the search space (each grid point this many times)."""
    metric: str | None = None
    """Result key to rank trials by, e.g. ``deepmixing/gap_closed``."""
    mode: str = "max"
    """``max`` or ``min`` of ``metric``."""
    scheduler: dict | None = None
    """``{type: asha|pbt, ...}`` with the scheduler's keyword arguments."""
    param_space: dict = field(default_factory=dict)
    """A tree mirroring the experiment with search specs at the leaves."""


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment file, validated once; ``to_dict`` gives the plain trial config.

    The RLlib sections (``training``, ``env_runners``, ``resources``, ``fault_tolerance``,
    ``reporting``, ``offline_data``) are keyword arguments of the AlgorithmConfig method of
    the same name, checked against its signature by
    :func:`rl_models.algorithms.build_algorithm_config`.
    """

    name: str = "deepmixing"
    """Experiment name: the folder under ``storage_path``."""
    description: str = ""
    """Free text."""
    algorithm: str = "PPO"
    """A key of :data:`rl_models.registry.ALGORITHMS` (any case), or a user's AlgorithmConfig
    subclass as ``"package.module:ConfigClass"`` or ``"path/to/file.py:ConfigClass"``."""
    env: dict = field(default_factory=dict)
    """The MixingEnv config (``EnvConfig`` keys)."""
    model: dict = field(default_factory=dict)
    """The RLModule's ``model_config``."""
    module: str = DEFAULT_MODULE
    """Registered module name (:data:`rl_models.registry.MODULES`: the attention-LSTM or
    ``rllib_default``), or a user's TorchRLModule as ``"package.module:ModuleClass"``."""
    training: dict = field(default_factory=dict)
    """``AlgorithmConfig.training(...)`` keyword arguments."""
    env_runners: dict = field(default_factory=dict)
    """``AlgorithmConfig.env_runners(...)`` keyword arguments."""
    resources: dict = field(default_factory=dict)
    """``AlgorithmConfig.learners(...)`` / ``resources(...)`` keyword arguments."""
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    """Held-out evaluation for ``gap_closed``."""
    tune: TuneSection = field(default_factory=TuneSection)
    """The sweep (``deepmixing tune``)."""
    stop: dict = field(default_factory=lambda: {"training_iteration": 10})
    """Tune stop criteria, e.g. ``{training_iteration: 20}`` or ``{time_total_s: 600}``."""
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    """Checkpoint frequency and how many to keep."""
    fault_tolerance: dict = field(default_factory=dict)
    """``AlgorithmConfig.fault_tolerance(...)`` keyword arguments plus ``max_failures``
    (Tune trial retries)."""
    reporting: dict = field(default_factory=dict)
    """``AlgorithmConfig.reporting(...)`` keyword arguments."""
    offline_data: dict = field(default_factory=dict)
    """``AlgorithmConfig.offline_data(...)`` keyword arguments (BC, MARWIL)."""
    init_module_from: str | None = None
    """Start the module from this checkpoint's weights (e.g. PPO after BC)."""
    storage_path: str = "runs"
    """Where Tune writes results (a local path or shared storage)."""
    seed: int | None = 0
    """Base seed of env runners, learners and the module."""

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "experiment") -> ExperimentConfig:
        """Validates a parsed experiment mapping; missing keys take their defaults.

        Args:
            data: The mapping (a file's content after overrides).
            source: Where it came from, for error messages (a file, or ``--set ...``).

        Raises:
            ConfigError: An unknown key, a value of the wrong type or range, naming the key.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping at the top level, got "
                              f"{type(data).__name__}")
        unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; expected some "
                              f"of {list(TOP_LEVEL_KEYS)}")
        values = {k: v for k, v in data.items() if v is not None or k in _NULLABLE}
        sections = {"evaluation": EvaluationSection, "tune": TuneSection,
                    "checkpoint": CheckpointSection}
        for key in _DICT_KEYS:
            if key in values and not isinstance(values[key], Mapping):
                raise ConfigError(f"{source}: {key!r} must be a mapping, got "
                                  f"{type(values[key]).__name__} {values[key]!r}")
            if key in values and key not in sections:
                values[key] = copy.deepcopy(dict(values[key]))
        for key, section in sections.items():
            if key in values:
                values[key] = _section(section, source, key, values[key])
        for key in ("name", "description", "module", "storage_path"):
            if key in values and not isinstance(values[key], str):
                raise ConfigError(f"{source}: {key} must be a string, got {values[key]!r}")
        try:
            values["algorithm"] = algorithm_name(values.get("algorithm", cls.algorithm))
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e
        module = values.get("module", cls.module)
        if module not in MODULES and not is_class_path(module):
            raise ConfigError(f"{source}: unknown module {module!r}; expected one of "
                              f"{sorted(MODULES)} or 'package.module:ModuleClass'")
        _check_int(source, "seed", values.get("seed"), minimum=0, allow_none=True)
        config = cls(**values)
        config._check_ranges(source)
        return config

    def _check_ranges(self, source: str) -> None:
        _check_int(source, "checkpoint.frequency", self.checkpoint.frequency, minimum=0)
        _check_int(source, "checkpoint.num_to_keep", self.checkpoint.num_to_keep, minimum=1,
                   allow_none=True)
        _check_int(source, "evaluation.interval", self.evaluation.interval, minimum=0)
        _check_int(source, "tune.num_samples", self.tune.num_samples, minimum=1)
        if self.tune.mode not in ("max", "min"):
            raise ConfigError(f"{source}: tune.mode must be 'max' or 'min', got "
                              f"{self.tune.mode!r}")
        if self.init_module_from is not None and not isinstance(self.init_module_from, str):
            raise ConfigError(f"{source}: init_module_from must be a path, got "
                              f"{self.init_module_from!r}")
        for key in _NUMERIC_TRAINING_KEYS:
            value = self.training.get(key)
            if isinstance(value, str | bool) and not has_search_space(value):
                raise ConfigError(f"{source}: training.{key} must be a number, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """The plain dict form (Tune's trial config; round-trips through ``from_dict``)."""
        return copy.deepcopy(dataclasses.asdict(self))


TOP_LEVEL_KEYS = tuple(f.name for f in dataclasses.fields(ExperimentConfig))
"""The keys of an experiment file (the fields of :class:`ExperimentConfig`)."""
DEFAULTS: dict[str, Any] = ExperimentConfig().to_dict()
"""Every key's default value."""
_NULLABLE = ("init_module_from", "seed")
_DICT_KEYS = tuple(f.name for f in dataclasses.fields(ExperimentConfig)
                   if f.type in ("dict", "EvaluationSection", "TuneSection",
                                 "CheckpointSection"))


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

    Setting one of an env's song routes (``dataset_dir``, ``synthetic``, ``generated``) clears
    the others of the same env.

    Raises:
        ConfigError: An override is malformed, names an unknown top-level key, or goes through
            a value that is not a mapping.
    """
    from mixing_env.envs.config import SONG_ROUTES

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
        if len(path) >= 2 and path[-2] == "env" and path[-1] in SONG_ROUTES and value is not None:
            # --set env.dataset_dir=... means "these songs": the file's other song route goes
            # (a stream of generated songs and a dataset cannot both feed one env).
            for other in SONG_ROUTES:
                if other != path[-1] and node.get(other) is not None:
                    node[other] = None
    return experiment


def merge_trees(base: dict, update: dict) -> dict:
    """A copy of ``base`` with ``update`` laid over it, mapping by mapping (search specs whole)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        # Recurse into sections that merely hold specs ({lr: {choice: ...}}): only a spec
        # itself replaces the value whole, so the section's other keys are kept.
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _is_search_spec(
            value
        ):
            out[key] = merge_trees(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_experiment(experiment: dict, *, source: str = "experiment") -> dict:
    """Fills defaults and checks the schema (:meth:`ExperimentConfig.from_dict`).

    Returns:
        A new plain dict with every top-level key present.

    Raises:
        ConfigError: Unknown keys, an unknown algorithm, or a value of the wrong type.
    """
    return ExperimentConfig.from_dict(experiment, source=source).to_dict()


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
    validate_experiment(raw, source=str(path))
    # Apply the overrides one by one, so an error names the override that caused it.
    for i, text in enumerate(overrides):
        validate_experiment(apply_overrides(raw, overrides[: i + 1]), source=f"--set {text}")
    return _absolute_paths(validate_experiment(apply_overrides(raw, overrides),
                                               source=str(path)))


def _local_path(value: Any) -> Any:
    """A relative local path made absolute (from the working directory); others unchanged."""
    if isinstance(value, str) and value and "://" not in value and not Path(value).is_absolute():
        return str(Path(value).expanduser().resolve())
    return value


def _absolute_paths(experiment: dict) -> dict:
    """The experiment with its relative paths made absolute where the command runs.

    Tune runs each trial in its own folder (and, on a cluster, on another machine): a
    dataset, demonstrations, a checkpoint or a user's class given relative to the working
    directory must not depend on it. ``storage_path`` is resolved by the runner.
    """
    for key in ("algorithm", "module"):  # a user's class by file: found wherever it runs
        if is_class_path(experiment[key]):
            experiment[key] = absolute_class_path(experiment[key])
    for env in (experiment["env"], experiment["evaluation"]["env"]):
        if "dataset_dir" in env:
            env["dataset_dir"] = _local_path(env["dataset_dir"])
    inputs = experiment["offline_data"].get("input_")
    if inputs is not None:
        experiment["offline_data"]["input_"] = (
            [_local_path(p) for p in inputs] if isinstance(inputs, list) else _local_path(inputs))
    experiment["init_module_from"] = _local_path(experiment["init_module_from"])
    return experiment


def _is_search_spec(tree: Any) -> bool:
    """Whether ``tree`` is one search spec such as ``{grid_search: [...]}``."""
    return isinstance(tree, dict) and len(tree) == 1 and next(iter(tree)) in _SEARCH_KEYS


def has_search_space(tree: Any) -> bool:
    """Whether ``tree`` is, or holds, a search spec such as ``{grid_search: [...]}``."""
    if isinstance(tree, dict):
        if _is_search_spec(tree):
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
    if _is_search_spec(tree):
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


def search_candidates(spec: Any) -> list[Any]:
    """Values a search spec can give, to check before a sweep starts.

    ``grid_search``/``choice``: every value; ``uniform``/``loguniform`` (and the ``q``
    forms): both bounds; ``randint``: the lowest and the highest integer. A plain list (a
    PBT mutation) is its values.

    Raises:
        ConfigError: A spec with arguments of the wrong form.
    """
    if isinstance(spec, list):
        if not spec:
            raise ConfigError("a list of values to mutate must not be empty")
        return list(spec)
    kind, args = next(iter(spec.items()))
    if not isinstance(args, list) or not args:
        raise ConfigError(f"search spec {spec!r}: expected a non-empty list of values")
    if kind in ("grid_search", "choice"):
        return list(args)
    to_search_space(spec)  # checks the bounds' form and number
    if kind == "randint":
        return [int(args[0]), int(args[1]) - 1]
    return [float(args[0]), float(args[1])]


def _spec_leaves(tree: Any, path: tuple[str, ...] = (), *, lists: bool = False
                 ) -> list[tuple[tuple[str, ...], Any]]:
    """``(path, spec)`` of each search spec in a tree (with ``lists``: plain lists too)."""
    if _is_search_spec(tree) or (lists and isinstance(tree, list)):
        return [(path, tree)]
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items()
                for leaf in _spec_leaves(value, (*path, str(key)), lists=lists)]
    return []


def _set_path(tree: dict, path: tuple[str, ...], value: Any) -> dict:
    out = copy.deepcopy(tree)
    node = out
    for part in path[:-1]:
        child = node.get(part)
        node = node.setdefault(part, {}) if child is None else child
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)}: {part} is not a mapping")
    node[path[-1]] = value
    return out


def sweep_variants(experiment: dict) -> list[tuple[str, dict]]:
    """Concrete experiments that together try every value a sweep can set, one at a time.

    The first variant sets every searched value to its first candidate; each further one
    changes one searched (or, under PBT, mutated) value to another candidate. Checking them
    all finds a key, a value or a combination RLlib refuses before any trial starts.

    Returns:
        ``(label, experiment)`` pairs; the label names the setting (``training.lr=0.003``).

    Raises:
        ConfigError: A malformed search spec or mutation, naming its path.
    """
    tune_section = experiment.get("tune") or {}
    base = merge_trees({k: v for k, v in experiment.items() if k != "tune"},
                       tune_section.get("param_space") or {})
    leaves = _spec_leaves(base)
    mutations = _spec_leaves((tune_section.get("scheduler") or {}).get(
        "hyperparam_mutations") or {}, lists=True)
    candidates = {}
    for origin, items in (("tune.param_space", leaves),
                          ("tune.scheduler.hyperparam_mutations", mutations)):
        for path, spec in items:
            try:
                candidates.setdefault(path, []).extend(search_candidates(spec))
            except ConfigError as e:
                raise ConfigError(f"{origin}.{'.'.join(path)}: {e}") from e
    first = base
    for path, _ in leaves:
        first = _set_path(first, path, candidates[path][0])
    variants = [("first values", first)]
    searched = {path for path, _ in leaves}
    for path, values in candidates.items():
        for value in values[1:] if path in searched else values:
            label = f"{'.'.join(path)}={value!r}"
            if all(label != seen for seen, _ in variants):
                variants.append((label, _set_path(first, path, value)))
    return variants
