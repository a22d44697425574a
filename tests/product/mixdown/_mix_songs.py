"""Small songs of mono and stereo stems, written by the tests (seconds long, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100

STEMS = {
    # name: (channels, level) - Cambridge-MT style names the taxonomy places
    "01_Kick.wav": (1, 0.9),
    "02_Snare.wav": (1, 0.5),
    "05_Overheads.wav": (2, 0.2),
    "06_Bass.wav": (1, 0.3),
    "07_ElecGtr1.wav": (1, 0.2),
    "08_ElecGtr2.wav": (1, 0.2),
    "11_LeadVox.wav": (1, 0.25),
    "13_SynthPad.wav": (2, 0.1),
}


def write_song(folder: Path, *, seconds: float = 2.0, stems: dict | None = None,
               seed: int = 0, sample_rate: int = SR) -> Path:
    """A song folder: rhythmic noise, tones and pads, each stem with its own character."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    for i, (name, (channels, level)) in enumerate((stems or STEMS).items()):
        beat = (np.sin(2 * np.pi * (1.0 + 0.5 * i) * t) > 0.6).astype(float)
        tone = np.sin(2 * np.pi * (110.0 * (i + 1)) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
        y = level * (0.6 * tone + 0.4 * rng.standard_normal(n) * beat)
        if channels == 2:  # a real stereo image: the channels differ
            y = np.stack([y, level * (0.6 * np.roll(tone, 37) + 0.4 * rng.standard_normal(n)
                                      * beat)], axis=1)
        sf.write(folder / name, y.astype(np.float32), sample_rate, subtype="FLOAT")
    return folder
