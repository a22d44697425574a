"""Mastering the rendered mix: one make-up gain and a true-peak limiter, to a loudness target.

The mix before mastering waits in a raw float32 file (:class:`PremixFile`), so every pass
reads two channels, not every stem. A pass applies the make-up gain, limits the true peak
(:class:`~rl_models.app.mixdown.limiter.TruePeakLimiter`), writes the WAV and measures what
it wrote (BS.1770 loudness, 4x true peak). Limiting takes loudness away, so the gain is
corrected by what the pass missed and the pass run again, until the loudness is within
:data:`LOUDNESS_TOLERANCE_LU` of the target (one or two passes for a typical song) or more
gain no longer buys loudness (a target the ceiling keeps out of reach:
:meth:`MasterResult.short_of` tells).
The true peak of the written file is measured, not assumed: a pass that ends above the
ceiling runs again with the limiter set lower.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mixing_env.errors import DeepMixingError
from rl_models.app.mixdown.limiter import LimiterReport, TruePeakLimiter
from rl_models.app.mixdown.loudness import LoudnessMeter, TruePeakMeter, db
from rl_models.app.mixdown.render import BLOCK_FRAMES

__all__ = ["LOUDNESS_TOLERANCE_LU", "MasterResult", "PremixFile", "master"]

LOUDNESS_TOLERANCE_LU = 0.2
"""How close to the target the loudness is brought (the promise is 0.5 LU)."""

_MAX_PASSES = 6
_CEILING_MARGIN_DB = 0.05  # the limiter aims this far under the asked true peak
_NO_GAIN_LEFT = 0.25  # a pass whose loudness rises by less than this share of its gain rise


class PremixFile:
    """Interleaved float32 frames in a plain file: the mix before mastering.

    Args:
        path: The file (created, or read when it exists).
        channels: Channels per frame.
    """

    def __init__(self, path: str | os.PathLike, channels: int) -> None:
        self.path, self.channels = Path(path), channels

    def writer(self) -> Callable[[np.ndarray], None]:
        """A function that appends a block [shape=(channels, n)]; the file starts empty."""
        self.path.write_bytes(b"")

        def append(block: np.ndarray) -> None:
            with self.path.open("ab") as f:
                np.ascontiguousarray(block.T, dtype=np.float32).tofile(f)

        return append

    def blocks(self, frames: int = BLOCK_FRAMES):
        """Yields the frames back, float64 [shape=(channels, n)] per block."""
        with self.path.open("rb") as f:
            while True:
                data = np.fromfile(f, dtype=np.float32, count=frames * self.channels)
                if data.size == 0:
                    return
                yield data.reshape(-1, self.channels).T.astype(np.float64)


@dataclass(frozen=True)
class MasterResult:
    """The mastered WAV and what it measures.

    Attributes:
        makeup_gain: The linear gain before the limiter.
        loudness_lufs: Integrated loudness of the written WAV (BS.1770), LUFS.
        true_peak_dbtp: Its true peak (4x oversampled), dBTP.
        limiter: What the limiter did (None: no loudness target, no limiter).
        passes: Mastering passes run.
    """

    makeup_gain: float
    loudness_lufs: float
    true_peak_dbtp: float
    limiter: LimiterReport | None
    passes: int

    def short_of(self, target_lufs: float | None) -> bool:
        """Whether the loudness stayed under ``target_lufs`` (the ceiling held it there)."""
        return (target_lufs is not None and math.isfinite(self.loudness_lufs)
                and target_lufs - self.loudness_lufs > LOUDNESS_TOLERANCE_LU)


def master(premix: PremixFile, out_path: str | os.PathLike, *, sample_rate: int,
           frames: int, premix_lufs: float, premix_peak: float, target_lufs: float | None,
           true_peak_dbtp: float, on_pass: Callable[[], None] | None = None) -> MasterResult:
    """Writes the mastered WAV (float32) to ``out_path``.

    Args:
        premix: The mix before mastering.
        out_path: The WAV to write.
        sample_rate: Hz.
        frames: The mix's length.
        premix_lufs: The premix's integrated loudness (its first guess of the gain).
        premix_peak: The premix's true peak, linear.
        target_lufs: Loudness to reach; None: the true peak is brought to ``true_peak_dbtp``
            by the gain alone, with no limiter.
        true_peak_dbtp: Largest true peak of the WAV.
        on_pass: Called after each pass (a progress bar).
    """
    if target_lufs is None:
        # A thousandth of a dB under: the float32 file must not round over the limit.
        gain = (10.0 ** ((true_peak_dbtp - 0.001) / 20.0) / premix_peak if premix_peak > 0
                else 1.0)
        result = _pass(premix, out_path, sample_rate=sample_rate, frames=frames, gain=gain,
                       ceiling_dbtp=None)
        if on_pass is not None:
            on_pass()
        return MasterResult(gain, result[0], result[1], None, 1)
    gain = 10.0 ** ((target_lufs - premix_lufs) / 20.0) if math.isfinite(premix_lufs) else 1.0
    ceiling = true_peak_dbtp - _CEILING_MARGIN_DB
    previous: tuple[float, float] | None = None  # (gain dB, loudness) of the last pass
    passes = loudness_passes = 0
    while True:
        loudness, peak, report = _pass(premix, out_path, sample_rate=sample_rate,
                                       frames=frames, gain=gain, ceiling_dbtp=ceiling)
        passes += 1
        if on_pass is not None:
            on_pass()
        if peak > true_peak_dbtp:  # the limiter's output rang over: aim lower, again
            if passes >= 2 * _MAX_PASSES:
                raise DeepMixingError(f"the limiter could not hold {true_peak_dbtp:g} dBTP "
                                      f"(the WAV peaks at {peak:.2f} dBTP)")
            ceiling -= peak - true_peak_dbtp + _CEILING_MARGIN_DB
            continue
        loudness_passes += 1
        miss = target_lufs - loudness
        if not math.isfinite(loudness) or abs(miss) <= LOUDNESS_TOLERANCE_LU:
            break
        if previous is not None and miss > 0:
            rise_db, rose = db(gain) - previous[0], loudness - previous[1]
            if rise_db > 0 and rose < _NO_GAIN_LEFT * rise_db:
                break  # the ceiling holds the loudness: more gain only squashes
        if loudness_passes == _MAX_PASSES:
            break
        previous = (db(gain), loudness)
        gain *= 10.0 ** (miss / 20.0)
    return MasterResult(gain, loudness, peak, report, passes)


def _pass(premix: PremixFile, out_path: str | os.PathLike, *, sample_rate: int, frames: int,
          gain: float, ceiling_dbtp: float | None):
    """One mastering pass; returns (loudness LUFS, true peak dBTP, limiter report or None)."""
    channels = premix.channels
    limiter = (TruePeakLimiter(sample_rate=sample_rate, channels=channels,
                               ceiling_dbtp=ceiling_dbtp) if ceiling_dbtp is not None else None)
    loudness = LoudnessMeter(sample_rate=sample_rate, channels=channels, total_frames=frames,
                             block_s=min(0.4, frames / sample_rate))
    peak = TruePeakMeter(channels)
    with sf.SoundFile(str(out_path), "w", samplerate=sample_rate, channels=channels,
                      subtype="FLOAT", format="WAV") as wav:

        def emit(block: np.ndarray) -> None:
            block = block.astype(np.float32)  # measure what the file holds
            wav.write(block.T)
            loudness.add(block)
            peak.add(block)

        for block in premix.blocks():
            emit(limiter.process(block * gain) if limiter is not None else block * gain)
        if limiter is not None:
            emit(limiter.flush())
    return loudness.loudness(), db(peak.finish()), (
        limiter.report() if limiter is not None else None)
