"""Fit the ``instrument_balance`` baseline: per slot, a mean level relative to loudness.

For each training song and each real stem that plays, the fit takes

* the static oracle's gain of the stem (:class:`~mixing_env.baselines.StaticOracle`, one
  NNLS over the whole song, put on the simplex), in dB, plus
* the stem's loudness while it plays (:func:`~mixing_env.features.stem_loudness`, the
  measure the loudness baseline uses), in LUFS,

which is the stem's level in the reference mix. A song's reference level and its number of
stems shift all its values by one constant, which the simplex ignores, so each song's values
are centred on their mean before they are averaged. The table holds the mean per slot, per
instrument (the slot name without ``#n``) and per section (before ``/``); a slot never seen
in training falls back to its instrument's mean, then its section's, then 0 dB (the centre).
A stem the oracle leaves out of the mix is counted at :data:`FLOOR_DB`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mixing_env.baselines import BALANCE_FILE, InstrumentBalance, StaticOracle
from mixing_env.data.song import Song
from mixing_env.envs.song_source import SongSource
from mixing_env.errors import DatasetError
from mixing_env.features import stem_loudness
from mixing_env.reward import to_simplex

__all__ = ["FLOOR_DB", "fit_instrument_balance", "fit_dataset_balance", "stem_levels_db"]

FLOOR_DB = -60.0
"""Oracle gain, dB on the simplex, of a stem the oracle leaves out (keeps the mean finite)."""


def stem_levels_db(song: Song) -> dict[str, float]:
    """Each playing stem's level in the reference, centred over the song.

    Args:
        song: A song with a reference mix.

    Returns:
        Slot name -> static-oracle gain (dB, on the simplex) + loudness while it plays (LUFS),
        minus the song's mean of these; silent stems and dummy slots are left out.
    """
    gains = to_simplex(StaticOracle().weights(song), song.track_mask)
    lufs = stem_loudness(song)
    playing = np.flatnonzero(np.isfinite(lufs))
    if playing.size == 0:
        return {}
    gain_db = 20 * np.log10(np.maximum(gains[playing], 10 ** (FLOOR_DB / 20)))
    levels = gain_db + lufs[playing]
    levels -= levels.mean()
    return {song.slot_names[i]: float(v) for i, v in zip(playing, levels, strict=True)}


def fit_instrument_balance(songs: Iterable[Song]) -> InstrumentBalance:
    """Fit the per-slot table on training songs (see the module docstring).

    Args:
        songs: The training songs (any slot layouts; slots are matched by name).

    Returns:
        The :class:`~mixing_env.baselines.InstrumentBalance` policy; ``write`` saves it.

    Raises:
        DatasetError: No song has a stem that plays.
    """
    by_key: dict[str, dict[str, list[float]]] = {
        "slots": defaultdict(list), "instruments": defaultdict(list), "sections": defaultdict(list)
    }
    names = []
    for song in songs:
        names.append(song.name)
        for slot, level in stem_levels_db(song).items():
            instrument = slot.split("#", 1)[0]
            by_key["slots"][slot].append(level)
            by_key["instruments"][instrument].append(level)
            by_key["sections"][instrument.split("/", 1)[0]].append(level)
    if not by_key["slots"]:
        raise DatasetError(f"no stem plays in the {len(names)} song(s) to fit the balance on")
    means = {key: {k: float(np.mean(v)) for k, v in sorted(table.items())}
             for key, table in by_key.items()}
    meta = {"songs": names, "stems_per_slot": {k: len(v) for k, v in by_key["slots"].items()},
            "measure": "static-oracle gain dB + BS.1770 loudness, centred per song"}
    return InstrumentBalance(means["slots"], means["instruments"], means["sections"], meta)


def fit_dataset_balance(cache_dir: str | os.PathLike, *, songs: Iterable[str] | None = None,
                        out: str | os.PathLike | None = None) -> Path:
    """Fit on a prepared cache's songs and write the JSON table.

    Args:
        cache_dir: A prepared dataset (``deepmixing prepare``).
        songs: Only these songs (the training ones); None: all.
        out: The JSON file; None: :data:`~mixing_env.baselines.BALANCE_FILE` in ``cache_dir``,
            where ``instrument_balance`` finds it by default.

    Returns:
        The written path.
    """
    config = {"dataset_dir": str(cache_dir), "songs": None if songs is None else list(songs)}
    table = fit_instrument_balance(SongSource(config).songs())
    return table.write(Path(cache_dir) / BALANCE_FILE if out is None else out)
