"""The DeepMixing Gymnasium environment: set every track's level, chunk by chunk."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mixing_env.data.song import Song
from mixing_env.envs.config import DEFAULT_SYNTHETIC, EnvConfig
from mixing_env.errors import ActionError, ConfigError, DatasetError, DeepMixingError
from mixing_env.features import (
    LEVEL_FEATURES,
    STEM_LEVEL_FEATURES,
    ChunkLogMel,
    ChunkMFCC,
    stem_level_features,
    track_level_features,
)
from mixing_env.reward import level_gain, mixing_reward, smoothing_affine
from mixing_env.step_kernels import ChunkScorer, kl_step, simplex_gains, window_and_rms

__all__ = ["MixingEnv", "SongFeatures"]

_FEATURE_CACHE_SONGS = 8  # songs whose bulk features stay in memory (LRU)
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
            stem_level_features))], for
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


class MixingEnv(gym.Env):
    r"""Multitrack level mixing as an RL environment (the DeepMixing report, section 4).

    ## Description

    A song is C track slots (stems; dummy slots are silent) and a reference mix, cut into T
    chunks of 500 samples. At step t the agent sets one gain per track; the env mixes chunk t
    of every track with those gains, ``m_t = sum_i a_i x_i[t]``, and rewards closeness of the
    mix's MFCC to the reference chunk's MFCC (report 4.3). An episode is one song, or a random
    window of ``episode_chunks`` chunks of it; the song is drawn with ``self.np_random``.

    ## Action Space

    ``Box(0, 1, (C,), float32)``: a non-negative weight per slot. The env maps it onto the
    simplex over the real tracks by sum-normalization: negative values are clipped to 0, dummy
    slots are forced to 0, the rest is divided by its sum (all zero: equal gains). The gains
    used are in ``info["gains"]``. NaN/inf or a wrong shape raise
    :class:`~mixing_env.errors.ActionError` naming the step and the value.

    **RLlib:** set ``normalize_actions=False`` and ``clip_actions=False`` in
    ``config.env_runners(...)``; otherwise RLlib rescales the module's actions from [-1, 1]
    into [0, 1] (or clips them) before the env sees them, which breaks a Dirichlet policy.

    ## Observation Space

    A ``Dict``:

    | Key        | Shape         | Dtype   | Range                         |
    |------------|---------------|---------|-------------------------------|
    | chunks     | (C, W_obs, F) | float32 | [-P, P] raw; [-100, U] logmel |
    | mix_mfcc   | (n_mfcc,)     | float32 | [-B, B]                       |
    | track_mask | (C,)          | float32 | [0, 1]                        |

    ``chunks``: the last W_obs chunks of every slot up to and including t (zeros before the
    song starts). ``mix_mfcc``: MFCC of the agent's own (not level-matched) mix at t-1, zeros
    at the first step. ``track_mask``: 1 real track, 0 dummy slot.

    ``F = chunk_size`` for ``obs_features="raw"`` (samples) and ``n_track_features`` for
    ``"logmel"`` (absolute log-mel dB of each slot's chunk, ref 1, floor -100 dB, *not*
    normalized per chunk, so the agent sees each stem's level; precomputed per song), plus,
    with ``level_features=True``, four causal level statistics per track (chunk RMS, peak
    so far, recent peak, mean level while playing, dBFS; see
    :func:`~mixing_env.features.track_level_features`)
    so ``F = n_track_features + 4``: a stem's recording level, which the gain must undo, is
    hard to read from one 11 ms chunk. ``stem_level_features=True`` appends two more, each
    stem's peak and mean level over the whole song (an offline mixer's knowledge, not causal;
    :func:`~mixing_env.features.stem_level_features`). P is the
    largest |sample| over the env's songs (at least 1), U and B the bounds that P implies for
    the log-mel and MFCC (see :meth:`ChunkLogMel.max_db`, :meth:`ChunkMFCC.max_abs`). Raw
    chunks are read-only views of the song's arrays (no copy per step).

    ## Rewards

    ``r_t = exp(-d_t - rho * KL(a_{t-1} || a_t))`` (report 4.3), with ``d_t =
    ||M_t - m_t||^2 / mfcc_scale^2`` (``reward_mode="normalized"``, ``mfcc_scale=20``) or
    ``||M_t - m_t||^2`` (``"raw"``, the report's scale, ~0 for any real mix). M_t, m_t: MFCCs
    (n_mfcc = 13, 40 mel bands, one 500-sample frame) of the reference chunk and of the mix
    chunk; with ``level_match="per_chunk"`` (default) the mix chunk is first scaled to the
    reference chunk's RMS, because gains on the simplex set only the balance. KL over the real
    tracks with 1e-6 smoothing, 0 at the first step. See :mod:`mixing_env.reward`.
    ``info``: ``mfcc_distance`` (``||M_t - m_t||``, unscaled), ``kl``, ``gains``, ``song``,
    ``chunk``.

    ## Starting State

    Chunk 0 of a random song (or the window's first chunk); ``options={"song": name,
    "start": chunk}`` picks them.

    ## Episode End

    Terminated after the last chunk of the window (or of the song's valid chunks). No
    truncation of its own; wrap in ``TimeLimit`` for one (registered with
    ``max_episode_steps=None``).

    ## Arguments

    ``MixingEnv(config)`` with ``config`` a dict (or RLlib ``EnvContext``) of
    :class:`~mixing_env.envs.config.EnvConfig` keys; ``gymnasium.make("DeepMixing-v0",
    config={...})``; for RLlib, ``register_with_ray()`` and ``env="deepmixing"``. ``songs``
    (keyword): in-memory :class:`Song` objects to use instead of ``dataset_dir``/``synthetic``.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: Mapping[str, Any] | EnvConfig | None = None,
        *,
        songs: Sequence[Song] | None = None,
    ) -> None:
        self.config = EnvConfig.from_dict(config)
        cfg = self.config
        self._songs: dict[str, Song] = {}
        self._dataset: Any = None
        if songs is not None:
            self._songs = {s.name: s for s in songs}
            names = list(self._songs)
        elif cfg.dataset_dir is not None:
            self._dataset = _open_dataset(cfg.dataset_dir)
            names = list(self._dataset.names)
        else:
            kwargs = dict(DEFAULT_SYNTHETIC if cfg.synthetic is None else cfg.synthetic)
            self._songs = {s.name: s for s in _synthetic_songs(kwargs)}
            names = list(self._songs)
        if cfg.songs is not None:
            missing = sorted(set(cfg.songs) - set(names))
            if missing:
                raise ConfigError(f"songs {missing} are not in the dataset; available: {names}")
            names = [n for n in names if n in set(cfg.songs)]
        if not names:
            raise DatasetError("the environment has no songs to play")
        self.song_names: list[str] = names

        first = self._load(names[0])
        self.n_slots, self.chunk_size = first.n_slots, first.chunk_size
        self.sample_rate = first.sample_rate
        self._mfcc = ChunkMFCC(self.sample_rate, self.chunk_size, cfg.n_mfcc)
        self._logmel = (
            ChunkLogMel(self.sample_rate, self.chunk_size, cfg.n_track_features)
            if cfg.obs_features == "logmel"
            else None
        )
        peak = max(1.0, self._peak())
        C, W = self.n_slots, cfg.obs_window
        if self._logmel is None:
            chunk_box = spaces.Box(-peak, peak, (C, W, self.chunk_size), np.float32)
        else:
            top = self._logmel.max_db(peak) + 1.0
            n_features = (cfg.n_track_features
                          + (len(LEVEL_FEATURES) if cfg.level_features else 0)
                          + (len(STEM_LEVEL_FEATURES) if cfg.stem_level_features else 0))
            top = max(top, 20.0 * math.log10(peak) + 1.0)  # level features are dBFS
            chunk_box = spaces.Box(-100.0, top, (C, W, n_features), np.float32)
        mfcc_bound = (self._mfcc.max_abs(peak) * 1.01 + 1.0).astype(np.float32)
        self.observation_space = spaces.Dict(
            {
                "chunks": chunk_box,
                "mix_mfcc": spaces.Box(-mfcc_bound, mfcc_bound, (cfg.n_mfcc,), np.float32),
                "track_mask": spaces.Box(0.0, 1.0, (C,), np.float32),
            }
        )
        self.action_space = spaces.Box(0.0, 1.0, (C,), np.float32)

        self._features: OrderedDict[str, SongFeatures] = OrderedDict()
        self._current: SongFeatures | None = None
        self._t = 0
        self._start = 0
        self._end = 0
        self._steps = 0
        # Per-step work buffers (nothing handed to the caller lives in them).
        self._scorer = ChunkScorer(self._mfcc)
        self._gains_buf = np.zeros(C)
        self._mix = np.zeros(self.chunk_size, np.float32)
        self._windowed = np.zeros(self.chunk_size)
        self._kl_prev = (np.zeros(C), np.zeros(C))  # smoothed a_{t-1} and its log
        self._kl_next = (np.zeros(C), np.zeros(C))
        self._mix_mfcc = np.zeros(cfg.n_mfcc, np.float32)
        self._seeded = False

    # ------------------------------------------------------------------ properties
    @property
    def song(self) -> Song:
        """The current episode's song."""
        if self._current is None:
            raise DeepMixingError("no song yet: call reset() first")
        return self._current.song

    @property
    def t(self) -> int:
        """The current chunk: the one the next action mixes (== window end once terminated)."""
        return self._t

    @property
    def episode_bounds(self) -> tuple[int, int]:
        """(first chunk, end chunk exclusive) of the current episode."""
        return self._start, self._end

    def song_features(self, name: str) -> SongFeatures:
        """Bulk features of a song (computed once, kept for the last few songs)."""
        return self._song_features(name)

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode on a song drawn with ``self.np_random``.

        Args:
            seed: Seeds ``self.np_random`` (config ``seed`` is used on the first reset if None).
            options: ``{"song": name, "start": chunk}``, both optional.

        Returns:
            The first observation and ``info`` with ``song`` and ``chunk``.
        """
        if seed is None and not self._seeded:
            seed = self.config.seed
        super().reset(seed=seed)
        self._seeded = True
        options = dict(options or {})
        unknown = sorted(set(options) - {"song", "start"})
        if unknown:
            raise ConfigError(f"unknown reset option(s) {unknown}; expected 'song' and/or 'start'")
        name = options.get("song")
        if name is None:
            name = self.song_names[int(self.np_random.integers(len(self.song_names)))]
        elif name not in self.song_names:
            raise ConfigError(f"reset option song={name!r} is not one of {self.song_names}")
        feats = self._song_features(name)
        n_valid, length = feats.n_valid, self.config.episode_chunks
        start = options.get("start")
        if start is None:
            start = 0
            if length is not None and length < n_valid:
                start = int(self.np_random.integers(0, n_valid - length + 1))
        elif isinstance(start, bool) or not isinstance(start, int | np.integer) or not (
            0 <= start < n_valid
        ):
            raise ConfigError(
                f"reset option start={start!r} must be a chunk index in [0, {n_valid}) "
                f"for song {name!r}"
            )
        start = int(start)
        self._current = feats
        self._start = start
        self._end = n_valid if length is None else min(start + length, n_valid)
        self._t = start
        self._steps = 0
        self._mix_mfcc = np.zeros(self.config.n_mfcc, np.float32)
        return self._observation(), {"song": name, "chunk": start}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Mix chunk t with the action's gains and score it against the reference.

        Args:
            action: Weights per slot [shape=(C,)], mapped onto the simplex (class docstring).

        Returns:
            observation, reward, terminated, truncated (always False), info.

        Raises:
            ActionError: on a wrong shape or NaN/inf.
        """
        feats = self._current
        if feats is None or self._t >= self._end:
            raise DeepMixingError("step() called before reset() or after the episode ended")
        t = self._t
        gains = self._gains(action)
        gains32 = gains.astype(np.float32)  # a new array: info keeps it
        np.matmul(gains32, feats.stems[:, t, :], out=self._mix)  # one BLAS gemv over all slots
        mix_rms = window_and_rms(self._mix, self._scorer.window, self._windowed)
        power_gain = 1.0
        if self.config.level_match == "per_chunk":
            # Scaling the mix by g scales its power by g^2: one FFT serves both MFCCs.
            power_gain = level_gain(mix_rms, feats.reference_rms[t]) ** 2
        mix_mfcc = np.empty(self.config.n_mfcc, np.float32)  # a new array: the observation
        distance = self._scorer(
            np.fft.rfft(self._windowed), feats.reference_mfcc[t], power_gain, mix_mfcc
        )
        # KL(a_{t-1} || a_t), keeping step t's smoothed distribution and its log for t+1.
        p_now, log_now = self._kl_next
        kl = kl_step(gains, feats.kl_scale, feats.kl_offset, *self._kl_prev, t > self._start,
                     p_now, log_now)
        self._kl_prev, self._kl_next = self._kl_next, self._kl_prev
        reward = mixing_reward(
            distance,
            kl,
            rho=self.config.rho,
            reward_mode=self.config.reward_mode,
            mfcc_scale=self.config.mfcc_scale,
        )
        self._mix_mfcc = mix_mfcc
        self._t = t + 1
        self._steps += 1
        info = {
            "mfcc_distance": distance,
            "kl": kl,
            "gains": gains32,
            "song": feats.song.name,
            "chunk": t,
        }
        return self._observation(), reward, self._t >= self._end, False, info

    # ------------------------------------------------------------------ internals
    def _gains(self, action: Any) -> np.ndarray:
        a = np.asarray(action)
        if a.shape != (self.n_slots,):
            raise ActionError(
                f"action must have shape ({self.n_slots},) (one weight per slot), got shape "
                f"{a.shape} at step {self._steps} (chunk {self._t})"
            )
        if a.dtype != np.float32 and a.dtype != np.float64:
            try:
                a = a.astype(np.float64)
            except (TypeError, ValueError) as e:
                raise ActionError(
                    f"action must be numeric, got dtype {a.dtype} at step {self._steps} "
                    f"(chunk {self._t})"
                ) from e
        bad = simplex_gains(a, self._current.mask, self._current.equal, self._gains_buf)
        if bad >= 0:
            raise ActionError(
                f"action must be finite, got action[{bad}]={a[bad]} at step {self._steps} "
                f"(chunk {self._t})"
            )
        return self._gains_buf

    def _observation(self) -> dict[str, np.ndarray]:
        feats = self._current
        W = self.config.obs_window
        source = feats.stems if feats.track_features is None else feats.track_features
        lo, hi = self._t - W + 1, self._t + 1
        if lo >= 0 and hi <= source.shape[1]:
            chunks = source[:, lo:hi]  # read-only view (see _song_features)
        else:  # before the song's start or past its end: zeros there
            chunks = np.zeros(self.observation_space["chunks"].shape, np.float32)
            if feats.track_features is not None:
                chunks.fill(-100.0)  # silence in absolute dB
            a, b = max(lo, 0), min(hi, source.shape[1])
            if b > a:
                chunks[:, a - lo : b - lo] = source[:, a:b]
        return {
            "chunks": chunks,
            "mix_mfcc": self._mix_mfcc,
            "track_mask": feats.mask32,
        }

    def _load(self, name: str) -> Song:
        song = self._songs[name] if self._dataset is None else self._dataset.load(name, mmap=True)
        _check_song(song)
        return song

    def _song_features(self, name: str) -> SongFeatures:
        if name in self._features:
            self._features.move_to_end(name)
            return self._features[name]
        song = self._load(name)
        if (song.n_slots, song.chunk_size, song.sample_rate) != (
            self.n_slots,
            self.chunk_size,
            self.sample_rate,
        ):
            raise DatasetError(
                f"song {name!r} has (slots, chunk_size, sample_rate)="
                f"{(song.n_slots, song.chunk_size, song.sample_rate)}, expected "
                f"{(self.n_slots, self.chunk_size, self.sample_rate)} like the first song"
            )
        stems = np.asarray(song.stems, dtype=np.float32)
        T = song.n_chunks
        ref_mfcc = np.empty((T, self.config.n_mfcc))
        ref_rms = np.empty(T)
        feats_arr = None
        if self._logmel is not None:
            feats_arr = np.empty((self.n_slots, T, self.config.n_track_features), np.float32)
        for a in range(0, T, _BULK_CHUNKS):
            b = min(a + _BULK_CHUNKS, T)
            ref = np.asarray(song.reference[a:b], dtype=np.float64)
            ref_mfcc[a:b] = self._mfcc.from_mel_power(self._mfcc.mel_power(ref))
            ref_rms[a:b] = np.sqrt(np.mean(ref * ref, axis=-1))
            if feats_arr is not None:
                feats_arr[:, a:b] = self._logmel.log_mel(stems[:, a:b])
        cfg = self.config
        if feats_arr is not None and (cfg.level_features or cfg.stem_level_features):
            levels = track_level_features(stems, sample_rate=self.sample_rate)
            parts = [feats_arr, levels] if cfg.level_features else [feats_arr]
            if cfg.stem_level_features:
                whole = stem_level_features(levels)[:, None, :]
                parts.append(np.broadcast_to(whole, (*levels.shape[:2], whole.shape[-1])))
            feats_arr = np.concatenate(parts, axis=-1)
        # Read-only views: observations slice them without copying and nobody can write back.
        stems = stems.view()
        stems.flags.writeable = False
        if feats_arr is not None:
            feats_arr.flags.writeable = False
        real = np.asarray(song.track_mask) > 0
        mask32 = real.astype(np.float32)
        mask32.flags.writeable = False
        kl_scale, kl_offset = smoothing_affine(real)
        feats = SongFeatures(
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
        self._features[name] = feats
        if len(self._features) > _FEATURE_CACHE_SONGS:
            self._features.popitem(last=False)
        return feats

    def _peak(self) -> float:
        """Largest |sample| over the env's stems (bounds the observation space)."""
        peak = 0.0
        for name in self.song_names:
            manifest_peak = _manifest_peak(self._dataset, name)
            if manifest_peak is not None:
                peak = max(peak, manifest_peak)
                continue
            stems = self._load(name).stems
            for a in range(0, stems.shape[1], _BULK_CHUNKS):
                peak = max(peak, float(np.abs(stems[:, a : a + _BULK_CHUNKS]).max(initial=0.0)))
        return peak


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
    try:
        from mixing_env.data.cache import PreparedDataset
    except ImportError as e:  # the data package is part of this project
        raise ConfigError(
            f"dataset_dir={path!r} needs mixing_env.data.cache.PreparedDataset: {e}"
        ) from e
    return PreparedDataset(path)


def _synthetic_songs(kwargs: dict[str, Any]) -> list[Song]:
    try:
        from mixing_env.data.synthetic import synthetic_songs
    except ImportError as e:
        raise ConfigError(f"synthetic songs need mixing_env.data.synthetic: {e}") from e
    try:
        return list(synthetic_songs(**kwargs))
    except TypeError as e:
        raise ConfigError(f"bad synthetic config {kwargs!r}: {e}") from e
