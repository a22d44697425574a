"""Fast per-chunk audio features: MFCC and log-mel of one 500-sample chunk.

``librosa.feature.mfcc`` costs about a millisecond per call, mostly in argument handling and
padding; the environment needs one MFCC per step. :class:`ChunkMFCC` computes exactly what
``librosa.feature.mfcc(y=chunk, sr=sr, **ChunkMFCC.librosa_kwargs)`` computes for one chunk
(one STFT frame: ``n_fft = hop_length = chunk_size``, ``center=False``) with a precomputed
Hann window, librosa's mel basis and scipy's orthonormal DCT-II matrix, and works on any
batch of chunks ``(..., chunk_size)`` at once.

``n_mels = 40`` is the largest common choice that leaves no empty mel filter for a 500-point
FFT at 44.1 kHz (88.2 Hz bins; librosa warns about empty filters from about 96 bands).
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import scipy.fft

from mixing_env.constants import CHUNK_SIZE, N_MFCC, SAMPLE_RATE
from mixing_env.errors import ConfigError

__all__ = [
    "N_MELS",
    "AMIN",
    "TOP_DB",
    "LEVEL_FEATURES",
    "LOG_MEL_FLOOR_DB",
    "STEM_LEVEL_FEATURES",
    "STEM_LOUDNESS_FLOOR",
    "ChunkLogMel",
    "ChunkMFCC",
    "loudness_feature",
    "stem_level_features",
    "stem_loudness",
    "stem_loudness_feature",
    "stem_spectrum_features",
    "track_level_features",
]

N_MELS = 40
"""Mel bands behind the MFCC (no empty filter at n_fft=500, sr=44100)."""

AMIN = 1e-10
"""Power floor of the dB conversion (librosa.power_to_db's default): -100 dB."""

TOP_DB = 80.0
"""Dynamic range kept per chunk by the MFCC's dB conversion (librosa's default)."""


class ChunkLogMel:
    """Mel power spectrum of single-frame chunks, and its absolute dB form.

    One chunk is one STFT frame: Hann window (periodic, as librosa's ``stft``), rFFT of
    ``chunk_size`` points, power, librosa's Slaney mel basis.

    Args:
        sample_rate: Sample rate in Hz.
        chunk_size: Samples per chunk (= FFT size).
        n_mels: Number of mel bands.

    Raises:
        ConfigError: if the sizes are not positive or the mel basis would have empty filters.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        chunk_size: int = CHUNK_SIZE,
        n_mels: int = N_MELS,
    ) -> None:
        for name, value in (("sample_rate", sample_rate), ("chunk_size", chunk_size),
                            ("n_mels", n_mels)):
            if int(value) != value or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {name}={value!r}")
        self.sample_rate = int(sample_rate)
        self.chunk_size = int(chunk_size)
        self.n_mels = int(n_mels)
        self.window = librosa.filters.get_window("hann", self.chunk_size, fftbins=True)
        self.mel_basis = librosa.filters.mel(
            sr=self.sample_rate, n_fft=self.chunk_size, n_mels=self.n_mels
        ).astype(np.float64)
        if np.any(self.mel_basis.max(axis=1) == 0):
            raise ConfigError(
                f"n_mels={n_mels} leaves empty mel filters for chunk_size={chunk_size} at "
                f"sample_rate={sample_rate}; use fewer bands"
            )
        # (n_freq, n_mels) so a batch of spectra (..., n_freq) maps with one matmul.
        self._mel_t = np.ascontiguousarray(self.mel_basis.T)
        # Each row twice, for a spectrum viewed as interleaved (re, im) floats: the power's
        # mel projection (re^2 + im^2) @ M becomes one square and one matmul.
        self._mel_t_interleaved = np.repeat(self._mel_t, 2, axis=0)

    def mel_power(self, chunks: np.ndarray) -> np.ndarray:
        """Mel power spectrum of each chunk.

        Args:
            chunks: Audio, float [shape=(..., chunk_size)].

        Returns:
            Mel power, float64 [shape=(..., n_mels)].
        """
        chunks = np.asarray(chunks)
        if chunks.shape[-1] != self.chunk_size:
            raise ConfigError(
                f"chunks must have last dimension chunk_size={self.chunk_size}, "
                f"got shape {chunks.shape}"
            )
        spectrum = np.fft.rfft(chunks * self.window, axis=-1)
        power = np.square(spectrum.view(spectrum.real.dtype))
        return power @ self._mel_t_interleaved

    def max_db(self, peak: float) -> float:
        """Upper bound of :meth:`log_mel` for audio whose samples satisfy ``|x| <= peak``."""
        amplitude = float(peak) * float(np.abs(self.window).sum())
        return float(10.0 * np.log10(max(AMIN, self.mel_basis.sum(axis=1).max() * amplitude**2)))

    def log_mel(self, chunks: np.ndarray) -> np.ndarray:
        """Absolute log-mel level of each chunk in dB (ref = 1, floor -100 dB, no top_db).

        Not normalized per chunk, so a quiet stem reads as quiet.

        Args:
            chunks: Audio, float [shape=(..., chunk_size)].

        Returns:
            dB, float32 [shape=(..., n_mels)], each value >= -100.
        """
        return (10.0 * np.log10(np.maximum(AMIN, self.mel_power(chunks)))).astype(np.float32)

    __call__ = log_mel


class ChunkMFCC:
    """MFCC of single-frame chunks, equal to ``librosa.feature.mfcc`` on each chunk.

    Args:
        sample_rate: Sample rate in Hz.
        chunk_size: Samples per chunk (= FFT size = hop).
        n_mfcc: Number of coefficients.
        n_mels: Mel bands before the DCT.

    Attributes:
        dct_db_t: The orthonormal DCT-II rows times 10, transposed [shape=(n_mels, n_mfcc)]:
            maps a chunk's mel power in bels (log10) to its MFCC.

    Example:
        >>> mfcc = ChunkMFCC(44100, 500, 13)
        >>> y = np.random.default_rng(0).standard_normal(500).astype(np.float32)
        >>> ref = librosa.feature.mfcc(y=y, sr=44100, **mfcc.librosa_kwargs)[:, 0]
        >>> bool(np.allclose(mfcc(y), ref, rtol=1e-4, atol=1e-3))
        True
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        chunk_size: int = CHUNK_SIZE,
        n_mfcc: int = N_MFCC,
        *,
        n_mels: int = N_MELS,
    ) -> None:
        if int(n_mfcc) != n_mfcc or not 0 < n_mfcc <= n_mels:
            raise ConfigError(f"n_mfcc must be an integer in [1, n_mels={n_mels}], got {n_mfcc!r}")
        self.mel = ChunkLogMel(sample_rate, chunk_size, n_mels)
        self.sample_rate = self.mel.sample_rate
        self.chunk_size = self.mel.chunk_size
        self.n_mels = self.mel.n_mels
        self.n_mfcc = int(n_mfcc)
        # Rows of the orthonormal DCT-II (librosa: scipy.fft.dct(type=2, norm="ortho")).
        dct = scipy.fft.dct(np.eye(self.n_mels), type=2, norm="ortho", axis=0)[: self.n_mfcc]
        self._dct_t = np.ascontiguousarray(dct.T)  # (n_mels, n_mfcc)
        self.dct_db_t = 10.0 * self._dct_t

    @property
    def librosa_kwargs(self) -> dict:
        """Keyword arguments that make ``librosa.feature.mfcc(y=chunk, sr=...)`` agree."""
        return {
            "n_mfcc": self.n_mfcc,
            "n_fft": self.chunk_size,
            "hop_length": self.chunk_size,
            "center": False,
            "n_mels": self.n_mels,
            "window": "hann",
            "power": 2.0,
            "dct_type": 2,
            "norm": "ortho",
            "lifter": 0,
        }

    def mel_power(self, chunks: np.ndarray) -> np.ndarray:
        """Mel power of each chunk, float64 [shape=(..., n_mels)]; see :class:`ChunkLogMel`."""
        return self.mel.mel_power(chunks)

    def from_mel_power(self, mel_power: np.ndarray) -> np.ndarray:
        """MFCC from mel power, with librosa's per-frame dB conversion.

        ``power_to_db(ref=1, amin=1e-10, top_db=80)`` as ``librosa.feature.mfcc`` applies it
        to one frame: the 80 dB floor is relative to that chunk's loudest band.

        Args:
            mel_power: Mel power [shape=(..., n_mels)].

        Returns:
            MFCC, float64 [shape=(..., n_mfcc)].
        """
        # In bels (log10): the factor 10 to dB sits in the DCT matrix.
        bels = np.maximum(mel_power, AMIN)
        np.log10(bels, out=bels)
        floor = np.maximum.reduce(bels, axis=-1, keepdims=True)  # ndarray.max's wrapper costs
        floor -= TOP_DB / 10.0
        np.maximum(bels, floor, out=bels)
        return bels @ self.dct_db_t

    def max_abs(self, peak: float) -> np.ndarray:
        """Bound on ``|MFCC|`` per coefficient for audio with ``|x| <= peak``.

        Returns:
            float64 [shape=(n_mfcc,)].
        """
        level = max(-10.0 * np.log10(AMIN), abs(self.mel.max_db(peak)))
        return np.abs(self._dct_t).sum(axis=0) * level

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        """MFCC of each chunk.

        Args:
            chunks: Audio, float [shape=(..., chunk_size)].

        Returns:
            MFCC, float32 [shape=(..., n_mfcc)].
        """
        return self.from_mel_power(self.mel_power(chunks)).astype(np.float32)


LEVEL_FEATURES = ("chunk_db", "peak_hold_db", "recent_peak_db", "active_mean_db")
"""Names of the per-track level features of :func:`track_level_features`, in order."""

_ACTIVE_DB = -60.0  # a chunk below this RMS level (dBFS) counts as the track not playing


def track_level_features(
    stems: np.ndarray,
    *,
    sample_rate: int,
    hold_decay_db_per_s: float = 0.0,
    recent_decay_db_per_s: float = 20.0,
) -> np.ndarray:
    """Causal per-track level statistics, in absolute dB, for every chunk.

    A mixing decision depends on how loud a stem was recorded, which one 11 ms chunk shows
    poorly (a kick between two hits is silent). These features summarise each track's level
    from the song's start up to and including chunk t, so a policy sees it at every step:

    - ``chunk_db``: RMS level of chunk t, ``10 log10(mean(x^2))``.
    - ``peak_hold_db``: the highest chunk peak so far, ``20 log10(max |x|)``, decaying by
      ``hold_decay_db_per_s`` (a peak meter's hold; 0, the default, keeps the song's peak so
      far: an unprocessed stem's peak is how hot it was recorded).
    - ``recent_peak_db``: the same hold decaying by ``recent_decay_db_per_s``: whether the
      track is playing now (a kick between two hits included), which tells the song's section.
    - ``active_mean_db``: mean energy over the chunks so far in which the track played
      (RMS above -60 dBFS), in dB; -100 until it first plays.

    Args:
        stems: Audio, float [shape=(C, T, chunk_size)] (a memory map is fine).
        sample_rate: Sample rate in Hz (sets the hold's decay per chunk).
        hold_decay_db_per_s: Decay of the peak hold in dB per second (>= 0).
        recent_decay_db_per_s: Decay of the recent peak in dB per second (>= 0).

    Returns:
        float32 [shape=(C, T, 4)] in dB, floored at -100 dB, in :data:`LEVEL_FEATURES` order.
    """
    stems = np.asarray(stems)
    if stems.ndim != 3:
        raise ConfigError(f"stems must be (C, T, chunk_size), got shape {stems.shape}")
    for name, value in (("hold_decay_db_per_s", hold_decay_db_per_s),
                        ("recent_decay_db_per_s", recent_decay_db_per_s)):
        if not value >= 0:
            raise ConfigError(f"{name} must be >= 0, got {value!r}")
    floor = 10.0 * np.log10(AMIN)
    energy = np.mean(np.square(stems, dtype=np.float64), axis=-1)  # (C, T)
    chunk_db = np.maximum(10.0 * np.log10(energy + AMIN), floor)
    peak_db = np.maximum(20.0 * np.log10(np.abs(stems).max(axis=-1) + 1e-10), floor)
    chunk_s = stems.shape[-1] / sample_rate * np.arange(stems.shape[1])

    def hold(decay_db_per_s: float) -> np.ndarray:
        # Decaying running max without a loop: max_s<=t (p_s - d (t - s)) = cummax(p_s + d s) - d t.
        decay = decay_db_per_s * chunk_s
        return np.maximum(np.maximum.accumulate(peak_db + decay, axis=1) - decay, floor)

    active = chunk_db > _ACTIVE_DB
    n_active = np.cumsum(active, axis=1)
    mean_energy = np.cumsum(energy * active, axis=1) / np.maximum(n_active, 1)
    mean_db = np.where(n_active > 0, 10.0 * np.log10(mean_energy + AMIN), floor)
    features = [chunk_db, hold(hold_decay_db_per_s), hold(recent_decay_db_per_s),
                np.maximum(mean_db, floor)]
    return np.stack(features, axis=-1).astype(np.float32)


STEM_LEVEL_FEATURES = ("stem_peak_db", "stem_active_mean_db")
"""Names of the whole-stem level statistics of :func:`stem_level_features`, in order."""


def stem_level_features(levels: np.ndarray) -> np.ndarray:
    """Each stem's peak and mean level while playing over the whole song.

    An engineer mixing a finished multitrack sees every stem whole before setting a fader (and
    the loudness baseline measures whole stems too); the causal statistics of
    :func:`track_level_features` only know a stem's recording level once its loudest note has
    played. The whole-song values are the causal ones at the song's last chunk (trailing
    silence changes neither), so they come from the same computation.

    Args:
        levels: :func:`track_level_features` of the whole song [shape=(C, T, 4)].

    Returns:
        float32 [shape=(C, 2)] in dB, in :data:`STEM_LEVEL_FEATURES` order.
    """
    last = levels[:, -1]
    return np.stack([last[:, LEVEL_FEATURES.index("peak_hold_db")],
                     last[:, LEVEL_FEATURES.index("active_mean_db")]], axis=-1)


def stem_loudness(song) -> np.ndarray:
    """Each stem's loudness while it plays, LUFS (ITU-R BS.1770, gated over the song).

    The engineer's measure (:func:`mixing_env.engineer.analysis.gated_loudness`: K-weighting,
    400 ms blocks of whole chunks, the absolute -70 LUFS and relative -10 LU gates, which leave
    out the passages where the stem rests), over the song's valid chunks; within a few tenths
    of an LU of pyloudnorm's. A generated song's engineer measured it already
    (``song.measures["analysis"]``). The loudness baseline, ``instrument_balance`` and the
    loudness feature all use it.

    Args:
        song: A :class:`~mixing_env.data.song.Song` (stems [shape=(C, T, chunk)]).

    Returns:
        LUFS per slot, float64 [shape=(C,)]; NaN for dummy slots and silent stems.
    """
    from mixing_env.engineer.analysis import gated_loudness, k_weighted_power

    n = song.n_valid_chunks or song.n_chunks
    real = np.flatnonzero(np.asarray(song.track_mask) > 0)
    out = np.full(song.n_slots, np.nan)
    if real.size == 0:
        return out
    analysis = song.measures.get("analysis")
    if analysis is not None and analysis.n_chunks == n and len(analysis.loudness) == real.size:
        lufs = np.asarray(analysis.loudness, dtype=np.float64)
    else:
        audio = np.asarray(song.stems[real, :n], dtype=np.float64).reshape(real.size, -1)
        power = k_weighted_power(audio, sample_rate=song.sample_rate,
                                 chunk_size=song.chunk_size)
        lufs = gated_loudness(power, chunk_s=song.chunk_size / song.sample_rate)
    out[real] = np.where(np.isfinite(lufs), lufs, np.nan)
    return out


LOG_MEL_FLOOR_DB = 10.0 * math.log10(AMIN)
"""The floor of every dB feature (:data:`AMIN` in dB, -100)."""


def stem_spectrum_features(log_mel_db: np.ndarray, *,
                           floor_db: float = LOG_MEL_FLOOR_DB) -> np.ndarray:
    """Each stem's long-term spectrum: its log-mel power averaged over the whole song.

    What an engineer reads off a stem before setting its fader (a bright hi-hat, a bass that
    fills the low end, a pad spread under the others): with every stem's spectrum a policy can
    compare them across tracks, e.g. see which stems the rest of the band covers. Energy mean
    of the per-chunk log-mel over the chunks where the stem plays, in dB (the chunks' scale).

    Args:
        log_mel_db: Per-chunk log-mel dB of each slot [shape=(C, T, n_mels)] (the env's
            ``"logmel"`` observation, floor ``floor_db``).
        floor_db: The log-mel floor: bands and stems that never rise above it stay there.

    Returns:
        float32 [shape=(C, n_mels)] in dB; a silent stem or dummy slot reads ``floor_db``.
    """
    db = np.asarray(log_mel_db, dtype=np.float64)
    power = 10.0 ** (db / 10.0)
    playing = (db > floor_db).any(axis=-1)  # (C, T): the stem sounds in this chunk
    n_playing = playing.sum(axis=1)
    mean = (power * playing[..., None]).sum(axis=1) / np.maximum(n_playing, 1)[:, None]
    out = np.where(n_playing[:, None] > 0, 10.0 * np.log10(np.maximum(mean, AMIN)), floor_db)
    return np.maximum(out, floor_db).astype(np.float32)


STEM_LOUDNESS_FLOOR = -100.0
"""Value of :func:`stem_loudness_feature` for dummy slots and silent stems (their loudness is
NaN): the dB features' floor, which a level prior reads as a stem that does not play."""


def stem_loudness_feature(song) -> np.ndarray:
    """:func:`stem_loudness` as an observation feature: finite, floored, float32.

    The same measure the loudness and ``instrument_balance`` baselines read, so a policy
    given it can reproduce them exactly (the module's level prior over it).

    Args:
        song: A :class:`~mixing_env.data.song.Song`.

    Returns:
        LUFS per slot, float32 [shape=(C,)], at least :data:`STEM_LOUDNESS_FLOOR` (NaN of a
        dummy slot or silent stem -> the floor).
    """
    return loudness_feature(stem_loudness(song))


def loudness_feature(lufs: np.ndarray) -> np.ndarray:
    """Loudness as the observation shows it: finite, floored, float32.

    Args:
        lufs: LUFS per stem [shape=(C,)]; NaN or -inf for a dummy slot or a silent stem.

    Returns:
        float32 [shape=(C,)], at least :data:`STEM_LOUDNESS_FLOOR`.
    """
    lufs = np.nan_to_num(np.asarray(lufs, dtype=np.float64), nan=STEM_LOUDNESS_FLOOR)
    return np.maximum(lufs, STEM_LOUDNESS_FLOOR).astype(np.float32)
