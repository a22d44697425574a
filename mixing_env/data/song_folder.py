"""Generated songs on disk: a Cambridge-MT-style folder plus the known gains (``true_gains.npz``).

Any generator of songs with known gain automation (the procedural songs of
:mod:`mixing_env.songs.procedural`, or others) writes its songs through
:func:`write_song_folder`; ``prepare`` reads the gains back with :func:`load_true_gains`.

The ``true_gains.npz`` format: one float32 array [shape=(T_song,)] per stem file name (the
linear gain of each chunk), plus ``__chunk_size__`` and ``__sample_rate__`` (int64 scalars):
the chunking the gains hold for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mixing_env.data.audio_io import write_audio
from mixing_env.data.layouts import TRUTH_FILE
from mixing_env.errors import ConfigError, DatasetError

__all__ = ["load_true_gains", "write_song_folder", "write_true_gains"]


def write_song_folder(
    folder: str | os.PathLike,
    *,
    stem_files: Sequence[str],
    stems: Sequence[np.ndarray],
    reference: np.ndarray,
    true_gains: Sequence[np.ndarray],
    sample_rate: int,
    chunk_size: int,
    meta: Mapping | None = None,
    meta_file: str = "synthetic.json",
) -> Path:
    """Write one song: stems, ``<folder name>_Mix.wav``, ``true_gains.npz``, metadata JSON.

    Audio is 32-bit float WAV (no quantisation, so the reference equals the gained sum of the
    stems). The gains file is written to a temporary name and moved into place.

    Args:
        folder: The song folder (created); its name is the song's name.
        stem_files: Stem file names, e.g. ``["01_Kick.wav", ...]``.
        stems: Each stem [shape=(n,)] or [shape=(channels, n)].
        reference: The reference mix, same shape rules.
        true_gains: Per stem, its per-chunk linear gains [shape=(T_song,)].
        sample_rate: Hz.
        chunk_size: Samples per chunk the gains hold for.
        meta: Anything JSON-serialisable for humans and plots; None writes no file.
        meta_file: Name of the metadata file.

    Returns:
        The folder.

    Raises:
        ConfigError: Stems, files and gains differ in number.
    """
    if not (len(stem_files) == len(stems) == len(true_gains)):
        raise ConfigError(f"write_song_folder: {len(stem_files)} stem files, {len(stems)} stems "
                          f"and {len(true_gains)} gain rows must be as many")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, y in zip(stem_files, stems, strict=True):
        write_audio(folder / fname, y, sample_rate=sample_rate, subtype="FLOAT")
    write_audio(folder / f"{folder.name}_Mix.wav", reference, sample_rate=sample_rate,
                subtype="FLOAT")
    write_true_gains(folder, stem_files=stem_files, true_gains=true_gains,
                     sample_rate=sample_rate, chunk_size=chunk_size)
    if meta is not None:
        (folder / meta_file).write_text(json.dumps(meta, indent=1))
    return folder


def write_true_gains(folder: str | os.PathLike, *, stem_files: Sequence[str],
                     true_gains: Sequence[np.ndarray], sample_rate: int,
                     chunk_size: int) -> Path:
    """Write ``true_gains.npz`` (the format above) into ``folder``, atomically.

    Returns:
        The file.
    """
    truth = {str(f): np.asarray(g, dtype=np.float32)
             for f, g in zip(stem_files, true_gains, strict=True)}
    path = Path(folder) / TRUTH_FILE
    tmp = path.with_name(f".{TRUTH_FILE}.tmp.npz")
    np.savez(tmp, __chunk_size__=np.int64(chunk_size), __sample_rate__=np.int64(sample_rate),
             **truth)
    os.replace(tmp, path)
    return path


def load_true_gains(
    path: str | os.PathLike, stem_files: Sequence[str], *, chunk_size: int, sample_rate: int
) -> dict[str, np.ndarray] | None:
    """Read a song's ``true_gains.npz``.

    Args:
        path: The ``true_gains.npz`` file.
        stem_files: Stem file names to look up (e.g. ``"01_Kick.wav"``).
        chunk_size: Chunk size the gains must have been made for.
        sample_rate: Sample rate the gains must have been made for.

    Returns:
        ``{stem file name: gains [shape=(T_song,)]}``, or None when the file was made for
        another chunk size or rate (per-chunk gains then mean nothing).

    Raises:
        DatasetError: The file is unreadable.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            if (
                int(data["__chunk_size__"]) != chunk_size
                or int(data["__sample_rate__"]) != sample_rate
            ):
                return None
            return {f: np.asarray(data[f], dtype=np.float32) for f in stem_files if f in data.files}
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(f"cannot read true gains {path}: {e}") from e
