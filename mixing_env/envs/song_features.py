"""What the env precomputes once per song, and the observation/action spaces it implies.

:class:`SongPrecompute` turns a :class:`~mixing_env.data.song.Song` into :class:`SongFeatures`
(the reference's MFCC and RMS per chunk, the log-mel observation features, the mask and the
KL's smoothing terms) in bulk, keeps the last few songs, and builds the spaces from the config,
the slot layout and the songs' peak. :class:`~mixing_env.envs.mixing_env.MixingEnv` composes
it with a :class:`~mixing_env.envs.song_source.SongSource`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from mixing_env.data.song import Song
from mixing_env.engineer.listening import (
    LISTENING_FEATURES,
    listening_feature_top,
    listening_features,
)
from mixing_env.envs.config import EnvConfig
from mixing_env.features import (
    LEVEL_FEATURES,
    STEM_LEVEL_FEATURES,
    ChunkLogMel,
    ChunkMFCC,
    stem_level_features,
    stem_loudness_feature,
    stem_spectrum_features,
    track_level_features,
)
from mixing_env.reward import smoothing_affine

__all__ = ["SHARED_CACHE_BYTES", "SongFeatures", "SongPrecompute", "clear_shared_cache"]

_FEATURE_CACHE_SONGS = 8  # songs an env keeps when its songs cannot be shared (LRU)
SHARED_CACHE_BYTES = 1 << 30
"""Bytes of features the envs of one process share (LRU over songs; the newest song always
stays). 32 learning-benchmark songs of 6 s at C = 72 take about 110 MB."""
_BULK_CHUNKS = 512  # chunks per block when computing bulk features (bounds temporary memory)


@dataclass
class SongFeatures:
    """What the env precomputes once per song, in bulk.

    Attributes:
        song: The song.
        stems: ``song.stems`` as a float32 ndarray (a view of a memory map where possible).
        reference_mfcc: MFCC of each reference chunk, float64 [shape=(T, n_mfcc)].
        reference_rms: RMS of each reference chunk, float64 [shape=(T,)].
        track_features: Absolute log-mel dB per slot and chunk, float32
            [shape=(C, T, n_track_features (+4 with level_features, +2 with
            stem_level_features, +n_track_features with stem_spectrum_features, +12 with
            listening_features, +1 with
            stem_loudness_feature, last))], for
            ``obs_features="logmel"``; else None.
        n_valid: Chunks that hold the song (episodes never go past them).
        mask: 1.0 real / 0.0 dummy, float64 [shape=(C,)].
        mask32: The same, float32 and read-only (the observation's ``track_mask``).
        equal: Equal gains over the real tracks, float64 [shape=(C,)].
        kl_scale, kl_offset: ``gains * kl_scale + kl_offset`` is the KL's smoothed
            distribution (:func:`~mixing_env.reward.smoothing_affine`).
    """

    song: Song
    stems: np.ndarray
    reference_mfcc: np.ndarray
    reference_rms: np.ndarray
    track_features: np.ndarray | None
    n_valid: int
    mask: np.ndarray
    mask32: np.ndarray
    equal: np.ndarray
    kl_scale: float
    kl_offset: np.ndarray

    @property
    def nbytes(self) -> int:
        """Memory the precomputed arrays hold, and the stems when they are in memory.

        A generated song's stems are in memory; a prepared song's are a memory map the OS
        pages in and out.
        """
        arrays = (self.reference_mfcc, self.reference_rms, self.track_features)
        own = sum(a.nbytes for a in arrays if a is not None)
        return own + (0 if _memory_mapped(self.stems) else self.stems.nbytes)


def _memory_mapped(a: np.ndarray) -> bool:
    while a is not None:
        if isinstance(a, np.memmap):
            return True
        a = getattr(a, "base", None)
        if not isinstance(a, np.ndarray):
            return a is not None and type(a).__name__ == "mmap"
    return False


class _SharedFeatureCache:
    """Features of songs every env of the process can reuse, within a byte budget.

    Many envs per env runner draw from the same training songs: with a cache per env, nearly
    every reset recomputed a song's features (0.2-0.3 s for 6 s of song), which capped PPO
    near 500 env steps/s. The arrays are read-only, so sharing them is safe.
    """

    def __init__(self) -> None:
        self._songs: OrderedDict[Hashable, SongFeatures] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> SongFeatures | None:
        feats = self._songs.get(key)
        if feats is not None:
            self._songs.move_to_end(key)
        return feats

    def put(self, key: Hashable, feats: SongFeatures) -> None:
        if key in self._songs:
            self._bytes -= self._songs.pop(key).nbytes
        self._songs[key] = feats
        self._bytes += feats.nbytes
        while self._bytes > SHARED_CACHE_BYTES and len(self._songs) > 1:
            self._bytes -= self._songs.popitem(last=False)[1].nbytes

    def clear(self) -> None:
        self._songs.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._songs)


_SHARED = _SharedFeatureCache()


def clear_shared_cache() -> None:
    """Forget every song's features shared between envs (tests; a re-prepared cache)."""
    _SHARED.clear()


class SongPrecompute:
    """Bulk per-song features for one env config and slot layout, cached for the last songs.

    Args:
        config: The env config (features, MFCC size).
        n_slots: C, slots per song.
        chunk_size: Samples per chunk.
        sample_rate: Sample rate in Hz.
    """

    def __init__(self, config: EnvConfig, *, n_slots: int, chunk_size: int, sample_rate: int):
        self.config = config
        self.n_slots, self.chunk_size, self.sample_rate = n_slots, chunk_size, sample_rate
        self.mfcc = ChunkMFCC(sample_rate, chunk_size, config.n_mfcc)
        self.logmel = (
            ChunkLogMel(sample_rate, chunk_size, config.n_track_features)
            if config.obs_features == "logmel"
            else None
        )
        self._cache: OrderedDict[str, SongFeatures] = OrderedDict()
        # What the features depend on besides the song (not the episode or reward settings).
        self._feature_key = (n_slots, chunk_size, sample_rate, config.obs_features,
                             config.n_track_features, config.level_features,
                             config.stem_level_features, config.stem_spectrum_features,
                             config.listening_features, config.stem_loudness_feature,
                             config.n_mfcc)

    def spaces(self, peak: float) -> tuple[spaces.Dict, spaces.Box]:
        """The observation and action spaces (see MixingEnv's docstring).

        Args:
            peak: Largest |sample| over the songs (at least 1 is used).
        """
        cfg, C, W = self.config, self.n_slots, self.config.obs_window
        peak = max(1.0, float(peak))
        if self.logmel is None:
            chunk_box = spaces.Box(-peak, peak, (C, W, self.chunk_size), np.float32)
        else:
            top = self.logmel.max_db(peak) + 1.0
            n_features = (cfg.n_track_features
                          + (len(LEVEL_FEATURES) if cfg.level_features else 0)
                          + (len(STEM_LEVEL_FEATURES) if cfg.stem_level_features else 0)
                          + (cfg.n_track_features if cfg.stem_spectrum_features else 0)
                          + (len(LISTENING_FEATURES) if cfg.listening_features else 0)
                          + int(cfg.stem_loudness_feature))
            top = max(top, 20.0 * math.log10(peak) + 1.0)  # level features are dBFS
            if cfg.listening_features:  # centroid and density are not dB of a level
                top = max(top, listening_feature_top(self.sample_rate, C) + 1.0)
            chunk_box = spaces.Box(-100.0, top, (C, W, n_features), np.float32)
        mfcc_bound = (self.mfcc.max_abs(peak) * 1.01 + 1.0).astype(np.float32)
        observation_space = spaces.Dict(
            {
                "chunks": chunk_box,
                "mix_mfcc": spaces.Box(-mfcc_bound, mfcc_bound, (cfg.n_mfcc,), np.float32),
                "track_mask": spaces.Box(0.0, 1.0, (C,), np.float32),
            }
        )
        return observation_space, spaces.Box(0.0, 1.0, (C,), np.float32)

    def features(self, name: str, load: Callable[[str], Song],
                 song_key: Hashable | None = None) -> SongFeatures:
        """A song's features, computed once and kept for the last few songs.

        Args:
            name: The song's name (the cache key).
            load: Opens the song by name; called only when its features are not cached.
            song_key: Identifies the song's data across envs (see
                :meth:`~mixing_env.envs.song_source.SongSource.song_key`): with it, the
                features are shared by every env of the process with the same feature
                settings; None keeps them in this object only.
        """
        if song_key is not None:
            key = (self._feature_key, song_key)
            feats = _SHARED.get(key)
            if feats is None:
                feats = self._compute(load(name))
                _SHARED.put(key, feats)
            return feats
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        feats = self._compute(load(name))
        self._cache[name] = feats
        if len(self._cache) > _FEATURE_CACHE_SONGS:
            self._cache.popitem(last=False)
        return feats

    def _compute(self, song: Song) -> SongFeatures:
        cfg = self.config
        stems = np.asarray(song.stems, dtype=np.float32)
        T = song.n_chunks
        ref_mfcc = np.empty((T, cfg.n_mfcc))
        ref_rms = np.empty(T)
        real = np.asarray(song.track_mask) > 0
        # Track features are per track: compute them for the real tracks and one silent row
        # that stands for every dummy slot (most of the C = 72 slots), then spread them.
        rows = np.flatnonzero(real)
        dummy = np.flatnonzero(~real)
        if dummy.size:
            rows = np.append(rows, dummy[0])
        feats_arr = None
        if self.logmel is not None:
            feats_arr = np.empty((rows.size, T, cfg.n_track_features), np.float32)
        for a in range(0, T, _BULK_CHUNKS):
            b = min(a + _BULK_CHUNKS, T)
            ref = np.asarray(song.reference[a:b], dtype=np.float64)
            ref_mfcc[a:b] = self.mfcc.from_mel_power(self.mfcc.mel_power(ref))
            ref_rms[a:b] = np.sqrt(np.mean(ref * ref, axis=-1))
            if feats_arr is not None:
                feats_arr[:, a:b] = self.logmel.log_mel(stems[rows, a:b])
        if feats_arr is not None and (cfg.level_features or cfg.stem_level_features):
            levels = track_level_features(stems[rows], sample_rate=self.sample_rate)
            parts = [feats_arr, levels] if cfg.level_features else [feats_arr]
            if cfg.stem_level_features:
                whole = stem_level_features(levels)[:, None, :]
                parts.append(np.broadcast_to(whole, (*levels.shape[:2], whole.shape[-1])))
            feats_arr = np.concatenate(parts, axis=-1)
        if feats_arr is not None and cfg.stem_spectrum_features:
            # From the log-mel columns (the first n_track_features) of the song's valid chunks.
            log_mel = feats_arr[:, : song.n_valid_chunks or T, : cfg.n_track_features]
            spectrum = stem_spectrum_features(log_mel)
            feats_arr = np.concatenate(
                [feats_arr, np.broadcast_to(spectrum[:, None, :], (*feats_arr.shape[:2],
                                                                    spectrum.shape[-1]))],
                axis=-1)
        if feats_arr is not None and cfg.listening_features:
            listening = listening_features(
                song.stems, slot_names=song.slot_names, stem_files=song.stem_files,
                track_mask=song.track_mask, n_valid=int(song.n_valid_chunks or T),
                sample_rate=song.sample_rate, analysis=song.measures.get("analysis"))
            feats_arr = np.concatenate([feats_arr, listening[rows]], axis=-1)
        if feats_arr is not None and cfg.stem_loudness_feature:
            # Whole-song BS.1770 loudness, once per song; the last feature (the prior's).
            lufs = np.broadcast_to(stem_loudness_feature(song)[rows, None, None],
                                   (*feats_arr.shape[:2], 1))
            feats_arr = np.concatenate([feats_arr, lufs], axis=-1)
        if feats_arr is not None:
            every = np.empty((self.n_slots, T, feats_arr.shape[-1]), np.float32)
            if dummy.size:
                every[dummy] = feats_arr[-1]
            every[np.flatnonzero(real)] = feats_arr[: int(real.sum())]
            feats_arr = every
        # Read-only views: observations slice them without copying and nobody can write back.
        stems = stems.view()
        stems.flags.writeable = False
        if feats_arr is not None:
            feats_arr.flags.writeable = False
        real = np.asarray(song.track_mask) > 0
        mask32 = real.astype(np.float32)
        mask32.flags.writeable = False
        kl_scale, kl_offset = smoothing_affine(real)
        return SongFeatures(
            song=song,
            stems=stems,
            reference_mfcc=ref_mfcc,
            reference_rms=ref_rms,
            track_features=feats_arr,
            n_valid=int(song.n_valid_chunks or T),
            mask=real.astype(np.float64),
            mask32=mask32,
            equal=real / int(real.sum()),
            kl_scale=kl_scale,
            kl_offset=kl_offset,
        )
