"""The reward of report 4.3 and the level treatment shared by env, baselines and evaluation.

Report 4.3: ``r_t = exp(-||M_t - m_t||^2 - rho * KL(a_{t-1} || a_t))`` with ``M_t``, ``m_t``
the MFCCs of the reference and of the agent's mix at chunk t.

Two things make that literal form uninformative, and both are handled here, once:

* **Level.** Gains on the simplex set only the balance between tracks, not the overall level,
  so with ``level_match="per_chunk"`` (default) each mix chunk is scaled to the reference
  chunk's RMS before its MFCC: ``g = rms(M_t) / rms(m_t)`` (``g = 1`` for a silent mix). The
  oracle, the baselines, the env and the evaluation all use :func:`level_match`, so the
  oracle is an upper bound under the same treatment. ``"none"`` keeps the raw mix.
* **Scale.** librosa's MFCCs are in dB-like units; a realistic mix is 10-30 away from its
  reference, and ``exp(-d^2)`` is 0. ``reward_mode="normalized"`` divides the squared
  distance by ``mfcc_scale**2`` (:data:`MFCC_SCALE`); ``"raw"`` keeps the report's scale.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mixing_env.constants import RHO
from mixing_env.errors import ConfigError

__all__ = [
    "MFCC_SCALE",
    "KL_EPS",
    "LEVEL_MATCH_MODES",
    "REWARD_MODES",
    "rms",
    "level_gain",
    "level_match",
    "to_simplex",
    "kl_divergence",
    "smoothed_log",
    "smoothing_affine",
    "mixing_reward",
    "evaluate_gains",
]

MFCC_SCALE = 20.0
"""Distance scale of the normalized reward, in MFCC units.

Measured on 6 synthetic songs (``synthetic_songs(n_songs=6, seconds=3, n_tracks=(4, 8),
seed=1)``, per-chunk level match, n_mfcc 13, 40 mel bands), mean L2 distance -> mean reward
at scale 20: equal gains 20.0 -> 0.44 (0.34 at 15, 0.54 at 25), loudness-equalized 30.2 ->
0.27, static oracle 0.55 -> 0.995, per-chunk oracle 1.6e-5 -> 1.0. The spec's real songs give
equal gains about 22. 20 puts the equal-gain baseline mid-range, so both improving on it and
falling behind it show in the reward.
"""

KL_EPS = 1e-6
"""Smoothing added to each gain before the KL, so zero gains give a finite penalty."""

LEVEL_MATCH_MODES = ("per_chunk", "none")
REWARD_MODES = ("normalized", "raw")

_SILENCE_RMS = 1e-12  # below this a chunk is treated as silent (cannot be rescaled)


def rms(x: np.ndarray) -> np.ndarray:
    """Root mean square over the last axis.

    Args:
        x: Audio [shape=(..., n)].

    Returns:
        float64 [shape=(...)].
    """
    x = np.asarray(x, dtype=np.float64)
    return np.sqrt(np.mean(x * x, axis=-1))


def level_gain(
    mix_rms: np.ndarray | float, reference_rms: np.ndarray | float
) -> np.ndarray | float:
    """Gain that brings a mix chunk to the reference chunk's RMS (0-safe).

    Args:
        mix_rms: RMS of the mix chunk(s).
        reference_rms: RMS of the reference chunk(s).

    Returns:
        ``reference_rms / mix_rms``; 1 where the mix is silent (nothing to scale).
    """
    if isinstance(mix_rms, float) and isinstance(reference_rms, float):  # env hot path
        return 1.0 if mix_rms <= _SILENCE_RMS else reference_rms / mix_rms
    mix_rms = np.asarray(mix_rms, dtype=np.float64)
    reference_rms = np.asarray(reference_rms, dtype=np.float64)
    silent = mix_rms <= _SILENCE_RMS
    return np.where(silent, 1.0, reference_rms / np.where(silent, 1.0, mix_rms))


def level_match(mix: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale each mix chunk to the RMS of the matching reference chunk.

    Args:
        mix: Mix chunks [shape=(..., chunk)].
        reference: Reference chunks, broadcastable to ``mix`` [shape=(..., chunk)].

    Returns:
        The level-matched mix, float64 [shape=(..., chunk)].
    """
    mix = np.asarray(mix, dtype=np.float64)
    return mix * level_gain(rms(mix), rms(reference))[..., None]


def to_simplex(weights: np.ndarray, track_mask: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Map non-negative weights onto the simplex over the real tracks.

    Negative values are clipped to 0, dummy slots (mask 0) get 0, the rest is divided by its
    sum; if the real tracks sum to 0 every real track gets an equal share. The one NumPy
    version: the env's step kernel (:func:`~mixing_env.step_kernels.simplex_gains`) is its
    fast twin and is tested against it.

    Args:
        weights: Weights per slot, finite [shape=(..., C)] (slots on ``axis``).
        track_mask: 1 for a real track, 0 for a dummy slot [shape=(C,)].
        axis: The slot axis of ``weights``: -1 for one gain vector per step (n, C), 0 for
            gains per slot and chunk (C, T).

    Returns:
        Gains, float64, shaped like ``weights``, summing to 1 over the real tracks.
    """
    w = np.moveaxis(np.asarray(weights, dtype=np.float64), axis, -1)
    mask = np.asarray(track_mask, dtype=np.float64) > 0
    w = np.where(mask, np.clip(w, 0.0, None), 0.0)
    total = w.sum(axis=-1, keepdims=True)
    equal = mask / max(int(mask.sum()), 1)
    out = np.where(total > 0, w / np.where(total > 0, total, 1.0), equal)
    return np.moveaxis(out, -1, axis)


def kl_divergence(
    p: np.ndarray, q: np.ndarray, *, track_mask: np.ndarray | None = None, eps: float = KL_EPS
) -> np.ndarray:
    """KL(p || q) between gain vectors on the simplex, over the real tracks.

    Each vector gets ``eps`` added per real track and is renormalized, so zero gains give a
    finite, non-negative value.

    Args:
        p: Previous gains [shape=(..., C)].
        q: Current gains [shape=(..., C)].
        track_mask: 1 for a real track [shape=(C,)]; None = all real.
        eps: Smoothing per track.

    Returns:
        float64 [shape=(...)].
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if track_mask is not None:
        real = np.asarray(track_mask) > 0
        p, q = p[..., real], q[..., real]
    p, log_p = smoothed_log(p, eps=eps)
    _, log_q = smoothed_log(q, eps=eps)
    return np.sum(p * (log_p - log_q), axis=-1)


def smoothed_log(gains: np.ndarray, *, eps: float = KL_EPS) -> tuple[np.ndarray, np.ndarray]:
    """The smoothed distribution and its log that :func:`kl_divergence` uses.

    Lets a caller keep step t's values for step t+1 (the env does), so each step takes one
    log. ``gains`` must be the real tracks only.

    Returns:
        ``(p, log p)`` with ``p = (gains + eps) / sum(gains + eps)``.
    """
    p = gains + eps
    p /= p.sum(axis=-1, keepdims=True)
    return p, np.log(p)


def smoothing_affine(track_mask: np.ndarray, *, eps: float = KL_EPS) -> tuple[float, np.ndarray]:
    """:func:`smoothed_log`'s ``p`` as one multiply-add over all C slots (the env's step).

    For gains on the simplex over the real tracks, ``gains * scale + offset`` equals
    :func:`smoothed_log`'s ``p`` on the real tracks (their sum ``1 + n eps`` is known), and is
    1 on dummy slots, whose ``log p = 0`` then adds nothing to ``sum p (log p - log q)``.

    Args:
        track_mask: 1 for a real track [shape=(C,)].
        eps: Smoothing per track.

    Returns:
        ``(scale, offset)`` with offset [shape=(C,)], float64.
    """
    real = np.asarray(track_mask) > 0
    scale = 1.0 / (1.0 + eps * int(real.sum()))
    return scale, np.where(real, eps * scale, 1.0)


def mixing_reward(
    distance: np.ndarray | float,
    kl: np.ndarray | float,
    *,
    rho: float = RHO,
    reward_mode: str = "normalized",
    mfcc_scale: float = MFCC_SCALE,
) -> np.ndarray | float:
    """Report 4.3's reward from the MFCC distance and the KL.

    Args:
        distance: L2 norm ``||M_t - m_t||`` (unscaled MFCC units).
        kl: ``KL(a_{t-1} || a_t)``, 0 at the first step.
        rho: Weight of the KL term.
        reward_mode: ``"normalized"`` divides the squared distance by ``mfcc_scale**2``;
            ``"raw"`` uses it as is (the report's literal form).
        mfcc_scale: Distance scale for the normalized mode.

    Returns:
        ``exp(-d - rho * kl)`` in (0, 1], float64.
    """
    if reward_mode not in REWARD_MODES:
        raise ConfigError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
    if isinstance(distance, float) and isinstance(kl, float):  # env hot path: one step
        d2 = distance * distance
        if reward_mode == "normalized":
            d2 /= float(mfcc_scale) ** 2
        return math.exp(-d2 - float(rho) * kl)
    d = np.square(np.asarray(distance, dtype=np.float64))
    if reward_mode == "normalized":
        d = d / float(mfcc_scale) ** 2
    return np.exp(-d - float(rho) * np.asarray(kl, dtype=np.float64))


def evaluate_gains(
    song: Any,
    gains: np.ndarray,
    *,
    mfcc: Any = None,
    reference_mfcc: np.ndarray | None = None,
    level_match_mode: str = "per_chunk",
    rho: float = RHO,
    reward_mode: str = "normalized",
    mfcc_scale: float = MFCC_SCALE,
    start: int = 0,
    stop: int | None = None,
) -> dict[str, np.ndarray]:
    """Score a whole gain automation in bulk, as the env would step by step.

    Args:
        song: A :class:`mixing_env.data.song.Song`.
        gains: Gains on the simplex over the real tracks [shape=(C, T)] (columns
            ``start:stop`` are used).
        mfcc: A :class:`mixing_env.features.ChunkMFCC`; None builds one for the song.
        reference_mfcc: Precomputed MFCC of the reference [shape=(T, n_mfcc)], optional.
        level_match_mode: ``"per_chunk"`` or ``"none"`` (see module docstring).
        rho: KL weight.
        reward_mode: ``"normalized"`` or ``"raw"``.
        mfcc_scale: Distance scale of the normalized mode.
        start: First chunk (the episode's first step: KL 0).
        stop: End chunk (exclusive); None = the song's valid chunks.

    Returns:
        ``rewards``, ``distances`` (L2, unscaled), ``kl`` [shape=(n,)], and ``mix`` (the
        un-level-matched mix chunks [shape=(n, chunk)]).
    """
    from mixing_env.features import ChunkMFCC  # local: features imports librosa

    if level_match_mode not in LEVEL_MATCH_MODES:
        raise ConfigError(
            f"level_match must be one of {LEVEL_MATCH_MODES}, got {level_match_mode!r}"
        )
    if stop is None:
        stop = song.n_valid_chunks or song.n_chunks
    if mfcc is None:
        mfcc = ChunkMFCC(song.sample_rate, song.chunk_size)
    g = np.asarray(gains, dtype=np.float64)[:, start:stop]
    stems = np.asarray(song.stems[:, start:stop], dtype=np.float64)
    reference = np.asarray(song.reference[start:stop], dtype=np.float64)
    mix = np.einsum("ct,ctn->tn", g, stems)
    scored = level_match(mix, reference) if level_match_mode == "per_chunk" else mix
    ref_mfcc = (
        mfcc.from_mel_power(mfcc.mel_power(reference))
        if reference_mfcc is None
        else np.asarray(reference_mfcc, dtype=np.float64)[start:stop]
    )
    distances = np.linalg.norm(mfcc.from_mel_power(mfcc.mel_power(scored)) - ref_mfcc, axis=-1)
    kl = np.zeros(len(distances))
    if len(distances) > 1:
        kl[1:] = kl_divergence(g[:, :-1].T, g[:, 1:].T, track_mask=song.track_mask)
    rewards = mixing_reward(
        distances, kl, rho=rho, reward_mode=reward_mode, mfcc_scale=mfcc_scale
    )
    return {"rewards": rewards, "distances": distances, "kl": kl, "mix": mix}
