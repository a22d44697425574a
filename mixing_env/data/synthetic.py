"""Procedural multitrack songs with known gain automation: the embedded default dataset.

Each song has a random tempo, key and chord progression, and sections (intro, verse, chorus,
bridge, outro) in which instruments enter and leave. Stems are recorded at a random raw level
(peak between -20 and -3 dBFS), like unprocessed multitrack stems. The reference mix applies
known per-chunk gains with a structure an agent can learn from the stems alone::

    gain_i[t] = s * 10 ** ((house_dB[instrument] + song_offset_i + section_dB_i[t]) / 20)
                / recording_level_i

``house_dB`` is a fixed per-instrument balance (lead vocal 0 dB, kick -3 dB, ...),
``song_offset_i ~ N(0, SONG_OFFSET_DB)``, ``section_dB`` a per-section move (lead +2 dB in choruses,
pads -3 dB in verses...) ramped over ten chunks at section boundaries, and ``s`` one common
factor that puts the mix's peak at -1 dBFS. Gains are constant within each chunk, so
``reference[t] = sum_i gain_i[t] * stem_i[t]`` holds chunk by chunk.

Everything is vectorised NumPy and deterministic from ``(seed, song index)``: song k is the
same whatever ``n_songs`` is.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import oaconvolve

from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data.audio_io import write_audio
from mixing_env.data.layouts import TRUTH_FILE
from mixing_env.data.song import Song
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.errors import ConfigError

__all__ = [
    "INSTRUMENTS",
    "MAX_TRACKS",
    "MIN_TRACKS",
    "SyntheticSong",
    "generate_song",
    "make_synthetic_dataset",
    "synthetic_songs",
]

MIN_TRACKS, MAX_TRACKS = 2, 24
SECTIONS = ("intro", "verse", "chorus", "bridge", "outro")
_ALL = frozenset(SECTIONS)


@dataclass(frozen=True)
class _Instrument:
    number: int
    name: str
    kind: str
    house_db: float
    active: frozenset
    automation: tuple[tuple[str, float], ...] = ()


def _s(*names: str) -> frozenset:
    return frozenset(names)


INSTRUMENTS: tuple[_Instrument, ...] = (
    _Instrument(
        1, "Kick", "kick", -3, _s("verse", "chorus", "bridge", "outro"), (("chorus", 1.0),)
    ),
    _Instrument(2, "Snare", "snare", -4, _s("verse", "chorus", "bridge"), (("chorus", 1.0),)),
    _Instrument(
        3,
        "HiHat",
        "hihat",
        -14,
        _s("intro", "verse", "chorus", "bridge"),
        (("intro", 3.0), ("chorus", -1.0)),
    ),
    _Instrument(4, "Overheads", "overheads", -12, _s("verse", "chorus", "bridge", "outro")),
    _Instrument(5, "Tom", "tom", -10, _s("verse", "chorus", "bridge")),
    _Instrument(6, "Bass", "bass", -5, _s("verse", "chorus", "bridge", "outro")),
    _Instrument(
        7, "ElecGtr1", "powerchord", -8, _s("chorus", "bridge"), (("chorus", 1.5), ("bridge", -1.0))
    ),
    _Instrument(
        8,
        "ElecGtr2",
        "arpeggio",
        -9,
        _s("intro", "verse", "chorus"),
        (("intro", 2.0), ("verse", -1.0)),
    ),
    _Instrument(9, "AcGtr", "strum", -10, _s("intro", "verse", "outro"), (("intro", 2.0),)),
    _Instrument(
        10,
        "Piano",
        "piano",
        -9,
        _s("intro", "verse", "bridge", "outro"),
        (("intro", 2.0), ("verse", -1.0)),
    ),
    _Instrument(11, "Organ", "organ", -12, _s("chorus", "bridge"), (("bridge", 2.0),)),
    _Instrument(
        12,
        "SynthPad",
        "pad",
        -12,
        _s("intro", "chorus", "bridge", "outro"),
        (("intro", 2.0), ("verse", -3.0), ("outro", 1.0)),
    ),
    _Instrument(
        13,
        "LeadVox",
        "leadvox",
        0,
        _s("verse", "chorus", "bridge"),
        (("chorus", 2.0), ("bridge", 1.0)),
    ),
    _Instrument(14, "BackingVox1", "bv_third", -10, _s("chorus"), (("bridge", -2.0),)),
    _Instrument(15, "BackingVox2", "bv_fifth", -11, _s("chorus"), (("bridge", -2.0),)),
    _Instrument(16, "Room", "room", -15, _s("verse", "chorus", "bridge", "outro")),
    _Instrument(17, "Shaker", "shaker", -16, _s("verse", "chorus")),
    _Instrument(18, "Crash", "crash", -14, _s("chorus", "bridge", "outro")),
    _Instrument(19, "ElecGtr3", "riff", -10, _s("chorus", "outro"), (("outro", 2.0),)),
    _Instrument(20, "BackingVox3", "bv_octave", -12, _s("chorus", "bridge")),
    _Instrument(21, "Rhodes", "rhodes", -11, _s("verse", "bridge")),
    _Instrument(22, "SynthLead", "synthlead", -10, _s("intro", "chorus"), (("intro", 2.0),)),
    _Instrument(23, "Flute", "flute", -11, _s("intro", "bridge", "outro")),
    _Instrument(24, "Sax", "sax", -10, _s("bridge", "chorus"), (("bridge", 2.0),)),
)
"""The 24 instruments, in file-number order (``01_Kick.wav`` ... ``24_Sax.wav``)."""

_PRIORITY = (
    "Kick",
    "Bass",
    "LeadVox",
    "Snare",
    "ElecGtr1",
    "HiHat",
    "Piano",
    "Overheads",
    "ElecGtr2",
    "SynthPad",
    "Organ",
    "BackingVox1",
    "AcGtr",
    "Tom",
    "BackingVox2",
    "Room",
    "Shaker",
    "Crash",
    "ElecGtr3",
    "BackingVox3",
    "Rhodes",
    "SynthLead",
    "Flute",
    "Sax",
)
_BY_NAME = {i.name: i for i in INSTRUMENTS}
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 3, 0, 4), (0, 4, 3, 4))
_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_TABLE = 2048
_RAMP_CHUNKS = 10
_MIX_PEAK_DB = -1.0

SONG_OFFSET_DB = 0.5
"""Standard deviation (dB) of each stem's per-song deviation from the house balance: how
consistent the synthetic mixing engineer is. No policy can predict it from the stems, so it
sets the floor of what an agent can reach (benchmarks/quality: with 1 dB even the exact house
balance and recording levels closed under 80% of the equal-gain-to-oracle gap)."""


@dataclass
class SyntheticSong:
    """One generated song before chunking.

    Attributes:
        name: Song name, e.g. ``"SynthSong001"``.
        stem_files: Stem file names, e.g. ``["01_Kick.wav", ...]`` (file-number order).
        stems: float32 [shape=(n_stems, n)] raw-level stems.
        reference: float32 [shape=(n,)] the reference mix.
        true_gains: float32 [shape=(n_stems, ceil(n / chunk_size))] linear gains.
        sample_rate: Hz.
        chunk_size: Samples per chunk the gains hold for.
        meta: Tempo, key, sections, recording levels (for humans and plots).
    """

    name: str
    stem_files: list[str]
    stems: np.ndarray
    reference: np.ndarray
    true_gains: np.ndarray
    sample_rate: int
    chunk_size: int
    meta: dict


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


class _Song:
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
        lengths = {
            "intro": (1, 2),
            "verse": (2, 4),
            "chorus": (2, 4),
            "bridge": (2, 2),
            "outro": (1, 2),
        }
        order = ["intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus"]
        out, bar, i = [], 0, 0
        while bar < self.n_bars:
            kind = (
                order[i]
                if i < len(order)
                else ("verse", "chorus", "bridge", "chorus")[(i - len(order)) % 4]
            )
            lo, hi = lengths[kind]
            length = int(self.rng.integers(lo, hi + 1))
            out.append([kind, bar, min(bar + length, self.n_bars)])
            bar += length
            i += 1
        if len(out) >= 3:
            out[-1][0] = "outro"
        return [tuple(s) for s in out]

    def chord(self, bar: int, octave_shift: int = 0) -> np.ndarray:
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


_DRUMS = {"kick", "snare", "hihat", "tom", "crash", "shaker", "overheads", "room"}


# ------------------------------------------------------------------------------- songs
def _check_n_tracks(n_tracks) -> tuple[int, int]:
    lo, hi = (n_tracks, n_tracks) if isinstance(n_tracks, int | np.integer) else tuple(n_tracks)
    if not (MIN_TRACKS <= int(lo) <= int(hi) <= MAX_TRACKS):
        raise ConfigError(
            f"n_tracks must be an int or (lo, hi) with {MIN_TRACKS} <= lo <= hi <= {MAX_TRACKS}, "
            f"got {n_tracks!r}"
        )
    return int(lo), int(hi)


def generate_song(
    index: int,
    *,
    seconds: float,
    n_tracks: int | tuple[int, int],
    seed: int,
    chunk_size: int = CHUNK_SIZE,
    sample_rate: int = SAMPLE_RATE,
) -> SyntheticSong:
    """Generate song ``index`` of the synthetic dataset with this ``seed``.

    Args:
        index: Song number (0-based); with ``seed`` it fixes every random choice.
        seconds: Length in seconds (> 0).
        n_tracks: Stems per song, or a ``(lo, hi)`` range drawn per song; 2..24.
        seed: Dataset seed.
        chunk_size: Samples per chunk the gain automation is constant over.
        sample_rate: Hz.

    Returns:
        The :class:`SyntheticSong`.
    """
    lo, hi = _check_n_tracks(n_tracks)
    if not seconds or seconds <= 0:
        raise ConfigError(f"seconds must be > 0, got {seconds!r}")
    rng = np.random.default_rng([int(seed), int(index)])
    n = int(round(seconds * sample_rate))
    T = math.ceil(n / chunk_size)
    k = int(rng.integers(lo, hi + 1))
    chosen = sorted((_BY_NAME[name] for name in _PRIORITY[:k]), key=lambda i: i.number)
    song = _Song(rng, n, sample_rate)
    kinds_bar = song.bar_section

    # Chunk-level section type and the ramped automation follow the same bar grid.
    chunk_bar = np.minimum((np.arange(T) * chunk_size / song.bar).astype(np.int64), song.n_bars - 1)
    stems, gains, files, levels = [], [], [], {}
    buf = np.zeros(T * chunk_size, dtype=np.float32)  # one stem, zero-padded to whole chunks
    mix = np.zeros((T, chunk_size), dtype=np.float64)
    for inst in chosen:
        flips = rng.random(len(SECTIONS)) < 0.1
        on = {s for s, f in zip(SECTIONS, flips, strict=True) if (s in inst.active) != f}
        active = np.isin(kinds_bar, [SECTIONS.index(x) for x in on])
        if not active.any():
            active[:] = True
        sig = (
            song.drums(inst.kind, active) if inst.kind in _DRUMS else song.notes(inst.kind, active)
        )
        peak = float(np.max(np.abs(sig)))
        level_db = float(rng.uniform(-20, -3))
        level = 10 ** (level_db / 20)
        stem = sig * np.float32(level / peak) if peak > 0 else sig
        stems.append(stem)
        auto = dict(inst.automation)
        step = np.array([auto.get(x, 0.0) for x in SECTIONS])[kinds_bar[chunk_bar]]
        ramp = np.convolve(
            np.pad(step, (_RAMP_CHUNKS // 2, _RAMP_CHUNKS - 1 - _RAMP_CHUNKS // 2), mode="edge"),
            np.ones(_RAMP_CHUNKS) / _RAMP_CHUNKS,
            mode="valid",
        )
        db = inst.house_db + rng.normal(0, SONG_OFFSET_DB) + ramp
        gain = 10 ** (db / 20) / level
        gains.append(gain)
        buf[:n] = stem
        mix += buf.reshape(T, chunk_size) * gain[:, None]
        fname = f"{inst.number:02d}_{inst.name}.wav"
        files.append(fname)
        levels[fname] = level_db

    stems_arr = np.stack(stems)
    gains_arr = np.stack(gains)
    mix = mix.ravel()[:n]
    scale = 10 ** (_MIX_PEAK_DB / 20) / max(float(np.max(np.abs(mix))), 1e-12)
    meta = {
        "seed": int(seed),
        "index": int(index),
        "bpm": song.bpm,
        "root_midi": song.root,
        "progression": list(song.prog),
        "sections": [
            {
                "type": k_,
                "start_s": a * song.bar / sample_rate,
                "end_s": min(b * song.bar, n) / sample_rate,
            }
            for k_, a, b in song.sections
        ],
        "recording_level_db": levels,
        "mix_scale": scale,
        "house_db": {f: _BY_NAME[f[3:-4]].house_db for f in files},
    }
    return SyntheticSong(
        name=f"SynthSong{index + 1:03d}",
        stem_files=files,
        stems=stems_arr,
        reference=(mix * scale).astype(np.float32),
        true_gains=(gains_arr * scale).astype(np.float32),
        sample_rate=sample_rate,
        chunk_size=chunk_size,
        meta=meta,
    )


def make_synthetic_dataset(
    out_dir: str | os.PathLike,
    *,
    n_songs: int,
    seconds: float,
    n_tracks: int | tuple[int, int],
    seed: int,
    sample_rate: int = SAMPLE_RATE,
    chunk_size: int = CHUNK_SIZE,
) -> list[Path]:
    """Write synthetic songs as Cambridge-MT-style folders.

    Each ``<out_dir>/SynthSongNNN/`` holds the stems (``01_Kick.wav`` ...), the reference
    ``SynthSongNNN_Mix.wav`` (32-bit float WAV: no quantisation), ``true_gains.npz``
    (per stem file name, the per-chunk gains [shape=(T_song,)], plus ``__chunk_size__``
    and ``__sample_rate__``) and ``synthetic.json`` (tempo, key, sections, levels).

    Args:
        out_dir: Dataset folder (created).
        n_songs: Number of songs (>= 1).
        seconds: Length of each song in seconds.
        n_tracks: Stems per song, or a ``(lo, hi)`` range drawn per song; 2..24.
        seed: Seed; the same arguments give the same files.
        sample_rate: Hz.
        chunk_size: Samples per chunk of the gain automation.

    Returns:
        The song folders.
    """
    if not isinstance(n_songs, int) or n_songs < 1:
        raise ConfigError(f"n_songs must be an int >= 1, got {n_songs!r}")
    if not isinstance(sample_rate, int) or sample_rate < 1:
        raise ConfigError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    out = Path(out_dir)
    folders = []
    for i in range(n_songs):
        s = generate_song(
            i,
            seconds=seconds,
            n_tracks=n_tracks,
            seed=seed,
            chunk_size=chunk_size,
            sample_rate=sample_rate,
        )
        folder = out / s.name
        folder.mkdir(parents=True, exist_ok=True)
        for fname, y in zip(s.stem_files, s.stems, strict=True):
            write_audio(folder / fname, y, sample_rate=sample_rate, subtype="FLOAT")
        write_audio(
            folder / f"{s.name}_Mix.wav", s.reference, sample_rate=sample_rate, subtype="FLOAT"
        )
        truth = {f: g for f, g in zip(s.stem_files, s.true_gains, strict=True)}
        tmp = folder / f".{TRUTH_FILE}.tmp.npz"
        np.savez(
            tmp, __chunk_size__=np.int64(chunk_size), __sample_rate__=np.int64(sample_rate), **truth
        )
        os.replace(tmp, folder / TRUTH_FILE)
        (folder / "synthetic.json").write_text(json.dumps(s.meta, indent=1))
        folders.append(folder)
    return folders


def synthetic_songs(
    *,
    n_songs: int,
    seconds: float,
    n_tracks: int | tuple[int, int],
    seed: int,
    chunk_size: int = CHUNK_SIZE,
    sample_rate: int = SAMPLE_RATE,
    taxonomy: Taxonomy | None = None,
) -> list[Song]:
    """The same songs as :func:`make_synthetic_dataset`, in memory and chunked.

    The slot layout, padding to the longest song and ``true_gains`` are those
    :func:`~mixing_env.data.prepare.prepare_dataset` gives for the written folders, so both
    routes yield equal arrays.

    Returns:
        Songs with stems [shape=(C, T, chunk_size)], reference [shape=(T, chunk_size)],
        ``true_gains`` [shape=(C, T)].
    """
    if not isinstance(n_songs, int) or n_songs < 1:
        raise ConfigError(f"n_songs must be an int >= 1, got {n_songs!r}")
    taxonomy = taxonomy or Taxonomy.load()
    raw = [
        generate_song(
            i,
            seconds=seconds,
            n_tracks=n_tracks,
            seed=seed,
            chunk_size=chunk_size,
            sample_rate=sample_rate,
        )
        for i in range(n_songs)
    ]
    song_slots = [taxonomy.assign_slots([Path(f).stem for f in s.stem_files]) for s in raw]
    layout = taxonomy.slot_layout(song_slots)
    index = {s: i for i, s in enumerate(layout)}
    K = chunk_size
    T = max(math.ceil(s.reference.size / K) for s in raw)
    songs = []
    for s, slots in zip(raw, song_slots, strict=True):
        n = s.reference.size
        stems = np.zeros((len(layout), T * K), dtype=np.float32)
        mask = np.zeros(len(layout), dtype=np.float32)
        gains = np.zeros((len(layout), T), dtype=np.float32)
        for y, g, slot in zip(s.stems, s.true_gains, slots, strict=True):
            c = index[slot]
            stems[c, :n] = y
            mask[c] = 1.0
            gains[c] = np.pad(g, (0, T - g.size), mode="edge") if g.size < T else g[:T]
        ref = np.zeros(T * K, dtype=np.float32)
        ref[:n] = s.reference
        songs.append(
            Song(
                name=s.name,
                stems=stems.reshape(len(layout), T, K),
                reference=ref.reshape(T, K),
                track_mask=mask,
                slot_names=list(layout),
                sample_rate=sample_rate,
                true_gains=gains,
                n_valid_chunks=math.ceil(n / K),
                stem_files={slot: f for slot, f in zip(slots, s.stem_files, strict=True)},
            )
        )
    return songs
