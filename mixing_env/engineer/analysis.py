"""What the engineer hears of each stem, on the environment's chunk grid.

An engineer balances what is heard, not peaks: the loudness of each stem while it plays, its
tone (where its energy sits in frequency), when it plays, and how it sits against the others.
:func:`analyse_stems` measures these once per song from the raw stems, chunk by chunk, so the
rules (:mod:`mixing_env.engineer.rules`) are cheap arithmetic on small arrays and their gains
hold per chunk, as the environment's actions do.

Loudness follows ITU-R BS.1770-4: K-weighting (pyloudnorm's filters), 400 ms blocks with 75 %
overlap, an absolute gate at -70 LUFS and a relative gate 10 LU below. Blocks are made of whole
chunks (35 chunks of 500 samples at 44.1 kHz = 397 ms), so a gain that changes per chunk
changes the measure exactly; on a whole stem it agrees with pyloudnorm within a few tenths of
an LU (tested).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mixing_env.errors import ConfigError

__all__ = [
    "ACTIVE_BELOW_PEAK_DB",
    "N_MELS",
    "SPECTRUM_HOP_CHUNKS",
    "KWeightedPowerStream",
    "StemAnalysis",
    "StemAnalysisStream",
    "analyse_stems",
    "chunk_activity",
    "db",
    "frame_power",
    "gated_loudness",
    "k_weighted_power",
    "k_weighting",
    "moving_mean",
]

N_MELS = 40
"""Mel bands of the engineer's spectra (2048-point frames centred on each chunk)."""
ACTIVE_BELOW_PEAK_DB = 30.0
"""A chunk within this many dB of the stem's loudest chunk counts as playing."""
_N_FFT = 2048
SPECTRUM_HOP_CHUNKS = 4
"""A long-term spectrum needs no frame per chunk: one 2048-point frame every 4 chunks."""
_BLOCK_S, _BLOCK_OVERLAP = 0.4, 0.75
_ABSOLUTE_GATE, _RELATIVE_GATE = -70.0, -10.0
_FLOOR = 1e-20


def db(power: np.ndarray | float) -> np.ndarray:
    """Power to dB, floored at -200 dB."""
    return 10.0 * np.log10(np.maximum(power, _FLOOR))


def moving_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along the last axis, edges held at the edge value.

    Args:
        x: Any array [shape=(..., T)].
        width: Window in samples of the last axis (>= 1).
    """
    width = max(int(width), 1)
    pad = (width // 2, width - 1 - width // 2)
    xp = np.pad(np.asarray(x, dtype=np.float64), [(0, 0)] * (np.ndim(x) - 1) + [pad],
                mode="edge")
    c = np.cumsum(xp, axis=-1)
    c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)
    return (c[..., width:] - c[..., :-width]) / width


def gated_loudness(chunk_power: np.ndarray, *, chunk_s: float) -> np.ndarray:
    """BS.1770 gated loudness (LUFS) from K-weighted mean squares per chunk.

    Args:
        chunk_power: K-weighted mean square of each chunk [shape=(..., T)].
        chunk_s: Seconds per chunk.

    Returns:
        LUFS [shape=(...)]; -inf where no block passes the absolute gate.
    """
    p = np.asarray(chunk_power, dtype=np.float64)
    T = p.shape[-1]
    block = min(max(int(round(_BLOCK_S / chunk_s)), 1), T)
    hop = max(int(round(block * (1 - _BLOCK_OVERLAP))), 1)
    c = np.concatenate([np.zeros(p.shape[:-1] + (1,)), np.cumsum(p, axis=-1)], axis=-1)
    starts = np.arange(0, T - block + 1, hop)
    z = (c[..., starts + block] - c[..., starts]) / block
    level = -0.691 + db(z)
    gate = level > _ABSOLUTE_GATE
    relative = -0.691 + db(_masked_mean(z, gate)) + _RELATIVE_GATE
    gate &= level > relative[..., None]
    out = -0.691 + db(_masked_mean(z, gate))
    return np.where(gate.any(axis=-1), out, -np.inf)


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(axis=-1)
    return np.where(n > 0, (x * mask).sum(axis=-1) / np.maximum(n, 1), 0.0)


@lru_cache(maxsize=4)
def k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770 K-weighting as second-order sections (pyloudnorm's two biquads).

    The coefficients ``pyloudnorm.Meter`` filters with (its passband gains are 1), for
    ``scipy.signal.sosfilt`` (whose compiled loop refuses a read-only array). Shared by every
    K-weighting in the project: do not modify.

    Args:
        sample_rate: Hz.

    Returns:
        float64 [shape=(2, 6)]: the high shelf, then the high pass.
    """
    import pyloudnorm

    shelf = pyloudnorm.IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, sample_rate, "high_shelf")
    highpass = pyloudnorm.IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")
    return np.array([np.concatenate([f.b, f.a]) for f in (shelf, highpass)])


def frame_power(frames: np.ndarray) -> np.ndarray:
    """Power spectrum of the spectrum's frames, as :func:`analyse_stems` computes it.

    The float64 product with the periodic Hann window, numpy's rFFT, stored as complex64:
    what ``librosa.stft`` does, bit for bit (tested), without importing it (50 MB).

    Args:
        frames: 2048-sample frames, float32 [shape=(m, 2048)].

    Returns:
        float32 [shape=(m, 1025)].
    """
    return np.abs(np.fft.rfft(frames * _hann(), axis=-1).astype(np.complex64)) ** 2


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    """The window of the spectrum's frames, as librosa.stft makes it."""
    from scipy.signal import get_window

    return get_window("hann", _N_FFT, fftbins=True)


@lru_cache(maxsize=4)
def _mel_basis(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    basis = librosa.filters.mel(sr=sample_rate, n_fft=_N_FFT, n_mels=N_MELS)
    centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmax=sample_rate / 2)[1:-1]
    return basis, centres


@dataclass(frozen=True)
class StemAnalysis:
    """One song's stems as the engineer hears them (``n`` stems, ``T`` chunks, ``B`` bands).

    Attributes:
        sample_rate: Hz.
        chunk_size: Samples per chunk.
        power: K-weighted mean square per chunk [shape=(n, T)].
        freqs: Centre frequency of each mel band, Hz [shape=(B,)].
        active: Whether each stem plays in each chunk (within
            :data:`ACTIVE_BELOW_PEAK_DB` of its loudest chunk) [shape=(n, T)].
        loudness: Gated loudness of each stem, LUFS [shape=(n,)]; -inf for a silent stem.
        spectrum: Long-term spectrum: the mean mel power of 2048-point frames, one every
            :data:`SPECTRUM_HOP_CHUNKS` chunks, over the frames where the stem plays
            [shape=(n, B)].
        centroid_oct: Spectral centroid of ``spectrum`` in octaves re 1 kHz [shape=(n,)].
    """

    sample_rate: int
    chunk_size: int
    power: np.ndarray
    freqs: np.ndarray
    active: np.ndarray
    loudness: np.ndarray
    spectrum: np.ndarray
    centroid_oct: np.ndarray

    @property
    def chunk_s(self) -> float:
        """Seconds per chunk."""
        return self.chunk_size / self.sample_rate

    @property
    def n_chunks(self) -> int:
        """T."""
        return int(self.power.shape[1])

    def chunks(self, seconds: float) -> int:
        """How many chunks make ``seconds`` (at least 1)."""
        return max(int(round(seconds / self.chunk_s)), 1)

    def take(self, stems: np.ndarray | list[int]) -> StemAnalysis:
        """The analysis of ``stems`` only, in that order."""
        idx = np.asarray(stems, dtype=np.int64)
        return dataclasses.replace(self, power=self.power[idx], active=self.active[idx],
                                   loudness=self.loudness[idx], spectrum=self.spectrum[idx],
                                   centroid_oct=self.centroid_oct[idx])

    def loudness_of(self, gains_db: np.ndarray, stems: np.ndarray | list[int]) -> float:
        """Gated loudness of the sum of ``stems`` at ``gains_db`` (their powers add)."""
        idx = np.asarray(stems, dtype=np.int64)
        if idx.size == 0:
            return -math.inf
        g = np.asarray(gains_db, dtype=np.float64)[idx]
        g = g if g.ndim == 2 else g[:, None]
        total = (10.0 ** (g / 10.0) * self.power[idx]).sum(axis=0)
        return float(gated_loudness(total, chunk_s=self.chunk_s))


def k_weighted_power(stems: np.ndarray, *, sample_rate: int, chunk_size: int) -> np.ndarray:
    """K-weighted mean square of every chunk of every stem.

    Args:
        stems: Mono stems [shape=(n, n_samples)]; the last chunk is zero-padded.
        sample_rate: Hz.
        chunk_size: Samples per chunk.

    Returns:
        float64 [shape=(n, ceil(n_samples / chunk_size))].
    """
    x = np.asarray(stems, dtype=np.float64)
    n, n_samples = x.shape
    T = math.ceil(n_samples / chunk_size)
    # Whole chunks: a stem read back from a cache (zero-padded to whole chunks) measures the
    # same as the stem it was made from.
    x = np.pad(x, ((0, 0), (0, T * chunk_size - n_samples)))
    return KWeightedPowerStream(n, sample_rate=sample_rate, chunk_size=chunk_size)(x)


class KWeightedPowerStream:
    """:func:`k_weighted_power` of stems fed a block of whole chunks at a time.

    The filters' state runs on from block to block, so the powers equal those of the whole
    stems bit for bit (tested).

    Args:
        n_stems: Stems of every block (n).
        sample_rate: Hz.
        chunk_size: Samples per chunk.
    """

    def __init__(self, n_stems: int, *, sample_rate: int, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.sos = k_weighting(sample_rate)
        self._state = np.zeros((self.sos.shape[0], n_stems, 2))

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """K-weighted mean square of each chunk of the next block.

        Args:
            block: The stems' next samples, float [shape=(n, W * chunk_size)] or
                [shape=(n, W, chunk_size)].

        Returns:
            float64 [shape=(n, W)].

        Raises:
            ConfigError: The block is not made of whole chunks of ``n`` stems.
        """
        from scipy.signal import sosfilt

        x = np.asarray(block)
        n = self._state.shape[1]
        if x.shape[0] != n or x[0].size % self.chunk_size:
            raise ConfigError(f"a block must hold whole chunks of {self.chunk_size} samples of "
                              f"{n} stems, got shape {x.shape}")
        # sosfilt filters in float64 (float32 input is converted exactly) into a new array.
        y, self._state = sosfilt(self.sos, x.reshape(n, -1), axis=-1, zi=self._state)
        return np.square(y, out=y).reshape(n, -1, self.chunk_size).mean(axis=-1)


def chunk_activity(power: np.ndarray) -> np.ndarray:
    """Whether each stem plays in each chunk (within :data:`ACTIVE_BELOW_PEAK_DB` of its peak).

    Args:
        power: K-weighted mean square per chunk [shape=(n, T)].

    Returns:
        bool [shape=(n, T)]; all False for a silent stem.
    """
    peak = power.max(axis=1, keepdims=True)
    return (power > peak * 10 ** (-ACTIVE_BELOW_PEAK_DB / 10)) & (peak > 0)


def _centroid_octaves(spectrum: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    octaves = np.log2(freqs / 1000.0)
    total = spectrum.sum(axis=1)
    return np.where(total > 0, (spectrum * octaves).sum(axis=1) / np.maximum(total, _FLOOR),
                    0.0)


def analyse_stems(stems: np.ndarray, *, sample_rate: int, chunk_size: int) -> StemAnalysis:
    """Measure each stem on the chunk grid.

    Args:
        stems: Mono stems, float [shape=(n, n_samples)] at ``sample_rate``; the last chunk
            is zero-padded.
        sample_rate: Hz.
        chunk_size: Samples per chunk (the environment's step).

    Returns:
        The :class:`StemAnalysis`.

    Raises:
        ConfigError: ``stems`` is not 2-D, empty, or holds NaN or infinity.
    """
    import librosa

    x = np.asarray(stems, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ConfigError(f"stems must be (n_stems, n_samples) with both > 0, got {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError("stems hold NaN or infinite samples")
    power = k_weighted_power(x, sample_rate=sample_rate, chunk_size=chunk_size)
    x = np.pad(x, ((0, 0), (0, power.shape[1] * chunk_size - x.shape[1])))
    active = chunk_activity(power)
    loudness = gated_loudness(power, chunk_s=chunk_size / sample_rate)
    # Frame k is centred on chunk k * SPECTRUM_HOP_CHUNKS; keep the frames where it plays.
    frames = np.abs(librosa.stft(x.astype(np.float32), n_fft=_N_FFT,
                                 hop_length=chunk_size * SPECTRUM_HOP_CHUNKS,
                                 center=True)) ** 2  # (n, F, K)
    playing = active[:, ::SPECTRUM_HOP_CHUNKS][:, : frames.shape[-1]]
    frames = frames[..., : playing.shape[1]]
    basis, freqs = _mel_basis(sample_rate)
    summed = np.einsum("nfk,nk->nf", frames, playing.astype(np.float32))
    spectrum = (summed @ basis.T).astype(np.float64) / np.maximum(playing.sum(axis=1),
                                                                    1)[:, None]
    return StemAnalysis(sample_rate=sample_rate, chunk_size=chunk_size, power=power,
                        freqs=freqs, active=active, loudness=loudness, spectrum=spectrum,
                        centroid_oct=_centroid_octaves(spectrum, freqs))


class StemAnalysisStream:
    """:func:`analyse_stems` of stems fed a window of chunks at a time, in bounded memory.

    Feed every chunk of the song with :meth:`add`, then read :meth:`result`. What a window
    gives is kept small: the K-weighted power of each chunk (8 bytes per stem and chunk) and
    the mel power of each spectrum frame that may still count. Which frames count (those where
    the stem plays) is known only at the end, from the stem's loudest chunk over the whole song;
    a frame whose chunk is more than :data:`ACTIVE_BELOW_PEAK_DB` under the loudest chunk so far
    never will, and is dropped. At most 168 bytes per stem and frame stay (42 MB for 10 minutes
    of 19 stems that all grow louder to their end; less as quiet frames drop).

    The power, activity and loudness equal :func:`analyse_stems`'s bit for bit; the spectrum
    and centroid to float32 rounding (each frame is projected on the mel bands and then summed,
    where :func:`analyse_stems` sums the frames in float32 and then projects: tested).

    Args:
        n_stems: Stems of every window (n).
        n_chunks: The song's chunks (T).
        sample_rate: Hz.
        chunk_size: Samples per chunk.
        spectrum: Measure the long-term spectrum; without it :meth:`result`'s spectrum and
            centroid are zeros (the power and loudness alone cost much less).
    """

    def __init__(self, n_stems: int, *, n_chunks: int, sample_rate: int, chunk_size: int,
                 spectrum: bool = True) -> None:
        self.sample_rate, self.chunk_size, self.n_chunks = sample_rate, chunk_size, n_chunks
        self._power_stream = KWeightedPowerStream(n_stems, sample_rate=sample_rate,
                                                  chunk_size=chunk_size)
        self.power = np.zeros((n_stems, n_chunks))
        """K-weighted mean square of each chunk so far [shape=(n, T)]."""
        self._t = 0
        self._spectrum = spectrum
        self._hop = chunk_size * SPECTRUM_HOP_CHUNKS
        self._n_frames = math.ceil(n_chunks / SPECTRUM_HOP_CHUNKS)  # frames analyse_stems uses
        self._next_frame = 0
        # Samples from the next frame's start on; frame 0 starts half a frame before the song
        # (librosa's centred frames, zero-padded).
        self._tail = np.zeros((n_stems, _N_FFT // 2), np.float32)
        self._kept: list[tuple[int, np.ndarray, np.ndarray]] = []  # (stem, frames, mel)
        self._kept_rows = 0
        self._rows_after_pruning = 0
        self._result: StemAnalysis | None = None
        self._peak = np.zeros(n_stems)  # the loudest chunk so far

    @property
    def kept_frames(self) -> int:
        """Spectrum frames held now (168 bytes each), dropped ones not yet let go included."""
        return self._kept_rows

    def add(self, window: np.ndarray) -> None:
        """The next chunks of every stem, float32 [shape=(n, W, chunk_size)]."""
        n, w = window.shape[:2]
        if self._t + w > self.n_chunks:
            raise ConfigError(f"the song has {self.n_chunks} chunks; {self._t + w} were fed")
        power = self._power_stream(window)
        self.power[:, self._t : self._t + w] = power
        self._t += w
        np.maximum(self._peak, power.max(axis=1, initial=0.0), out=self._peak)
        if self._spectrum:
            self._frames(np.concatenate([self._tail, window.reshape(n, -1)], axis=1))

    def result(self) -> StemAnalysis:
        """The analysis of the song fed (every chunk must have been); the frames are let go.

        Raises:
            ConfigError: Fewer chunks were fed than the song has.
        """
        if self._t != self.n_chunks:
            raise ConfigError(f"the song has {self.n_chunks} chunks; {self._t} were fed")
        if self._result is None:
            self._result = self._analysis()
            self._kept, self._kept_rows = [], 0
        return self._result

    def _analysis(self) -> StemAnalysis:
        power, n = self.power, self.power.shape[0]
        active = chunk_activity(power)
        basis, freqs = _mel_basis(self.sample_rate)
        spectrum = np.zeros((n, basis.shape[0]))
        if self._spectrum:
            if self._next_frame < self._n_frames:  # the last frames reach past the song's end
                self._frames(np.pad(self._tail, ((0, 0), (0, _N_FFT))), last=True)
            for s, frame, mel in self._kept:  # block by block: no copy of them all
                counts = active[s, frame * SPECTRUM_HOP_CHUNKS]
                spectrum[s] += mel[counts].sum(axis=0, dtype=np.float64)
            playing = active[:, ::SPECTRUM_HOP_CHUNKS].sum(axis=1)
            spectrum /= np.maximum(playing, 1)[:, None]
        return StemAnalysis(sample_rate=self.sample_rate, chunk_size=self.chunk_size,
                            power=power, freqs=freqs, active=active,
                            loudness=gated_loudness(power, chunk_s=self.chunk_size
                                                    / self.sample_rate),
                            spectrum=spectrum, centroid_oct=_centroid_octaves(spectrum, freqs))

    def _frames(self, samples: np.ndarray, *, last: bool = False) -> None:
        """Measures the frames ``samples`` (from the next frame's start) holds whole."""
        whole = max((samples.shape[1] - _N_FFT) // self._hop + 1, 0)
        m = min(whole, self._n_frames - self._next_frame)
        if m > 0:
            index = self._next_frame + np.arange(m)
            # Only frames that can still count: over the floor of the loudest chunk so far.
            power = self.power[:, index * SPECTRUM_HOP_CHUNKS]
            keep = power > self._floor()[:, None]
            for s in np.flatnonzero(keep.any(axis=1)):
                frames = np.lib.stride_tricks.sliding_window_view(samples[s], _N_FFT)
                k = np.flatnonzero(keep[s])
                self._store(int(s), index[k], self._mel_power(frames[k * self._hop]))
            self._next_frame += m
        if not last:
            self._tail = np.ascontiguousarray(samples[:, m * self._hop :])

    def _floor(self) -> np.ndarray:
        # chunk_activity's floor were the loudest chunk so far the song's: the final one is as
        # high or higher, so a frame under this one never plays.
        return self._peak * 10 ** (-ACTIVE_BELOW_PEAK_DB / 10)

    def _mel_power(self, frames: np.ndarray) -> np.ndarray:
        """Mel power of frames [shape=(m, n_fft)] -> float32 [shape=(m, B)]."""
        return frame_power(frames) @ _mel_basis(self.sample_rate)[0].T

    def _store(self, stem: int, frame: np.ndarray, mel: np.ndarray) -> None:
        self._kept.append((stem, frame, mel))
        self._kept_rows += len(frame)
        if self._kept_rows > 2 * max(self._rows_after_pruning, 4096):
            # Let go of the frames louder chunks since have put under the floor, block by
            # block (amortised: only when the frames held have doubled).
            floor, kept = self._floor(), []
            for s, frame, mel in self._kept:
                keep = self.power[s, frame * SPECTRUM_HOP_CHUNKS] > floor[s]
                if keep.all():
                    kept.append((s, frame, mel))
                elif keep.any():
                    kept.append((s, frame[keep], mel[keep]))
            self._kept = kept
            self._kept_rows = self._rows_after_pruning = sum(len(f) for _, f, _ in kept)
