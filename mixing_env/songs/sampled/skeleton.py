"""A piece of music many songs share: tempo, key, form and every part's notes, rendered once.

Rendering a part through the synthesizer is the costly step of making a song (0.1-0.5 s per
stem and 20 s). A :class:`Skeleton` draws the music once, every part that could play in it with
its notes over every bar, and renders a part the first time a song asks for it. Songs are then
drawn from the skeleton (:func:`~mixing_env.songs.sampled.songs.draw_song`): which parts play
(the band), in which sections, at which recorded level. Many distinct songs come from one
render, so training can draw songs without end at a small cost.

Everything is deterministic from the skeleton's seed: notes are drawn eagerly in a fixed
order, renders are a pure function of the notes.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.signal import butter, sosfilt

from mixing_env.songs.sampled.arrangement import Arrangement
from mixing_env.songs.sampled.parts import LEADS, PARTS, Part
from mixing_env.songs.sampled.renderer import render_part

__all__ = ["DRUM_KITS", "Skeleton"]

DRUM_KITS = (0, 8, 16, 24, 25, 40, 48)
"""General MIDI drum kits the soundfont has, drawn per skeleton: Standard, Room, Power,
Electronic, TR-808, Brush, Orchestra (their kicks and snares differ by up to an octave in
spectral centroid)."""
_KIT_WEIGHTS = (0.3, 0.15, 0.15, 0.1, 0.1, 0.1, 0.1)
_REGISTER_SHIFTABLE = frozenset({"guitar", "keys", "pad", "strings", "brass"})
_REGISTER_SHIFT_CHANCE = 0.3  # a band part an octave above or below its usual register
_OVERHEAD_HIGHPASS_HZ = 250.0  # overheads are usually high-passed: the kick mic has the lows


class Skeleton:
    """The music of one skeleton (seed ``(seed, stream, index)``).

    Args:
        seed: Dataset seed.
        index: Skeleton number.
        seconds: Length in seconds.
        sample_rate: Hz of the rendered parts.
        stream: Which stream of skeletons (0: datasets written to disk; others: training
            streams), so training never draws a skeleton of a written dataset.
        soundfont: A General MIDI ``.sf2``; None takes ``pretty_midi``'s TimGM6mb.
    """

    def __init__(self, *, seed: int, index: int, seconds: float, sample_rate: int,
                 stream: int = 0, soundfont: str | os.PathLike | None = None):
        rng = np.random.default_rng([int(seed), int(stream), int(index)])
        self.seed, self.index, self.stream = int(seed), int(index), int(stream)
        self.seconds, self.sample_rate, self.soundfont = float(seconds), sample_rate, soundfont
        self.arrangement = Arrangement(rng, seconds)
        self.kit = int(rng.choice(DRUM_KITS, p=_KIT_WEIGHTS))
        everywhere = np.ones(self.arrangement.n_bars, dtype=bool)
        self.programs: dict[str, int] = {}
        self.register: dict[str, int] = {}
        self.vibrato_cents: dict[str, float] = {}
        self._notes: dict[str, np.ndarray] = {}
        for part in (*PARTS, *LEADS):
            self.programs[part.name] = (int(rng.choice(part.programs)) if part.programs
                                        else self.kit)
            shift = 0
            if part.role in _REGISTER_SHIFTABLE and rng.random() < _REGISTER_SHIFT_CHANCE:
                shift = int(rng.choice([-1, 1]))
            self.register[part.name] = shift
            sung = part.role == "backing" or part.name == "LeadVox"
            self.vibrato_cents[part.name] = float(rng.uniform(15, 35)) if sung else 0.0
            notes = self.arrangement.notes(part, everywhere)
            if not part.drum and shift:
                notes = notes.copy()
                notes[:, 0] = np.clip(notes[:, 0] + 12 * shift, 0, 127)
            self._notes[part.name] = notes
        self._renders: dict[str, np.ndarray] = {}

    @property
    def n_samples(self) -> int:
        """Samples of every rendered part."""
        return int(round(self.seconds * self.sample_rate))

    def render(self, part: Part) -> np.ndarray:
        """The part played over every bar, dry, at the soundfont's level (rendered once).

        Returns:
            float32 [shape=(n_samples,)], read-only.
        """
        if part.name not in self._renders:
            y = render_part(self._notes[part.name], program=self.programs[part.name],
                            drum=part.drum, seconds=self.seconds, sample_rate=self.sample_rate,
                            soundfont=self.soundfont,
                            vibrato_cents=self.vibrato_cents[part.name])
            if part.style == "overheads":
                hp = butter(2, _OVERHEAD_HIGHPASS_HZ, btype="highpass", fs=self.sample_rate,
                            output="sos")
                y = sosfilt(hp, y).astype(np.float32)
            y.flags.writeable = False
            self._renders[part.name] = y
        return self._renders[part.name]

    def meta(self) -> dict:
        """Tempo, key, form, kit, programs and registers, for ``sampled.json``."""
        return {**self.arrangement.meta(), "skeleton": [self.seed, self.stream, self.index],
                "drum_kit": self.kit}
