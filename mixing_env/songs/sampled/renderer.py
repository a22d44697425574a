"""Notes to audio: a General MIDI soundfont played by a SoundFont synthesizer.

The synthesizer is ``midirenderer`` (MIT; a Rust SoundFont engine, ``rustysynth``, in a
wheel with no dependencies); the soundfont is ``TimGM6mb.sf2`` (GPL-2.0, Tim Brechbill; 6 MB,
128 General MIDI instruments and a drum kit) that ``pretty_midi`` (MIT) ships, and
``pretty_midi`` also writes the MIDI data. Each part is rendered alone, dry (reverb and
chorus sends at 0, centred), as a stem is recorded on its own track. The synthesizer renders
stereo at 48 kHz; stems are folded to mono and resampled with ``soxr``.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import midirenderer
import numpy as np
import pretty_midi
import soundfile as sf
import soxr

from mixing_env.errors import ConfigError

__all__ = ["DEFAULT_SOUNDFONT", "render_part"]

DEFAULT_SOUNDFONT = Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")
"""The General MIDI soundfont ``pretty_midi`` installs."""

_DRY = ((91, 0), (93, 0), (10, 64), (7, 127))  # reverb send, chorus send, pan centre, volume
_VIBRATO_HZ, _BEND_STEP_S = 5.5, 0.02


@lru_cache(maxsize=2)
def _soundfont_bytes(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"soundfont {path} cannot be read: {e}") from e
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise ConfigError(f"soundfont {path} is not a SoundFont 2 file (no RIFF/sfbk header)")
    return data


def _midi_bytes(
    notes: np.ndarray, *, program: int, drum: bool, seconds: float, vibrato_cents: float = 0.0
) -> bytes:
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=program, is_drum=drum)
    inst.control_changes = [pretty_midi.ControlChange(c, v, 0.0) for c, v in _DRY]
    if vibrato_cents:  # a singer's vibrato: pitch bend (range +-200 cents) at 5.5 Hz
        t = np.arange(0.0, seconds, _BEND_STEP_S)
        bend = np.round(vibrato_cents / 200 * 8191 * np.sin(2 * np.pi * _VIBRATO_HZ * t))
        inst.pitch_bends = [pretty_midi.PitchBend(int(b), float(x)) for b, x in zip(bend, t,
                                                                                     strict=True)]
    # A last event past the end keeps the synthesizer running through every release tail.
    inst.control_changes.append(pretty_midi.ControlChange(7, 127, seconds + 0.5))
    inst.notes = [
        pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(e))
        for p, s, e, v in notes
    ]
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def render_part(
    notes: np.ndarray,
    *,
    program: int,
    drum: bool,
    seconds: float,
    sample_rate: int,
    soundfont: str | os.PathLike | None = None,
    vibrato_cents: float = 0.0,
) -> np.ndarray:
    """Play notes on one General MIDI instrument; the dry mono stem.

    Args:
        notes: float [shape=(n, 4)] rows ``(pitch, start_s, end_s, velocity)``.
        program: General MIDI program, 0..127 (ignored for drums).
        drum: Play on the drum channel (pitches are kit pieces: 36 kick, 38 snare...).
        seconds: Stem length; later sound is cut.
        sample_rate: Output rate in Hz.
        soundfont: A ``.sf2`` file; None takes :data:`DEFAULT_SOUNDFONT`.
        vibrato_cents: Depth of a 5.5 Hz vibrato (pitch bend), 0 for none.

    Returns:
        float32 [shape=(round(seconds * sample_rate),)], the synthesizer's own level
        (velocity-dependent, not normalised).

    Raises:
        ConfigError: The soundfont is missing or not a SoundFont 2 file.
    """
    data = _soundfont_bytes(str(soundfont or DEFAULT_SOUNDFONT))
    midi = _midi_bytes(np.asarray(notes), program=program, drum=drum, seconds=seconds,
                       vibrato_cents=vibrato_cents)
    y, rate = sf.read(io.BytesIO(midirenderer.render_wave_from(data, midi)), dtype="float32")
    y = y.mean(axis=1) if y.ndim == 2 else y
    if rate != sample_rate:
        y = soxr.resample(y, rate, sample_rate, quality="HQ")
    n = int(round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, y.size)] = y[:n]
    return out
