"""Train or sweep an experiment through Ray Tune, and resume an interrupted one.

Every trial runs :class:`DeepMixingTrainable`, a thin Tune Trainable around the RLlib Algorithm
that :func:`rl_models.algorithms.build_algorithm_config` builds from the trial's experiment
dict. The trial config *is* the experiment (``env``, ``model``, ``training``... sections), so
a sweep can search any value of the file (``env.rho``, ``model.k``, ``training.lr``) and PBT
mutates the same paths. Each checkpoint holds the RLlib algorithm checkpoint (for resuming)
plus the plain files of :mod:`rl_models.checkpoints` (experiment, slot layout, policy weights
without pickle), which evaluate and mix read. Each trial folder gets a learning-curve PNG.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from mixing_env.envs.config import over_songs
from mixing_env.errors import CheckpointError, ConfigError
from rl_models import checkpoints
from rl_models.app.experiment import ExperimentConfig

__all__ = [
    "CURVE_FILE",
    "build_config",
    "check_experiment",
    "DeepMixingTrainable",
    "experiment_dir",
    "init_ray",
    "make_tuner",
    "plugin_modules",
    "run_experiment",
    "resume_experiment",
    "resumed_experiments",
    "summarize_results",
    "trial_config",
]

CURVE_FILE = "learning_curve.png"
"""Written into every trial folder at the end of a run (mean episode return and gap_closed)."""

# Keys Tune's Trainable.train() fills in; the inner Algorithm.train() fills them too, so the
# wrapper drops the inner ones and lets Tune count iterations of the trial itself.
_AUTO_KEYS = (
    "training_iteration", "done", "timesteps_total", "episodes_total", "time_this_iter_s",
    "time_total_s", "time_since_restore", "timesteps_since_restore", "iterations_since_restore",
    "date", "timestamp", "pid", "hostname", "node_ip", "config", "trial_id", "experiment_id",
    "should_checkpoint",
)


def build_config(experiment: dict | ExperimentConfig):
    """The RLlib AlgorithmConfig of one (fully resolved) experiment, with our callbacks."""
    from ray.rllib.callbacks.callbacks import RLlibCallback
    from ray.rllib.utils import force_list

    from rl_models.algorithms import build_algorithm_config
    from rl_models.app.callbacks import DeepMixingCallbacks

    exp = experiment if isinstance(experiment, ExperimentConfig) else \
        ExperimentConfig.from_dict(experiment)
    fault_tolerance = {k: v for k, v in exp.fault_tolerance.items() if k != "max_failures"}
    config = build_algorithm_config(
        exp.algorithm,
        env_config=exp.env,
        model=exp.model,
        module=exp.module,
        training=exp.training,
        env_runners=exp.env_runners,
        resources=exp.resources,
        evaluation=exp.evaluation.rllib,
        fault_tolerance=fault_tolerance or None,
        reporting=exp.reporting or None,
        offline_data=exp.offline_data or None,
        init_module_from=exp.init_module_from,
        seed=exp.seed,
    )
    evaluation = {
        "interval": exp.evaluation.interval,
        "env": over_songs(exp.env, exp.evaluation.env),
        # A run shorter than the interval is still evaluated once, at its last iteration.
        "last_iteration": exp.stop.get("training_iteration"),
    }
    existing = [c for c in force_list(config.callbacks_class) if c is not None]
    existing = [c for c in existing if c is not RLlibCallback]
    config.callbacks(
        callbacks_class=existing + [functools.partial(DeepMixingCallbacks, evaluation=evaluation)]
    )
    return config


def _env_facts(env_config: dict) -> tuple[dict[str, Any], Any, Any]:
    """The slot layout and the spaces of an env config (reads the dataset: checks it)."""
    from mixing_env.envs.song_source import SongSource

    source = SongSource(dict(env_config))
    return (source.layout.to_dict(), *source.spaces())


def check_experiment(experiment: dict, *, sweep: bool = False) -> None:
    """Checks an experiment before Ray starts and before any folder is made.

    The schema, the module's model keys, the RLlib config, the datasets; with ``sweep``, the
    same for every value the sweep can set (:func:`~rl_models.app.experiment.sweep_variants`)
    and the scheduler.

    Raises:
        ConfigError, CacheError, DatasetError, CheckpointError: A user mistake, naming the
            key, the sweep setting or the folder.
    """
    from rl_models.app.experiment import has_search_space, sweep_variants

    if not sweep:
        if has_search_space({k: v for k, v in experiment.items() if k != "tune"}):
            raise ConfigError("the experiment holds search specs outside tune.param_space; "
                              "use `deepmixing tune` for a sweep")
        _check_concrete(experiment, {})
        return
    exp = ExperimentConfig.from_dict(experiment)
    seen: dict[str, Any] = {}
    for label, variant in sweep_variants(experiment):
        where = "tune.param_space" if label == "first values" else f"sweep setting {label}"
        try:
            _check_concrete(variant, seen)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from e
    _check_tune_section(exp)


def _check_concrete(experiment: dict, seen: dict[str, Any]) -> None:
    """Checks one experiment without search specs; ``seen`` caches dataset reads."""
    from mixing_env.envs.config import EnvConfig
    from rl_models.registry import algorithm_config_class, check_model_config

    exp = ExperimentConfig.from_dict(experiment)
    algorithm_config_class(exp.algorithm)  # imports a user's class: an error names it
    evaluated = over_songs(exp.env, exp.evaluation.env)
    for key, env in (("env", exp.env), ("evaluation.env", evaluated)):
        try:
            EnvConfig.from_dict(env)
        except ConfigError as e:
            raise ConfigError(f"{key}: {e}") from e
    for env in (exp.env, evaluated) if exp.evaluation.interval > 0 else (exp.env,):
        if repr(env) not in seen:
            seen[repr(env)] = _env_facts(env)
    if exp.init_module_from is not None and exp.init_module_from not in seen:
        seen[exp.init_module_from] = checkpoints.load_rllib_module(exp.init_module_from)
    check_model_config(exp.module, exp.model)
    build_config(exp)


def _check_tune_section(exp: ExperimentConfig) -> None:
    from rl_models.app.callbacks import EVALUATION_KEYS, RESULT_KEY

    tune_section = exp.tune
    scheduler = tune_section.scheduler
    if scheduler and not tune_section.metric:
        raise ConfigError("tune.scheduler needs tune.metric (e.g. deepmixing/gap_closed)")
    metric = tune_section.metric or ""
    if metric.startswith(f"{RESULT_KEY}/") and metric.split("/", 1)[1] in EVALUATION_KEYS \
            and exp.evaluation.interval < 1:
        message = (f"tune.metric {metric} comes from the held-out evaluation, which "
                   f"evaluation.interval 0 turns off")
        if scheduler:  # the scheduler would compare NaNs
            raise ConfigError(f"{message}: set evaluation.interval >= 1")
        warnings.warn(f"{message}: trials will not be ranked", stacklevel=2)
    _scheduler(scheduler, metric=tune_section.metric, mode=tune_section.mode)


try:
    from ray import tune as _tune

    _TrainableBase = _tune.Trainable
except ImportError as e:  # pragma: no cover - ray is a hard dependency
    raise ImportError("rl_models.app.train needs ray[tune]: pip install 'ray[rllib,tune]==2.60.0'"
                      ) from e


class DeepMixingTrainable(_TrainableBase):
    """A Tune trial: builds the Algorithm from the experiment dict in ``config`` and trains it."""

    def setup(self, config: dict) -> None:
        """Builds the algorithm; records the slot layout for evaluation and mixing."""
        self.experiment = copy.deepcopy(dict(config))
        self.typed = ExperimentConfig.from_dict(self.experiment)
        self.algo = build_config(self.typed).build_algo()
        self.layout = _env_facts(self.typed.env)[0]

    def step(self) -> dict:
        """One ``Algorithm.train()`` call; Tune fills in iteration and time keys."""
        # Keep the inner iteration count equal to the trial's (after a restore too), so the
        # callbacks' "every N iterations" and RLlib's own intervals line up with Tune's.
        self.algo._iteration = self.iteration
        result = self.algo.train()
        return {k: v for k, v in result.items() if k not in _AUTO_KEYS}

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        """Saves the RLlib algorithm plus the plain files of :mod:`rl_models.checkpoints`."""
        self.algo.save_to_path(checkpoint_dir)
        checkpoints.write_metadata(checkpoint_dir, experiment=self.experiment,
                                   layout=self.layout, iteration=self.iteration)
        checkpoints.write_policy_files(checkpoint_dir, layout=self.layout,
                                       **checkpoints.learner_policy(self.algo))
        return None

    def load_checkpoint(self, checkpoint: str | dict) -> None:
        """Restores the RLlib algorithm (module weights, optimizer, connector state)."""
        self.algo.restore_from_path(checkpoint)

    def cleanup(self) -> None:
        """Stops the algorithm's env runners and learners."""
        self.algo.stop()

    @classmethod
    def default_resource_request(cls, config: dict):
        """The Algorithm's own placement group: main process + learners + env runners."""
        algo_config = build_config(config)
        request = algo_config.algo_class.default_resource_request(algo_config)
        if algo_config.is_offline:
            # Ray Data's read tasks and pre-learner actors run outside the trial's placement
            # group: leave them CPUs (1 for reads + the actors') by holding half a CPU for
            # the driver, whose local learner does the (small) updates.
            from ray.tune import PlacementGroupFactory

            main = {**request.bundles[0], "CPU": 0.5}
            request = PlacementGroupFactory(bundles=[main, *request.bundles[1:]],
                                            strategy=request.strategy)
        return request


JOIN_TIMEOUT_S = 30.0
"""How long ``--address`` may take to join a cluster before the command ends with an error."""
_PROBE_TIMEOUT_S = 5.0


def init_ray(*, num_cpus: int | None = None, num_gpus: int | None = None,
             address: str | None = None, py_modules: list[str] | tuple[str, ...] = ()) -> None:
    """Starts Ray with explicit resources, or joins a cluster at ``address``.

    Args:
        num_cpus: CPUs for a local Ray (default: all local cores). Ignored with ``address``.
        num_gpus: GPUs for a local Ray (default: Ray's detection).
        address: A running cluster (``auto`` or ``host:port``); None starts a local Ray whose
            processes listen on 127.0.0.1 only.
        py_modules: Files and package folders every Ray process must import (a user's
            algorithm or module, :func:`plugin_modules`); Ray copies them to each node.

    Raises:
        ConfigError: Nothing answers at ``address``, or it is not a Ray cluster that can be
            joined (checked within :data:`JOIN_TIMEOUT_S`).
    """
    import ray

    if ray.is_initialized():
        if py_modules:
            warnings.warn(f"Ray is already running: its processes must be able to import "
                          f"{list(py_modules)} (start it with runtime_env py_modules)",
                          stacklevel=2)
        return
    runtime_env = {"py_modules": list(py_modules)} if py_modules else None
    if address:
        _join_cluster(address, runtime_env)
        return
    # A local Ray listens on the node's address. Ray maps a 127.0.0.1 node address back to the
    # external one unless it runs single-machine, as it does on macOS and Windows: run it so for
    # the start, and every Ray process listens on loopback only. Token auth stays as Ray sets it.
    from ray._private import ray_constants

    multi_node = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus,
                 include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = multi_node


def _reachable(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _join_cluster(address: str, runtime_env: dict | None) -> None:
    """``ray.init(address=...)`` that ends with one clear error instead of hanging."""
    import contextlib
    import threading

    import ray
    from ray._private import services

    from rl_models.app.loopback_ray import loopback_addresses

    target = address
    if address == "auto":
        try:
            target = services.get_ray_address_from_environment("auto", None)
        except ConnectionError as e:
            raise ConfigError("--address auto: no running Ray cluster found on this machine "
                              "(start one with `ray start --head`, or give host:port)") from e
    host, _, port = str(target).rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be 'auto' or host:port, got {address!r}")
    if not _reachable(host, int(port)):
        raise ConfigError(f"no Ray cluster at {target}: nothing accepts connections there "
                          f"(is the head running, and is the port its --port?)")
    # A cluster started with rl_models.app.loopback_ray answers on 127.0.0.1 only, where Ray
    # would look for it on this machine's external address: join it as it was started.
    loopback = services.is_localhost(host) and not _reachable(
        services.resolve_ip_for_localhost(host), int(port))

    def give_up() -> None:
        print(f"deepmixing: error: the Ray cluster at {target} did not answer within "
              f"{JOIN_TIMEOUT_S:.0f} s (a Ray head of another version, or not a Ray port?)",
              file=sys.stderr, flush=True)
        os._exit(2)  # ray.init blocks in native code: nothing else can stop it

    watchdog = threading.Timer(JOIN_TIMEOUT_S, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        with loopback_addresses() if loopback else contextlib.nullcontext():
            ray.init(address=target, include_dashboard=False, log_to_driver=False,
                     runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"cannot join the Ray cluster at {target}: {first}") from e
    finally:
        watchdog.cancel()


def plugin_modules(experiments: list[dict]) -> list[str]:
    """What Ray must copy to its processes for the user classes these experiments name.

    Args:
        experiments: Concrete experiments: the one to train, every variant of a sweep
            (:func:`~rl_models.app.experiment.sweep_variants`), or the trial configs of a run
            to resume (:func:`resumed_experiments`).

    Raises:
        ConfigError: A named class does not import.
    """
    from rl_models.plugins import is_class_path, shipped_paths
    from rl_models.registry import algorithm_config_class, module_class

    specs = set()
    for experiment in experiments:
        for key, resolve in (("algorithm", algorithm_config_class), ("module", module_class)):
            if is_class_path(experiment.get(key)):
                resolve(experiment[key])
                specs.add(experiment[key])
    return shipped_paths(sorted(specs))


def trial_config(experiment: dict, *, sweep: bool) -> dict:
    """The Tune ``param_space``: the experiment without its ``tune`` section, plus the sweep.

    With ``sweep`` the ``tune.param_space`` tree (search specs as data) is laid over the
    experiment and turned into Tune search objects.
    """
    from rl_models.app.experiment import merge_trees, to_search_space

    space = {k: v for k, v in experiment.items() if k != "tune"}
    if sweep:
        space = merge_trees(space, experiment["tune"].get("param_space") or {})
        return to_search_space(space)
    return space


def _scheduler(spec: dict | None, *, metric: str | None, mode: str):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    from rl_models.app.experiment import to_search_space

    if not spec:
        return None
    spec = dict(spec)
    kind = str(spec.pop("type", "")).lower()
    try:
        if kind == "asha":
            return ASHAScheduler(metric=metric, mode=mode, **spec)
        if kind == "pbt":
            spec["hyperparam_mutations"] = to_search_space(spec.get("hyperparam_mutations", {}))
            return PopulationBasedTraining(metric=metric, mode=mode, **spec)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"tune.scheduler ({kind}): {e}") from e
    raise ConfigError(f"tune.scheduler.type must be 'asha' or 'pbt', got {kind!r}")


def experiment_dir(experiment: dict, storage_path: str | None = None) -> str:
    """The experiment's folder, ``<storage_path>/<name>`` (a URI stays one)."""
    root = str(storage_path or experiment["storage_path"])
    if "://" in root:
        return f"{root.rstrip('/')}/{experiment['name']}"
    return str(Path(root).expanduser().resolve() / experiment["name"])


def make_tuner(experiment: dict, *, sweep: bool = False, storage_path: str | None = None,
               verbose: int = 0, callbacks: list | None = None):
    """A ``ray.tune.Tuner`` for the experiment (one trial, or the sweep when ``sweep``).

    ``verbose`` 0 leaves Tune's progress output out and prints one line per finished trial
    (:class:`~rl_models.app.tune_console.TrialLines`); 1-3 are Tune's own verbosities.
    """
    from ray import tune

    from rl_models.app.tune_console import TrialLines

    tune_section = experiment["tune"]
    metric = tune_section.get("metric") if sweep else None
    mode = tune_section.get("mode", "max")
    scheduler = _scheduler(tune_section.get("scheduler"), metric=metric, mode=mode
                           ) if sweep else None
    ckpt = experiment["checkpoint"]
    storage = str(Path(experiment_dir(experiment, storage_path)).parent) \
        if "://" not in str(storage_path or experiment["storage_path"]) \
        else str(storage_path or experiment["storage_path"])
    if verbose == 0:
        callbacks = [*(callbacks or []), TrialLines(metric or "deepmixing/gap_closed")]
    run_config = tune.RunConfig(
        name=experiment["name"],
        storage_path=storage,
        stop=experiment["stop"],
        verbose=verbose,
        callbacks=callbacks,
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=int(ckpt.get("frequency", 0) or 0),
            checkpoint_at_end=True,
            num_to_keep=ckpt.get("num_to_keep"),
        ),
        failure_config=tune.FailureConfig(
            max_failures=int(experiment["fault_tolerance"].get("max_failures", 0))
        ),
    )
    tune_config = tune.TuneConfig(
        num_samples=int(tune_section.get("num_samples", 1)) if sweep else 1,
        scheduler=scheduler,
        metric=None if scheduler else metric,
        mode=None if scheduler or metric is None else mode,
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
    )
    return tune.Tuner(DeepMixingTrainable, param_space=trial_config(experiment, sweep=sweep),
                      tune_config=tune_config, run_config=run_config)


def _trial_name(trial) -> str:
    """``<algorithm>_<trial id>``: short folder names instead of the whole config.

    A user's algorithm ``my_algos:TinyPPOConfig`` shows as ``TinyPPOConfig``.
    """
    algorithm = str(trial.config.get("algorithm", "trial")).rpartition(":")[2]
    return f"{algorithm}_{trial.trial_id}"


def _finish(results) -> None:
    """Draws each trial's learning curve; raises when every trial failed."""
    from rl_models.app.plots import plot_training_curve

    for r in results:
        if r.path and Path(r.path, "result.json").is_file():
            plot_training_curve(Path(r.path, "result.json"), Path(r.path, CURVE_FILE))
    errors = [r.error for r in results if r.error is not None]
    if errors and len(errors) == len(results):
        raise errors[0]


def run_experiment(experiment: dict, *, sweep: bool = False, storage_path: str | None = None,
                   verbose: int = 0, callbacks: list | None = None, checked: bool = False):
    """Runs one experiment (``sweep=False``) or its sweep through Tune; returns the ResultGrid.

    Args:
        experiment: The experiment dict (:func:`rl_models.app.experiment.load_experiment`).
        sweep: Run the ``tune`` section's sweep instead of one trial.
        storage_path: Where results go (None: the experiment's ``storage_path``).
        verbose: 0: one line per finished trial; 1-3: Tune's console verbosity.
        callbacks: Extra Tune callbacks.
        checked: :func:`check_experiment` already passed (the CLI runs it before Ray starts).

    Raises:
        ConfigError: The experiment does not build (checked before any trial starts).
        RunInterrupted: Ctrl+C stopped it; its state is saved (``.path`` resumes it).
    """
    from rl_models.app.tune_console import tune_fit

    if not checked:
        check_experiment(experiment, sweep=sweep)  # fail fast, before a folder is made
    tuner = make_tuner(experiment, sweep=sweep, storage_path=storage_path, verbose=verbose,
                       callbacks=callbacks)
    results = tune_fit(tuner, experiment_dir(experiment, storage_path), quiet=verbose == 0)
    _finish(results)
    return results


def resume_experiment(path: str | Path, *, verbose: int = 0):
    """Resumes an interrupted experiment from its folder, continuing unfinished trials.

    Finished iterations are kept: each trial restarts from its latest checkpoint (saved every
    ``checkpoint.frequency`` iterations and at the end) with its iteration count.

    Raises:
        CheckpointError: ``path`` is not a Tune experiment folder.
        RunInterrupted: Ctrl+C stopped it again.
    """
    from ray import tune

    from rl_models.app.tune_console import tune_fit

    path = Path(path).expanduser().resolve()
    if not tune.Tuner.can_restore(str(path)):
        raise CheckpointError(f"not a Tune experiment folder that can be resumed: {path} "
                              f"(expected the folder holding tuner.pkl)")
    # The restored run keeps the callbacks it was started with (TrialLines when quiet).
    tuner = tune.Tuner.restore(str(path), trainable=DeepMixingTrainable,
                               resume_unfinished=True, resume_errored=True)
    results = tune_fit(tuner, path, quiet=verbose == 0)
    _finish(results)
    return results


def resumed_experiments(path: str | Path) -> list[dict]:
    """The trial configs of an experiment folder (each trial's ``params.json``).

    Read before Ray starts, so ``--resume`` can ship the user classes they name.
    """
    import json

    configs = []
    for params in sorted(Path(path).expanduser().glob("*/params.json")):
        try:
            configs.append(json.loads(params.read_text()))
        except (OSError, ValueError):
            continue
    return configs


def summarize_results(results) -> list[str]:
    """Lines describing each trial: iterations, training metrics, gap closed, folders."""

    def num(value: Any) -> str:
        return "-" if value is None or value != value else f"{value:.3f}"

    lines = []
    for r in results:
        metrics = r.metrics or {}
        custom = metrics.get("deepmixing", {}) or {}
        ckpt = r.checkpoint.path if r.checkpoint else "-"
        gap = custom.get("gap_closed")
        gap_text = num(gap) if gap is not None and gap == gap else "- (no held-out evaluation)"
        lines.append(f"trial {Path(r.path).name}: iterations={metrics.get('training_iteration')} "
                     f"mfcc_distance={num(custom.get('mfcc_distance_mean'))} "
                     f"reward={num(custom.get('reward_mean'))} gap_closed={gap_text}")
        lines.append(f"  results: {r.path}  (learning curve: {CURVE_FILE})")
        lines.append(f"  checkpoint: {ckpt}")
    return lines
