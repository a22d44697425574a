"""What a Tune run prints, and how it ends when interrupted.

By default (``--verbose 0``) a run prints one line per finished trial and the CLI prints the
table at the end: Tune's own progress boxes (hundreds of lines for a sweep) come back with
``--verbose 1`` to ``3``. Ctrl+C (SIGINT) makes Tune save the experiment's state and stop;
:func:`tune_fit` then raises :class:`RunInterrupted`, which carries the project's resume
command instead of Ray's ``Tuner.restore(...)`` hint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import tune

__all__ = ["RunInterrupted", "TrialLines", "tune_fit"]

_INTERRUPT_MESSAGES = ("Stop signal received", "has been interrupted")
"""Tune's own log lines when SIGINT stops a run (``ray/tune/tune.py``)."""


class RunInterrupted(KeyboardInterrupt):
    """A Tune run stopped by Ctrl+C with its state saved; ``path`` resumes it.

    Args:
        path: The experiment folder (``deepmixing train|tune --resume <path>``).
    """

    def __init__(self, path: str | Path):
        super().__init__(str(path))
        self.path = Path(path)


class TrialLines(tune.Callback):
    """Prints one line per trial that ends (done, stopped early by the scheduler, or failed).

    Args:
        metric: The result key to show, nested keys joined by ``/``
            (e.g. ``deepmixing/gap_closed``).
        out: Where to print (standard output).
    """

    def __init__(self, metric: str = "deepmixing/gap_closed", out: Any = None):
        self.metric = metric
        self.out = out

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        """One line: the trial, its iterations and its last value of the metric."""
        result = trial.last_result or {}
        value: Any = result
        for part in self.metric.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        shown = (f"{value:.3f}" if isinstance(value, int | float) and math.isfinite(value)
                 else "-")
        self._print(f"trial {trial} finished: {result.get('training_iteration', 0)} "
                    f"iterations, {self.metric}={shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        """One line naming the trial's error file."""
        self._print(f"trial {trial} failed: see {Path(trial.local_path or '.', 'error.txt')}")


class _InterruptWatch(logging.Filter):
    """Notes Tune's interruption messages and drops them (the project prints its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        if any(m in record.getMessage() for m in _INTERRUPT_MESSAGES):
            self.interrupted = True
            return False
        return True


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Tune's legacy reporter at verbosity 0 prints nothing; its new one always prints a box."""
    if not enabled:
        yield
        return
    saved_env = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    tune_logger = logging.getLogger("ray.tune")
    saved_level = tune_logger.level
    tune_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        tune_logger.setLevel(saved_level)
        if saved_env is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved_env


def tune_fit(tuner: Any, path: str | Path, *, quiet: bool) -> Any:
    """``tuner.fit()`` with quiet output and an interruption that says how to resume.

    Args:
        tuner: The ``ray.tune.Tuner``.
        path: Its experiment folder.
        quiet: Leave Tune's progress output out (``TrialLines`` among the run's callbacks
            reports instead).

    Raises:
        RunInterrupted: Ctrl+C stopped the run (Tune saved its state), or a second Ctrl+C
            ended it at once.
    """
    watch = _InterruptWatch()
    tune_logger = logging.getLogger("ray.tune.tune")
    tune_logger.addFilter(watch)
    try:
        with _quiet(quiet):
            results = tuner.fit()
    except KeyboardInterrupt as e:
        raise RunInterrupted(path) from e
    finally:
        tune_logger.removeFilter(watch)
    if watch.interrupted:
        raise RunInterrupted(path)
    return results
