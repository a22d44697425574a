"""The env's observation of a song, computed window by window instead of for the whole song.

:class:`~mixing_env.envs.song_features.SongPrecompute` computes a song's observation features
in bulk; mixing a long song cannot hold them. This module gives the same values from
consecutive windows of chunks, with the same feature objects (the env's own
:class:`~mixing_env.features.ChunkLogMel` and the public functions of
:mod:`mixing_env.features`) and the state the features carry across chunks:

- per chunk (log-mel, raw samples): computed on the window as the env computes them;
- causal levels (:func:`~mixing_env.features.track_level_features`): the running maxima,
  counts and sums it takes over the song so far, carried from window to window
  (:class:`LevelFeatureStream`), so each value is bit for bit the env's;
- whole-song parts (:func:`~mixing_env.features.stem_level_features`, the stem's spectrum
  and loudness) and the listening block
  (:class:`~mixing_env.engineer.listening.SongListening`, whose per-chunk columns are
  measured over the whole song): from a first pass over the song
  (:class:`WholeStemStatistics`), known from the first step as in the env. The loudness and
  the listening block come from the engineer's analysis of the song, streamed
  (:class:`~mixing_env.engineer.analysis.StemAnalysisStream`).

A dummy slot shows what the env shows for one: a silent stem's features, and the listening
block's dummy row (which holds the song-wide columns).

The parts come in the env's order; :func:`check_supported` refuses an env config with a part
this module does not know, so a new observation part cannot reach ``mix`` unnoticed (its
test compares every part with the env's).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Sequence

import numpy as np

from mixing_env import features
from mixing_env.engineer.analysis import StemAnalysisStream
from mixing_env.engineer.listening import SongListening
from mixing_env.engineer.roles import slot_roles
from mixing_env.envs.config import EnvConfig
from mixing_env.envs.song_features import SongPrecompute
from mixing_env.errors import ConfigError

__all__ = ["LevelFeatureStream", "StreamingObservation", "WholeSongPart", "WholeStemStatistics",
           "check_supported"]

STREAMED_PARTS = ("level_features", "stem_level_features", "stem_spectrum_features",
                  "listening_features", "stem_loudness_feature")
"""The env config's optional observation parts this module computes."""

_LEVEL_DEFAULTS = inspect.signature(features.track_level_features).parameters
_HOLD_DECAY = _LEVEL_DEFAULTS["hold_decay_db_per_s"].default
_RECENT_DECAY = _LEVEL_DEFAULTS["recent_decay_db_per_s"].default
_ACTIVE_DB = features._ACTIVE_DB  # the env's "the track plays" threshold, one definition
_FLOOR = 10.0 * math.log10(features.AMIN)


def check_supported(config: EnvConfig) -> None:
    """Refuses an env config whose observation has a part this module cannot stream.

    Raises:
        ConfigError: Naming the part.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        is_part = field.name.endswith(("_features", "_feature")) and isinstance(value, bool)
        if is_part and value and field.name not in STREAMED_PARTS:
            raise ConfigError(f"the checkpoint's observation has the part {field.name!r}, "
                              f"which deepmixing mix cannot compute window by window yet")


class LevelFeatureStream:
    """:func:`~mixing_env.features.track_level_features` of a song fed window by window.

    Args:
        n_tracks: Tracks of every window.
        sample_rate: Hz.
        chunk_size: Samples per chunk.
    """

    def __init__(self, n_tracks: int, *, sample_rate: int, chunk_size: int) -> None:
        self.sample_rate, self.chunk_size = sample_rate, chunk_size
        self._t = 0  # chunks seen
        self._hold_max = np.full(n_tracks, -np.inf)  # running max of peak_db + decay * time
        self._recent_max = np.full(n_tracks, -np.inf)
        self._active_count = np.zeros(n_tracks, np.int64)
        self._active_energy = np.zeros(n_tracks)

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """Level features of the next chunks [shape=(A, W, chunk)] -> float32 [(A, W, 4)]."""
        # The same expressions as track_level_features, so every value matches bit for bit.
        energy = np.mean(np.square(window, dtype=np.float64), axis=-1)
        chunk_db = np.maximum(10.0 * np.log10(energy + features.AMIN), _FLOOR)
        peak_db = np.maximum(20.0 * np.log10(np.abs(window).max(axis=-1) + 1e-10), _FLOOR)
        w = window.shape[1]
        chunk_s = window.shape[-1] / self.sample_rate * np.arange(self._t, self._t + w)

        def hold(decay_db_per_s: float, carried: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            decay = decay_db_per_s * chunk_s
            running = np.maximum.accumulate(
                np.concatenate([carried[:, None], peak_db + decay], axis=1), axis=1)[:, 1:]
            return np.maximum(running - decay, _FLOOR), running[:, -1]

        peak_hold, self._hold_max = hold(_HOLD_DECAY, self._hold_max)
        recent, self._recent_max = hold(_RECENT_DECAY, self._recent_max)
        active = chunk_db > _ACTIVE_DB
        n_active = self._active_count[:, None] + np.cumsum(active, axis=1)
        sums = np.cumsum(np.concatenate([self._active_energy[:, None], energy * active],
                                        axis=1), axis=1)[:, 1:]
        mean_energy = sums / np.maximum(n_active, 1)
        mean_db = np.where(n_active > 0, 10.0 * np.log10(mean_energy + features.AMIN), _FLOOR)
        self._active_count, self._active_energy = n_active[:, -1], sums[:, -1]
        self._t += w
        return np.stack([chunk_db, peak_hold, recent, np.maximum(mean_db, _FLOOR)],
                        axis=-1).astype(np.float32)


class WholeStemStatistics:
    """A first pass over a song: what the observation knows of each whole stem.

    Feed every window of the song's placed stems with :meth:`add`, then read
    :meth:`features`. Also tells which stems are silent.

    Args:
        config: The env config (which whole-song parts are needed).
        n_tracks: Stems (A).
        n_chunks: The song's chunks (T).
        sample_rate: Hz.
        chunk_size: Samples per chunk.
        logmel: The env's log-mel (for the spectrum part).
        rows: Each stem's row in the slot layout (the env measures the listening block in
            row order); needed for ``listening_features``.
        slots: Each stem's slot name (for its role); needed for ``listening_features``.
        files: Each stem's file (its name decides its role, as a prepared song's
            ``stem_files``); needed for ``listening_features``.

    Raises:
        ConfigError: ``listening_features`` without a row, slot and file per stem.
    """

    def __init__(self, config: EnvConfig, *, n_tracks: int, n_chunks: int, sample_rate: int,
                 chunk_size: int, logmel: features.ChunkLogMel | None,
                 rows: Sequence[int] = (), slots: Sequence[str] = (),
                 files: Sequence[str] = ()) -> None:
        self.config, self.chunk_size, self.sample_rate = config, chunk_size, sample_rate
        self._levels = LevelFeatureStream(n_tracks, sample_rate=sample_rate,
                                          chunk_size=chunk_size)
        self._last_levels = np.zeros((n_tracks, 1, len(features.LEVEL_FEATURES)), np.float32)
        self._roles: list[str] = []
        self._order = np.arange(n_tracks)  # the stems in the env's (row) order
        if config.listening_features:
            if not len(rows) == len(slots) == len(files) == n_tracks:
                raise ConfigError(f"listening features need a row, slot and file for each of "
                                  f"the {n_tracks} stems, got {len(rows)}, {len(slots)} and "
                                  f"{len(files)}")
            self._order = np.argsort(np.asarray(rows), kind="stable")
            self._roles = slot_roles([slots[i] for i in self._order],
                                     {slots[i]: str(files[i]) for i in self._order})
        self._in_order = bool((np.diff(self._order) > 0).all())  # no copy to reorder
        needs_analysis = config.listening_features or config.stem_loudness_feature
        self._analysis = (StemAnalysisStream(n_tracks, n_chunks=n_chunks,
                                             sample_rate=sample_rate, chunk_size=chunk_size,
                                             spectrum=config.listening_features)
                          if needs_analysis else None)
        self._logmel = logmel
        n_mels = config.n_track_features
        self._power = np.zeros((n_tracks, n_mels))
        self._playing = np.zeros(n_tracks, np.int64)
        self.sounding = np.zeros(n_tracks, dtype=bool)
        """Per stem: whether any sample is not zero."""
        self._parts: list[WholeSongPart] | None = None

    def add(self, window: np.ndarray) -> None:
        """The next chunks of every stem [shape=(A, W, chunk)], float32."""
        self.sounding |= np.any(window != 0, axis=(1, 2))
        if self.config.stem_level_features:
            self._last_levels = self._levels(window)[:, -1:]
        if self._analysis is not None:
            self._analysis.add(window if self._in_order else window[self._order])
        if self.config.stem_spectrum_features:
            db = self._logmel.log_mel(window).astype(np.float64)
            playing = (db > features.LOG_MEL_FLOOR_DB).any(axis=-1)
            self._power += (10.0 ** (db / 10.0) * playing[..., None]).sum(axis=1)
            self._playing += playing.sum(axis=1)

    def features(self) -> list[WholeSongPart]:
        """The whole-song parts in the env's order (made once; the pass's arrays let go)."""
        if self._parts is None:
            self._parts = self._make_parts()
            self._analysis = None  # its power and spectrum frames are no longer needed
        return self._parts

    def _make_parts(self) -> list[WholeSongPart]:
        cfg, parts = self.config, []
        silent = _silent_stem(self.sample_rate, self.chunk_size)
        if cfg.stem_level_features:
            parts.append(_Constant(features.stem_level_features(self._last_levels),
                                   features.stem_level_features(silent)))
        if cfg.stem_spectrum_features:
            mean = self._power / np.maximum(self._playing, 1)[:, None]
            spectrum = np.where(self._playing[:, None] > 0,
                                10.0 * np.log10(np.maximum(mean, features.AMIN)),
                                features.LOG_MEL_FLOOR_DB)
            floor = np.float32(features.LOG_MEL_FLOOR_DB)
            parts.append(_Constant(
                np.maximum(spectrum, features.LOG_MEL_FLOOR_DB).astype(np.float32),
                np.full((1, spectrum.shape[1]), floor)))
        analysis = self._analysis.result() if self._analysis is not None else None
        if cfg.listening_features:
            parts.append(_Listening(SongListening.measure(analysis, self._roles),
                                    self._order))
        if cfg.stem_loudness_feature:  # the env's loudness measure, on the same power
            lufs = np.empty(len(self._order))
            lufs[self._order] = analysis.loudness
            parts.append(_Constant(features.loudness_feature(lufs)[:, None],
                                   features.loudness_feature(np.array([np.nan]))[:, None]))
        return parts


def _silent_stem(sample_rate: int, chunk_size: int) -> np.ndarray:
    """Level features of a stem that is all silence [shape=(1, 1, 4)] (a dummy slot's)."""
    return LevelFeatureStream(1, sample_rate=sample_rate, chunk_size=chunk_size)(
        np.zeros((1, 1, chunk_size), np.float32))


class WholeSongPart:
    """One part of the observation known from the first pass: its values for any chunks.

    Attributes:
        width: Features per track and chunk.
    """

    width: int

    def chunks(self, start: int, stop: int) -> np.ndarray:
        """The part for chunks ``start`` to ``stop``: each stem, then a dummy slot.

        Returns:
            float32 [shape=(A + 1, stop - start, width)].
        """
        raise NotImplementedError


class _Constant(WholeSongPart):
    """The same at every chunk: a value per stem [(A, width)] and the dummy's [(1, width)]."""

    def __init__(self, stems: np.ndarray, dummy: np.ndarray) -> None:
        self._values = np.concatenate([stems, dummy]).astype(np.float32)
        self.width = self._values.shape[1]

    def chunks(self, start: int, stop: int) -> np.ndarray:
        a, width = self._values.shape
        return np.broadcast_to(self._values[:, None], (a, stop - start, width))


class _Listening(WholeSongPart):
    """The listening block, built for each window from the song's measured parts."""

    def __init__(self, listening: SongListening, order: np.ndarray) -> None:
        self._listening = listening
        take = np.empty(len(order) + 1, np.int64)  # stem i is the env's row rank[i]
        take[order] = np.arange(len(order))
        take[-1] = len(order)  # the dummy's row
        self._take = take
        self.width = int(listening.chunks(0, 1).shape[-1])

    def chunks(self, start: int, stop: int) -> np.ndarray:
        return self._listening.chunks(start, stop)[self._take]


class StreamingObservation:
    """The env's ``chunks`` observation of the placed stems, window by window.

    Args:
        config: The checkpoint's env config.
        precompute: The env's feature objects for the checkpoint's layout (its log-mel,
            MFCC and spaces).
        whole: The first pass's statistics (whole-song parts), or None when the config has
            none.
        n_tracks: Placed stems (A).

    Raises:
        ConfigError: The config has an observation part that cannot be streamed, or the
            parts do not add up to the checkpoint's observation width.
    """

    def __init__(self, config: EnvConfig, precompute: SongPrecompute,
                 whole: WholeStemStatistics | None, *, n_tracks: int) -> None:
        check_supported(config)
        self.config, self.precompute = config, precompute
        self.raw = config.obs_features == "raw"
        chunk = precompute.chunk_size
        self._levels = (LevelFeatureStream(n_tracks, sample_rate=precompute.sample_rate,
                                           chunk_size=chunk)
                        if config.level_features else None)
        self._parts = [] if whole is None else whole.features()
        self._t = 0
        self.fill = 0.0 if self.raw else -100.0  # what the env shows before the song starts
        width = self.width
        expected = precompute.spaces(1.0)[0]["chunks"].shape[-1]
        if width != expected:
            raise ConfigError(f"the streamed observation has {width} features per track, the "
                              f"env's {expected}: an observation part mix does not know")
        # A dummy slot's per-chunk features: a silent stem's, the same at every chunk.
        silence = np.zeros((1, 1, chunk), np.float32)
        self._silent = (silence[0] if self.raw else np.concatenate(
            [precompute.logmel.log_mel(silence)]
            + ([_silent_stem(precompute.sample_rate, chunk)] if self._levels else []),
            axis=-1)[0])
        self._history = np.full((n_tracks + 1, config.obs_window - 1, width), self.fill,
                                np.float32)

    @property
    def width(self) -> int:
        """Features per track and chunk (F)."""
        if self.raw:
            return self.precompute.chunk_size
        return (self.config.n_track_features
                + (len(features.LEVEL_FEATURES) if self.config.level_features else 0)
                + sum(part.width for part in self._parts))

    def window(self, stems: np.ndarray) -> np.ndarray:
        """Features of the next chunks, with the ``W_obs - 1`` before them in front.

        Args:
            stems: The next W chunks of every placed stem, float32 [shape=(A, W, chunk)].

        Returns:
            float32 [shape=(A + 1, W_obs - 1 + W, F)]: step k's observation of track a is
            ``[a, k : k + W_obs]``; the last row is what a dummy slot shows.
        """
        out = np.concatenate([self._history, self._features(stems)], axis=1)
        self._history = out[:, out.shape[1] - self._history.shape[1]:]
        return out

    def _features(self, stems: np.ndarray) -> np.ndarray:
        a, w = stems.shape[:2]
        start, self._t = self._t, self._t + w
        if self.raw:
            return np.concatenate([stems, np.zeros((1, w, stems.shape[-1]), np.float32)])
        parts = [self.precompute.logmel.log_mel(stems)]
        if self._levels is not None:
            parts.append(self._levels(stems))
        per_chunk = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        per_chunk = np.concatenate(
            [per_chunk, np.broadcast_to(self._silent, (1, w, self._silent.shape[-1]))])
        return np.concatenate([per_chunk] + [p.chunks(start, start + w) for p in self._parts],
                              axis=-1)
