"""Reading and writing audio files: soundfile for I/O, soxr for resampling.

Every failure names the file: a missing file, one soundfile cannot open or decode, a WAV or
AIFF cut short of the length its header declares, and samples that are NaN or infinite all
raise :class:`~mixing_env.errors.AudioFileError`.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from mixing_env.constants import SAMPLE_RATE
from mixing_env.errors import AudioFileError

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioInfo",
    "DataWarning",
    "audio_info",
    "read_audio",
    "resampled_length",
    "write_audio",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff")
"""File name endings the loaders treat as audio (compared case-insensitively)."""


class DataWarning(UserWarning):
    """Something in a dataset was fixed up on the fly (padded, trimmed, resampled, silent)."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples.

    Attributes:
        path: The file.
        sample_rate: Sample rate in Hz.
        frames: Samples per channel.
        channels: Channel count.
        subtype: soundfile's subtype, e.g. ``"PCM_24"`` or ``"FLOAT"``.
    """

    path: Path
    sample_rate: int
    frames: int
    channels: int
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")


def _declared_frames(path: Path) -> int | None:
    """Frames a WAV ``data`` or AIFF ``COMM`` header declares; None for other or open-ended files.

    libsndfile counts the frames the file really holds, so a file cut mid-data reads as a
    shorter, valid one; comparing with this number tells the two apart.
    """
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return None
        riff, aiff = head[:4] == b"RIFF" and head[8:] == b"WAVE", head[:4] == b"FORM"
        if not (riff or (aiff and head[8:] in (b"AIFF", b"AIFC"))):
            return None
        endian, block_align = ("<" if riff else ">"), 0
        while len(chunk := f.read(8)) == 8:
            cid, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if riff and cid == b"fmt " and size >= 14:
                block_align = struct.unpack("<H", f.read(14)[12:14])[0]
                size -= 14
            elif riff and cid == b"data":
                # 0 and 0xFFFFFFFF mark a stream written without a final length.
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            elif aiff and cid == b"COMM" and size >= 6:
                return struct.unpack(">hI", f.read(6))[1]
            f.seek(size + (size & 1), os.SEEK_CUR)
    return None


def _check_complete(path: Path, frames: int) -> None:
    declared = _declared_frames(path)
    if declared is not None and declared > frames:
        raise AudioFileError(
            f"audio file {path} is truncated: its header declares {declared} frames, "
            f"the file holds {frames}"
        )


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read an audio file's header (no samples are decoded).

    Args:
        path: A WAV, FLAC or AIFF file.

    Returns:
        The header as an :class:`AudioInfo`.

    Raises:
        AudioFileError: The file is missing, soundfile cannot parse it, or a WAV/AIFF holds
            fewer frames than its header declares (a truncated copy or download).
    """
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioFileError(f"cannot read audio file {path}: {e}") from e
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise AudioFileError(
            f"audio file {path} is empty or has a broken header: frames={info.frames}, "
            f"sample_rate={info.samplerate}, channels={info.channels}"
        )
    _check_complete(path, int(info.frames))
    return AudioInfo(path, int(info.samplerate), int(info.frames), int(info.channels), info.subtype)


def resampled_length(frames: int, *, orig_sr: int, target_sr: int) -> int:
    """Samples that ``frames`` samples at ``orig_sr`` become at ``target_sr`` (as soxr rounds)."""
    if orig_sr == target_sr:
        return int(frames)
    return int(round(frames * target_sr / orig_sr))


def read_audio(
    path: str | os.PathLike, *, sample_rate: int | None = SAMPLE_RATE, mono: bool = True
) -> np.ndarray:
    """Load an audio file as float32, resampled and optionally downmixed.

    Args:
        path: A WAV, FLAC or AIFF file (16/24/32-bit integer or float, any channel count).
        sample_rate: Target rate in Hz; the file is resampled with soxr (high quality) when
            its own rate differs. None keeps the file's rate.
        mono: Average the channels into one.

    Returns:
        np.ndarray [shape=(channels, n)], float32; ``channels`` is 1 when ``mono``.

    Raises:
        AudioFileError: The file is missing, unreadable, corrupt or truncated, or holds
            NaN/inf.
    """
    path = Path(path)
    _check_exists(path)
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioFileError(f"cannot decode audio file {path}: {e}") from e
    if y.shape[0] == 0:
        raise AudioFileError(f"audio file {path} holds no samples")
    _check_complete(path, y.shape[0])
    # A float64 sum is finite exactly when every float32 sample is: one cheap pass.
    if not np.isfinite(np.add.reduce(y, axis=None, dtype=np.float64)):
        bad = ~np.isfinite(y)
        first = int(np.argmax(bad.any(axis=1)))
        raise AudioFileError(
            f"audio file {path} holds {int(bad.sum())} NaN or inf samples "
            f"(first at sample {first}); expected finite values"
        )
    if mono and y.shape[1] > 1:
        # Channel by channel: a reduction over a length-2 axis is many times slower.
        acc = y[:, 0].copy()
        for c in range(1, y.shape[1]):
            acc += y[:, c]
        acc *= np.float32(1.0 / y.shape[1])
        y = acc[:, None]
    if sample_rate is not None and sr != sample_rate:
        # soxr wants (n, channels) and keeps the dtype.
        y = soxr.resample(y, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(y.T, dtype=np.float32)


def write_audio(
    path: str | os.PathLike,
    y: np.ndarray,
    *,
    sample_rate: int,
    subtype: str | None = None,
) -> Path:
    """Write audio atomically: a temporary file in the same folder, then ``os.replace``.

    A reader never sees a half-written file, even if the process dies mid-write.

    Args:
        path: Destination; the format follows the ending (.wav, .flac, .aif/.aiff).
        y: np.ndarray [shape=(n,) or (channels, n)], float.
        sample_rate: Sample rate in Hz.
        subtype: soundfile subtype such as ``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``;
            None takes the format's default.

    Returns:
        The written path, readable by all (mode 0666 less the umask, as ``open`` makes).
    """
    path = Path(path)
    y = np.asarray(y)
    if y.ndim not in (1, 2):
        raise AudioFileError(
            f"cannot write {path}: expected y of shape (n,) or (channels, n), got {y.shape}"
        )
    data = y if y.ndim == 1 else y.T
    fmt = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioFileError(
            f"cannot write {path}: unknown audio ending, expected one of {AUDIO_EXTENSIONS}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0o022)  # mkstemp makes 0600; read the umask to give the usual mode
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        sf.write(tmp, data, int(sample_rate), subtype=subtype, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
