"""Songs played by sampled instruments and mixed by a consistent engineer.

A song is drawn from a :class:`~mixing_env.songs.sampled.skeleton.Skeleton` (tempo, key, form
and every part's notes, rendered once): which parts play (:mod:`.parts`), which sections each
plays, and each stem's raw recording level. The engineer (:mod:`mixing_env.engineer`) then
mixes the stems from what they sound like; with probability ``master_bus`` the reference goes
through a master bus (:mod:`.master_bus`). Before the bus, chunk by chunk::

    reference[t] = sum_i true_gains_i[t] * stem_i[t]

Song ``index`` of a dataset written to disk is the first draw of skeleton ``index`` (stream
0); training streams (:mod:`mixing_env.songs.stream`) draw several songs from each skeleton of
their own streams. Everything is deterministic from ``(seed, stream, index, draw)``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data import song_folder
from mixing_env.engineer import Engineer, roles_of
from mixing_env.errors import ConfigError
from mixing_env.songs.procedural import SyntheticSong
from mixing_env.songs.sampled.master_bus import apply_master_bus, draw_master_bus
from mixing_env.songs.sampled.parts import PARTS, choose_parts
from mixing_env.songs.sampled.renderer import DEFAULT_SOUNDFONT
from mixing_env.songs.sampled.skeleton import Skeleton

__all__ = [
    "MAX_STEMS",
    "MIN_STEMS",
    "NATURAL_PEAK_DB",
    "RECORDING_LEVELS",
    "draw_song",
    "generate_sampled_song",
    "make_sampled_dataset",
    "sampled_songs",
    "write_song_folder",
]

MIN_STEMS, MAX_STEMS = 4, len(PARTS) + 1
RECORDING_PEAK_DB = (-10.0, 4.0, -24.0, -2.0)
"""Raw stems' peak level in dBFS: (mean, standard deviation, lowest, highest). Tracking
engineers leave 6-20 dB of headroom and no two tracks alike, so stems are not pre-balanced."""
RECORDING_LEVELS = ("random", "natural")
"""How raw stems are levelled: ``random``, each stem's peak at :data:`RECORDING_PEAK_DB`;
``natural``, the soundfont's own level at the played velocities (one gain per song puts the
loudest stem's peak at :data:`NATURAL_PEAK_DB`), so raw levels are already near a balance."""
NATURAL_PEAK_DB = -6.0
_MIX_PEAK_DB = -1.0
_SECTION_FADE_S = 0.01  # a part entering or leaving a section fades over 10 ms


def check_song_options(seconds, n_tracks, master_bus, recording_level="random"
                       ) -> tuple[int, int, float]:
    """Check the arguments a sampled song is made from.

    Returns:
        ``(fewest stems, most stems, master-bus chance)``.

    Raises:
        ConfigError: Naming the first bad value.
    """
    if recording_level not in RECORDING_LEVELS:
        raise ConfigError(f"recording_level must be one of {list(RECORDING_LEVELS)}, "
                          f"got {recording_level!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ConfigError(f"seconds must be > 0, got {seconds!r}")
    lo, hi = (n_tracks, n_tracks) if isinstance(n_tracks, int | np.integer) else tuple(n_tracks)
    if not (MIN_STEMS <= int(lo) <= int(hi) <= MAX_STEMS):
        raise ConfigError(
            f"n_tracks must be an int or (lo, hi) with {MIN_STEMS} <= lo <= hi <= {MAX_STEMS} "
            f"for sampled songs, got {n_tracks!r}"
        )
    p = float(master_bus)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"master_bus must be a probability in [0, 1], got {master_bus!r}")
    return int(lo), int(hi), p


def _section_envelope(active_bars: np.ndarray, bar_s: float, n: int,
                      sample_rate: int) -> np.ndarray | None:
    """Per-sample gain: 1 in the bars a part plays, 0 elsewhere, 10 ms linear fades between.

    None when the part plays every bar (nothing to multiply).
    """
    if active_bars.all():
        return None
    fade = max(int(_SECTION_FADE_S * sample_rate), 1)
    edges = np.round(np.arange(active_bars.size + 1) * bar_s * sample_rate).astype(np.int64)
    env = np.zeros(n, dtype=np.float32)
    for b in np.flatnonzero(active_bars):
        env[min(edges[b], n):min(edges[b + 1], n)] = 1.0
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for b in range(1, active_bars.size):  # each change of state ramps over ``fade``
        if active_bars[b] != active_bars[b - 1] and edges[b] < n:
            a = edges[b]
            seg = slice(max(a - fade // 2, 0), min(a - fade // 2 + fade, n))
            r = ramp[: seg.stop - seg.start] if active_bars[b] else ramp[::-1][
                : seg.stop - seg.start]
            env[seg] = r
    return env


def draw_song(skeleton: Skeleton, *, draw: int, n_tracks: tuple[int, int],
              recording_level: str = "random") -> tuple[list[str], np.ndarray, dict]:
    """One band, arrangement and set of recording levels from a skeleton.

    Args:
        skeleton: The music.
        draw: Which song of the skeleton (each draw is a different song).
        n_tracks: (fewest, most) stems.
        recording_level: ``"random"`` or ``"natural"`` raw levels.

    Returns:
        ``(stem file names, raw stems float32 [shape=(n, n_samples)], per-stem metadata)``.
    """
    rng = np.random.default_rng([skeleton.seed, skeleton.stream, skeleton.index, 1 + draw])
    parts = choose_parts(rng, int(rng.integers(n_tracks[0], n_tracks[1] + 1)))
    arrangement, n = skeleton.arrangement, skeleton.n_samples
    stems, files, meta = [], [], {}
    for number, part in enumerate(parts, start=1):
        active = arrangement.active_bars(part, rng)
        y = skeleton.render(part)
        envelope = _section_envelope(active, arrangement.bar, n, skeleton.sample_rate)
        if envelope is not None:
            rendered_peak = float(np.max(np.abs(y)))
            y = y * envelope
            if float(np.max(np.abs(y))) < 1e-3 * rendered_peak:  # a short song ends before
                y, active = skeleton.render(part), np.ones_like(active)  # its sections: all
        level_db = float(np.clip(rng.normal(RECORDING_PEAK_DB[0], RECORDING_PEAK_DB[1]),
                                 RECORDING_PEAK_DB[2], RECORDING_PEAK_DB[3]))
        peak = float(np.max(np.abs(y)))
        if recording_level == "random" and peak > 0:
            y = y * np.float32(10 ** (level_db / 20) / peak)
        fname = f"{number:02d}_{part.name}.wav"
        stems.append(y.astype(np.float32))
        files.append(fname)
        meta[fname] = {"role": part.role, "program": skeleton.programs[part.name],
                       "drum": part.drum, "register_octaves": skeleton.register[part.name],
                       "sections": sorted({str(s) for s in arrangement.bar_section[active]})}
    stems_arr = np.stack(stems)
    if recording_level == "natural":  # one gain for the song keeps the soundfont's balance
        loudest = max(float(np.max(np.abs(stems_arr))), 1e-12)
        stems_arr *= np.float32(10 ** (NATURAL_PEAK_DB / 20) / loudest)
    for fname, y in zip(files, stems_arr, strict=True):
        peak = float(np.max(np.abs(y)))
        meta[fname]["recording_peak_db"] = 20 * math.log10(peak) if peak > 0 else None
    return files, stems_arr, meta


def mix_song(name: str, files: list[str], stems: np.ndarray, *, engineer: Engineer,
             rng: np.random.Generator, sample_rate: int, chunk_size: int,
             master_bus: float = 0.0) -> tuple[SyntheticSong, dict]:
    """The engineer's mix of raw stems, as a :class:`SyntheticSong` and what it decided.

    The gains are scaled together so the clean mix peaks at -1 dBFS (the scale is in the
    written gains); the master bus, when drawn, processes the reference only.
    """
    decided = engineer.mix(stems, roles_of(files), sample_rate=sample_rate,
                           chunk_size=chunk_size, rng=rng)
    reference, scale = decided.render(stems, chunk_size=chunk_size, peak_db=_MIX_PEAK_DB)
    bus = draw_master_bus(rng) if rng.random() < master_bus else None
    if bus is not None:
        reference = apply_master_bus(reference, bus, rng=rng, sample_rate=sample_rate)
    info = {"style": engineer.style.name, "inconsistency_db": engineer.inconsistency,
            "roles": dict(zip(files, decided.roles, strict=True)),
            "decisions_db": decided.decisions, "mix_scale": scale,
            "master_bus": bus.as_dict() if bus is not None else None}
    song = SyntheticSong(name=name, stem_files=files, stems=stems, reference=reference,
                         true_gains=(decided.gains * scale).astype(np.float32),
                         sample_rate=sample_rate,
                         chunk_size=chunk_size, meta={}, measures={"analysis": decided.analysis})
    return song, info


def generate_sampled_song(
    index: int,
    *,
    seconds: float = 12.0,
    n_tracks: int | tuple[int, int] = (6, 11),
    seed: int,
    engineer: Engineer | None = None,
    master_bus: bool | float = False,
    chunk_size: int = CHUNK_SIZE,
    sample_rate: int = SAMPLE_RATE,
    soundfont: str | os.PathLike | None = None,
    recording_level: str = "random",
    stream: int = 0,
    draw: int = 0,
    skeleton: Skeleton | None = None,
    name: str | None = None,
) -> SyntheticSong:
    """Make song ``index`` of the sampled dataset with this ``seed``.

    Args:
        index: Skeleton number (0-based); with ``seed``, ``stream`` and ``draw`` it fixes
            every random choice.
        seconds: Length in seconds (> 0).
        n_tracks: Stems per song, or a ``(lo, hi)`` range drawn per song; 4..19.
        seed: Dataset seed.
        engineer: Who mixes it; None: the default engineer (``pop``, 1 dB inconsistency).
        master_bus: Chance (0..1, or a bool) that the reference goes through a master bus.
        chunk_size: Samples per chunk the gains hold for.
        sample_rate: Hz.
        soundfont: A General MIDI ``.sf2``; None takes ``pretty_midi``'s TimGM6mb.
        recording_level: ``"random"`` or ``"natural"`` raw levels (:data:`RECORDING_LEVELS`).
        stream: Skeleton stream (0 for datasets on disk).
        draw: Which song of the skeleton.
        skeleton: The skeleton, when the caller keeps it (it must match seed, stream, index).
        name: Song name; None: ``SampledSongNNN`` (draw 0) or ``SampledSongNNN-dD``.

    Returns:
        The song, in the same form as the procedural generator's.

    Raises:
        ConfigError: An argument is out of range, or the soundfont cannot be read.
    """
    lo, hi, p_bus = check_song_options(seconds, n_tracks, master_bus, recording_level)
    engineer = engineer or Engineer()
    if skeleton is None:
        skeleton = Skeleton(seed=seed, index=index, seconds=seconds, sample_rate=sample_rate,
                            stream=stream, soundfont=soundfont)
    files, stems, parts_meta = draw_song(skeleton, draw=draw, n_tracks=(lo, hi),
                                         recording_level=recording_level)
    rng = np.random.default_rng([int(seed), int(stream), int(index), 1 + int(draw), 7])
    name = name or f"SampledSong{index + 1:03d}" + (f"-d{draw}" if draw else "")
    song, mixing = mix_song(name, files, stems, engineer=engineer, rng=rng,
                            sample_rate=sample_rate, chunk_size=chunk_size, master_bus=p_bus)
    song.meta = {
        "generator": "sampled",
        "seed": int(seed), "index": int(index), "stream": int(stream), "draw": int(draw),
        "soundfont": Path(soundfont or DEFAULT_SOUNDFONT).name,
        "recording_level": recording_level,
        **skeleton.meta(),
        "parts": parts_meta,
        "engineer": {k: v for k, v in mixing.items() if k not in ("mix_scale", "master_bus")},
        "mix_scale": mixing["mix_scale"],
        "master_bus": mixing["master_bus"],
    }
    return song


def write_song_folder(folder: Path, song: SyntheticSong) -> Path:
    """Stems, ``<name>_Mix.wav``, ``true_gains.npz`` and ``sampled.json`` in ``folder``.

    The same files as the procedural generator writes (32-bit float WAV, so the truth
    holds to float precision), through :func:`mixing_env.data.song_folder.write_song_folder`.
    """
    return song_folder.write_song_folder(
        folder, stem_files=song.stem_files, stems=song.stems, reference=song.reference,
        true_gains=song.true_gains, sample_rate=song.sample_rate, chunk_size=song.chunk_size,
        meta=song.meta, meta_file="sampled.json")


def make_sampled_dataset(
    out_dir: str | os.PathLike,
    *,
    n_songs: int,
    seconds: float = 12.0,
    n_tracks: int | tuple[int, int] = (6, 11),
    seed: int,
    engineer: Engineer | None = None,
    master_bus: bool | float = False,
    sample_rate: int = SAMPLE_RATE,
    chunk_size: int = CHUNK_SIZE,
    soundfont: str | os.PathLike | None = None,
    recording_level: str = "random",
) -> list[Path]:
    """Write sampled songs as Cambridge-MT-style folders ``<out_dir>/SampledSongNNN/``.

    Args:
        out_dir: Dataset folder (created).
        n_songs: Number of songs (>= 1).
        seconds: Length of each song in seconds.
        n_tracks: Stems per song, or a ``(lo, hi)`` range drawn per song; 4..19.
        seed: Seed; the same arguments give the same files.
        engineer: Who mixes the songs; None: the default engineer.
        master_bus: Chance (0..1, or a bool) that a song's reference is bus-processed.
        sample_rate: Hz.
        chunk_size: Samples per chunk of the gain automation.
        soundfont: A General MIDI ``.sf2``; None takes ``pretty_midi``'s TimGM6mb.
        recording_level: Raw stem levels, ``"random"`` or ``"natural"``
            (:data:`RECORDING_LEVELS`).

    Returns:
        The song folders.
    """
    if isinstance(n_songs, bool) or not isinstance(n_songs, int) or n_songs < 1:
        raise ConfigError(f"n_songs must be an int >= 1, got {n_songs!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ConfigError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    check_song_options(seconds, n_tracks, master_bus, recording_level)
    engineer = engineer or Engineer()
    out = Path(out_dir)
    return [
        write_song_folder(
            out / f"SampledSong{i + 1:03d}",
            generate_sampled_song(
                i, seconds=seconds, n_tracks=n_tracks, seed=seed, engineer=engineer,
                master_bus=master_bus, chunk_size=chunk_size, sample_rate=sample_rate,
                soundfont=soundfont, recording_level=recording_level,
            ),
        )
        for i in range(n_songs)
    ]


def sampled_songs(*, n_songs: int, seconds: float = 12.0,
                  n_tracks: int | tuple[int, int] = (6, 11), seed: int,
                  style: str | None = None, inconsistency: float | None = None,
                  chunk_size: int = CHUNK_SIZE, sample_rate: int = SAMPLE_RATE) -> list:
    """The songs :func:`make_sampled_dataset` writes, in memory and in the default layout.

    The env's ``synthetic: {kind: sampled, ...}`` plays them, e.g. as held-out songs of an
    experiment that trains on a stream (stream 0 is never a training stream).

    Args:
        n_songs: Songs (>= 1).
        seconds: Length of each.
        n_tracks: Stems per song, or a (lo, hi) range.
        seed: Seed (the same as ``deepmixing synth --seed``).
        style: The engineer's style (None: the default).
        inconsistency: Its random part, dB (None: the default).
        chunk_size: Samples per chunk.
        sample_rate: Hz.

    Returns:
        :class:`~mixing_env.data.song.Song` objects padded to the longest song.
    """
    from mixing_env.data.slots import build_song, default_layout, place_stems
    from mixing_env.data.taxonomy import Taxonomy
    from mixing_env.engineer import DEFAULT_INCONSISTENCY_DB, DEFAULT_STYLE

    if isinstance(n_songs, bool) or not isinstance(n_songs, int) or n_songs < 1:
        raise ConfigError(f"n_songs must be an int >= 1, got {n_songs!r}")
    engineer = Engineer(style or DEFAULT_STYLE,
                        DEFAULT_INCONSISTENCY_DB if inconsistency is None else inconsistency)
    raw = [generate_sampled_song(i, seconds=seconds, n_tracks=n_tracks, seed=seed,
                                 engineer=engineer, chunk_size=chunk_size,
                                 sample_rate=sample_rate) for i in range(n_songs)]
    layout, taxonomy = default_layout(), Taxonomy.load()
    T = max(math.ceil(s.reference.size / chunk_size) for s in raw)
    return [build_song(s.name, place_stems([Path(f).stem for f in s.stem_files], layout,
                                           taxonomy),
                       list(s.stems), layout=layout, sample_rate=sample_rate,
                       chunk_size=chunk_size, reference=s.reference, n_chunks=T,
                       true_gains=list(s.true_gains), stem_files=s.stem_files,
                       measures=s.measures) for s in raw]
