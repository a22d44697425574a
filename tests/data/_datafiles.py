"""Helpers that write tiny multitrack folders (imported by the data tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100


def tone(n: int, freq: float, *, amp: float = 0.3, sr: int = SR, channels: int = 1) -> np.ndarray:
    """A sine, float64 [shape=(n,) or (n, channels)] as soundfile writes it."""
    y = amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)
    return y if channels == 1 else np.stack([y * (1 - 0.2 * c) for c in range(channels)], axis=1)


def write_cambridge_song(
    folder: Path,
    stems: dict[str, np.ndarray],
    *,
    sr: int = SR,
    ext: str = ".wav",
    subtype: str | None = None,
    mix_name: str | None = None,
    full: bool = False,
    mix: np.ndarray | None = None,
) -> Path:
    """Write ``<folder>/<stem><ext>`` stems (or in ``<Song>_Full/``) plus a ``<Song>_Mix`` file."""
    folder.mkdir(parents=True, exist_ok=True)
    stem_dir = folder / f"{folder.name}_Full" if full else folder
    stem_dir.mkdir(exist_ok=True)
    for name, y in stems.items():
        sf.write(stem_dir / f"{name}{ext}", y, sr, subtype=subtype)
    if mix is None:
        n = max(len(y) for y in stems.values())
        mix = np.zeros(n)
        for y in stems.values():
            m = y if y.ndim == 1 else y.mean(axis=1)
            mix[: len(m)] += 0.5 * m
    sf.write(folder / f"{mix_name or folder.name + '_Mix'}{ext}", mix, sr, subtype=subtype)
    return folder
