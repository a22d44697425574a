"""The DeepMixing Gymnasium environment: set every track's level, chunk by chunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from mixing_env.data.song import Song
from mixing_env.envs.config import EnvConfig
from mixing_env.envs.song_features import SongFeatures, SongPrecompute
from mixing_env.envs.song_source import SongSource
from mixing_env.errors import ActionError, ConfigError, DeepMixingError
from mixing_env.reward import level_gain, mixing_reward
from mixing_env.step_kernels import ChunkScorer, kl_step, simplex_gains, window_and_rms

__all__ = ["MixingEnv", "SongFeatures"]


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
    :func:`~mixing_env.features.stem_level_features`); ``stem_spectrum_features=True``
    appends n_track_features more, each stem's log-mel averaged over the chunks where it plays
    (:func:`~mixing_env.features.stem_spectrum_features`); ``stem_loudness_feature=True`` appends
    one last value, each stem's BS.1770 loudness over the whole song (LUFS, -100 for silence;
    :func:`~mixing_env.features.stem_loudness_feature`), the measure the loudness and
    instrument-balance baselines use. P is the
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

    With ``self_critical=True`` a step may take ``(2C,)``: the action played, then a baseline
    action scored on the same chunk (after the same ``a_{t-1}``) but not played;
    ``info["baseline_reward"]`` is its reward. With the policy's mean action as the baseline,
    ``r_t - baseline_reward`` is how much the drawn action beat the policy's own choice on
    this very chunk: how hard the passage is cancels out (Rennie et al. 2017, "Self-critical
    sequence training").

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
    ``source`` (keyword): a :class:`~mixing_env.envs.song_source.SongSource` to share with
    other envs or with evaluation (its songs, layout and peak; the config's ``songs`` narrows
    it); the env precomputes each song's features with
    :class:`~mixing_env.envs.song_features.SongPrecompute`.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: Mapping[str, Any] | EnvConfig | None = None,
        *,
        songs: Sequence[Song] | None = None,
        source: SongSource | None = None,
    ) -> None:
        self.config = EnvConfig.from_dict(config)
        cfg = self.config
        if source is None:
            # RLlib's EnvContext names the env runner: each runner makes its own songs.
            stream = 1 + int(getattr(config, "worker_index", 0) or 0)
            source = SongSource(cfg, songs=songs, stream=stream)
        elif cfg.songs is not None:
            source = source.subset(cfg.songs)
        self.source = source
        self.song_names: list[str] = source.names
        layout = source.layout
        self.n_slots, self.chunk_size = layout.n_slots, layout.chunk_size
        self.sample_rate = layout.sample_rate
        self._precompute = SongPrecompute(cfg, n_slots=self.n_slots,
                                          chunk_size=self.chunk_size,
                                          sample_rate=self.sample_rate)
        self._mfcc = self._precompute.mfcc
        self.observation_space, self.action_space = self._precompute.spaces(source.peak)

        self._current: SongFeatures | None = None
        self._t = 0
        self._start = 0
        self._end = 0
        self._steps = 0
        # Per-step work buffers (nothing handed to the caller lives in them).
        C = self.n_slots
        self._scorer = ChunkScorer(self._mfcc)
        self._gains_buf = np.zeros(C)
        self._mix = np.zeros(self.chunk_size, np.float32)
        self._windowed = np.zeros(self.chunk_size)
        self._kl_prev = (np.zeros(C), np.zeros(C))  # smoothed a_{t-1} and its log
        self._kl_next = (np.zeros(C), np.zeros(C))
        self._mix_mfcc = np.zeros(cfg.n_mfcc, np.float32)
        self._baseline_mfcc = np.zeros(cfg.n_mfcc, np.float32)  # self-critical scratch
        self._kl_baseline = (np.zeros(C), np.zeros(C))
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
        return self._precompute.features(name, self.source.load, self.source.song_key(name))

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
            name = self.source.draw(self.np_random)
        elif not self.source.has(name):
            raise ConfigError(f"reset option song={name!r} is not one of {self.song_names}")
        feats = self.song_features(name)
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
        baseline_reward = None
        if self.config.self_critical and np.shape(action) == (2 * self.n_slots,):
            action = np.asarray(action)
            _, _, _, baseline_reward = self._score(
                self._gains(action[self.n_slots:]), self._baseline_mfcc, self._kl_baseline)
            action = action[: self.n_slots]
        mix_mfcc = np.empty(self.config.n_mfcc, np.float32)  # a new array: the observation
        gains32, distance, kl, reward = self._score(self._gains(action), mix_mfcc,
                                                    self._kl_next)
        # Step t's smoothed distribution and its log are a_{t-1}'s at t+1.
        self._kl_prev, self._kl_next = self._kl_next, self._kl_prev
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
        if baseline_reward is not None:
            info["baseline_reward"] = baseline_reward
        return self._observation(), reward, self._t >= self._end, False, info

    # ------------------------------------------------------------------ internals
    def _score(self, gains: np.ndarray, mix_mfcc: np.ndarray, kl_out: tuple[np.ndarray, ...]
               ) -> tuple[np.ndarray, float, float, float]:
        """Chunk t mixed with ``gains``, after a_{t-1}: (float32 gains, distance, KL, reward).

        Writes the mix's MFCC into ``mix_mfcc`` and the smoothed gains and their log into
        ``kl_out``; changes no other state.
        """
        feats, t = self._current, self._t
        gains32 = gains.astype(np.float32)  # a new array: info keeps it
        np.matmul(gains32, feats.stems[:, t, :], out=self._mix)  # one BLAS gemv over all slots
        mix_rms = window_and_rms(self._mix, self._scorer.window, self._windowed)
        power_gain = 1.0
        if self.config.level_match == "per_chunk":
            # Scaling the mix by g scales its power by g^2: one FFT serves both MFCCs.
            power_gain = level_gain(mix_rms, feats.reference_rms[t]) ** 2
        distance = self._scorer(
            np.fft.rfft(self._windowed), feats.reference_mfcc[t], power_gain, mix_mfcc
        )
        kl = kl_step(gains, feats.kl_scale, feats.kl_offset, *self._kl_prev, t > self._start,
                     *kl_out)
        reward = mixing_reward(
            distance,
            kl,
            rho=self.config.rho,
            reward_mode=self.config.reward_mode,
            mfcc_scale=self.config.mfcc_scale,
        )
        return gains32, distance, kl, reward

    def _gains(self, action: Any) -> np.ndarray:
        a = np.asarray(action)
        if a.shape != (self.n_slots,):
            also = (f" or ({2 * self.n_slots},) (self_critical: played, then baseline)"
                    if self.config.self_critical else "")
            raise ActionError(
                f"action must have shape ({self.n_slots},) (one weight per slot){also}, got "
                f"shape {a.shape} at step {self._steps} (chunk {self._t})"
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
            chunks = source[:, lo:hi]  # read-only view (see SongPrecompute)
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
