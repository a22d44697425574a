"""Gain automation as a person edits it: the points where a curve moves, and its files.

The agent sets one gain per stem and chunk (every 11 ms at 44.1 kHz). Played back, the gain
runs linearly from one chunk's centre to the next (:func:`gain_at`), as a DAW's linear
envelope does. :func:`thin_points` keeps only the points needed to redraw that curve within
a tolerance in dB, Ramer-Douglas-Peucker style: a span is kept whole when the straight line
between its ends stays within the tolerance of every point in it, else it is split at its
worst point.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FLOOR_DB", "ROUNDING_DB", "TOLERANCE_DB", "TrackAutomation", "finite_or_none",
           "gain_at", "thin_points", "write_automation_csv", "write_automation_json"]

TOLERANCE_DB = 0.1
"""Largest difference, in dB, between a thinned curve and the agent's gains."""

ROUNDING_DB = 1e-4
"""Room thinning leaves for the files' rounding (gains to 7 significant digits, times to the
microsecond: a few millionths of a dB), so the curve as written stays within
:data:`TOLERANCE_DB`."""

FLOOR_DB = -120.0
"""Gains below this level count as this level when curves are compared (silence is silence)."""


def _db(gains: np.ndarray) -> np.ndarray:
    floor = 10.0 ** (FLOOR_DB / 20.0)
    return 20.0 * np.log10(np.maximum(np.asarray(gains, dtype=np.float64), floor))


def gain_at(times: np.ndarray, point_times: np.ndarray, point_gains: np.ndarray) -> np.ndarray:
    """The gain at ``times``: linear between points, held before the first and after the last.

    Args:
        times: Where to read it, seconds [shape=(n,)].
        point_times: The curve's points, increasing [shape=(k,)].
        point_gains: Their linear gains [shape=(k,)].
    """
    return np.interp(times, point_times, point_gains)


def thin_points(times: np.ndarray, gains: np.ndarray, *,
                tolerance_db: float = TOLERANCE_DB) -> np.ndarray:
    """The indices of the points that redraw a gain curve within ``tolerance_db``.

    Linear interpolation (in linear gain) between the kept points is within ``tolerance_db``
    of every original point, and so of the whole original curve: between two neighbouring
    points both curves are straight lines, whose ratio is largest at an end.

    Args:
        times: Point times, increasing [shape=(n,)].
        gains: Linear gains [shape=(n,)].
        tolerance_db: Largest error allowed, dB.

    Returns:
        Sorted indices into ``times``, always with the first and the last.
    """
    n = len(times)
    if n <= 2:
        return np.arange(n)
    times = np.asarray(times, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)
    level = _db(gains)
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    spans = [(0, n - 1)]
    while spans:
        a, b = spans.pop()
        if b - a < 2:
            continue
        inner = slice(a + 1, b)
        line = gains[a] + (gains[b] - gains[a]) * (times[inner] - times[a]) / (times[b] - times[a])
        error = np.abs(_db(line) - level[inner])
        worst = int(np.argmax(error))
        if error[worst] > tolerance_db:
            split = a + 1 + worst
            keep[split] = True
            spans += [(a, split), (split, b)]
    return np.flatnonzero(keep)


@dataclass
class TrackAutomation:
    """One stem's automation as written to the files.

    Attributes:
        track: The stem's name (its file name without the ending).
        file: The stem file.
        slot: Its slot in the checkpoint's layout.
        channels: 1 (mono) or 2 (stereo).
        pan: Its pan position (-1 left, 1 right; 0 for a stereo stem, which keeps its image).
        time_s: Point times, seconds [shape=(k,)].
        gain: Linear gains at those times [shape=(k,)].
    """

    track: str
    file: str
    slot: str
    channels: int
    pan: float
    time_s: np.ndarray
    gain: np.ndarray

    @property
    def gain_db(self) -> np.ndarray:
        """The gains in dB (``FLOOR_DB`` for silence)."""
        return _db(self.gain)

    def as_dict(self) -> dict:
        """Plain JSON-ready form, rounded to what the points need."""
        return {"track": self.track, "file": self.file, "slot": self.slot,
                "channels": self.channels, "pan": round(self.pan, 4),
                "time_s": [round(float(t), 6) for t in self.time_s],
                "gain": [float(f"{g:.7g}") for g in self.gain],
                "gain_db": [round(float(v), 4) for v in self.gain_db]}


def write_automation_csv(path: str | Path, tracks: Sequence[TrackAutomation]) -> Path:
    """One row per point: ``time_s, track, slot, pan, gain, gain_db``, track after track."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time_s", "track", "slot", "pan", "gain", "gain_db"])
        for t in tracks:
            for time_s, g, level in zip(t.time_s, t.gain, t.gain_db, strict=True):
                writer.writerow([f"{time_s:.6f}", t.track, t.slot, f"{t.pan:.4f}", f"{g:.7g}",
                                 f"{level:.4f}"])
    return path


def write_automation_json(path: str | Path, header: dict, tracks: Sequence[TrackAutomation]
                          ) -> Path:
    """``header``'s keys, then ``tracks`` (one line per track), as JSON without NaN."""

    def compact(value) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    lines = [f"{json.dumps(key)}: {compact(value)}" for key, value in header.items()]
    body = ",\n  ".join(compact(t.as_dict()) for t in tracks)
    lines.append(f'"tracks": [\n  {body}\n ]')
    Path(path).write_text("{\n " + ",\n ".join(lines) + "\n}\n")
    return Path(path)


def finite_or_none(value: float | None) -> float | None:
    """``value`` for JSON: None where it is missing, NaN or infinite."""
    return None if value is None or not math.isfinite(value) else float(value)
