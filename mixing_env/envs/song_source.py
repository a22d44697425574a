"""Where an env's songs come from: a config -> song names, songs, slot layout, peak, spaces.

One of four routes, picked from an :class:`~mixing_env.envs.config.EnvConfig`: in-memory
:class:`~mixing_env.data.song.Song` objects, a prepared cache (``dataset_dir``, read through
its manifest and memory maps), synthetic songs made in memory (``synthetic``), or songs
without end made as training asks for them (``generated``: a
:class:`~mixing_env.songs.stream.SongStream` per env runner, its songs drawn from a small pool
and replaced after a few episodes each). The env, evaluation, training and behaviour cloning
share this instead of building an env to read names, slots or spaces. Synthetic songs are made
once per set of arguments and kept (the last few sets), so evaluation does not make them again
for every episode.
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

from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data.cache import MANIFEST
from mixing_env.data.song import Song
from mixing_env.envs.config import DEFAULT_SYNTHETIC, EnvConfig
from mixing_env.envs.song_features import SongPrecompute
from mixing_env.errors import ConfigError, DatasetError

__all__ = ["GeneratedPool", "SlotLayout", "SongSource"]

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
        stream: For ``generated`` songs: which training stream (each env runner its own,
            >= 1); the envs of a process with the same stream share one pool of songs.

    Raises:
        ConfigError: ``songs`` names a song that is not there, or bad synthetic arguments.
        DatasetError: No songs.
    """

    def __init__(self, config: Mapping[str, Any] | EnvConfig | None = None, *,
                 songs: Sequence[Song] | None = None, stream: int = 1) -> None:
        self.config = cfg = EnvConfig.from_dict(config)
        self._songs: dict[str, Song] = {}
        self._dataset: Any = None
        self._synthetic_key: str | None = None
        self.pool: GeneratedPool | None = None
        if songs is None and cfg.generated is not None:
            self.pool = GeneratedPool.shared(cfg.generated, stream)
            self.names = []  # the pool's songs change as training goes on
            return
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

    def draw(self, rng: np.random.Generator) -> str:
        """The song of a new episode: uniform over the songs, or the pool's next one."""
        if self.pool is not None:
            return self.pool.draw(rng)
        return self.names[int(rng.integers(len(self.names)))]

    def has(self, name: str) -> bool:
        """Whether ``name`` can be played now."""
        return name in (self.pool.songs if self.pool is not None else self.names)

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
        if self.pool is not None:
            song = self.pool.songs.get(name)
            if song is None:
                raise ConfigError(f"song {name!r} is not in play; generated songs are drawn "
                                  f"with draw(), not named")
            return song
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
        if self.pool is not None:
            return ("generated", self.pool.key, name)
        return None

    def songs(self) -> list[Song]:
        """Every song of the source, in order."""
        return [self.load(n) for n in self.names]

    @cached_property
    def layout(self) -> SlotLayout:
        """The slot layout, from the first song (opened, not scanned)."""
        if self.pool is not None:
            return SlotLayout(tuple(self.pool.stream.layout), CHUNK_SIZE, SAMPLE_RATE)
        first = self._open(self.names[0])
        return SlotLayout(tuple(first.slot_names), first.chunk_size, first.sample_rate)

    @cached_property
    def peak(self) -> float:
        """Largest |sample| over the songs' stems: the manifest's where it has it, else scanned.

        Generated songs are recorded at most -2 dBFS: 1.0 bounds them.
        """
        if self.pool is not None:
            return 1.0
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
        if self.pool is not None:
            raise ConfigError("generated songs cannot be narrowed with songs=[...]")
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


SYNTHETIC_KINDS = ("procedural", "sampled")
"""``synthetic: {kind: ...}``: the fast procedural songs (the default) or the sampled songs
``deepmixing synth`` writes, mixed by the engineer."""


def _synthetic_songs(kwargs: dict[str, Any]) -> list[Song]:
    from mixing_env.songs.procedural import synthetic_songs
    from mixing_env.songs.sampled import sampled_songs

    key = _synthetic_key(kwargs)
    if key in _synthetic_cache:
        _synthetic_cache.move_to_end(key)
        return _synthetic_cache[key]
    args = dict(kwargs)
    kind = args.pop("kind", "procedural")
    if kind not in SYNTHETIC_KINDS:
        raise ConfigError(f"synthetic.kind must be one of {list(SYNTHETIC_KINDS)}, "
                          f"got {kind!r}")
    make = sampled_songs if kind == "sampled" else synthetic_songs
    try:
        songs = list(make(**args))
    except TypeError as e:
        raise ConfigError(f"bad synthetic config {kwargs!r}: {e}") from e
    _synthetic_cache[key] = songs
    if len(_synthetic_cache) > _SYNTHETIC_SETS:
        _synthetic_cache.popitem(last=False)
    return songs


class GeneratedPool:
    """The songs a process's envs play from one training stream, a few at a time.

    Each episode draws one of ``pool`` songs in play; a song that has served
    ``episodes_per_song`` episodes is replaced by the stream's next song at the next draw.
    Envs of one process with the same stream config and stream number share one pool
    (:meth:`shared`), so a runner's many vector envs do not each make songs.

    Args:
        config: The env config's ``generated`` mapping
            (:class:`~mixing_env.songs.stream.StreamConfig`).
        stream: The stream number (>= 1).
    """

    _shared: dict[tuple[str, int], GeneratedPool] = {}

    def __init__(self, config: Mapping[str, Any], stream: int):
        from mixing_env.songs.stream import SongStream, StreamConfig

        self.config = StreamConfig.from_dict(config)
        self.key = json.dumps(dict(config), sort_keys=True, default=repr)
        self.stream = SongStream(self.config, stream=stream)
        self.songs: dict[str, Song] = {}
        self.uses: dict[str, int] = {}
        self.episodes = 0

    @classmethod
    def shared(cls, config: Mapping[str, Any], stream: int) -> GeneratedPool:
        """The process's pool for this config and stream (made on first use)."""
        key = (json.dumps(dict(config), sort_keys=True, default=repr), int(stream))
        if key not in cls._shared:
            cls._shared[key] = cls(config, stream)
        return cls._shared[key]

    def draw(self, rng: np.random.Generator) -> str:
        """The next episode's song: spent songs replaced, then one in play at random."""
        for name in [n for n, k in self.uses.items() if k >= self.config.episodes_per_song]:
            del self.songs[name], self.uses[name]
        while len(self.songs) < self.config.pool:
            song = self.stream.next_song()
            self.songs[song.name], self.uses[song.name] = song, 0
        names = sorted(self.songs)
        name = names[int(rng.integers(len(names)))]
        self.uses[name] += 1
        self.episodes += 1
        return name

    @classmethod
    def process_stats(cls) -> dict[str, float]:
        """:meth:`stats` summed over the pools of this process (zeros without one)."""
        total = {"songs_made": 0, "song_cpu_s": 0.0, "episodes": 0}
        for pool in cls._shared.values():
            for key, value in pool.stats().items():
                total[key] += value
        return total

    def stats(self) -> dict[str, float]:
        """Songs made, CPU seconds spent making them, and episodes served."""
        return {"songs_made": self.stream.songs_made,
                "song_cpu_s": self.stream.cpu_seconds, "episodes": self.episodes}
