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
    "init_ray",
    "make_tuner",
    "run_experiment",
    "resume_experiment",
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


def check_experiment(experiment: dict) -> None:
    """Checks an experiment before Ray starts: the schema, the RLlib config, the datasets.

    Raises:
        ConfigError, CacheError, DatasetError: A user mistake, naming the key or the folder.
    """
    from mixing_env.envs.config import EnvConfig
    from rl_models.app.experiment import has_search_space

    if has_search_space({k: v for k, v in experiment.items() if k != "tune"}):
        raise ConfigError("the experiment holds search specs outside tune.param_space; "
                          "use `deepmixing tune` for a sweep")
    exp = ExperimentConfig.from_dict(experiment)
    for key, env in (("env", exp.env), ("evaluation.env", over_songs(exp.env, exp.evaluation.env))):
        try:
            EnvConfig.from_dict(env)
        except ConfigError as e:
            raise ConfigError(f"{key}: {e}") from e
    _env_facts(exp.env)
    if exp.evaluation.interval > 0:
        _env_facts(over_songs(exp.env, exp.evaluation.env))
    if exp.init_module_from is not None:
        checkpoints.load_rllib_module(exp.init_module_from)  # RLlib loads it in the trial
    build_config(exp)


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
        self.layout, self.observation_space, self.action_space = _env_facts(self.typed.env)

    def step(self) -> dict:
        """One ``Algorithm.train()`` call; Tune fills in iteration and time keys."""
        # Keep the inner iteration count equal to the trial's (after a restore too), so the
        # callbacks' "every N iterations" and RLlib's own intervals line up with Tune's.
        self.algo._iteration = self.iteration
        result = self.algo.train()
        return {k: v for k, v in result.items() if k not in _AUTO_KEYS}

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        """Saves the RLlib algorithm plus the plain files of :mod:`rl_models.checkpoints`."""
        from rl_models.algorithms import RLLIB_DEFAULT_MODULE

        self.algo.save_to_path(checkpoint_dir)
        checkpoints.write_metadata(checkpoint_dir, experiment=self.experiment,
                                   layout=self.layout, iteration=self.iteration)
        if self.typed.module != RLLIB_DEFAULT_MODULE:
            module_id = checkpoints.MODULE_SUBDIR.name
            state = self.algo.learner_group.get_weights(module_ids=[module_id])[module_id]
            checkpoints.write_policy_files(
                checkpoint_dir, state=state, module_name=self.typed.module,
                model_config=self.algo.config.rl_module_spec.model_config,
                observation_space=self.observation_space, action_space=self.action_space,
                layout=self.layout)
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


def init_ray(*, num_cpus: int | None = None, num_gpus: int | None = None,
             address: str | None = None) -> None:
    """Starts Ray with explicit resources, or joins a cluster at ``address``.

    Args:
        num_cpus: CPUs for a local Ray (default: all local cores). Ignored with ``address``.
        num_gpus: GPUs for a local Ray (default: Ray's detection).
        address: A running cluster (``auto`` or ``host:port``); None starts a local Ray whose
            processes listen on 127.0.0.1 only.
    """
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        return
    # A local Ray listens on the node's address. Ray maps a 127.0.0.1 node address back to the
    # external one unless it runs single-machine, as it does on macOS and Windows: run it so for
    # the start, and every Ray process listens on loopback only. Token auth stays as Ray sets it.
    from ray._private import ray_constants

    multi_node = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus,
                 include_dashboard=False, log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = multi_node


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
    if kind == "asha":
        return ASHAScheduler(metric=metric, mode=mode, **spec)
    if kind == "pbt":
        spec["hyperparam_mutations"] = to_search_space(spec.get("hyperparam_mutations", {}))
        return PopulationBasedTraining(metric=metric, mode=mode, **spec)
    raise ConfigError(f"tune.scheduler.type must be 'asha' or 'pbt', got {kind!r}")


def make_tuner(experiment: dict, *, sweep: bool = False, storage_path: str | None = None,
               verbose: int = 1, callbacks: list | None = None):
    """A ``ray.tune.Tuner`` for the experiment (one trial, or the sweep when ``sweep``)."""
    from ray import tune

    tune_section = experiment["tune"]
    metric = tune_section.get("metric") if sweep else None
    mode = tune_section.get("mode", "max")
    scheduler = _scheduler(tune_section.get("scheduler"), metric=metric, mode=mode
                           ) if sweep else None
    ckpt = experiment["checkpoint"]
    storage = Path(storage_path or experiment["storage_path"]).expanduser()
    if "://" not in str(storage_path or experiment["storage_path"]):
        storage = storage.resolve()
    run_config = tune.RunConfig(
        name=experiment["name"],
        storage_path=str(storage),
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
    """``<algorithm>_<trial id>``: short folder names instead of the whole config."""
    return f"{trial.config.get('algorithm', 'trial')}_{trial.trial_id}"


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
                   verbose: int = 1, callbacks: list | None = None, checked: bool = False):
    """Runs one experiment (``sweep=False``) or its sweep through Tune; returns the ResultGrid.

    Args:
        experiment: The experiment dict (:func:`rl_models.app.experiment.load_experiment`).
        sweep: Run the ``tune`` section's sweep instead of one trial.
        storage_path: Where results go (None: the experiment's ``storage_path``).
        verbose: Tune's console verbosity.
        callbacks: Extra Tune callbacks.
        checked: :func:`check_experiment` already passed (the CLI runs it before Ray starts).

    Raises:
        ConfigError: The experiment does not build (checked before any trial starts).
    """
    if not sweep and not checked:
        check_experiment(experiment)  # fail fast with a ConfigError, before a trial starts
    results = make_tuner(experiment, sweep=sweep, storage_path=storage_path, verbose=verbose,
                         callbacks=callbacks).fit()
    _finish(results)
    return results


def resume_experiment(path: str | Path, *, verbose: int = 1):
    """Resumes an interrupted experiment from its folder, continuing unfinished trials.

    Finished iterations are kept: each trial restarts from its latest checkpoint (saved every
    ``checkpoint.frequency`` iterations and at the end) with its iteration count.

    Raises:
        CheckpointError: ``path`` is not a Tune experiment folder.
    """
    from ray import tune

    path = Path(path).expanduser().resolve()
    if not tune.Tuner.can_restore(str(path)):
        raise CheckpointError(f"not a Tune experiment folder that can be resumed: {path} "
                              f"(expected the folder holding tuner.pkl)")
    tuner = tune.Tuner.restore(str(path), trainable=DeepMixingTrainable,
                               resume_unfinished=True, resume_errored=True)
    results = tuner.fit()
    _finish(results)
    return results


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
