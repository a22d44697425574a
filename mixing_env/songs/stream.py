"""Songs without end: a training stream of sampled songs, several from each rendered skeleton.

Training on a fixed set of a few dozen songs teaches the songs, not the engineer's rule (an
agent's training return rises while its held-out score falls). A :class:`SongStream` makes
new songs as training asks for them: skeleton after skeleton of its own stream (never one of
a dataset written to disk, which use stream 0), ``songs_per_skeleton`` songs from each (the
band, its sections and its recording levels drawn anew), mixed by the engineer and placed
in the slot layout. The costly render of a part happens once per skeleton; the stream keeps
count of the songs it made and the CPU time it spent, so a run can show what making songs
cost against the training they fed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data.slots import build_song, default_layout, place_stems
from mixing_env.data.song import Song
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.engineer import DEFAULT_INCONSISTENCY_DB, DEFAULT_STYLE, Engineer
from mixing_env.errors import ConfigError
from mixing_env.songs.sampled.skeleton import Skeleton
from mixing_env.songs.sampled.songs import check_song_options, generate_sampled_song

__all__ = ["StreamConfig", "SongStream"]


@dataclass(frozen=True)
class StreamConfig:
    """What a training stream makes (the env config's ``generated`` mapping)."""

    seed: int = 0
    """Seed of the stream's skeletons and songs."""
    seconds: float = 12.0
    """Length of each song."""
    n_tracks: tuple[int, int] = (6, 11)
    """(fewest, most) stems per song."""
    style: str = DEFAULT_STYLE
    """The engineer's style."""
    inconsistency: float = DEFAULT_INCONSISTENCY_DB
    """The engineer's random part, dB."""
    songs_per_skeleton: int = 8
    """Songs drawn from one rendered skeleton before the next is rendered."""
    episodes_per_song: int = 16
    """Episodes a song serves before it is replaced (its making is shared by them)."""
    pool: int = 4
    """Songs in play at once; episodes draw among them."""
    master_bus: float = 0.0
    """Chance that a song's reference goes through a master bus."""

    def __post_init__(self) -> None:
        for name in ("songs_per_skeleton", "episodes_per_song", "pool"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"generated.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"generated.seed must be an int, got {self.seed!r}")
        check_song_options(self.seconds, tuple(self.n_tracks), self.master_bus)
        Engineer(self.style, self.inconsistency)  # names a bad style or inconsistency

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> StreamConfig:
        """From the env config's ``generated`` mapping, rejecting unknown keys.

        Raises:
            ConfigError: An unknown key or a bad value.
        """
        values = dict(values or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown generated key(s) {unknown}; expected some of "
                              f"{sorted(names)}")
        if "n_tracks" in values:
            n = values["n_tracks"]
            values["n_tracks"] = (int(n), int(n)) if isinstance(n, int) else tuple(n)
        return cls(**values)


class SongStream:
    """An endless sequence of training songs in one slot layout.

    Args:
        config: What to make.
        stream: Which stream (>= 1; each env runner takes its own).
        layout: Slot names; None: the default C = 72 layout.
        taxonomy: Name rules; None: the default.
    """

    def __init__(self, config: StreamConfig, *, stream: int = 1,
                 layout: Sequence[str] | None = None, taxonomy: Taxonomy | None = None):
        if stream < 1:
            raise ConfigError(f"a training stream must be >= 1 (0 is for datasets on disk), "
                              f"got {stream}")
        self.config, self.stream = config, int(stream)
        self.layout = list(layout) if layout is not None else default_layout()
        self.taxonomy = taxonomy or Taxonomy.load()
        self.engineer = Engineer(config.style, config.inconsistency)
        self.songs_made = 0
        self.cpu_seconds = 0.0
        self._skeleton: Skeleton | None = None
        self._n_chunks = math.ceil(config.seconds * SAMPLE_RATE / CHUNK_SIZE)

    def name_of(self, number: int) -> str:
        """The name of the stream's song ``number`` (0-based)."""
        per = self.config.songs_per_skeleton
        return f"Stream{self.stream}-{self.config.seed}-{number // per:05d}-{number % per}"

    def next_song(self) -> Song:
        """Make the next song (rendering a new skeleton every ``songs_per_skeleton``)."""
        start = time.process_time()
        cfg, number = self.config, self.songs_made
        index, draw = divmod(number, cfg.songs_per_skeleton)
        if draw == 0 or self._skeleton is None:
            self._skeleton = Skeleton(seed=cfg.seed, index=index, seconds=cfg.seconds,
                                      sample_rate=SAMPLE_RATE, stream=self.stream)
        raw = generate_sampled_song(
            index, seconds=cfg.seconds, n_tracks=cfg.n_tracks, seed=cfg.seed,
            engineer=self.engineer, master_bus=cfg.master_bus, stream=self.stream, draw=draw,
            skeleton=self._skeleton, name=self.name_of(number))
        names = [Path(f).stem for f in raw.stem_files]
        song = build_song(raw.name, place_stems(names, self.layout, self.taxonomy),
                          list(raw.stems), layout=self.layout, sample_rate=raw.sample_rate,
                          chunk_size=raw.chunk_size, reference=raw.reference,
                          n_chunks=self._n_chunks, true_gains=list(raw.true_gains),
                          stem_files=raw.stem_files)
        self.songs_made += 1
        self.cpu_seconds += time.process_time() - start
        return song
