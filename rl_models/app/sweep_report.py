"""The table of a finished (or interrupted) Tune sweep, read with Ray Tune's own API.

``deepmixing tune-report <experiment dir>`` prints it as markdown: one row per trial with the
settings the sweep sampled (PBT: first and last, when a member's changed), the iterations it
reached, whether the scheduler stopped it early, and its final metric; the best trial is
marked. The sampled settings are the config values that differ between trials or change
within one, so the table needs nothing but the experiment folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixing_env.errors import CheckpointError, ConfigError

__all__ = [
    "DEFAULT_METRICS",
    "SweepRow",
    "SweepTable",
    "format_markdown",
    "read_sweep",
]

DEFAULT_METRICS = ("deepmixing/gap_closed", "env_runners/episode_return_mean")
"""Tried in order when no metric is given: held-out gap closed if the trials were evaluated,
else the mean training episode return."""


@dataclass(frozen=True)
class SweepRow:
    """One trial of the sweep."""

    trial: str
    """Trial name (its folder)."""
    settings: dict[str, Any]
    """The swept config values at the trial's end, by dotted path (``training.lr``)."""
    initial: dict[str, Any]
    """The same at its first result (PBT's members change settings as they train)."""
    iterations: int
    """Training iterations reached."""
    status: str
    """``done`` (ran to the stop criterion), ``stopped early`` (by the scheduler), ``error``,
    or Tune's status of a trial the sweep did not finish."""
    metric: float
    """The metric in the trial's last result (NaN when it has none)."""


@dataclass(frozen=True)
class SweepTable:
    """A sweep's rows, its metric and the best row."""

    metric: str
    mode: str
    rows: list[SweepRow]
    best: SweepRow | None
    """The row with the highest (mode max) or lowest (mode min) finite metric."""


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"training.lr": 1e-3, ...}`` of a nested dict (lists and None stay whole)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _lookup(result: dict, dotted: str) -> float:
    node: Any = result
    for part in dotted.split("/"):
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    try:
        return float(node)
    except (TypeError, ValueError):
        return math.nan


def _config_history(analysis, trials) -> list[dict[str, list]]:
    """Per trial, each config value's distinct values in result order (from progress.csv)."""
    frames = analysis.trial_dataframes
    out = []
    for trial in trials:
        frame = frames.get(trial.trial_id)
        seen: dict[str, list] = {}
        columns = [] if frame is None else [c for c in frame.columns if c.startswith("config/")]
        for column in columns:
            values = [None if v != v else v for v in frame[column].tolist()]  # NaN: null
            seen[column[len("config/"):].replace("/", ".")] = [
                v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
        out.append(seen)
    return out


def _status(trial, iterations: int) -> str:
    """Tells a run to the stop criterion from one the scheduler ended sooner."""
    if trial.status == "ERROR":
        return "error"
    if trial.status != "TERMINATED":
        return trial.status.lower()
    target = ((trial.config or {}).get("stop") or {}).get("training_iteration")
    return "stopped early" if target is not None and iterations < int(target) else "done"


def read_sweep(experiment_dir: str | Path, *, metric: str | None = None,
               mode: str = "max") -> SweepTable:
    """Reads a Tune experiment folder into a :class:`SweepTable`.

    Args:
        experiment_dir: The folder ``deepmixing tune`` wrote (``<storage_path>/<name>``).
        metric: A result key, nested keys joined by ``/`` (None: the first of
            :data:`DEFAULT_METRICS` that some trial reports as a finite number).
        mode: ``max`` or ``min``: which end of the metric is best.

    Raises:
        CheckpointError: The folder is not a Tune experiment.
        ConfigError: ``mode`` is neither max nor min, or no trial reports ``metric``.
    """
    from ray import tune

    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
    path = Path(experiment_dir).expanduser().resolve()
    if not path.is_dir() or not list(path.glob("experiment_state-*.json")):
        raise CheckpointError(f"not a Tune experiment folder: {path} (expected the folder "
                              "holding experiment_state-*.json, e.g. runs/sweep_asha)")
    analysis = tune.ExperimentAnalysis(str(path))
    trials = sorted(analysis.trials, key=lambda t: str(t))
    results = [t.last_result or {} for t in trials]
    if metric is None:
        metric = next((m for m in DEFAULT_METRICS
                       if any(math.isfinite(_lookup(r, m)) for r in results)), None)
        if metric is None:
            raise ConfigError(f"{path}: no trial reports any of {list(DEFAULT_METRICS)}")
    elif results and not any(math.isfinite(_lookup(r, metric)) for r in results):
        raise ConfigError(f"{path}: no trial reports the metric {metric!r}")
    configs = [_leaves(t.config or {}) for t in trials]
    history = _config_history(analysis, trials)
    # Swept: the settings that differ between trials, or within one (a PBT perturbation).
    swept = sorted(k for k in set().union(*configs) if len({repr(c.get(k)) for c in configs}) > 1
                   or any(len(h.get(k, ())) > 1 for h in history))
    rows = []
    for trial, result, config, seen in zip(trials, results, configs, history, strict=True):
        iterations = int(result.get("training_iteration", 0) or 0)
        rows.append(SweepRow(trial=str(trial), settings={k: config.get(k) for k in swept},
                             initial={k: seen[k][0] if seen.get(k) else config.get(k)
                                      for k in swept},
                             iterations=iterations, status=_status(trial, iterations),
                             metric=_lookup(result, metric)))
    finite = [r for r in rows if math.isfinite(r.metric)]
    sign = 1.0 if mode == "max" else -1.0
    best = max(finite, key=lambda r: sign * r.metric) if finite else None
    return SweepTable(metric=metric, mode=mode, rows=rows, best=best)


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}" if value != 0 else "0"
    return str(value)


def _setting(row: SweepRow, name: str) -> str:
    """``final``, or ``initial -> final`` when the trial changed it (PBT)."""
    first, last = _cell(row.initial[name]), _cell(row.settings[name])
    return last if first == last else f"{first} -> {last}"


def format_markdown(table: SweepTable) -> str:
    """The table as markdown, best trial in bold, then its settings as ``--set`` overrides.

    A setting a trial changed while training (PBT) reads ``initial -> final``.
    """
    names = list(table.rows[0].settings) if table.rows else []
    head = ["trial", *names, "iterations", "stopped", table.metric, "best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        is_best = row is table.best
        metric = "-" if not math.isfinite(row.metric) else f"{row.metric:.3f}"
        cells = [row.trial, *(_setting(row, n) for n in names), str(row.iterations),
                 row.status, f"**{metric}**" if is_best else metric, "best" if is_best else ""]
        lines.append("| " + " | ".join(cells) + " |")
    if table.best is None:
        lines.append(f"\nno trial reports a finite {table.metric}")
    else:
        sets = " ".join(f"--set {k}={_cell(v)}" for k, v in table.best.settings.items())
        lines.append(f"\nbest by {table.metric} ({table.mode}): {table.best.trial} = "
                     f"{table.best.metric:.3f}" + (f"\n  {sets}" if sets else ""))
    return "\n".join(lines)
