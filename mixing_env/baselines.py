"""Baseline mixing policies and a rollout helper.

Every policy gives gains on the simplex over a song's real tracks, ``gains(song) -> (C, T)``,
and drives an env with ``act(env)``. All of them are scored with the env's own level
treatment (:mod:`mixing_env.reward`), so the per-chunk oracle is an upper bound.

* :class:`EqualGains`: 1/n for every real track.
* :class:`LoudnessGains`: every stem at equal integrated loudness (pyloudnorm, ITU-R BS.1770).
* :class:`OraclePolicy`: per chunk, NNLS of the reference chunk on the stem chunks, put on the
  simplex (needs the reference: an upper bound, not a deployable policy).
* :class:`StaticOracle`: one NNLS over the whole song, one gain vector for all chunks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize

from mixing_env.data.song import Song
from mixing_env.reward import to_simplex

__all__ = [
    "BaselinePolicy",
    "EqualGains",
    "LoudnessGains",
    "OraclePolicy",
    "StaticOracle",
    "BASELINES",
    "rollout",
]

_SILENT = 1e-12  # energy below which a chunk counts as silent


class BaselinePolicy:
    """A policy that knows each song's gains in advance; subclasses implement :meth:`gains`.

    Gains are computed once per song (by name and identity) and cached.
    """

    name = "baseline"

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def gains(self, song: Song) -> np.ndarray:
        """Gains per slot and chunk, float32 [shape=(C, T)], on the simplex over real tracks."""
        raise NotImplementedError

    def cached_gains(self, song: Song) -> np.ndarray:
        """:meth:`gains`, computed once per song object."""
        key = (song.name, id(song))
        if key not in self._cache:
            self._cache = {key: self.gains(song)}  # one song at a time is all an env needs
        return self._cache[key]

    def act(self, env: Any) -> np.ndarray:
        """The action for the env's current chunk, float32 [shape=(C,)]."""
        base = env.unwrapped
        return self.cached_gains(base.song)[:, base.t]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EqualGains(BaselinePolicy):
    """Every real track at 1/n for the whole song."""

    name = "equal"

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        g = to_simplex(np.ones(song.n_slots), song.track_mask)
        return np.repeat(g[:, None], song.n_chunks, axis=1).astype(np.float32)


class LoudnessGains(BaselinePolicy):
    """Gains that bring every stem to the same integrated loudness.

    Loudness per stem over the song's valid audio with pyloudnorm (BS.1770 gating); gain
    proportional to ``10 ** (-LUFS / 20)``. Silent stems (LUFS = -inf) get 0. Stems shorter
    than pyloudnorm's 400 ms block fall back to RMS level in dBFS.
    """

    name = "loudness"

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        import pyloudnorm

        n = song.n_valid_chunks or song.n_chunks
        meter = pyloudnorm.Meter(song.sample_rate)
        weights = np.zeros(song.n_slots)
        for i in np.flatnonzero(np.asarray(song.track_mask) > 0):
            audio = np.asarray(song.stems[i, :n], dtype=np.float64).reshape(-1)
            if not np.any(audio):
                continue
            if audio.size > meter.block_size * song.sample_rate:
                lufs = meter.integrated_loudness(audio)
            else:
                lufs = 10 * np.log10(np.mean(audio**2))
            if np.isfinite(lufs):
                weights[i] = 10 ** (-lufs / 20)
        g = to_simplex(weights, song.track_mask)
        return np.repeat(g[:, None], song.n_chunks, axis=1).astype(np.float32)


class StaticOracle(BaselinePolicy):
    """One NNLS over the whole song: the best single gain vector, on the simplex.

    Solved from the Gram matrix (C x C) so long songs never build a (T*chunk, C) matrix:
    ``||A w - b||^2 = ||R w - R^-T A^T b||^2 + const`` with ``A^T A = R^T R``.
    """

    name = "static_oracle"

    def weights(self, song: Song) -> np.ndarray:
        """The NNLS weights before the simplex, on the reference's scale, float64 [shape=(C,)]."""
        real = np.flatnonzero(np.asarray(song.track_mask) > 0)
        n = song.n_valid_chunks or song.n_chunks
        gram = np.zeros((len(real), len(real)))
        rhs = np.zeros(len(real))
        for a in range(0, n, 1024):  # stream over chunks: memory-mapped songs stay on disk
            x = np.asarray(song.stems[real, a : min(a + 1024, n)], np.float64)
            x = x.reshape(len(real), -1)
            ref = np.asarray(song.reference[a : min(a + 1024, n)], np.float64).reshape(-1)
            gram += x @ x.T
            rhs += x @ ref
        w = np.zeros(song.n_slots)
        if np.trace(gram) > _SILENT:
            # Tiny ridge keeps Cholesky defined for silent or identical stems.
            R = scipy.linalg.cholesky(gram + 1e-9 * np.trace(gram) * np.eye(len(real)))
            w[real] = scipy.optimize.nnls(R, scipy.linalg.solve_triangular(R.T, rhs, lower=True))[0]
        return w

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        g = to_simplex(self.weights(song), song.track_mask)
        return np.repeat(g[:, None], song.n_chunks, axis=1).astype(np.float32)


class OraclePolicy(BaselinePolicy):
    """Per-chunk NNLS of the reference on the stems that play, projected onto the simplex.

    ``w_t = argmin_{w >= 0} ||reference[t] - sum_i w_i stems[i, t]||`` over the tracks that
    sound in chunk t (scipy.optimize.nnls), then ``w_t / sum(w_t)``. A silent track's weight
    changes nothing in the mix; it keeps the :class:`StaticOracle` weight (same scale as w_t),
    so the automation stays continuous and demonstrations built from it have no spurious zeros.
    Chunks where every stem is silent get the static weights.
    """

    name = "oracle"

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        static = StaticOracle().weights(song)
        real = np.asarray(song.track_mask) > 0
        out = np.empty((song.n_slots, song.n_chunks))
        for t in range(song.n_chunks):
            chunk = np.asarray(song.stems[:, t], dtype=np.float64)  # (C, chunk)
            playing = np.flatnonzero(real & (np.sum(chunk * chunk, axis=-1) > _SILENT))
            w = static.copy()
            if playing.size:
                ref = np.asarray(song.reference[t], np.float64)
                w[playing] = scipy.optimize.nnls(chunk[playing].T, ref)[0]
            out[:, t] = to_simplex(w, song.track_mask)
        return out.astype(np.float32)


BASELINES: dict[str, type[BaselinePolicy]] = {
    cls.name: cls for cls in (EqualGains, LoudnessGains, OraclePolicy, StaticOracle)
}
"""Baseline classes by name (``"equal"``, ``"loudness"``, ``"oracle"``, ``"static_oracle"``)."""


def rollout(
    env: Any,
    policy: Any,
    *,
    song: str | None = None,
    start: int | None = None,
    seed: int | None = None,
) -> dict[str, np.ndarray]:
    """Play one episode with ``policy.act(env)`` and collect per-step data.

    Args:
        env: A :class:`~mixing_env.envs.mixing_env.MixingEnv` (possibly wrapped).
        policy: Anything with ``act(env) -> action``.
        song: Song name to play (reset option); None lets the env draw one.
        start: First chunk (reset option), optional.
        seed: Seed for ``reset``.

    Returns:
        ``rewards``, ``distances`` (MFCC L2), ``kl`` [shape=(n,)], ``gains`` (the simplex
        gains the env used) [shape=(n, C)], ``chunks`` [shape=(n,)], and ``song`` (name).
    """
    options = {k: v for k, v in (("song", song), ("start", start)) if v is not None}
    env.reset(seed=seed, options=options or None)
    rewards, distances, kls, gains, chunks = [], [], [], [], []
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(policy.act(env))
        rewards.append(reward)
        distances.append(info["mfcc_distance"])
        kls.append(info["kl"])
        gains.append(info["gains"])
        chunks.append(info["chunk"])
        done = terminated or truncated
    return {
        "rewards": np.asarray(rewards),
        "distances": np.asarray(distances),
        "kl": np.asarray(kls),
        "gains": np.asarray(gains),
        "chunks": np.asarray(chunks),
        "song": np.asarray(env.unwrapped.song.name),
    }
