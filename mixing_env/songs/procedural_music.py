"""Procedural music: the notes and drum hits of one synthetic song, rendered to raw stems.

A :class:`ProceduralSong` draws a tempo, key, chord progression and sections (intro, verse,
chorus, bridge, outro) and renders any part on demand: pitched parts from wavetables
(:meth:`ProceduralSong.notes`), drum parts from synthesised one-shot templates
(:meth:`ProceduralSong.drums`). Nothing here knows about levels or mixing; the gain truth
lives in :mod:`mixing_env.songs.procedural`.

Everything is vectorised NumPy and deterministic from the random generator it is given.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import oaconvolve

__all__ = ["DRUM_KINDS", "MAJOR_SCALE", "SECTIONS", "ProceduralSong"]

SECTIONS = ("intro", "verse", "chorus", "bridge", "outro")
"""Section types, in the order of ``ProceduralSong.bar_section``'s indices."""

_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 3, 0, 4), (0, 4, 3, 4))
MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
_MAJOR = MAJOR_SCALE
_TABLE = 2048

# ---------------------------------------------------------------------------- synthesis
def _table(amps) -> np.ndarray:
    ph = np.arange(_TABLE) / _TABLE
    h = np.arange(1, len(amps) + 1)[:, None]
    w = (np.asarray(amps, dtype=np.float64)[:, None] * np.sin(2 * np.pi * h * ph)).sum(0)
    return (w / np.max(np.abs(w))).astype(np.float32)


def _vowel(f1: float, f2: float, f_ref: float = 220.0, n: int = 14) -> np.ndarray:
    h = np.arange(1, n + 1) * f_ref
    return (
        np.exp(-(((h - f1) / 250) ** 2))
        + 0.6 * np.exp(-(((h - f2) / 300) ** 2))
        + 0.3 / np.arange(1, n + 1)
    )


_TABLES = {
    "bass": _table([1, 0.5, 0.3, 0.15]),
    "powerchord": np.tanh(2.5 * _table(1 / np.arange(1, 11))).astype(np.float32),
    "arpeggio": _table([1, 0.6, 0.4, 0.25, 0.15, 0.1]),
    "riff": np.tanh(2.0 * _table(1 / np.arange(1, 9))).astype(np.float32),
    "strum": _table([1, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1]),
    "piano": _table([1, 0.45, 0.3, 0.2, 0.12, 0.08]),
    "rhodes": _table([1, 0.15, 0.05, 0.02]),
    "organ": _table([1, 0.8, 0.6, 0.5, 0, 0.3, 0, 0.25]),
    "pad": _table(1 / np.arange(1, 13)),
    "synthlead": _table(1 / np.arange(1, 9) * (np.arange(1, 9) % 2)),
    "leadvox": _table(_vowel(700, 1200)),
    "bv": _table(_vowel(500, 900)),
    "flute": _table([1, 0.2, 0.05]),
    "sax": _table([1, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15]),
}


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69) / 12)


def _voice(n, sr, onsets, durs, midis, table, env, *, vibrato=0.0):
    """One voice: notes (onset sample, duration samples, midi) read from a wavetable.

    Each distinct (pitch, duration) is rendered once and pasted at its onsets, so the cost
    follows the number of distinct notes, not the song length. Returns float32 [shape=(n,)].
    """
    out = np.zeros(n, dtype=np.float32)
    rendered: dict = {}
    for on, dur, m in zip(
        np.asarray(onsets, dtype=np.int64), np.asarray(durs), np.asarray(midis), strict=True
    ):
        length = min(int(dur), n - int(on))
        if length <= 0 or on < 0:
            continue
        key = (int(m), int(dur))
        wave = rendered.get(key)
        if wave is None:
            t = np.arange(int(dur), dtype=np.float32) / sr
            tau = t
            if vibrato:
                rate = 5.5
                tau = t + (vibrato / (2 * np.pi * rate)) * (1 - np.cos(2 * np.pi * rate * t))
            ph = np.float32(_midi_hz(m)) * tau
            idx = ((ph - np.floor(ph)) * _TABLE).astype(np.int32) % _TABLE
            wave = rendered[key] = table[idx] * env(t, np.float32(dur / sr)).astype(np.float32)
        out[on : on + length] += wave[:length]
    return out


def _env_pluck(tau):
    return lambda t, d: (1 - np.exp(-t / 0.003)) * np.exp(-t / tau)


def _env_sustain(attack, release):
    return lambda t, d: np.minimum(t / attack, 1) * np.clip((d - t) / release, 0, 1)


def _paste(n, times, vel, template) -> np.ndarray:
    """Add ``vel * template`` at each onset; float32 [shape=(n,)]."""
    out = np.zeros(n, dtype=np.float32)
    times = np.asarray(times, dtype=np.int64)
    vel = np.asarray(vel, dtype=np.float32)
    ok = (times >= 0) & (times < n)
    if not ok.any():  # keep every stem audible, even in a very short song
        times, vel, ok = np.array([n // 2]), np.array([1.0], dtype=np.float32), np.array([True])
    for t, v in zip(times[ok], vel[ok], strict=True):
        length = min(template.size, n - int(t))
        out[t : t + length] += v * template[:length]
    return out


def _render(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    return oaconvolve(x, h).astype(np.float32)


FORM = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus")
"""The song form's first sections; later ones cycle verse, chorus, bridge, chorus."""

SECTION_BARS = {"intro": (1, 2), "verse": (2, 4), "chorus": (2, 4), "bridge": (2, 2),
                "outro": (1, 2)}
"""Bars each section kind lasts, (fewest, most)."""


def song_form(rng: np.random.Generator, n_bars: int,
              bars: dict[str, tuple[int, int]] | None = None) -> list[tuple[str, int, int]]:
    """Sections ``(kind, first bar, end bar)`` covering ``n_bars``; the last is an outro.

    ``bars``: each kind's (fewest, most) bars; None: :data:`SECTION_BARS`.
    """
    bars = SECTION_BARS if bars is None else bars
    out, bar, i = [], 0, 0
    while bar < n_bars:
        kind = FORM[i] if i < len(FORM) else ("verse", "chorus", "bridge", "chorus")[
            (i - len(FORM)) % 4]
        lo, hi = bars[kind]
        length = int(rng.integers(lo, hi + 1))
        out.append([kind, bar, min(bar + length, n_bars)])
        bar += length
        i += 1
    if len(out) >= 3:
        out[-1][0] = "outro"
    return [tuple(s) for s in out]

class ProceduralSong:
    """Timing and harmony of one song; renders instruments on demand."""

    def __init__(self, rng: np.random.Generator, n: int, sr: int):
        self.rng, self.n, self.sr = rng, n, sr
        self.bpm = float(rng.uniform(90, 150))
        self.beat = 60.0 / self.bpm * sr
        self.bar = 4 * self.beat
        self.n_bars = max(1, math.ceil(n / self.bar))
        self.root = int(rng.integers(40, 52))  # E2..D#3
        self.prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
        self.sections = self._sections()  # list of (type, first bar, end bar)
        self.bar_section = np.zeros(self.n_bars, dtype=np.int64)  # index into SECTIONS
        for kind, a, b in self.sections:
            self.bar_section[a:b] = SECTIONS.index(kind)
        self._hits: dict = {}

    def _sections(self):
        return song_form(self.rng, self.n_bars)

    def chord(self, bar: int, octave_shift: int = 0) -> np.ndarray:
        """MIDI notes of the triad of ``bar``'s chord, shifted by octaves."""
        deg = self.prog[bar % len(self.prog)]
        steps = [deg, deg + 2, deg + 4]
        notes = [self.root + _MAJOR[s % 7] + 12 * (s // 7) for s in steps]
        return np.array(notes) + 12 * octave_shift

    def grid(self, active_bars: np.ndarray, per_bar: int, offset: float = 0.0):
        """Onset samples and bar index of a regular grid over the active bars."""
        bars = np.flatnonzero(active_bars)
        k = np.arange(per_bar)
        times = (bars[:, None] * self.bar + (k[None, :] + offset) * self.bar / per_bar).ravel()
        return times.astype(np.int64), np.repeat(bars, per_bar)

    # -- pitched parts ----------------------------------------------------------------
    def notes(self, kind: str, active: np.ndarray) -> np.ndarray:
        """Render a pitched part (float32 [shape=(n,)]) over the active bars."""
        rng, n, sr = self.rng, self.n, self.sr
        out = np.zeros(n, dtype=np.float32)
        if kind == "bass":
            t, b = self.grid(active, 8)
            m = np.array([self.chord(x)[0] for x in b]) - 12 * (self.root >= 46)
            return _voice(
                n, sr, t, np.full(t.size, 0.9 * self.bar / 8), m, _TABLES["bass"], _env_pluck(0.25)
            )
        if kind in ("powerchord", "strum", "piano", "rhodes", "organ", "pad"):
            per_bar = {"powerchord": 8, "strum": 4, "piano": 2, "rhodes": 2, "organ": 1, "pad": 1}[
                kind
            ]
            octave = {"powerchord": 0, "strum": 1, "piano": 1, "rhodes": 1, "organ": 1, "pad": 1}[
                kind
            ]
            env = {
                "powerchord": _env_pluck(0.15),
                "strum": _env_pluck(0.5),
                "piano": _env_pluck(0.6),
                "rhodes": _env_pluck(0.9),
                "organ": _env_sustain(0.01, 0.03),
                "pad": _env_sustain(0.3, 0.2),
            }[kind]
            t, b = self.grid(active, per_bar, 0.5 if kind == "rhodes" else 0.0)
            dur = np.full(t.size, (0.8 if kind == "powerchord" else 0.98) * self.bar / per_bar)
            chords = np.array([self.chord(x, octave) for x in b]).reshape(-1, 3)
            if kind == "powerchord":
                chords = chords[:, :1] + np.array([0, 7, 12])
            for v in range(3):
                delay = int(0.012 * sr * v) if kind == "strum" else 0
                out += _voice(n, sr, t + delay, dur - delay, chords[:, v], _TABLES[kind], env)
            return out / 3
        if kind in ("arpeggio", "riff", "synthlead"):
            per_bar = 8
            t, b = self.grid(active, per_bar)
            pattern = (
                rng.integers(0, 3, size=per_bar)
                if kind != "arpeggio"
                else np.array([0, 1, 2, 1] * 2)
            )
            oct_ = {"arpeggio": 1, "riff": 1, "synthlead": 2}[kind]
            m = np.array(
                [
                    self.chord(x, oct_)[p]
                    for x, p in zip(b, np.tile(pattern, len(b) // per_bar or 1), strict=False)
                ]
            )
            env = _env_pluck(0.3) if kind != "synthlead" else _env_sustain(0.005, 0.02)
            return _voice(
                n, sr, t, np.full(t.size, 0.9 * self.bar / per_bar), m[: t.size], _TABLES[kind], env
            )
        if kind in ("leadvox", "flute", "sax"):
            per_bar = {"leadvox": 4, "flute": 2, "sax": 4}[kind]
            t, b = self.grid(active, per_bar)
            base = self.root + {"leadvox": 24, "flute": 36, "sax": 24}[kind]
            steps = np.cumsum(rng.integers(-2, 3, size=t.size)) % 10
            m = base + _MAJOR[steps % 7] + 12 * (steps // 7)
            rest = rng.random(t.size) < 0.2
            dur = np.where(rest, 0, 0.95 * self.bar / per_bar)
            table = _TABLES[kind]
            return _voice(
                n,
                sr,
                t,
                dur,
                m,
                table,
                _env_sustain(0.05, 0.05),
                vibrato=0.006 if kind == "leadvox" else 0.003,
            )
        if kind.startswith("bv_"):
            which = {"bv_third": 1, "bv_fifth": 2, "bv_octave": 0}[kind]
            t, b = self.grid(active, 1)
            m = np.array([self.chord(x, 2)[which] for x in b]) + (12 if kind == "bv_octave" else 0)
            return _voice(
                n,
                sr,
                t,
                np.full(t.size, 0.97 * self.bar),
                m,
                _TABLES["bv"],
                _env_sustain(0.08, 0.1),
                vibrato=0.005,
            )
        raise ValueError(kind)

    # -- drums ----------------------------------------------------------------------
    def template(self, kind: str) -> np.ndarray:
        """One hit of a drum piece (a fresh noise draw for the noisy ones)."""
        sr, rng = self.sr, self.rng
        length = {
            "kick": 0.4,
            "snare": 0.3,
            "hihat": 0.1,
            "tom": 0.4,
            "crash": 2.0,
            "shaker": 0.06,
            "room": 0.5,
        }[kind]
        t = np.arange(int(length * sr)) / sr
        if kind in ("kick", "tom"):
            f0, f1, tau = (110, 45, 0.25) if kind == "kick" else (160, 100, 0.3)
            f = f1 + (f0 - f1) * np.exp(-t / 0.04)
            return (np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / tau)).astype(np.float32)
        noise = rng.standard_normal(t.size)
        if kind == "snare":
            return (
                0.6 * noise * np.exp(-t / 0.1) + np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.07)
            ).astype(np.float32)
        if kind in ("hihat", "shaker", "crash"):
            hp = np.diff(noise, 2, prepend=[0, 0])  # second difference: a crude high-pass
            tau = {"hihat": 0.03, "shaker": 0.015, "crash": 0.8}[kind]
            return (hp * np.exp(-t / tau) / 4).astype(np.float32)
        return (noise * np.exp(-t / 0.15) * 0.05).astype(np.float32)  # room tail

    def hit_times(self, kind: str, active: np.ndarray):
        """Onset samples and velocities of a drum part over the active bars.

        The pattern is drawn once per song, so the kick in the overheads and room hits
        where the kick stem does.
        """
        if kind not in self._hits:
            self._hits[kind] = self._draw_hits(kind, np.ones(self.n_bars, dtype=bool))
        times, vel = self._hits[kind]
        keep = active[np.minimum((times / self.bar).astype(np.int64), self.n_bars - 1)]
        return times[keep], vel[keep]

    def _draw_hits(self, kind: str, active: np.ndarray):
        rng = self.rng
        if kind == "kick":
            t, _ = self.grid(active, 4)
            beats = t.reshape(-1, 4)
            extra = beats[:, 2] + int(self.beat / 2)
            times = np.concatenate([beats[:, 0], beats[:, 2], extra[rng.random(extra.size) < 0.4]])
            return times, np.ones(times.size)
        if kind == "snare":
            t, _ = self.grid(active, 4)
            times = t.reshape(-1, 4)[:, [1, 3]].ravel()
            return times, 0.9 + 0.1 * rng.random(times.size)
        if kind == "hihat":
            t, _ = self.grid(active, 8)
            return t, np.tile([1.0, 0.6], t.size // 2 + 1)[: t.size]
        if kind == "shaker":
            t, _ = self.grid(active, 16)
            return t, 0.5 + 0.5 * rng.random(t.size)
        if kind == "tom":
            ends = np.array([b for _, _, b in self.sections]) - 1
            bars = ends[active[ends]]
            times = (bars[:, None] * self.bar + (2 + np.arange(8)[None, :] / 4) * self.beat).ravel()
            return times.astype(np.int64), np.ones(times.size)
        if kind == "crash":
            starts = np.array([a for _, a, _ in self.sections])
            bars = starts[active[starts]]
            return (bars * self.bar).astype(np.int64), np.ones(bars.size)
        raise ValueError(kind)

    def drums(self, kind: str, active: np.ndarray) -> np.ndarray:
        """Render a drum part (float32 [shape=(n,)]) over the active bars."""
        n = self.n
        if kind == "overheads":
            # The kit as heard from above: hats, snare, kick and crashes at lower levels.
            parts = (("hihat", 0.5), ("snare", 0.3), ("kick", 0.2), ("crash", 1.0))
            return sum(w * self.drums(k, active) for k, w in parts)
        if kind == "room":
            tail = self.template("room")
            out = np.zeros(n, dtype=np.float32)
            for k in ("kick", "snare"):
                t, v = self.hit_times(k, active)
                out += _paste(n, t, v, _render(self.template(k), tail))
            return out
        t, v = self.hit_times(kind, active)
        return _paste(n, t, v, self.template(kind))


DRUM_KINDS = frozenset({"kick", "snare", "hihat", "tom", "crash", "shaker", "overheads", "room"})
"""Parts :meth:`ProceduralSong.drums` renders; the others are :meth:`ProceduralSong.notes`."""
