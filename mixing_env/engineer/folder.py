"""``deepmixing engineer``: the engineer mixes a folder of stems it did not make.

Any multitrack collection becomes a benchmark with a known engineer: for every song under the
folder (any layout ``prepare`` reads, with or without a mix of its own), the engineer of one
style decides every stem's gain per chunk from what the stems sound like, and the song is
written as ``prepare`` reads ``synth``'s songs::

    <out>/<Song>/<stem files>       links to the stems (copies where links cannot be made)
    <out>/<Song>/<Song>_Mix.wav     mono, 32-bit float: sum over stems of gain[t] * stem
    <out>/<Song>/true_gains.npz     each stem file's gain per chunk (mixing_env.data.song_folder)
    <out>/<Song>/engineer.json      style, inconsistency, seed, roles and every decision

Stereo stems are folded to mono (the mean of their channels) for the mix and the analysis.
The gains hold per chunk of ``chunk_size`` samples at the stems' own rate. A song is written
into a temporary folder and moved into place, so nothing is left half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixing_env.constants import CHUNK_SIZE
from mixing_env.data.audio_io import DataWarning, read_audio, write_audio
from mixing_env.data.layouts import SongSource, find_multitracks
from mixing_env.data.song_folder import write_true_gains
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.engineer.engineer import Engineer
from mixing_env.engineer.roles import roles_of
from mixing_env.errors import AudioFileError, ConfigError, DatasetError

__all__ = ["EngineeredSong", "engineer_folder", "engineer_song"]

_MIX_PEAK_DB = -1.0
_SILENT_PEAK = 1e-8
_MAX_CHANNELS = 2


@dataclass(frozen=True)
class EngineeredSong:
    """One song the engineer mixed: its folder and what it decided."""

    name: str
    folder: Path
    roles: dict[str, str]
    sample_rate: int


def _read_stems(song: SongSource) -> tuple[np.ndarray, int]:
    """The song's stems as mono float32 [shape=(n, longest)] at their common rate.

    Raises:
        AudioFileError: A stem is unreadable, has more than two channels, or its rate
            differs from the first stem's (the message names the file).
    """
    import soundfile as sf

    rates, channels = [], []
    for stem in song.stems:
        try:
            info = sf.info(str(stem.path))
        except Exception as e:
            raise AudioFileError(f"cannot read stem {stem.path}: {e}") from e
        rates.append(int(info.samplerate))
        channels.append(int(info.channels))
    for stem, rate, ch in zip(song.stems, rates, channels, strict=True):
        if rate != rates[0]:
            raise AudioFileError(f"stem {stem.path} is at {rate} Hz but {song.stems[0].path} "
                                 f"at {rates[0]} Hz: resample the song's stems to one rate")
        if ch > _MAX_CHANNELS:
            raise AudioFileError(f"stem {stem.path} has {ch} channels; the engineer reads mono "
                                 f"or stereo stems")
    audio = [read_audio(s.path, sample_rate=None, mono=True)[0] for s in song.stems]
    longest = max(a.size for a in audio)
    if any(a.size != longest for a in audio):
        short = [s.path.name for s, a in zip(song.stems, audio, strict=True) if a.size < longest]
        warnings.warn(f"{song.name}: stems {short} are shorter than the longest stem; they are "
                      f"padded with silence", DataWarning, stacklevel=3)
    stems = np.zeros((len(audio), longest), dtype=np.float32)
    for row, a in zip(stems, audio, strict=True):
        row[: a.size] = a
    return stems, rates[0]


def engineer_song(song: SongSource, out_dir: Path, *, engineer: Engineer, seed: int,
                  index: int = 0, chunk_size: int = CHUNK_SIZE,
                  taxonomy: Taxonomy | None = None) -> EngineeredSong:
    """Mix one song's stems and write it under ``out_dir/<song name>/``.

    Args:
        song: The song's files.
        out_dir: Where song folders go.
        engineer: Who mixes.
        seed: Seed of the engineer's random part; song ``index`` draws from ``(seed, index)``.
        index: The song's number in its folder.
        chunk_size: Samples per chunk the gains hold for.
        taxonomy: Name rules for the roles; None: the default.

    Raises:
        AudioFileError: A stem cannot be read (see :func:`_read_stems`).
        DatasetError: Every stem is silent.
    """
    stems, rate = _read_stems(song)
    silent = [s.path.name for s, y in zip(song.stems, stems, strict=True)
              if float(np.max(np.abs(y))) <= _SILENT_PEAK]
    if len(silent) == len(song.stems):
        raise DatasetError(f"{song.name}: every stem is silent; nothing to mix")
    if silent:
        warnings.warn(f"{song.name}: silent stems {silent} get gain 0", DataWarning,
                      stacklevel=2)
    roles = roles_of([s.name for s in song.stems], taxonomy)
    rng = np.random.default_rng([int(seed), int(index)])
    decided = engineer.mix(stems, roles, sample_rate=rate, chunk_size=chunk_size, rng=rng)
    mix, scale = decided.render(stems, chunk_size=chunk_size, peak_db=_MIX_PEAK_DB)
    files = [s.path.name for s in song.stems]
    if len(set(files)) != len(files):
        raise DatasetError(f"{song.name}: two stems share a file name ({files}); the output "
                           f"folder holds them side by side")
    final = out_dir / song.name
    tmp = out_dir / f".tmp-{song.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for stem in song.stems:
        _link_or_copy(stem.path, tmp / stem.path.name)
    write_audio(tmp / f"{song.name}_Mix.wav", mix, sample_rate=rate, subtype="FLOAT")
    write_true_gains(tmp, stem_files=files, true_gains=list(decided.gains * scale),
                     sample_rate=rate, chunk_size=chunk_size)
    meta = {"engineer": {"style": engineer.style.name,
                         "inconsistency_db": engineer.inconsistency, "seed": int(seed),
                         "index": int(index), "roles": dict(zip(files, roles, strict=True)),
                         "decisions_db": decided.decisions, "mix_scale": scale},
            "source": str(song.folder) if song.folder else None}
    (tmp / "engineer.json").write_text(json.dumps(meta, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return EngineeredSong(song.name, final, dict(zip(files, roles, strict=True)), rate)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # a filesystem without links
        shutil.copy2(src, dst)


def engineer_folder(source: str | os.PathLike, out_dir: str | os.PathLike, *,
                    style: str, inconsistency: float, seed: int = 0,
                    mix_pattern: str = "*Mix*", chunk_size: int = CHUNK_SIZE,
                    taxonomy: Taxonomy | None = None) -> list[EngineeredSong]:
    """Mix every song under ``source`` and write them under ``out_dir``.

    Args:
        source: A song folder or a folder of songs (any layout ``prepare`` reads; a mix of
            their own is not needed and not read).
        out_dir: The output folder (created); it must not be a file or inside ``source``.
        style: The engineer's style (:data:`~mixing_env.engineer.STYLES`).
        inconsistency: The engineer's random part, dB (0: perfectly consistent).
        seed: Seed of the random part.
        mix_pattern: How a song's own mix is recognised (it is left out of the stems).
        chunk_size: Samples per chunk the gains hold for.
        taxonomy: Name rules for the roles; None: the default.

    Returns:
        The songs written, in name order.

    Raises:
        ConfigError: A bad style or inconsistency, or an ``out_dir`` that is a file or lies
            inside ``source``.
        DatasetError: ``source`` is missing, empty or holds no stems.
        AudioFileError: A stem cannot be read (nothing of that song is written).
    """
    engineer = Engineer(style, inconsistency)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    songs = find_multitracks(source, mix_pattern=mix_pattern)
    src = Path(source).resolve()
    if out.resolve() == src or src in out.resolve().parents:
        raise ConfigError(f"--out {out} lies inside {source}: the mixes would be read as stems "
                          f"next time; give a folder elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    return [engineer_song(song, out, engineer=engineer, seed=seed, index=k,
                          chunk_size=chunk_size, taxonomy=taxonomy)
            for k, song in enumerate(songs)]
