"""The table of a finished (or interrupted) Tune sweep, read with Ray Tune's own API.

``deepmixing tune-report <experiment dir>`` prints it as markdown: one row per trial with the
settings the sweep sampled (PBT: first and last, when a member's changed), the iterations it
reached, whether the scheduler stopped it early, and its final metric; the best trial is
marked. The sampled settings are the config values that differ between trials or change
within one, so the table needs nothing but the experiment folder. Under the table, PBT's
perturbations over time (iteration, member, settings before and after, the member it
copied), and a picture of every trial's metric per iteration (:func:`plot_sweep`), with the
perturbations marked.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixing_env.errors import CheckpointError, ConfigError

__all__ = [
    "DEFAULT_METRICS",
    "PLOT_FILE",
    "Perturbation",
    "SweepRow",
    "SweepTable",
    "format_markdown",
    "plot_sweep",
    "read_sweep",
]

PLOT_FILE = "sweep_curves.png"
"""The picture ``tune-report`` writes into the experiment folder by default."""

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
class Perturbation:
    """A trial's settings changed while it trained (PBT's exploit and explore)."""

    trial: str
    iteration: int
    """The first iteration trained with the new settings."""
    changes: dict[str, tuple[Any, Any]]
    """Setting -> (before, after)."""
    source: str | None = None
    """The trial whose checkpoint it continued from (PBT's log), when known."""


@dataclass(frozen=True)
class SweepTable:
    """A sweep's rows, its metric and the best row."""

    metric: str
    mode: str
    rows: list[SweepRow]
    best: SweepRow | None
    """The row with the highest (mode max) or lowest (mode min) finite metric."""
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Trial -> ``(iteration, metric)`` at each iteration that measured it (a held-out
    metric: only the evaluated iterations, not the values carried between them)."""
    perturbations: list[Perturbation] = field(default_factory=list)
    """Settings changes within trials, by iteration."""


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


def _frame_rows(frame) -> list[dict[str, Any]]:
    """progress.csv's rows as dicts (NaN read as None), oldest first."""
    if frame is None:
        return []
    return [{k: (None if v != v else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


def _config_history(rows: list[dict[str, Any]]) -> dict[str, list]:
    """Each config value's distinct values in result order."""
    seen: dict[str, list] = {}
    for column in [c for c in (rows[0] if rows else {}) if c.startswith("config/")]:
        values = [r[column] for r in rows]
        seen[column[len("config/"):].replace("/", ".")] = [
            v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
    return seen


def _curve(rows: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """``(iteration, value)`` of each row that measured ``metric`` (finite values only).

    The held-out metrics are carried forward between evaluations; only the rows of an
    evaluation (``deepmixing/eval_iteration`` equal to the iteration) measured them.
    """
    from rl_models.app.callbacks import EVALUATION_KEYS, RESULT_KEY

    prefix, _, key = metric.partition("/")
    held_out = prefix == RESULT_KEY and key in EVALUATION_KEYS
    out = []
    for row in rows:
        value, iteration = row.get(metric), row.get("training_iteration")
        if iteration is None or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if held_out and row.get(f"{RESULT_KEY}/eval_iteration") != iteration:
            continue
        out.append((int(iteration), float(value)))
    return out


def _perturbations(name: str, rows: list[dict[str, Any]], swept: list[str]
                   ) -> list[Perturbation]:
    """Where a trial's swept settings changed between two of its results."""
    out = []
    for before, after in zip(rows, rows[1:], strict=False):
        changes = {}
        for key in swept:
            column = "config/" + key.replace(".", "/")
            if column in before and before[column] != after.get(column):
                changes[key] = (before[column], after.get(column))
        if changes:
            out.append(Perturbation(trial=name, iteration=int(after["training_iteration"]),
                                    changes=changes))
    return out


def _pbt_sources(path: Path, names: dict[str, str]) -> dict[str, list[tuple[int, str]]]:
    """Per trial, ``(iteration, copied trial)`` of each exploit in PBT's ``pbt_global.txt``.

    Args:
        path: The experiment folder.
        names: Trial number (the ``experiment_tag`` before its first ``_``, which PBT logs
            and which a perturbation does not change) -> trial name.
    """
    import json

    log = path / "pbt_global.txt"
    out: dict[str, list[tuple[int, str]]] = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                target, clone, target_iteration = json.loads(line)[:3]
            except (ValueError, TypeError):
                continue
            number, clone_number = (str(t).split("_", 1)[0] for t in (target, clone))
            out.setdefault(names.get(number, str(target)), []).append(
                (int(target_iteration), names.get(clone_number, str(clone))))
    return out


def _with_source(p: Perturbation, sources: dict[str, list[tuple[int, str]]]) -> Perturbation:
    """``p`` with the trial it copied: the exploit logged just before its iteration."""
    logged = [(abs(p.iteration - 1 - it), clone) for it, clone in sources.get(p.trial, [])]
    return dataclasses.replace(p, source=min(logged)[1]) if logged else p


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
    frames = analysis.trial_dataframes
    trial_rows = [_frame_rows(frames.get(t.trial_id)) for t in trials]
    history = [_config_history(r) for r in trial_rows]
    # Swept: the settings that differ between trials, or within one (a PBT perturbation).
    swept = sorted(k for k in set().union(*configs) if len({repr(c.get(k)) for c in configs}) > 1
                   or any(len(h.get(k, ())) > 1 for h in history))
    sources = _pbt_sources(path, {str(t.experiment_tag).split("_", 1)[0]: str(t)
                                  for t in trials})
    perturbations = sorted(
        (_with_source(p, sources) for t, r in zip(trials, trial_rows, strict=True)
         for p in _perturbations(str(t), r, swept)),
        key=lambda p: (p.iteration, p.trial))
    curves = {str(t): _curve(r, metric) for t, r in zip(trials, trial_rows, strict=True)}
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
    return SweepTable(metric=metric, mode=mode, rows=rows, best=best, curves=curves,
                      perturbations=perturbations)


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
    if table.perturbations:
        lines += ["", "perturbations (PBT): settings a trial changed while training", "",
                  "| iteration | trial | changed | copied from |", "|---|---|---|---|"]
        for p in table.perturbations:
            changed = ", ".join(f"{k}: {_cell(a)} -> {_cell(b)}" for k, (a, b) in
                                p.changes.items())
            lines.append(f"| {p.iteration} | {p.trial} | {changed} | {p.source or '-'} |")
    if table.best is None:
        lines.append(f"\nno trial reports a finite {table.metric}")
    else:
        sets = " ".join(f"--set {k}={_cell(v)}" for k, v in table.best.settings.items())
        lines.append(f"\nbest by {table.metric} ({table.mode}): {table.best.trial} = "
                     f"{table.best.metric:.3f}" + (f"\n  {sets}" if sets else ""))
    return "\n".join(lines)


def plot_sweep(table: SweepTable, path: str | Path) -> Path:
    """Every trial's metric per iteration in one picture; the best bold, perturbations marked.

    Args:
        table: :func:`read_sweep`'s result.
        path: The PNG to write.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    status = {row.trial: row.status for row in table.rows}
    for name, curve in sorted(table.curves.items()):
        if not curve:
            continue
        best = table.best is not None and name == table.best.trial
        notes = ["best"] * best + [status[name]] * (status.get(name, "done") != "done")
        its, values = zip(*curve, strict=True)
        line, = ax.plot(its, values, marker="o", markersize=3, linewidth=2.5 if best else 1.0,
                        label=f"{name} ({', '.join(notes)})" if notes else name,
                        zorder=3 if best else 2)
        for p in (p for p in table.perturbations if p.trial == name):
            at = [v for i, v in curve if i <= p.iteration]
            if at:
                ax.plot([p.iteration], [at[-1]], marker="x", markersize=9, color=line.get_color())
    if table.perturbations:
        ax.plot([], [], "kx", label="perturbed (PBT)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training iteration")
    ax.set_ylabel(table.metric)
    ax.set_title(f"{len(table.rows)} trials, {table.metric} ({table.mode} is best)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
