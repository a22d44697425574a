"""Where an env's songs come from: a config -> song names, songs, slot layout, peak, spaces.

One of three routes, picked from an :class:`~mixing_env.envs.config.EnvConfig`: in-memory
:class:`~mixing_env.data.song.Song` objects, a prepared cache (``dataset_dir``, read through
its manifest and memory maps), or synthetic songs made in memory (``synthetic``). The env,
evaluation, training and behaviour cloning share this instead of building an env to read
names, slots or spaces. Synthetic songs are made once per set of arguments and kept (the last
few sets), so evaluation does not make them again for every episode.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from mixing_env.data.cache import MANIFEST
from mixing_env.data.song import Song
from mixing_env.envs.config import DEFAULT_SYNTHETIC, EnvConfig
from mixing_env.envs.song_features import SongPrecompute
from mixing_env.errors import ConfigError, DatasetError

__all__ = ["SlotLayout", "SongSource"]

_SYNTHETIC_SETS = 2  # synthetic song sets kept in memory (LRU by their arguments)
_synthetic_cache: OrderedDict[str, list[Song]] = OrderedDict()


@dataclass(frozen=True)
class SlotLayout:
    """The slot layout every song of a source shares (what a checkpoint records).

    Attributes:
        slot_names: Name of each slot, e.g. ``"Drums/Kick#1"`` [len C].
        chunk_size: Samples per chunk.
        sample_rate: Sample rate in Hz.
    """

    slot_names: tuple[str, ...]
    chunk_size: int
    sample_rate: int

    @property
    def n_slots(self) -> int:
        """C, the number of slots."""
        return len(self.slot_names)

    def to_dict(self) -> dict[str, Any]:
        """``{"slot_names": [...], "chunk_size": ..., "sample_rate": ...}`` (checkpoint form)."""
        return {"slot_names": list(self.slot_names), "chunk_size": self.chunk_size,
                "sample_rate": self.sample_rate}


class SongSource:
    """The songs an env config covers.

    Args:
        config: An env config dict (or :class:`EnvConfig`); its ``songs`` picks a subset.
        songs: In-memory songs to use instead of the config's ``dataset_dir``/``synthetic``.

    Raises:
        ConfigError: ``songs`` names a song that is not there, or bad synthetic arguments.
        DatasetError: No songs.
    """

    def __init__(self, config: Mapping[str, Any] | EnvConfig | None = None, *,
                 songs: Sequence[Song] | None = None) -> None:
        self.config = cfg = EnvConfig.from_dict(config)
        self._songs: dict[str, Song] = {}
        self._dataset: Any = None
        self._synthetic_key: str | None = None
        if songs is not None:
            self._songs = {s.name: s for s in songs}
        elif cfg.dataset_dir is not None:
            self._dataset = _open_dataset(cfg.dataset_dir)
        else:
            kwargs = dict(DEFAULT_SYNTHETIC if cfg.synthetic is None else cfg.synthetic)
            self._songs = {s.name: s for s in _synthetic_songs(kwargs)}
            self._synthetic_key = _synthetic_key(kwargs)
        names = list(self._songs) if self._dataset is None else list(self._dataset.names)
        if cfg.songs is not None:
            missing = sorted(set(cfg.songs) - set(names))
            if missing:
                raise ConfigError(f"songs {missing} are not in the dataset; available: {names}")
            names = [n for n in names if n in set(cfg.songs)]
        if not names:
            raise DatasetError("the environment has no songs to play")
        self.names: list[str] = names

    def load(self, name: str) -> Song:
        """One song by name (memory-mapped for a prepared cache), checked for the layout.

        Raises:
            DatasetError: Malformed arrays, or a layout other than the first song's.
        """
        song = self._open(name)
        if "layout" in self.__dict__:  # the first song set it; the others must agree
            lay = self.layout
            if (song.n_slots, song.chunk_size, song.sample_rate) != (
                lay.n_slots, lay.chunk_size, lay.sample_rate
            ):
                raise DatasetError(
                    f"song {name!r} has (slots, chunk_size, sample_rate)="
                    f"{(song.n_slots, song.chunk_size, song.sample_rate)}, expected "
                    f"{(lay.n_slots, lay.chunk_size, lay.sample_rate)} like the first song"
                )
        return song

    def _open(self, name: str) -> Song:
        song = self._songs[name] if self._dataset is None else self._dataset.load(name, mmap=True)
        _check_song(song)
        return song

    def song_key(self, name: str) -> tuple | None:
        """What identifies a song's data across envs of a process (None: nothing safe).

        A prepared song: the cache folder, the name and the manifest's modification time (a
        re-prepared cache rewrites the manifest). A synthetic song: its generator arguments
        (songs are deterministic from them). In-memory songs given by the caller: None.
        """
        if self._dataset is not None:
            cache_dir = Path(self._dataset.cache_dir).resolve()
            try:
                stamp = (cache_dir / MANIFEST).stat().st_mtime_ns
            except OSError:
                return None
            return ("prepared", str(cache_dir), stamp, name)
        if self._synthetic_key is not None:
            return ("synthetic", self._synthetic_key, name)
        return None

    def songs(self) -> list[Song]:
        """Every song of the source, in order."""
        return [self.load(n) for n in self.names]

    @cached_property
    def layout(self) -> SlotLayout:
        """The slot layout, from the first song (opened, not scanned)."""
        first = self._open(self.names[0])
        return SlotLayout(tuple(first.slot_names), first.chunk_size, first.sample_rate)

    @cached_property
    def peak(self) -> float:
        """Largest |sample| over the songs' stems: the manifest's where it has it, else scanned."""
        peak = 0.0
        for name in self.names:
            manifest_peak = _manifest_peak(self._dataset, name)
            if manifest_peak is not None:
                peak = max(peak, manifest_peak)
                continue
            stems = self._open(name).stems  # a layout mismatch is reported when it plays
            for a in range(0, stems.shape[1], 512):  # blocks bound the temporary memory
                peak = max(peak, float(np.abs(stems[:, a : a + 512]).max(initial=0.0)))
        return peak

    def spaces(self) -> tuple[spaces.Dict, spaces.Box]:
        """The observation and action spaces an env on these songs has."""
        lay = self.layout
        return SongPrecompute(self.config, n_slots=lay.n_slots, chunk_size=lay.chunk_size,
                              sample_rate=lay.sample_rate).spaces(self.peak)

    def subset(self, names: Sequence[str]) -> SongSource:
        """The same source restricted to ``names`` (shares the loaded songs)."""
        missing = sorted(set(names) - set(self.names))
        if missing:
            raise ConfigError(f"songs {missing} are not in the dataset; available: {self.names}")
        out = copy.copy(self)  # shallow: the songs, the dataset and the layout are shared
        out.__dict__.pop("peak", None)  # the subset's own peak
        out.names = [n for n in self.names if n in set(names)]
        return out


def _check_song(song: Song) -> None:
    C = song.stems.shape[0] if song.stems.ndim == 3 else None
    if song.stems.ndim != 3 or song.reference.shape != song.stems.shape[1:]:
        raise DatasetError(
            f"song {song.name!r}: stems must be (C, T, chunk) and reference (T, chunk), got "
            f"stems {song.stems.shape} and reference {song.reference.shape}"
        )
    if np.shape(song.track_mask) != (C,) or not np.any(np.asarray(song.track_mask) > 0):
        raise DatasetError(
            f"song {song.name!r}: track_mask must be ({C},) with at least one real track, "
            f"got {np.asarray(song.track_mask)!r}"
        )


def _manifest_peak(dataset: Any, name: str) -> float | None:
    if dataset is None:
        return None
    entry = getattr(dataset, "manifest", {}).get("songs", {})
    entry = entry.get(name) if isinstance(entry, Mapping) else None
    if isinstance(entry, Mapping) and isinstance(entry.get("peak"), int | float):
        return float(entry["peak"])
    return None


def _open_dataset(path: str) -> Any:
    from mixing_env.data.cache import PreparedDataset

    return PreparedDataset(path)


def _synthetic_key(kwargs: dict[str, Any]) -> str:
    return json.dumps(kwargs, sort_keys=True, default=repr)


def _synthetic_songs(kwargs: dict[str, Any]) -> list[Song]:
    from mixing_env.data.synthetic import synthetic_songs

    key = _synthetic_key(kwargs)
    if key in _synthetic_cache:
        _synthetic_cache.move_to_end(key)
        return _synthetic_cache[key]
    try:
        songs = list(synthetic_songs(**kwargs))
    except TypeError as e:
        raise ConfigError(f"bad synthetic config {kwargs!r}: {e}") from e
    _synthetic_cache[key] = songs
    if len(_synthetic_cache) > _SYNTHETIC_SETS:
        _synthetic_cache.popitem(last=False)
    return songs
