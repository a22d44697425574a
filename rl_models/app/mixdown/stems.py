"""A song's stem files: checked from their headers, then read block by block.

:func:`check_stems` reads only the headers: a stem of more than two channels is refused
(nothing is written), stems of another sample rate or length than the others are reported
with the file named. :class:`StemReader` reads one stem in blocks of any size, resampled
(soxr's streaming resampler) and optionally downmixed as
:func:`~mixing_env.data.audio_io.read_audio` does, padded with silence past its end, so a
song of any length is read in a window's worth of memory.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mixing_env.data.audio_io import audio_info, resampled_length
from mixing_env.errors import AudioFileError

__all__ = ["StemFile", "StemReader", "check_stems", "env_windows"]

MAX_CHANNELS = 2
_LENGTH_SLACK_S = 0.01  # stems this close in length count as equally long


@dataclass(frozen=True)
class StemFile:
    """One stem as its header describes it.

    Attributes:
        path: The file.
        sample_rate: Its rate, Hz.
        frames: Its samples per channel.
        channels: 1 or 2.
    """

    path: Path
    sample_rate: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        """Its length in seconds."""
        return self.frames / self.sample_rate

    def frames_at(self, sample_rate: int) -> int:
        """Its length once resampled to ``sample_rate``."""
        return resampled_length(self.frames, orig_sr=self.sample_rate, target_sr=sample_rate)


def check_stems(paths: Sequence[Path]) -> tuple[list[StemFile], int]:
    """Reads the stems' headers; refuses what cannot be mixed, reports what is odd.

    The mix's sample rate is the one most stems have (the first stem's on a tie); stems at
    another rate are resampled, and stems shorter or longer than most are padded with silence
    to the longest; each gets a warning naming the file.

    Returns:
        The stems, and the mix's sample rate.

    Raises:
        AudioFileError: A stem is unreadable, empty, truncated or has more than two
            channels (named).
    """
    stems = []
    for path in paths:
        info = audio_info(path)
        if info.channels > MAX_CHANNELS:
            raise AudioFileError(
                f"stem {path} has {info.channels} channels; mix takes mono and stereo stems: "
                f"split it into mono or stereo files first")
        stems.append(StemFile(Path(path), info.sample_rate, info.frames, info.channels))
    rates = Counter(s.sample_rate for s in stems)
    rate = max(rates, key=lambda r: (rates[r], -[s.sample_rate for s in stems].index(r)))
    for s in stems:
        if s.sample_rate != rate:
            warnings.warn(f"stem {s.path} is at {s.sample_rate} Hz, the other stems at "
                          f"{rate} Hz: it is resampled to {rate} Hz", stacklevel=2)
    lengths = Counter(round(s.frames_at(rate) / rate / _LENGTH_SLACK_S) for s in stems)
    usual = max(lengths, key=lengths.get) * _LENGTH_SLACK_S
    longest = max(s.frames_at(rate) for s in stems) / rate
    for s in stems:
        seconds = s.frames_at(rate) / rate
        if abs(seconds - usual) > _LENGTH_SLACK_S:
            what = "shorter" if seconds < usual else "longer"
            warnings.warn(f"stem {s.path} is {what} than the others ({seconds:.2f} s, most "
                          f"are {usual:.2f} s): the mix runs {longest:.2f} s, silence "
                          f"filling the shorter stems", stacklevel=2)
    return stems, rate


class StemReader:
    """Reads one stem in consecutive blocks, at a given rate, padded with silence at the end.

    Args:
        stem: The stem.
        sample_rate: Rate of the blocks returned, Hz.
        mono: Average the channels into one, as ``read_audio(mono=True)`` does.
        total_frames: Frames to return in all (the song's length); past the stem's end the
            blocks are silence.
    """

    def __init__(self, stem: StemFile, *, sample_rate: int, mono: bool,
                 total_frames: int) -> None:
        self.stem, self.sample_rate, self.mono = stem, sample_rate, mono
        self.channels = 1 if mono else stem.channels
        self._file = sf.SoundFile(str(stem.path))
        self._left = stem.frames_at(sample_rate)  # frames of the stem still to return
        self._total_left = total_frames
        self._resampler = None
        if stem.sample_rate != sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(stem.sample_rate, sample_rate, self.channels,
                                                  dtype="float32", quality="HQ")
        self._pending = np.zeros((0, self.channels), np.float32)
        self._read_samples = 0
        self._ended = False

    def close(self) -> None:
        """Closes the file."""
        self._file.close()

    def __enter__(self) -> StemReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, frames: int) -> np.ndarray:
        """The next ``frames`` frames, float32 [shape=(channels, frames)].

        Raises:
            AudioFileError: The file holds NaN or infinite samples, or cannot be decoded.
        """
        out = np.zeros((frames, self.channels), np.float32)
        wanted = min(frames, self._left, self._total_left)
        got = 0
        while got < wanted:
            if len(self._pending) == 0:
                self._pending = self._next_source_block(max(wanted - got, 4096))
                if len(self._pending) == 0:  # the resampler gave fewer than announced
                    break
            take = min(wanted - got, len(self._pending))
            out[got : got + take] = self._pending[:take]
            self._pending = self._pending[take:]
            got += take
        self._left -= wanted
        self._total_left -= min(frames, self._total_left)
        return np.ascontiguousarray(out.T)

    def _next_source_block(self, frames: int) -> np.ndarray:
        path = self.stem.path
        if self._ended:
            return np.zeros((0, self.channels), np.float32)
        try:
            y = self._file.read(frames, dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises LibsndfileError, RuntimeError...
            raise AudioFileError(f"cannot decode audio file {path}: {e}") from e
        if not np.isfinite(np.add.reduce(y, axis=None, dtype=np.float64)):
            first = self._read_samples + int(np.argmax(~np.isfinite(y).all(axis=1)))
            raise AudioFileError(f"audio file {path} holds NaN or inf samples (first at sample "
                                 f"{first}); expected finite values")
        self._read_samples += len(y)
        if self.mono and y.shape[1] > 1:
            # As read_audio: channel by channel in float32, then scaled, bit for bit.
            acc = y[:, 0].copy()
            for c in range(1, y.shape[1]):
                acc += y[:, c]
            acc *= np.float32(1.0 / y.shape[1])
            y = acc[:, None]
        self._ended = len(y) < frames
        if self._resampler is not None:
            y = self._resampler.resample_chunk(y, last=self._ended)
        return y


def env_windows(stems: Sequence[StemFile], *, sample_rate: int, chunk_size: int, n_chunks: int,
                window_chunks: int):
    """The song as the env sees it, a window at a time: mono, at its rate, chunked.

    Yields float32 arrays [shape=(A, W, chunk_size)], W = ``window_chunks`` (fewer at the
    end), ``n_chunks`` chunks in all; stems shorter than the song end in silence.
    """
    readers = [StemReader(s, sample_rate=sample_rate, mono=True,
                          total_frames=n_chunks * chunk_size) for s in stems]
    try:
        for start in range(0, n_chunks, window_chunks):
            w = min(window_chunks, n_chunks - start)
            yield np.stack([r.read(w * chunk_size)[0].reshape(w, chunk_size) for r in readers])
    finally:
        for reader in readers:
            reader.close()
