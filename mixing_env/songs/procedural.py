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

This module holds the instruments and the gain truth; the notes and drum hits come from
:mod:`mixing_env.songs.procedural_music`, song folders are written by
:mod:`mixing_env.data.song_folder`, and slots are given by :mod:`mixing_env.data.slots`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data.slots import build_song, place_stems, resolve_layout
from mixing_env.data.song import Song
from mixing_env.data.song_folder import write_song_folder
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.errors import ConfigError
from mixing_env.songs.procedural_music import DRUM_KINDS, SECTIONS, ProceduralSong

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
    song = ProceduralSong(rng, n, sample_rate)
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
        render = song.drums if inst.kind in DRUM_KINDS else song.notes
        sig = render(inst.kind, active)
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
        folder = write_song_folder(
            out / s.name,
            stem_files=s.stem_files,
            stems=s.stems,
            reference=s.reference,
            true_gains=s.true_gains,
            sample_rate=sample_rate,
            chunk_size=chunk_size,
            meta=s.meta,
        )
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
    layout: str | os.PathLike | Sequence[str] | None = None,
) -> list[Song]:
    """The same songs as :func:`make_synthetic_dataset`, in memory and chunked.

    Slots, padding to the longest song and ``true_gains`` come from the functions
    :func:`~mixing_env.data.prepare.prepare_dataset` uses (:mod:`mixing_env.data.slots`), so
    both routes yield equal arrays for the same ``layout``.

    Args:
        n_songs: Number of songs (>= 1).
        seconds: Length of each song in seconds.
        n_tracks: Stems per song, or a ``(lo, hi)`` range drawn per song; 2..24.
        seed: Seed.
        chunk_size: Samples per chunk.
        sample_rate: Hz.
        taxonomy: Name rules; None: the default.
        layout: None (the fixed C = 72 layout), ``"compact"``, a layout file or slot names.

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
    names = [[Path(f).stem for f in s.stem_files] for s in raw]
    slots, _ = resolve_layout(layout, taxonomy=taxonomy, songs=names)
    T = max(math.ceil(s.reference.size / chunk_size) for s in raw)
    return [
        build_song(
            s.name,
            place_stems(stems, slots, taxonomy),
            s.stems,
            layout=slots,
            sample_rate=sample_rate,
            chunk_size=chunk_size,
            reference=s.reference,
            n_chunks=T,
            true_gains=s.true_gains,
            stem_files=s.stem_files,
        )
        for s, stems in zip(raw, names, strict=True)
    ]
