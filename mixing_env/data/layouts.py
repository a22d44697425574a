"""Finding songs on disk: Cambridge-MT, MedleyDB and MUSDB18 folder layouts.

- **Cambridge-MT** ("Mixing Secrets" library): numbered stems named for the instrument
  (``01_Kick.wav``, ``07_ElecGtr2.wav``), flat in the song folder or in ``<Song>_Full/``; the
  reference mix in the song folder, found by a glob pattern (default ``*Mix*``) that must
  match exactly one file there.
- **MedleyDB**: ``<Song>_METADATA.yaml`` gives ``mix_filename``, ``stem_dir`` and ``stems``
  (each with ``filename`` and ``instrument``). Stems are used, not the ``raw`` files: the
  stems are what the mix was summed from.
- **MUSDB18** (WAV/FLAC version): ``mixture.wav`` plus ``vocals``, ``drums``, ``bass``,
  ``other``.

A song folder may also hold ``true_gains.npz`` (synthetic songs: the known gain automation).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mixing_env.data.audio_io import AUDIO_EXTENSIONS
from mixing_env.errors import DatasetError

__all__ = [
    "find_multitracks",
    "LAYOUTS",
    "TRUTH_FILE",
    "SongSource",
    "StemSource",
    "discover_songs",
    "scan_songs",
]

LAYOUTS = ("cambridge", "medleydb", "musdb")
"""Layout names recorded in :attr:`SongSource.layout`."""

TRUTH_FILE = "true_gains.npz"
"""Per-chunk true gains beside a synthetic song (see :mod:`mixing_env.songs.procedural`)."""

_MUSDB_STEMS = ("vocals", "drums", "bass", "other")
_MAX_DEPTH = 4


@dataclass(frozen=True)
class StemSource:
    """One stem file.

    Attributes:
        path: The audio file.
        name: What the taxonomy classifies: the file name (Cambridge-MT, MUSDB18) or the
            instrument label (MedleyDB).
    """

    path: Path
    name: str


@dataclass(frozen=True)
class SongSource:
    """One song's files, before any audio is read.

    Attributes:
        name: Song name (its folder's name; unique within a discovery).
        layout: One of :data:`LAYOUTS`.
        stems: The stems, in file order.
        mix_path: The reference mix (None for a folder of stems without one:
            :func:`find_multitracks`).
        truth_path: ``true_gains.npz`` when present, else None.
        folder: The song folder.
    """

    name: str
    layout: str
    stems: list[StemSource]
    mix_path: Path | None
    truth_path: Path | None = None
    folder: Path | None = field(default=None, compare=False)

    @property
    def files(self) -> list[Path]:
        """Every file the song is read from (mix, stems, truth)."""
        out = [*([self.mix_path] if self.mix_path else []), *(s.path for s in self.stems)]
        return out + ([self.truth_path] if self.truth_path else [])


def _audio_files(folder: Path) -> list[Path]:
    # Skip hidden files: macOS "._01_Kick.wav" resource forks are not audio.
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def _truth(folder: Path) -> Path | None:
    p = folder / TRUTH_FILE
    return p if p.is_file() else None


def _medleydb(folder: Path, meta: Path) -> SongSource:
    try:
        data = yaml.safe_load(meta.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DatasetError(f"cannot read MedleyDB metadata {meta}: {e}") from e
    if not isinstance(data, Mapping) or "mix_filename" not in data or "stems" not in data:
        raise DatasetError(
            f"MedleyDB metadata {meta} must have 'mix_filename' and 'stems'; "
            f"got keys {sorted(data) if isinstance(data, Mapping) else type(data).__name__}"
        )
    song = meta.name[: -len("_METADATA.yaml")]
    mix = folder / str(data["mix_filename"])
    if not mix.is_file():
        raise DatasetError(f"no mix found for {folder}: {meta} names {mix.name}, which is missing")
    stem_dir = folder / str(data.get("stem_dir") or f"{song}_STEMS")
    stems = []
    entries = data["stems"] or {}
    for key in sorted(entries):
        entry = entries[key] or {}
        if "filename" not in entry:
            raise DatasetError(f"MedleyDB metadata {meta}: stem {key} has no 'filename'")
        path = stem_dir / str(entry["filename"])
        if not path.is_file():
            raise DatasetError(f"MedleyDB metadata {meta}: stem file {path} is missing")
        label = entry.get("instrument") or path.stem
        if isinstance(label, list):  # MedleyDB 2 allows several labels; the first is the main
            label = label[0] if label else path.stem
        stems.append(StemSource(path, str(label)))
    if not stems:
        raise DatasetError(f"MedleyDB metadata {meta} lists no stems")
    return SongSource(folder.name, "medleydb", stems, mix, _truth(folder), folder)


def _musdb(folder: Path, files: list[Path]) -> SongSource | None:
    by_stem = {p.stem.lower(): p for p in files}
    if "mixture" not in by_stem:
        return None
    stems = [StemSource(by_stem[s], s) for s in _MUSDB_STEMS if s in by_stem]
    if not stems:
        raise DatasetError(f"MUSDB18 folder {folder} has mixture but none of {_MUSDB_STEMS}")
    return SongSource(folder.name, "musdb", stems, by_stem["mixture"], _truth(folder), folder)


def _cambridge(folder: Path, files: list[Path], mix_pattern: str) -> SongSource | None:
    full = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower().endswith("_full"))
    mixes = [p for p in files if fnmatch.fnmatch(p.name.lower(), mix_pattern.lower())]
    if full:
        stem_files = [p for d in full for p in _audio_files(d)]
        stem_files = [p for p in stem_files if p not in mixes]
    else:
        stem_files = [p for p in files if p not in mixes]
    if not stem_files and not mixes:
        return None
    if not mixes:
        raise DatasetError(
            f"no mix found in {folder}: no audio file matches the mix pattern {mix_pattern!r} "
            f"(set mix_pattern to the mix's name pattern)"
        )
    if not stem_files:
        raise DatasetError(f"song folder {folder} has a mix ({mixes[0].name}) but no stems")
    if len(mixes) > 1:  # e.g. "Song_Mix.wav" and "Song_MixFX.wav": never guess
        raise DatasetError(
            f"{len(mixes)} files in {folder} match the mix pattern {mix_pattern!r}: "
            f"{', '.join(p.name for p in mixes)}; give a pattern that matches one "
            f"(e.g. --mix-pattern '*_Mix.wav')"
        )
    mix = mixes[0]
    stems = [StemSource(p, p.stem) for p in stem_files]
    return SongSource(folder.name, "cambridge", stems, mix, _truth(folder), folder)


def _song_in(folder: Path, mix_pattern: str) -> SongSource | None:
    metas = sorted(folder.glob("*_METADATA.yaml"))
    if metas:
        return _medleydb(folder, metas[0])
    files = _audio_files(folder)
    song = _musdb(folder, files)
    if song is not None:
        return song
    return _cambridge(folder, files, mix_pattern)


def _stems_only(folder: Path, mix_pattern: str) -> SongSource | None:
    """A folder of stems with no mix, no MedleyDB metadata and no MUSDB18 mixture, or None."""
    files = _audio_files(folder)
    if (any(folder.glob("*_METADATA.yaml"))
            or any(p.stem.lower() == "mixture" for p in files)
            or any(fnmatch.fnmatch(p.name.lower(), mix_pattern.lower()) for p in files)):
        return None
    full = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower().endswith("_full"))
    stems = [p for d in full for p in _audio_files(d)] if full else files
    if not stems:
        return None
    return SongSource(folder.name, "cambridge", [StemSource(p, p.stem) for p in stems], None,
                      _truth(folder), folder)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is not a folder: {root}")
    if not any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise DatasetError(f"dataset folder {root} is empty")


def find_multitracks(root: str | os.PathLike, *, mix_pattern: str = "*Mix*"
                     ) -> list[SongSource]:
    """Every song under ``root`` whose stems can be read, with or without a mix.

    The layouts of :func:`scan_songs`, plus folders of stems alone (Cambridge-MT flat or in
    ``<Song>_Full/``, MUSDB18 stems without ``mixture.wav``): those have ``mix_path`` None.
    What mixes a folder (``deepmixing engineer``, ``mix``) reads songs this way.

    Raises:
        DatasetError: ``root`` is missing, empty or holds no stems, or a song folder is
            broken (the message names it).
    """
    root = Path(root)
    _check_root(root)
    found: list[SongSource] = []

    def walk(folder: Path, depth: int) -> None:
        song = _stems_only(folder, mix_pattern) or _song_in(folder, mix_pattern)
        if song is not None:
            found.append(song)
        elif depth < _MAX_DEPTH:
            for sub in sorted(p for p in folder.iterdir()
                              if p.is_dir() and not p.name.startswith(".")):
                walk(sub, depth + 1)

    walk(root, 0)
    if not found:
        raise DatasetError(f"no stems found in {root}: expected audio files "
                           f"({', '.join(AUDIO_EXTENSIONS)}) in song folders")
    return sorted(found, key=lambda s: s.name)


def scan_songs(
    root: str | os.PathLike, *, mix_pattern: str = "*Mix*"
) -> tuple[list[SongSource], dict[str, DatasetError]]:
    """Find every song under ``root``, collecting per-song errors instead of raising.

    ``root`` may be one song folder or a folder of song folders (nested up to a few levels,
    e.g. MUSDB18's ``train/`` and ``test/``).

    Args:
        root: Dataset or song folder.
        mix_pattern: Case-insensitive glob for the mix file of Cambridge-MT folders.

    Returns:
        ``(songs, errors)``: songs sorted by name (names made unique with the parent
        folder when two folders share one), and ``{folder: DatasetError}`` for song
        folders that could not be used.

    Raises:
        DatasetError: ``root`` is missing, not a folder, or empty.
    """
    root = Path(root)
    _check_root(root)
    songs: list[SongSource] = []
    errors: dict[str, DatasetError] = {}

    def walk(folder: Path, depth: int) -> None:
        try:
            song = _song_in(folder, mix_pattern)
        except DatasetError as e:
            errors[str(folder)] = e
            return
        if song is not None:
            songs.append(song)
            return
        if depth >= _MAX_DEPTH:
            return
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            walk(sub, depth + 1)

    walk(root, 0)
    counts: dict[str, int] = {}
    for s in songs:
        counts[s.name] = counts.get(s.name, 0) + 1
    unique = []
    for s in songs:
        if counts[s.name] > 1 and s.folder is not None:
            s = SongSource(
                f"{s.folder.parent.name}-{s.name}",
                s.layout,
                s.stems,
                s.mix_path,
                s.truth_path,
                s.folder,
            )
        unique.append(s)
    return sorted(unique, key=lambda s: s.name), errors


def discover_songs(root: str | os.PathLike, *, mix_pattern: str = "*Mix*") -> list[SongSource]:
    """Find every song under ``root``; any unusable song folder is an error.

    Args:
        root: Dataset folder (or one song folder) in Cambridge-MT, MedleyDB or MUSDB18 layout.
        mix_pattern: Case-insensitive glob for the mix file of Cambridge-MT folders.

    Returns:
        The songs, sorted by name.

    Raises:
        DatasetError: ``root`` is missing or empty, holds no song, or a song folder has no
            mix (the message names the folder).
    """
    songs, errors = scan_songs(root, mix_pattern=mix_pattern)
    if errors:
        raise next(iter(errors.values()))
    if not songs:
        raise DatasetError(
            f"no songs found in {root}: expected Cambridge-MT folders (stems + a mix matching "
            f"{mix_pattern!r}), MedleyDB (<Song>_METADATA.yaml) or MUSDB18 (mixture.wav + stems)"
        )
    return songs
