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
  and loudness): from a first pass over the song (:class:`WholeStemStatistics`), known from
  the first step as in the env.

The parts come in the env's order; :func:`check_supported` refuses an env config with a part
this module does not know, so a new observation part cannot reach ``mix`` unnoticed (its
test compares every part with the env's).
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np

from mixing_env import features
from mixing_env.envs.config import EnvConfig
from mixing_env.envs.song_features import SongPrecompute
from mixing_env.errors import ConfigError
from rl_models.app.mixdown.loudness import LoudnessMeter

__all__ = ["LevelFeatureStream", "StreamingObservation", "WholeStemStatistics",
           "check_supported"]

STREAMED_PARTS = ("level_features", "stem_level_features", "stem_spectrum_features",
                  "stem_loudness_feature")
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
    """

    def __init__(self, config: EnvConfig, *, n_tracks: int, n_chunks: int, sample_rate: int,
                 chunk_size: int, logmel: features.ChunkLogMel | None) -> None:
        self.config = config
        self._levels = LevelFeatureStream(n_tracks, sample_rate=sample_rate,
                                          chunk_size=chunk_size)
        self._last_levels = np.zeros((n_tracks, 1, len(features.LEVEL_FEATURES)), np.float32)
        frames = n_chunks * chunk_size
        self._short = frames <= 0.4 * sample_rate  # stem_loudness's fallback to mean power
        self._meters = ([LoudnessMeter(sample_rate=sample_rate, channels=1,
                                       total_frames=frames) for _ in range(n_tracks)]
                        if config.stem_loudness_feature and not self._short else None)
        self._energy = np.zeros(n_tracks)
        self._frames = frames
        self._logmel = logmel
        n_mels = config.n_track_features
        self._power = np.zeros((n_tracks, n_mels))
        self._playing = np.zeros(n_tracks, np.int64)
        self.sounding = np.zeros(n_tracks, dtype=bool)
        """Per stem: whether any sample is not zero."""

    def add(self, window: np.ndarray) -> None:
        """The next chunks of every stem [shape=(A, W, chunk)], float32."""
        self.sounding |= np.any(window != 0, axis=(1, 2))
        if self.config.stem_level_features:
            self._last_levels = self._levels(window)[:, -1:]
        if self.config.stem_loudness_feature:
            flat = window.reshape(window.shape[0], -1)
            if self._meters is not None:
                for meter, stem in zip(self._meters, flat, strict=True):
                    meter.add(stem[None].astype(np.float64))
            else:
                self._energy += np.square(flat, dtype=np.float64).sum(axis=1)
        if self.config.stem_spectrum_features:
            db = self._logmel.log_mel(window).astype(np.float64)
            playing = (db > features.LOG_MEL_FLOOR_DB).any(axis=-1)
            self._power += (10.0 ** (db / 10.0) * playing[..., None]).sum(axis=1)
            self._playing += playing.sum(axis=1)

    def features(self) -> list[np.ndarray]:
        """The whole-song parts in the env's order, each float32 [shape=(A, width)]."""
        cfg, parts = self.config, []
        if cfg.stem_level_features:
            parts.append(features.stem_level_features(self._last_levels))
        if cfg.stem_spectrum_features:
            mean = self._power / np.maximum(self._playing, 1)[:, None]
            spectrum = np.where(self._playing[:, None] > 0,
                                10.0 * np.log10(np.maximum(mean, features.AMIN)),
                                features.LOG_MEL_FLOOR_DB)
            parts.append(np.maximum(spectrum, features.LOG_MEL_FLOOR_DB).astype(np.float32))
        if cfg.stem_loudness_feature:
            parts.append(self._loudness()[:, None])
        return parts

    def _loudness(self) -> np.ndarray:
        """:func:`~mixing_env.features.stem_loudness_feature` of each stem."""
        if self._meters is not None:
            lufs = np.array([m.loudness() for m in self._meters])
        else:
            with np.errstate(divide="ignore"):
                lufs = 10.0 * np.log10(self._energy / max(self._frames, 1))
        lufs = np.where(self.sounding & np.isfinite(lufs), lufs, features.STEM_LOUDNESS_FLOOR)
        return np.maximum(lufs, features.STEM_LOUDNESS_FLOOR).astype(np.float32)


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
        self._levels = (LevelFeatureStream(n_tracks, sample_rate=precompute.sample_rate,
                                           chunk_size=precompute.chunk_size)
                        if config.level_features else None)
        self._constant = [] if whole is None else whole.features()
        self.fill = 0.0 if self.raw else -100.0  # what the env shows before the song starts
        width = self.width
        expected = precompute.spaces(1.0)[0]["chunks"].shape[-1]
        if width != expected:
            raise ConfigError(f"the streamed observation has {width} features per track, the "
                              f"env's {expected}: an observation part mix does not know")
        self._history = np.full((n_tracks, config.obs_window - 1, width), self.fill,
                                np.float32)

    @property
    def width(self) -> int:
        """Features per track and chunk (F)."""
        if self.raw:
            return self.precompute.chunk_size
        return (self.config.n_track_features
                + (len(features.LEVEL_FEATURES) if self.config.level_features else 0)
                + sum(part.shape[-1] for part in self._constant))

    def dummy_row(self) -> np.ndarray:
        """What a dummy slot shows at every step [shape=(W_obs, F)]: a silent stem's features."""
        pre, chunk = self.precompute, self.precompute.chunk_size
        silence = np.zeros((1, 1, chunk), np.float32)
        whole = None
        if self._constant:
            whole = WholeStemStatistics(self.config, n_tracks=1, n_chunks=1,
                                        sample_rate=pre.sample_rate, chunk_size=chunk,
                                        logmel=pre.logmel)
            whole.add(silence)
        row = StreamingObservation(self.config, pre, whole, n_tracks=1).window(silence)[0, -1]
        return np.broadcast_to(row, (self.config.obs_window, self.width)).copy()

    def window(self, stems: np.ndarray) -> np.ndarray:
        """Features of the next chunks, with the ``W_obs - 1`` before them in front.

        Args:
            stems: The next W chunks of every placed stem, float32 [shape=(A, W, chunk)].

        Returns:
            float32 [shape=(A, W_obs - 1 + W, F)]: step k's observation of track a is
            ``[a, k : k + W_obs]``.
        """
        out = np.concatenate([self._history, self._features(stems)], axis=1)
        self._history = out[:, out.shape[1] - self._history.shape[1]:]
        return out

    def _features(self, stems: np.ndarray) -> np.ndarray:
        if self.raw:
            return stems
        parts = [self.precompute.logmel.log_mel(stems)]
        if self._levels is not None:
            parts.append(self._levels(stems))
        a, w = stems.shape[:2]
        parts += [np.broadcast_to(p[:, None, :], (a, w, p.shape[-1])) for p in self._constant]
        return np.concatenate(parts, axis=-1)
