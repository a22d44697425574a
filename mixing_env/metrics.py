"""Evaluation metrics for a mix against its reference, and learned gains against the truth.

Every function takes NumPy arrays and keyword-only arguments so that evaluation, tests and the
quality benchmark compute the numbers the same way. The chunk-level MFCC distance and the reward
come from the environment itself (its ``info``), so they use the env's level treatment; the audio
metrics here work on whole rendered signals.
"""

from __future__ import annotations

import numpy as np

from mixing_env.errors import ConfigError

__all__ = [
    "si_sdr",
    "multi_resolution_stft_distance",
    "loudness_difference_lufs",
    "integrated_loudness",
    "active_chunks",
    "gain_error_db",
    "render_mix",
    "least_squares_gain",
    "gap_closed",
]

_EPS = 1e-8


def _check_same_shape(estimate: np.ndarray, reference: np.ndarray) -> None:
    if estimate.shape != reference.shape:
        raise ConfigError(
            f"estimate and reference must have the same shape, "
            f"estimate.shape={estimate.shape}, reference.shape={reference.shape}"
        )


def si_sdr(*, estimate: np.ndarray, reference: np.ndarray, eps: float = _EPS) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019).

    Args:
        estimate: Estimated signal [shape=(n,)].
        reference: Reference signal [shape=(n,)].
        eps: Floor that keeps silent inputs finite.

    Returns:
        ``10 log10(||s||^2 / ||e||^2)`` with ``s = alpha * reference`` the projection of the
        zero-mean estimate on the zero-mean reference and ``e = estimate - s``.
    """
    estimate = np.asarray(estimate, dtype=np.float64).ravel()
    reference = np.asarray(reference, dtype=np.float64).ravel()
    _check_same_shape(estimate, reference)
    estimate = estimate - estimate.mean()
    reference = reference - reference.mean()
    alpha = np.dot(estimate, reference) / (np.dot(reference, reference) + eps)
    target = alpha * reference
    noise = estimate - target
    return float(10.0 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def multi_resolution_stft_distance(
    *,
    estimate: np.ndarray,
    reference: np.ndarray,
    fft_sizes: tuple[int, ...] = (512, 1024, 2048),
    hop_sizes: tuple[int, ...] | None = None,
    eps: float = 1e-7,
) -> float:
    """Multi-resolution STFT distance, as auraloss's ``MultiResolutionSTFTLoss``.

    For each FFT size: spectral convergence ``||S_ref - S_est||_F / ||S_ref||_F`` plus the mean
    absolute difference of log magnitudes; the result is the mean over resolutions.

    Args:
        estimate: Estimated signal [shape=(n,)].
        reference: Reference signal [shape=(n,)].
        fft_sizes: FFT sizes (Hann window of the same length).
        hop_sizes: Hop per FFT size; defaults to a quarter of each FFT size.
        eps: Magnitude floor inside the logarithm.

    Returns:
        The distance (0 for identical signals; no unit).
    """
    import librosa

    estimate = np.asarray(estimate, dtype=np.float32).ravel()
    reference = np.asarray(reference, dtype=np.float32).ravel()
    _check_same_shape(estimate, reference)
    hop_sizes = hop_sizes or tuple(n // 4 for n in fft_sizes)
    if len(hop_sizes) != len(fft_sizes):
        raise ConfigError(
            f"hop_sizes must have one entry per FFT size, fft_sizes={fft_sizes}, "
            f"hop_sizes={hop_sizes}"
        )
    total = 0.0
    for n_fft, hop in zip(fft_sizes, hop_sizes, strict=True):
        kwargs = dict(n_fft=n_fft, hop_length=hop, window="hann", center=True)
        mag_ref = np.abs(librosa.stft(reference, **kwargs))
        mag_est = np.abs(librosa.stft(estimate, **kwargs))
        sc = np.linalg.norm(mag_ref - mag_est) / (np.linalg.norm(mag_ref) + eps)
        log_mag = np.mean(np.abs(np.log(mag_ref + eps) - np.log(mag_est + eps)))
        total += float(sc + log_mag)
    return total / len(fft_sizes)


def integrated_loudness(y: np.ndarray, *, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 via pyloudnorm).

    Args:
        y: Mono signal [shape=(n,)].
        sample_rate: Sample rate in Hz.

    Returns:
        The loudness in LUFS; ``-inf`` for silence. Signals shorter than pyloudnorm's 400 ms
        gating block are measured with one block as long as the signal.
    """
    import pyloudnorm

    y = np.asarray(y, dtype=np.float64).ravel()
    block = min(0.4, len(y) / sample_rate)
    meter = pyloudnorm.Meter(sample_rate, block_size=block)
    return float(meter.integrated_loudness(y))


def loudness_difference_lufs(
    *, estimate: np.ndarray, reference: np.ndarray, sample_rate: int
) -> float:
    """Integrated loudness of the estimate minus that of the reference, in LU.

    Args:
        estimate: Estimated signal [shape=(n,)].
        reference: Reference signal [shape=(n,)].
        sample_rate: Sample rate in Hz.

    Returns:
        ``L(estimate) - L(reference)``; positive when the estimate is louder.
    """
    return integrated_loudness(estimate, sample_rate=sample_rate) - integrated_loudness(
        reference, sample_rate=sample_rate
    )


def active_chunks(
    stems: np.ndarray, *, track_mask: np.ndarray, threshold_db: float = -60.0
) -> np.ndarray:
    """Chunks where a track sounds: RMS within ``threshold_db`` of the track's loudest chunk.

    Args:
        stems: Raw tracks [shape=(C, T, chunk_size)].
        track_mask: 1 for a real track [shape=(C,)].
        threshold_db: How far below the track's loudest chunk a chunk still counts as active.

    Returns:
        bool [shape=(C, T)].
    """
    rms = np.sqrt(np.mean(np.square(np.asarray(stems, dtype=np.float64)), axis=-1))
    peak = rms.max(axis=1, keepdims=True)
    active = (rms > 0) & (rms >= peak * 10.0 ** (threshold_db / 20.0))
    return active & (np.asarray(track_mask)[:, None] > 0)


def gain_error_db(
    *,
    estimated: np.ndarray,
    true: np.ndarray,
    track_mask: np.ndarray,
    active: np.ndarray,
    floor: float = 1e-4,
) -> dict:
    """Per-track gain error in dB over active chunks, gains compared on the simplex.

    In each chunk both gain sets are put on the simplex over the real tracks *active in that
    chunk* (a simplex sets only the balance, and the gain of a silent track changes nothing in
    the mix, so it must not shift the others' share), then ``|20 log10(est / true)|`` is taken
    where the track is active and its true gain is above ``floor`` (a muted track has no dB
    value to match).

    Args:
        estimated: Gains the policy chose [shape=(C, T)].
        true: Gains that made the reference [shape=(C, T)].
        track_mask: 1 for a real track [shape=(C,)].
        active: Where each track sounds [shape=(C, T)], see :func:`active_chunks`.
        floor: Gains below this on the simplex are clipped to it before the logarithm.

    Returns:
        ``{"per_track_db": (C,) median error per track (nan where none active),
        "median_db": median over tracks of the per-track medians, "mean_db": mean over all
        active (track, chunk) pairs, "n_active": count of those pairs}``.
    """
    if estimated.shape != true.shape:
        raise ConfigError(
            f"estimated and true gains must have the same shape, "
            f"estimated.shape={estimated.shape}, true.shape={true.shape}"
        )
    playing = np.asarray(active, dtype=bool) & (np.asarray(track_mask)[:, None] > 0)
    est = _share_among(estimated, playing)
    ref = _share_among(true, playing)
    use = playing & (ref > floor)
    err = np.abs(20.0 * np.log10(np.maximum(est, floor) / np.maximum(ref, floor)))
    per_track = np.array(
        [np.median(err[i, use[i]]) if use[i].any() else np.nan for i in range(err.shape[0])]
    )
    valid = per_track[~np.isnan(per_track)]
    return {
        "per_track_db": per_track,
        "median_db": float(np.median(valid)) if valid.size else float("nan"),
        "mean_db": float(err[use].mean()) if use.any() else float("nan"),
        "n_active": int(use.sum()),
    }


def _share_among(gains: np.ndarray, playing: np.ndarray) -> np.ndarray:
    """Each chunk's gains as shares of the total over the ``playing`` tracks (0 elsewhere)."""
    g = np.where(playing, np.clip(np.asarray(gains, dtype=np.float64), 0.0, None), 0.0)
    total = g.sum(axis=0, keepdims=True)
    return g / np.where(total > 0, total, 1.0)


def render_mix(stems: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Sum of the stems times per-chunk gains: ``sum_i g_i[t] * x_i[t]``.

    Args:
        stems: Raw tracks [shape=(C, T, chunk_size)].
        gains: Per-chunk gains [shape=(C, T)].

    Returns:
        float64 mix [shape=(T * chunk_size,)].
    """
    mix = np.einsum("ctn,ct->tn", np.asarray(stems, dtype=np.float64), gains)
    return mix.reshape(-1)


def least_squares_gain(estimate: np.ndarray, reference: np.ndarray) -> float:
    """The one overall gain ``s >= 0`` that minimizes ``||s * estimate - reference||^2``.

    A simplex sets only the balance; audio metrics use this single make-up gain per song so that
    they measure the balance and its automation, not the overall level.
    """
    denom = float(np.dot(estimate, estimate))
    return max(float(np.dot(estimate, reference)) / denom, 0.0) if denom > 0 else 1.0


def gap_closed(*, d_agent: float, d_equal: float, d_oracle: float) -> float:
    """Share of the gap from the equal-gain baseline to the oracle that the agent closes.

    Returns:
        ``(d_equal - d_agent) / (d_equal - d_oracle)``: 0 at equal gains, 1 at the oracle;
        nan when the oracle is no better than equal gains.
    """
    gap = d_equal - d_oracle
    return float((d_equal - d_agent) / gap) if gap > 0 else float("nan")
