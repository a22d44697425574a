"""What each part plays: song form, harmony and humanised notes.

A song has a tempo (85-140 BPM, 4/4), a key (major or natural minor), a four-chord
progression and a form (intro, verse, chorus, verse, chorus, bridge, chorus ... outro) cut to
its length. Each part plays its pattern in the sections it is active in. Performances are
humanised the way a player or a drum programmer would: onsets move by a few milliseconds,
velocities wander around accent patterns, and the band plays softer in verses and harder in
choruses. The lead sings in phrases with breaths between them and a loudness arc per phrase,
so its own level moves by several dB: the mixing model's lead riding has something to ride.

Notes are ``(pitch, start_s, end_s, velocity)`` rows of a float64 array [shape=(n, 4)].
"""

from __future__ import annotations

import math

import numpy as np

from mixing_env.songs.procedural_music import song_form
from mixing_env.songs.sampled.parts import Part

__all__ = ["SECTIONS", "Arrangement"]

SECTIONS = ("intro", "verse", "chorus", "bridge", "outro")
_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 3, 0, 4), (0, 4, 3, 4))
_DYNAMICS = {"intro": -8.0, "verse": -6.0, "chorus": 8.0, "bridge": 0.0, "outro": -10.0}
"""Velocity offset per section: the band plays harder in choruses."""
_KIT = {"kick": 36, "snare": 38, "hat": 42, "open_hat": 46, "crash": 49, "ride": 51}
_TOMS = (50, 48, 47, 45, 43, 41)
_FLIP = 0.1  # chance that a part plays in a section it usually sits out, or the reverse
SECTION_BARS = {"intro": (1, 1), "verse": (2, 3), "chorus": (2, 3), "bridge": (1, 2),
                "outro": (1, 1)}
"""Bars per section kind: shorter than the procedural songs', so songs of 10-20 s pass through
several sections and their changes of density."""
_TIMING_SD = {True: 0.004, False: 0.010}  # seconds: drummers sit tighter than the band


class Arrangement:
    """Form, harmony and the notes of every part of one song.

    Args:
        rng: The song's generator (drawn from in a fixed order: same seed, same song).
        seconds: Song length.
    """

    def __init__(self, rng: np.random.Generator, seconds: float):
        self.rng = rng
        self.seconds = float(seconds)
        self.bpm = float(rng.uniform(85, 140))
        self.beat = 60.0 / self.bpm
        self.bar = 4 * self.beat
        self.n_bars = max(1, math.ceil(self.seconds / self.bar))
        self.minor = bool(rng.random() < 0.35)
        self.scale = _MINOR if self.minor else _MAJOR
        self.root = int(rng.integers(40, 52))  # E2..D#3: the bass's octave
        self.progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
        self.sections = self._form()
        self.bar_section = np.empty(self.n_bars, dtype=object)
        for kind, a, b in self.sections:
            self.bar_section[a:b] = kind
        self.drive = float(rng.uniform(0.6, 1.3))  # how much harder the band plays in choruses

    def _form(self) -> list[tuple[str, int, int]]:
        return song_form(self.rng, self.n_bars, SECTION_BARS)

    # -- helpers --------------------------------------------------------------------------
    def active_bars(self, part: Part, rng: np.random.Generator) -> np.ndarray:
        """Bars the part plays in: its usual sections, each flipped with chance :data:`_FLIP`.

        The core (kick, snare, bass) and the lead keep their sections: a verse without a
        snare or a chorus without its singer is rare.

        Args:
            part: The part.
            rng: The song's generator (songs drawn from one arrangement differ here).
        """
        core = part.weight >= 1.0 or part.role == "lead"
        flips = rng.random(len(SECTIONS)) < (0.0 if core else _FLIP)
        on = {s for s, f in zip(SECTIONS, flips, strict=True) if (s in part.sections) != f}
        active = np.isin(self.bar_section.astype(str), sorted(on))
        if not active.any():
            active[:] = True
        return active

    def chord(self, bar: int, octave: int = 0) -> np.ndarray:
        """The bar's triad (MIDI pitches) ``octave`` octaves above the bass register."""
        deg = self.progression[bar % len(self.progression)]
        steps = np.array([deg, deg + 2, deg + 4])
        return self.root + self.scale[steps % 7] + 12 * (steps // 7) + 12 * octave

    def _velocity(self, bars: np.ndarray, base: float, sd: float = 6.0) -> np.ndarray:
        dyn = np.array([_DYNAMICS[self.bar_section[b]] for b in bars]) * self.drive
        return base + dyn + self.rng.normal(0, sd, size=bars.size)

    def _humanise(self, notes: list, drum: bool) -> np.ndarray:
        arr = np.array(notes, dtype=np.float64).reshape(-1, 4)
        if arr.size == 0:
            return arr
        shift = self.rng.normal(0, _TIMING_SD[drum], size=len(arr))
        arr[:, 1] = np.maximum(arr[:, 1] + shift, 0.0)
        arr[:, 2] = np.maximum(arr[:, 2] + shift, arr[:, 1] + 0.02)
        arr[:, 3] = np.clip(np.round(arr[:, 3]), 1, 127)
        return arr[arr[:, 1] < self.seconds]

    def _grid(self, active: np.ndarray, per_bar: int, offset: float = 0.0):
        bars = np.flatnonzero(active)
        k = np.arange(per_bar)
        starts = (bars[:, None] * self.bar + (k[None, :] + offset) * self.bar / per_bar).ravel()
        return starts, np.repeat(bars, per_bar), np.tile(k, bars.size)

    # -- parts ----------------------------------------------------------------------------
    def notes(self, part: Part, active: np.ndarray) -> np.ndarray:
        """The humanised notes of ``part`` over the active bars; float64 [shape=(n, 4)]."""
        if part.drum:
            return self._humanise(self._drums(part.style, active), drum=True)
        return self._humanise(getattr(self, "_" + part.style)(active), drum=False)

    def _drums(self, style: str, active: np.ndarray) -> list:
        if style == "overheads":  # the whole kit from above: cymbals loud, shells quieter
            rows = [(p, s, e, v * 0.7) for p, s, e, v in self._kit(active, toms=True)]
            return rows + self._cymbals(active)
        if style == "toms":
            return self._tom_fills(active)
        want = {"kick": (_KIT["kick"],), "snare": (_KIT["snare"],),
                "hihat": (_KIT["hat"], _KIT["open_hat"])}[style]
        return [row for row in self._kit(active, toms=False) if row[0] in want]

    def _kit(self, active: np.ndarray, *, toms: bool) -> list:
        """Kick, snare and hats of the groove; drawn once so every drum stem agrees."""
        if not hasattr(self, "_groove"):
            self._groove = self._draw_groove()
        rows = [r for r in self._groove if active[min(int(r[1] / self.bar), self.n_bars - 1)]]
        return rows + (self._tom_fills(active) if toms else [])

    def _draw_groove(self) -> list:
        everywhere = np.ones(self.n_bars, dtype=bool)
        starts, bars, k = self._grid(everywhere, 8)
        vel = self._velocity(bars, 92)
        rows = []
        syncopation = self.rng.random(starts.size) < 0.25
        for s, b, i, v in zip(starts, bars, k, vel, strict=True):
            if i in (0, 4) or (i in (3, 7) and syncopation[b * 8 + i]):
                rows.append((_KIT["kick"], s, s + 0.1, v + 8))
            if i in (2, 6):
                rows.append((_KIT["snare"], s, s + 0.1, v + 12))
            elif self.rng.random() < 0.08:  # ghost note
                rows.append((_KIT["snare"], s, s + 0.05, 35))
            is_open = self.bar_section[b] == "chorus" and i == 7
            hat = _KIT["open_hat"] if is_open else _KIT["hat"]
            rows.append((hat, s, s + 0.05, v - (0 if i % 2 == 0 else 22)))
        self._fills = self._draw_fills()
        return rows

    def _draw_fills(self) -> list:
        rows = []
        for _, _, end in self.sections[:-1]:
            start = (end - 1) * self.bar + 2 * self.beat
            pitches = _TOMS[: 2 + int(self.rng.integers(0, 5))]
            n = 8 if self.rng.random() < 0.6 else 4
            for j in range(n):
                t = start + j * 2 * self.beat / n
                p = pitches[min(j * len(pitches) // n, len(pitches) - 1)]
                rows.append((p, t, t + 0.2, 95 + self.rng.normal(0, 8)))
        return rows

    def _tom_fills(self, active: np.ndarray) -> list:
        if not hasattr(self, "_fills"):
            self._groove = self._draw_groove()
        rows = [r for r in self._fills if active[min(int(r[1] / self.bar), self.n_bars - 1)]]
        if not rows:  # a tom stem is never empty: one fill where the kit plays
            rows = list(self._fills[:4]) or [(_TOMS[0], self.seconds / 2, self.seconds / 2 + 0.2,
                                               90)]
        return rows

    def _cymbals(self, active: np.ndarray) -> list:
        rows = [(_KIT["crash"], a * self.bar, a * self.bar + 1.0, 100)
                for _, a, _ in self.sections if active[a]]
        starts, bars, _ = self._grid(active & (self.bar_section == "chorus"), 4)
        vel = self._velocity(bars, 70)
        return rows + [(_KIT["ride"], s, s + 0.2, v) for s, v in zip(starts, vel, strict=True)]

    def _bass(self, active: np.ndarray) -> list:
        per_bar = int(self.rng.choice([4, 8]))
        starts, bars, k = self._grid(active, per_bar)
        vel = self._velocity(bars, 88)
        octave_jump = self.rng.random(starts.size) < 0.15
        d = 0.9 * self.bar / per_bar
        return [(self.chord(b)[0] - 12 * (self.root >= 46) + 12 * j, s, s + d, v)
                for s, b, v, j in zip(starts, bars, vel, octave_jump, strict=True)]

    def _chords(self, active, per_bar, length, octave, base, offset=0.0, strum=0.0) -> list:
        starts, bars, _ = self._grid(active, per_bar, offset)
        vel = self._velocity(bars, base)
        d = length * self.bar / per_bar
        rows = []
        for s, b, v in zip(starts, bars, vel, strict=True):
            for j, p in enumerate(self.chord(b, octave)):
                rows.append((p, s + j * strum, s + d, v))
        return rows

    def _powerchord(self, active: np.ndarray) -> list:
        starts, bars, _ = self._grid(active, 8)
        vel = self._velocity(bars, 95)
        d = 0.8 * self.bar / 8
        return [(self.chord(b, 1)[0] + iv, s, s + d, v)
                for s, b, v in zip(starts, bars, vel, strict=True) for iv in (0, 7, 12)]

    def _arpeggio(self, active: np.ndarray) -> list:
        starts, bars, k = self._grid(active, 8)
        vel = self._velocity(bars, 80)
        order = np.array([0, 1, 2, 1, 0, 1, 2, 1])
        return [(self.chord(b, 2)[order[i]], s, s + 0.9 * self.bar / 8, v)
                for s, b, i, v in zip(starts, bars, k, vel, strict=True)]

    def _strum(self, active: np.ndarray) -> list:
        return self._chords(active, 4, 0.95, 1, 82, strum=0.012)

    def _comp(self, active: np.ndarray) -> list:
        return self._chords(active, int(self.rng.choice([2, 4])), 0.9, 2, 78)

    def _offbeat(self, active: np.ndarray) -> list:
        return self._chords(active, 4, 0.4, 2, 75, offset=0.5)

    def _sustain(self, active: np.ndarray) -> list:
        return self._chords(active, 1, 0.98, 2, 80)

    def _sustain_high(self, active: np.ndarray) -> list:
        return self._chords(active, 1, 0.98, 3, 82)

    def _stabs(self, active: np.ndarray) -> list:
        starts, bars, k = self._grid(active, 8)
        keep = np.isin(k, [1, 3, 6]) & (self.rng.random(k.size) < 0.7)
        vel = self._velocity(bars, 96)
        return [(p, s, s + 0.12, v) for s, b, v in zip(starts[keep], bars[keep], vel[keep],
                                                       strict=True) for p in self.chord(b, 2)]

    def _harmony_third(self, active: np.ndarray) -> list:
        return self._harmony(active, 1)

    def _harmony_fifth(self, active: np.ndarray) -> list:
        return self._harmony(active, 2)

    def _harmony(self, active: np.ndarray, which: int) -> list:
        starts, bars, _ = self._grid(active, 2)
        vel = self._velocity(bars, 74, sd=4)
        d = 0.95 * self.bar / 2
        return [(self.chord(b, 2)[which], s, s + d, v)
                for s, b, v in zip(starts, bars, vel, strict=True)]

    def _melody(self, active: np.ndarray) -> list:
        """Phrases of one to two bars with breaths between, each with its own loudness arc."""
        rows, bar = [], 0
        base = self.root + 24
        step = int(self.rng.integers(0, 5))
        while bar < self.n_bars:
            length = int(self.rng.integers(1, 3))
            span = np.arange(bar, min(bar + length, self.n_bars))
            if active[span].all() and self.rng.random() < 0.85:
                phrase_level = self.rng.normal(0, 12)  # a phrase sung softer or louder
                per_beat = int(self.rng.choice([2, 4]))
                n = len(span) * 4 * per_beat - per_beat  # the last beat is a breath
                t0 = bar * self.bar
                arc = np.sin(np.linspace(0.2, np.pi - 0.2, n)) * 10
                for j in range(n):
                    step = int(np.clip(step + self.rng.integers(-2, 3), 0, 9))
                    if self.rng.random() < 0.15:
                        continue
                    s = t0 + j * self.beat / per_beat
                    b = min(int(s / self.bar), self.n_bars - 1)
                    p = base + self.scale[step % 7] + 12 * (step // 7)
                    v = self._velocity(np.array([b]), 80 + phrase_level + arc[j], sd=4)[0]
                    rows.append((p, s, s + 0.95 * self.beat / per_beat, v))
            bar += length
        if not rows:  # a lead always sings something
            b = int(np.flatnonzero(active)[0])
            rows.append((base, b * self.bar, b * self.bar + self.beat, 80))
        return rows

    def meta(self) -> dict:
        """Tempo, key and form, for ``sampled.json``."""
        return {
            "bpm": self.bpm,
            "root_midi": self.root,
            "minor": self.minor,
            "progression": list(self.progression),
            "sections": [
                {"type": k, "start_s": a * self.bar, "end_s": min(b * self.bar, self.seconds)}
                for k, a, b in self.sections
            ],
        }
