"""Stereo placement: where each mono stem sits, and how a stem's channels reach the mix.

The convention is data, :file:`panning.yaml` beside this module (read it for the positions and
the reasons); :func:`pan_positions` applies it to one song's slots and :func:`channel_matrix`
turns a position into the gains of a constant-power pan law.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from mixing_env.data.taxonomy import parse_slot
from mixing_env.errors import ConfigError

__all__ = ["PAN_TABLE_PATH", "PanTable", "channel_matrix", "pan_gains", "pan_positions"]

PAN_TABLE_PATH = Path(__file__).with_name("panning.yaml")
"""The shipped panning convention."""


@dataclass(frozen=True)
class PanTable:
    """Pan positions by instrument (``"Section/Instrument"``), read from a YAML file.

    Attributes:
        positions: Per instrument, the position of its #1, #2, ... stem (-1 left, +1 right).
        alone: Per instrument, the position of a stem that is its instrument's only one.
    """

    positions: dict[str, tuple[float, ...]]
    alone: dict[str, float]

    @classmethod
    def load(cls, path: str | os.PathLike = PAN_TABLE_PATH) -> PanTable:
        """Reads and checks a table (see :file:`panning.yaml` for the format).

        Raises:
            ConfigError: The file is unreadable or a position is not a number in [-1, 1].
        """
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"panning table {path} is not readable YAML: {e}") from None
        entries = (data or {}).get("instruments") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise ConfigError(f"panning table {path} needs an 'instruments' mapping")
        positions, alone = {}, {}
        for name, entry in entries.items():
            values = list((entry or {}).get("positions") or [])
            single = (entry or {}).get("alone", values[0] if values else 0.0)
            for value in [*values, single]:
                if isinstance(value, bool) or not isinstance(value, int | float) or not (
                        -1.0 <= value <= 1.0):
                    raise ConfigError(f"panning table {path}: {name} has position {value!r}; "
                                      f"expected numbers from -1 (left) to 1 (right)")
            positions[str(name)] = tuple(float(v) for v in values)
            alone[str(name)] = float(single)
        return cls(positions, alone)


@lru_cache(maxsize=1)
def _shipped() -> PanTable:
    return PanTable.load()


def pan_positions(slots: Sequence[str], table: PanTable | None = None) -> list[float]:
    """The pan position of each stem of one song, from its slot.

    Args:
        slots: Each stem's slot, e.g. ``"Strings/Electric#2"``.
        table: The convention (default: the shipped :file:`panning.yaml`).

    Returns:
        One position per stem, from -1 (left) to 1 (right).
    """
    table = table or _shipped()
    parsed = [parse_slot(s) for s in slots]
    per_instrument = Counter(f"{section}/{instrument}" for section, instrument, _ in parsed)
    out = []
    for section, instrument, number in parsed:
        name = f"{section}/{instrument}"
        listed = table.positions.get(name, ())
        if per_instrument[name] == 1 and name in table.alone:
            out.append(table.alone[name])
        elif number <= len(listed):
            out.append(listed[number - 1])
        else:
            out.append(0.0)
    return out


def pan_gains(position: float) -> tuple[float, float]:
    """Left and right gains of a constant-power pan law at ``position`` (-1 to 1)."""
    theta = (position + 1.0) * math.pi / 4.0
    return math.cos(theta), math.sin(theta)


def channel_matrix(stem_channels: int, position: float, *, out_channels: int,
                   pan: bool = True) -> np.ndarray:
    """How one stem's channels reach the mix's, as a gain matrix.

    Args:
        stem_channels: 1 or 2.
        position: The stem's pan position (used for a mono stem into stereo with ``pan``).
        out_channels: The mix's channels (1 or 2).
        pan: Place mono stems by ``position``; False copies them to every channel at unity
            (``--mono``).

    Returns:
        float64 [shape=(out_channels, stem_channels)]: ``mix += matrix @ stem``.
    """
    if stem_channels == out_channels:
        return np.eye(out_channels)
    if stem_channels == 1 and out_channels == 2:
        return np.array([pan_gains(position) if pan else (1.0, 1.0)]).T
    raise ConfigError(f"cannot mix a {stem_channels}-channel stem into {out_channels} channels")
