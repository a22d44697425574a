"""One function from plain experiment dicts to an RLlib AlgorithmConfig on the new API stack."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.impala import IMPALAConfig
from ray.rllib.algorithms.marwil import MARWILConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from mixing_env.envs import RAY_ENV_NAME, register_with_ray
from mixing_env.envs.config import EnvConfig
from mixing_env.errors import ConfigError
from rl_models.algorithms.sequence_learners import SEQUENCE_LEARNERS
from rl_models.checkpoints import module_checkpoint_dir
from rl_models.registry import (
    ALGORITHMS,
    DEFAULT_MODULE,
    RLLIB_DEFAULT_MODULE,
    algorithm_config_class,
    algorithm_name,
    builtin_algorithm_of,
    module_spec,
)
from rl_models.step_connectors import use_step_connectors

__all__ = [
    "ALGORITHMS",
    "DEFAULTS",
    "DEFAULT_MODULE",
    "RLLIB_DEFAULT_MODULE",
    "build_algorithm_config",
]

# Small CPU defaults (2 cores, 0-1 env runners, a local learner). Every entry can be
# overridden by the matching dict handed to build_algorithm_config.
_COMMON = {
    "training": {"lr": 3e-4, "gamma": 0.99},
    "env_runners": {"num_env_runners": 0, "num_envs_per_env_runner": 1},
    # A local learner (no learner actor): the 2-core machine has no core to spare for one.
    "resources": {"num_learners": 0},
    "reporting": {},
}

#: Per-algorithm defaults layered over the common ones.
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "PPO": {
        "training": {
            "train_batch_size_per_learner": 512,
            "minibatch_size": 128,
            "num_epochs": 4,
            "lambda_": 0.95,
        },
    },
    # IMPALA and APPO sample and learn asynchronously. With a local learner (num_learners=0)
    # RLlib updates synchronously once a full train batch has been queued, so an iteration
    # must run until at least one batch was trained on, not for IMPALA's default 10 s.
    "APPO": {
        "training": {"train_batch_size_per_learner": 256},
        "env_runners": {"rollout_fragment_length": 32},
        "reporting": {"min_time_s_per_iteration": None},
    },
    "IMPALA": {
        "training": {"train_batch_size_per_learner": 256},
        "env_runners": {"rollout_fragment_length": 32},
        "reporting": {"min_time_s_per_iteration": None},
    },
    "PG": {
        "training": {"train_batch_size_per_learner": 512},
    },
    "BC": {"training": {"train_batch_size_per_learner": 512}},
    "MARWIL": {"training": {"train_batch_size_per_learner": 512}},
}

# Offline reading on a small machine: RLlib's defaults ask Ray Data for more CPU-bound
# pre-learner actors than 2 cores hold, and the run then waits forever for them.
_OFFLINE_DEFAULTS: dict[str, Any] = {
    "input_read_episodes": True,  # rl_models.app.demonstrations writes whole episodes
    # A Parquet row is a whole episode: without this RLlib pulls train_batch_size_per_learner
    # *episodes* per update (1024 x 128 steps), minutes and gigabytes per iteration.
    "input_read_batch_size": 8,
    "dataset_num_iters_per_learner": 1,
    "map_batches_kwargs": {"concurrency": 1, "num_cpus": 0.5},
    "iter_batches_kwargs": {"prefetch_batches": 1},
    "input_read_method_kwargs": {"num_cpus": 0.25},
}



class _NewStackNotice(logging.Filter):
    """Drops RLlib's notice that an algorithm runs on the new API stack: every one here does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "on the new API stack! This is the new default" not in str(record.getMessage())


logging.getLogger("ray.rllib.algorithms.algorithm_config").addFilter(_NewStackNotice())


def build_algorithm_config(
    algorithm: str = "PPO",
    *,
    env_config: Mapping[str, Any],
    model: Mapping[str, Any] | None = None,
    module: str | None = DEFAULT_MODULE,
    training: Mapping[str, Any] | None = None,
    env_runners: Mapping[str, Any] | None = None,
    resources: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    fault_tolerance: Mapping[str, Any] | None = None,
    reporting: Mapping[str, Any] | None = None,
    offline_data: Mapping[str, Any] | None = None,
    init_module_from: str | None = None,
    seed: int | None = None,
) -> AlgorithmConfig:
    """Builds the RLlib config that trains a DeepMixing policy on ``MixingEnv``.

    The config is always on RLlib's new API stack (RLModule, Learner, ConnectorV2), runs the
    environment registered as :data:`mixing_env.envs.RAY_ENV_NAME`, and uses the module
    registered under ``module`` in :mod:`rl_models.registry`. The option dicts are applied with the
    AlgorithmConfig method of the same name, over small CPU defaults (:data:`DEFAULTS`).

    Args:
        algorithm: One of ``"PPO"`` (default), ``"APPO"``, ``"IMPALA"``, ``"PG"``, or the
            offline ``"BC"`` and ``"MARWIL"`` (which need ``offline_data``), any case; or a
            class path ``"package.module:ConfigClass"`` of an AlgorithmConfig subclass,
            which takes the defaults of the built-in algorithm it derives from
            (:mod:`rl_models.registry`).
        env_config: MixingEnv config dict (keys of ``mixing_env.envs.config.EnvConfig``),
            passed to every env unchanged; checked here so typos fail before Ray starts.
        model: The module's ``model_config`` (e.g. ``{"k": 8, "max_seq_len": 8}``).
        module: Registered module name (:data:`rl_models.registry.MODULES`) or a class
            path ``"package.module:ModuleClass"``; None means :data:`DEFAULT_MODULE`.
            ``"rllib_default"`` is RLlib's default encoder (``model`` is then its
            ``DefaultModelConfig`` dict, e.g. ``{"use_lstm": True}``) over the flattened
            observation with the project's Dirichlet head, the baseline the throughput
            benchmark compares against.
        training: Keyword arguments of ``config.training()`` (lr, gamma,
            train_batch_size_per_learner, minibatch_size, num_epochs, entropy_coeff, ...).
        env_runners: Keyword arguments of ``config.env_runners()`` (num_env_runners,
            num_envs_per_env_runner, rollout_fragment_length, ...).
        resources: Keyword arguments of ``config.learners()`` (num_learners,
            num_gpus_per_learner, ...) or ``config.resources()`` (num_cpus_for_main_process,
            placement_strategy).
        evaluation: Keyword arguments of ``config.evaluation()`` (evaluation_interval,
            evaluation_duration, evaluation_config, ...).
        fault_tolerance: Keyword arguments of ``config.fault_tolerance()``.
        reporting: Keyword arguments of ``config.reporting()`` (min_time_s_per_iteration, ...).
        offline_data: Keyword arguments of ``config.offline_data()`` for BC and MARWIL, at
            least ``input_`` (a demonstrations folder, :mod:`rl_models.app.demonstrations`);
            small-machine defaults for the rest (episodes, one pre-learner actor).
        init_module_from: Start the module from these weights: an RLModule checkpoint folder,
            or an algorithm checkpoint (its ``default_policy`` module is used). This is how
            PPO fine-tunes a behaviour-cloned policy.
        seed: Seed for env runners, learners and module initialisation.

    Returns:
        An unbuilt AlgorithmConfig; ``config.build_algo()`` gives the Algorithm.

    Raises:
        ConfigError: For an unknown algorithm, an unknown key in one of the dicts (naming the
            key and the accepted ones), or a value RLlib rejects.
    """
    name = algorithm_name(algorithm)
    config_class = algorithm_config_class(name)
    base = builtin_algorithm_of(config_class)
    register_with_ray()
    if not isinstance(env_config, Mapping):
        raise ConfigError(f"env_config must be a dict, got {type(env_config).__name__}")
    EnvConfig.from_dict(dict(env_config))  # raises ConfigError on unknown keys / bad values

    config = config_class().api_stack(
        enable_rl_module_and_learner=True,
        enable_env_runner_and_connector_v2=True,
    )
    config.framework("torch")
    # The action is a point on the simplex (gains summing to 1, exact 0 for dummy slots),
    # produced by a Dirichlet in [0, 1] already. RLlib's default normalize_actions=True would
    # treat the sample as living in [-1, 1] and rescale it onto Box(0, 1), and clipping could
    # break the sum: both must stay off so the env sees the sampled gains unchanged.
    config.environment(
        RAY_ENV_NAME,
        env_config=dict(env_config),
        normalize_actions=False,
        clip_actions=False,
    )
    spec = _module_spec(module or DEFAULT_MODULE, model)
    if init_module_from is not None:
        spec.load_state_path = str(module_checkpoint_dir(init_module_from))
    config.rl_module(rl_module_spec=spec)
    if issubclass(config_class, MARWILConfig):  # BC and MARWIL learn from recorded episodes
        _apply_offline(config, env_config, offline_data, name)
    elif offline_data:
        raise ConfigError(f"offline_data is for BC and MARWIL, not {name}")

    if module != RLLIB_DEFAULT_MODULE and name in SEQUENCE_LEARNERS:
        # One vectorized learner-connector pass instead of RLlib's eight (rl_models.sequence_batch);
        # only for the built-in names: a plugged-in config keeps its own learner.
        config.learners(learner_class=SEQUENCE_LEARNERS[name])

    defaults = _merged_defaults(base)
    _apply(config, "training", defaults["training"] | dict(training or {}), name)
    _apply(config, "env_runners", defaults["env_runners"] | dict(env_runners or {}), name)
    stepped = module != RLLIB_DEFAULT_MODULE and use_step_connectors(config)
    if env_config.get("self_critical"):
        _check_self_critical(config, name, stepped)
    _apply_resources(config, defaults["resources"] | dict(resources or {}), name)
    reporting_kwargs = defaults["reporting"] | dict(reporting or {})
    if issubclass(config_class, IMPALAConfig) and (  # IMPALA and APPO sample asynchronously
            "min_train_timesteps_per_iteration" not in reporting_kwargs):
        reporting_kwargs["min_train_timesteps_per_iteration"] = config.total_train_batch_size
    _apply(config, "reporting", reporting_kwargs, name)
    if evaluation:
        _apply(config, "evaluation", dict(evaluation), name)
    if fault_tolerance:
        _apply(config, "fault_tolerance", dict(fault_tolerance), name)
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int or None, got {seed!r}")
        config.debugging(seed=seed)

    try:
        config.validate()
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid {name} configuration: {e}") from e
    return config


def _check_self_critical(config: AlgorithmConfig, name: str, stepped: bool) -> None:
    """Refuses an env ``self_critical`` that nothing would serve.

    The mean action must be sent (the step connectors), a learner must read its reward (the
    sequence learners), and gamma must be 0 (one step's reward is the whole return).
    """
    if not stepped or name not in SEQUENCE_LEARNERS:
        raise ConfigError(f"env self_critical needs {sorted(SEQUENCE_LEARNERS)} with the "
                          f"project's module and no connectors of its own, got {name}")
    if config.gamma != 0.0:
        raise ConfigError(f"env self_critical needs training gamma 0, got gamma="
                          f"{config.gamma}: its baseline is one step's reward")


def _apply_offline(
    config: AlgorithmConfig, env_config: Mapping[str, Any], offline: Mapping[str, Any] | None,
    name: str,
) -> None:
    if not offline or "input_" not in offline:
        raise ConfigError(
            f"{name} learns from demonstrations: set offline_data.input_ to a folder written "
            "by rl_models.app.demonstrations (deepmixing demonstrations ...)"
        )
    kwargs = {**_OFFLINE_DEFAULTS, **dict(offline)}
    inputs = kwargs["input_"] if isinstance(kwargs["input_"], list) else [kwargs["input_"]]
    missing = [p for p in inputs if "://" not in str(p) and not Path(p).exists()]
    if missing:
        raise ConfigError(f"offline_data.input_ {missing} does not exist")
    kwargs["input_"] = [str(Path(p).resolve()) if "://" not in str(p) else p for p in inputs]
    # RLlib's offline algorithms need the spaces up front (no env is sampled to learn them).
    from mixing_env.envs.song_source import SongSource

    observation_space, action_space = SongSource(dict(env_config)).spaces()
    config.environment(observation_space=observation_space, action_space=action_space)
    _apply(config, "offline_data", kwargs, name)


def _module_spec(module: str, model: Mapping[str, Any] | None) -> RLModuleSpec:
    if model is not None and not isinstance(model, Mapping):
        raise ConfigError(f"model must be a dict of model_config values, got {model!r}")
    return module_spec(module, dict(model or {}))


def _merged_defaults(base: str | None) -> dict[str, dict[str, Any]]:
    """The small-machine defaults of built-in algorithm ``base`` (None: the common ones)."""
    return {
        section: common | DEFAULTS.get(base, {}).get(section, {})
        for section, common in _COMMON.items()
    }


def _accepted_keys(config: AlgorithmConfig, method: str) -> set[str]:
    """Keyword arguments that ``config.<method>`` accepts anywhere along its class chain."""
    keys: set[str] = set()
    for klass in type(config).__mro__:
        fn = klass.__dict__.get(method)
        if fn is None:
            continue
        for p in inspect.signature(fn).parameters.values():
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                keys.add(p.name)
    return keys


def _apply(config: AlgorithmConfig, method: str, kwargs: dict[str, Any], name: str) -> None:
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{method} must be a dict, got {kwargs!r}")
    unknown = sorted(set(kwargs) - _accepted_keys(config, method))
    if unknown:
        raise ConfigError(
            f"unknown {method} key(s) {unknown} for {name}; "
            f"accepted: {sorted(_accepted_keys(config, method))}"
        )
    call: Callable[..., Any] = getattr(config, method)
    try:
        call(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {method} settings {kwargs} for {name}: {e}") from e


def _apply_resources(config: AlgorithmConfig, kwargs: dict[str, Any], name: str) -> None:
    if not isinstance(kwargs, dict):
        raise ConfigError(f"resources must be a dict, got {kwargs!r}")
    learner_keys = _accepted_keys(config, "learners")
    resource_keys = _accepted_keys(config, "resources")
    unknown = sorted(set(kwargs) - learner_keys - resource_keys)
    if unknown:
        raise ConfigError(
            f"unknown resources key(s) {unknown} for {name}; "
            f"accepted: {sorted(learner_keys | resource_keys)}"
        )
    _apply(config, "learners", {k: v for k, v in kwargs.items() if k in learner_keys}, name)
    rest = {k: v for k, v in kwargs.items() if k not in learner_keys}
    if rest:
        _apply(config, "resources", rest, name)
