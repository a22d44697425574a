"""Songs played by sampled instruments and mixed by a model of real practice.

Each song draws a band (:mod:`.parts`), an arrangement with humanised notes
(:mod:`.arrangement`), renders every part through a General MIDI soundfont
(:mod:`.renderer`), records each stem at its own raw level, and mixes them with the fader
moves of :mod:`.mixing_model`; with probability ``master_bus`` the reference then goes
through a master bus (:mod:`.master_bus`). Before the bus, chunk by chunk::

    reference[t] = sum_i true_gains_i[t] * stem_i[t]

Everything is deterministic from ``(seed, song index)``: song k is the same whatever
``n_songs`` is, and turning the master bus on changes the reference only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data import song_folder
from mixing_env.data.sampled.arrangement import Arrangement
from mixing_env.data.sampled.master_bus import apply_master_bus, draw_master_bus
from mixing_env.data.sampled.mixing_model import (
    MIX_OPTION_DEFAULTS,
    check_mix_options,
    mix_gains_db,
)
from mixing_env.data.sampled.parts import PARTS, choose_parts
from mixing_env.data.sampled.renderer import DEFAULT_SOUNDFONT, render_part
from mixing_env.data.synthetic import SyntheticSong
from mixing_env.errors import ConfigError

__all__ = [
    "MAX_STEMS",
    "MIN_STEMS",
    "NATURAL_PEAK_DB",
    "RECORDING_LEVELS",
    "generate_sampled_song",
    "make_sampled_dataset",
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
_OVERHEAD_HIGHPASS_HZ = 250.0  # overheads are usually high-passed: the kick mic has the lows


def _check(seconds, n_tracks, master_bus, recording_level="random", masking_db=0.0,
           own_sd_scale=1.0, group_sd_scale=1.0) -> tuple[int, int, float]:
    check_mix_options(masking_db=masking_db, own_sd_scale=own_sd_scale,
                      group_sd_scale=group_sd_scale)
    if recording_level not in RECORDING_LEVELS:
        raise ConfigError(f"recording_level must be one of {list(RECORDING_LEVELS)}, "
                          f"got {recording_level!r}")
    if not isinstance(seconds, int | float) or not seconds > 0:
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


def generate_sampled_song(
    index: int,
    *,
    seconds: float = 20.0,
    n_tracks: int | tuple[int, int] = (6, 11),
    seed: int,
    master_bus: bool | float = False,
    chunk_size: int = CHUNK_SIZE,
    sample_rate: int = SAMPLE_RATE,
    soundfont: str | os.PathLike | None = None,
    recording_level: str = "random",
    masking_db: float = 0.0,
    own_sd_scale: float = 1.0,
    group_sd_scale: float = 1.0,
) -> SyntheticSong:
    """Render song ``index`` of the sampled dataset with this ``seed``.

    Args:
        index: Song number (0-based); with ``seed`` it fixes every random choice.
        seconds: Length in seconds (> 0).
        n_tracks: Stems per song, or a ``(lo, hi)`` range drawn per song; 4..19.
        seed: Dataset seed.
        master_bus: Chance (0..1, or a bool) that the reference goes through a master bus.
        chunk_size: Samples per chunk the gains hold for.
        sample_rate: Hz.
        soundfont: A General MIDI ``.sf2``; None takes ``pretty_midi``'s TimGM6mb.
        recording_level: ``"random"`` or ``"natural"`` raw levels (:data:`RECORDING_LEVELS`);
            the notes, the mixing decisions and the reference are the same either way.
        masking_db: The mixing model's content term, dB of lift per unit of masking index
            (:mod:`.masking`); 0 (the default) leaves it out.
        own_sd_scale: Multiplies the spread of the random per-stem level offsets (>= 0;
            1 is the default model).
        group_sd_scale: The same for the per-song group offsets. These three options change
            neither the notes nor the stems.

    Returns:
        The song, in the same form as the procedural generator's.

    Raises:
        ConfigError: An argument is out of range, or the soundfont cannot be read.
    """
    lo, hi, p_bus = _check(seconds, n_tracks, master_bus, recording_level, masking_db,
                           own_sd_scale, group_sd_scale)
    rng = np.random.default_rng([int(seed), int(index)])
    n = int(round(seconds * sample_rate))
    T = math.ceil(n / chunk_size)
    arrangement = Arrangement(rng, seconds)
    parts = choose_parts(rng, int(rng.integers(lo, hi + 1)))

    stems, files, parts_meta = [], [], {}
    highpass = butter(2, _OVERHEAD_HIGHPASS_HZ, btype="highpass", fs=sample_rate, output="sos")
    for number, part in enumerate(parts, start=1):
        active = arrangement.active_bars(part)
        notes = arrangement.notes(part, active)
        if not np.any(notes[:, 1] < seconds - 0.05):  # a short song ends before its sections
            notes = arrangement.notes(part, np.ones_like(active))
        program = int(rng.choice(part.programs)) if part.programs else 0
        sung = part.role == "backing" or part.name == "LeadVox"
        y = render_part(notes, program=program, drum=part.drum, seconds=seconds,
                        sample_rate=sample_rate, soundfont=soundfont,
                        vibrato_cents=float(rng.uniform(15, 35)) if sung else 0.0)
        if part.style == "overheads":
            y = sosfilt(highpass, y).astype(np.float32)
        mean, sd, low, high = RECORDING_PEAK_DB
        level_db = float(np.clip(rng.normal(mean, sd), low, high))  # drawn either way
        peak = float(np.max(np.abs(y)))
        if recording_level == "random" and peak > 0:
            y = y * np.float32(10 ** (level_db / 20) / peak)
        stems.append(y)
        fname = f"{number:02d}_{part.name}.wav"
        files.append(fname)
        parts_meta[fname] = {"role": part.role, "program": program, "drum": part.drum,
                             "notes": int(len(notes))}

    stems_arr = np.stack(stems)
    if recording_level == "natural":  # one gain for the song keeps the soundfont's balance
        loudest = max(float(np.max(np.abs(stems_arr))), 1e-12)
        stems_arr *= np.float32(10 ** (NATURAL_PEAK_DB / 20) / loudest)
    for fname, y in zip(files, stems_arr, strict=True):
        peak = float(np.max(np.abs(y)))
        parts_meta[fname]["recording_peak_db"] = 20 * math.log10(peak) if peak > 0 else None
    chunk_start_s = np.arange(T) * chunk_size / sample_rate
    bar = np.minimum((chunk_start_s / arrangement.bar).astype(np.int64), arrangement.n_bars - 1)
    chunk_sections = arrangement.bar_section[bar].astype(str)
    gains_db, decisions = mix_gains_db(
        stems_arr, roles=[p.role for p in parts], chunk_sections=chunk_sections, rng=rng,
        sample_rate=sample_rate, chunk_size=chunk_size, masking_db=masking_db,
        own_sd_scale=own_sd_scale, group_sd_scale=group_sd_scale,
    )
    gains = 10 ** (gains_db / 20)
    padded = np.zeros((len(parts), T * chunk_size), dtype=np.float64)
    padded[:, :n] = stems_arr
    mix = np.einsum("it,itk->tk", gains, padded.reshape(len(parts), T, chunk_size)).ravel()[:n]
    scale = 10 ** (_MIX_PEAK_DB / 20) / max(float(np.max(np.abs(mix))), 1e-12)
    reference = (mix * scale).astype(np.float32)
    bus = draw_master_bus(rng) if rng.random() < p_bus else None
    if bus is not None:
        reference = apply_master_bus(reference, bus, rng=rng, sample_rate=sample_rate)

    mixing = {
        "target_lu_vs_lead": dict(zip(files, decisions.target_db, strict=True)),
        "section_scale": decisions.section_scale,
        "duck_db": dict(zip(files, decisions.duck_db, strict=True)),
        "ride_strength": decisions.ride_strength,
        "ride_range_db": list(decisions.ride_range_db),
    }
    options = {"masking_db": float(masking_db), "own_sd_scale": float(own_sd_scale),
               "group_sd_scale": float(group_sd_scale)}
    if options != MIX_OPTION_DEFAULTS:  # the default model's json stays as it was
        mixing |= options
    if decisions.masking_index is not None:
        mixing |= {"masking_index": dict(zip(files, decisions.masking_index, strict=True)),
                   "masking_lift_db": dict(zip(files, decisions.masking_lift_db, strict=True))}
    meta = {
        "generator": "sampled",
        "seed": int(seed),
        "index": int(index),
        "soundfont": Path(soundfont or DEFAULT_SOUNDFONT).name,
        "recording_level": recording_level,
        **arrangement.meta(),
        "parts": parts_meta,
        "mixing": mixing,
        "mix_scale": scale,
        "master_bus": bus.as_dict() if bus is not None else None,
    }
    return SyntheticSong(
        name=f"SampledSong{index + 1:03d}",
        stem_files=files,
        stems=stems_arr,
        reference=reference,
        true_gains=(gains * scale).astype(np.float32),
        sample_rate=sample_rate,
        chunk_size=chunk_size,
        meta=meta,
    )


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
    seconds: float = 20.0,
    n_tracks: int | tuple[int, int] = (6, 11),
    seed: int,
    master_bus: bool | float = False,
    sample_rate: int = SAMPLE_RATE,
    chunk_size: int = CHUNK_SIZE,
    soundfont: str | os.PathLike | None = None,
    recording_level: str = "random",
    masking_db: float = 0.0,
    own_sd_scale: float = 1.0,
    group_sd_scale: float = 1.0,
) -> list[Path]:
    """Write sampled songs as Cambridge-MT-style folders ``<out_dir>/SampledSongNNN/``.

    Args:
        out_dir: Dataset folder (created).
        n_songs: Number of songs (>= 1).
        seconds: Length of each song in seconds.
        n_tracks: Stems per song, or a ``(lo, hi)`` range drawn per song; 4..19.
        seed: Seed; the same arguments give the same files.
        master_bus: Chance (0..1, or a bool) that a song's reference is bus-processed.
        sample_rate: Hz.
        chunk_size: Samples per chunk of the gain automation.
        soundfont: A General MIDI ``.sf2``; None takes ``pretty_midi``'s TimGM6mb.
        recording_level: Raw stem levels, ``"random"`` or ``"natural"``
            (:data:`RECORDING_LEVELS`).
        masking_db: The mixing model's content term, dB of lift per unit of masking index;
            0 (the default) leaves it out.
        own_sd_scale: Multiplies the spread of the random per-stem level offsets.
        group_sd_scale: Multiplies the spread of the random per-group level offsets.

    Returns:
        The song folders.
    """
    if not isinstance(n_songs, int) or n_songs < 1:
        raise ConfigError(f"n_songs must be an int >= 1, got {n_songs!r}")
    if not isinstance(sample_rate, int) or sample_rate < 1:
        raise ConfigError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    _check(seconds, n_tracks, master_bus, recording_level, masking_db, own_sd_scale,
           group_sd_scale)
    out = Path(out_dir)
    return [
        write_song_folder(
            out / f"SampledSong{i + 1:03d}",
            generate_sampled_song(
                i, seconds=seconds, n_tracks=n_tracks, seed=seed, master_bus=master_bus,
                chunk_size=chunk_size, sample_rate=sample_rate, soundfont=soundfont,
                recording_level=recording_level, masking_db=masking_db,
                own_sd_scale=own_sd_scale, group_sd_scale=group_sd_scale,
            ),
        )
        for i in range(n_songs)
    ]

