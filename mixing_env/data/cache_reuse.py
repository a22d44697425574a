"""What a rerun of prepare may do with a cache that is already there: reuse, refuse or replace.

Nothing prepared before is replaced without the user asking: a cache prepared with other
options, from another dataset or in another format version is refused unless ``rebuild`` is
given, and a song whose arrays on disk are damaged (a truncated ``stems.npy``) is not reused.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mixing_env.constants import CACHE_FORMAT_VERSION
from mixing_env.data.cache import MANIFEST, REQUIRED_FILES, song_dir
from mixing_env.errors import CacheError
from mixing_env.paths import check_output_folder

__all__ = ["check_cache_folder", "check_replace", "npy_intact", "remove_songs",
           "song_arrays_intact"]

logger = logging.getLogger(__name__)


def check_cache_folder(cache_dir: str | os.PathLike) -> None:
    """Refuses a cache path that is, or lies under, a file.

    Raises:
        CacheError: ``cache_dir`` or a folder above it is a file.
    """
    check_output_folder(cache_dir, what="cache folder", error=CacheError)


def _differences(previous: dict[str, Any], options: dict[str, Any], source_dir: str) -> list[str]:
    out = []
    version = previous.get("format_version")
    if version != CACHE_FORMAT_VERSION:
        out.append(f"format version {version!r} (now {CACHE_FORMAT_VERSION})")
    if previous.get("source_dir") != source_dir:
        out.append(f"dataset {previous.get('source_dir')} (now {source_dir})")
    before = previous.get("options") or {}
    for key, now in options.items():
        was = before.get(key)
        if was == now:
            continue
        if key == "slots":
            out.append(f"slot layout of {len(was or [])} slots (now {len(now)})")
        elif key == "taxonomy":
            out.append("taxonomy rules (now others)")
        else:
            out.append(f"{key}={was!r} (now {now!r})")
    return out


def check_replace(
    cache_dir: str | os.PathLike,
    previous: dict[str, Any] | None,
    *,
    options: dict[str, Any],
    source_dir: str,
    rebuild: bool,
) -> list[str]:
    """Whether this run may write into ``cache_dir``, given the manifest found there.

    Args:
        cache_dir: The cache folder.
        previous: Its manifest (None when there is none or it is unreadable).
        options: This run's options, as the manifest stores them.
        source_dir: This run's dataset folder, resolved.
        rebuild: The user asked to replace whatever the cache holds.

    Returns:
        Names of the songs the previous manifest lists when ``rebuild`` replaces them
        (their folders go once the new cache is complete); else an empty list.

    Raises:
        CacheError: Without ``rebuild``, the cache holds songs prepared with other options,
            from another dataset or in another format, or its manifest is unreadable.
    """
    hint = "pass --rebuild to replace them, or give another cache folder"
    if previous is None:
        if (Path(cache_dir) / MANIFEST).is_file() and not rebuild:
            raise CacheError(f"cache {cache_dir} has an unreadable {MANIFEST}; {hint}")
        return []
    songs = list(previous.get("songs") or {})
    if not songs:
        return []
    differences = _differences(previous, options, source_dir)
    if differences and not rebuild:
        raise CacheError(
            f"cache {cache_dir} holds {len(songs)} song(s) prepared with other settings: "
            f"{', '.join(differences)}; {hint}"
        )
    return songs if rebuild else []


def npy_intact(path: str | os.PathLike) -> bool:
    """True when a ``.npy`` file's header reads and the file is as long as it declares."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(f)
            expected = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    except (OSError, ValueError):
        return False
    return path.stat().st_size == expected


def remove_songs(cache_dir: str | os.PathLike, names: Iterable[str]) -> None:
    """Deletes the prepared folders of ``names`` (songs a rebuild did not prepare again)."""
    for name in names:
        shutil.rmtree(song_dir(cache_dir, name), ignore_errors=True)


def song_arrays_intact(cache_dir: str | os.PathLike, name: str, record: dict[str, Any]) -> bool:
    """True when every array of a prepared song is whole; logs the song when one is not."""
    files = [*REQUIRED_FILES, *(["true_gains.npy"] if record.get("has_true_gains") else [])]
    if all(npy_intact(song_dir(cache_dir, name) / f) for f in files):
        return True
    logger.warning("prepared arrays of song %s are damaged (truncated?); preparing it again", name)
    return False
