"""The on-disk cache of a prepared dataset, and the reader env runners memory-map.

Layout::

    <cache>/manifest.json
    <cache>/songs/<name>/stems.npy        float32 (C, T, chunk)   dummy slots are zeros
    <cache>/songs/<name>/reference.npy    float32 (T, chunk)
    <cache>/songs/<name>/track_mask.npy   float32 (C,)            1 real, 0 dummy
    <cache>/songs/<name>/true_gains.npy   float32 (C, T)          synthetic songs only

Caches are mono: ``prepare_dataset`` refuses stereo, and a stereo cache written by an older
version is refused here with a line that says to prepare it again.

The manifest is the only record of what is good: a song folder counts only once the
manifest lists it, and the manifest is replaced atomically after each finished song.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mixing_env.constants import CACHE_FORMAT_VERSION
from mixing_env.data.song import Song
from mixing_env.errors import CacheError

__all__ = [
    "MANIFEST",
    "REQUIRED_FILES",
    "SONGS_DIR",
    "PreparedDataset",
    "read_manifest",
    "song_dir",
    "write_manifest",
]

MANIFEST = "manifest.json"
SONGS_DIR = "songs"
REQUIRED_FILES = ("stems.npy", "reference.npy", "track_mask.npy")
"""The arrays every prepared song has (synthetic ones also ``true_gains.npy``)."""


def song_dir(cache_dir: str | os.PathLike, name: str) -> Path:
    """Folder of one prepared song."""
    return Path(cache_dir) / SONGS_DIR / name


def write_manifest(cache_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically (temporary file, fsync, ``os.replace``)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, cache_dir / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(cache_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest, or None when there is none or it is unreadable."""
    path = Path(cache_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class PreparedDataset:
    """A prepared dataset cache, opened read-only.

    Args:
        cache_dir: A folder written by :func:`~mixing_env.data.prepare.prepare_dataset`.

    Raises:
        CacheError: No manifest, another format version, or an interrupted preparation.

    Example:
        >>> ds = PreparedDataset("cache/synth")            # doctest: +SKIP
        >>> for stems, mix in ds.tuples():                 # (C, T, chunk), (T, chunk)
        ...     pass
    """

    def __init__(self, cache_dir: str | os.PathLike):
        self.cache_dir = Path(cache_dir)
        path = self.cache_dir / MANIFEST
        if not path.is_file():
            raise CacheError(f"no prepared dataset at {self.cache_dir}: {MANIFEST} is missing")
        manifest = read_manifest(self.cache_dir)
        if manifest is None:
            raise CacheError(f"prepared dataset manifest {path} is unreadable")
        version = manifest.get("format_version")
        if version != CACHE_FORMAT_VERSION:
            raise CacheError(
                f"prepared dataset {self.cache_dir} has cache format version {version!r}, "
                f"expected {CACHE_FORMAT_VERSION}; prepare it again"
            )
        if not manifest.get("complete", False):
            raise CacheError(
                f"prepared dataset {self.cache_dir} is incomplete (its preparation was "
                "interrupted); run deepmixing prepare again to finish it"
            )
        if manifest.get("channels"):
            raise CacheError(
                f"prepared dataset {self.cache_dir} is a stereo cache, which the environment, "
                "evaluation and mixing cannot read; prepare it again without --stereo"
            )
        self.manifest: dict[str, Any] = manifest

    @property
    def names(self) -> list[str]:
        """Prepared song names, in dataset order."""
        return list(self.manifest["songs"])

    @property
    def slot_names(self) -> list[str]:
        """Slot names, e.g. ``"Drums/Kick#1"`` [len C]."""
        return list(self.manifest["slots"])

    @property
    def n_slots(self) -> int:
        """C, slots per song (real plus dummy)."""
        return len(self.manifest["slots"])

    @property
    def n_chunks(self) -> int:
        """T, chunks per song (after padding)."""
        return int(self.manifest["n_chunks"])

    @property
    def chunk_size(self) -> int:
        """Samples per chunk."""
        return int(self.manifest["chunk_size"])

    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz."""
        return int(self.manifest["sample_rate"])

    @property
    def failed(self) -> dict[str, str]:
        """Songs that could not be prepared: name -> reason."""
        return dict(self.manifest.get("failed", {}))

    def __len__(self) -> int:
        return len(self.manifest["songs"])

    def __iter__(self) -> Iterator[Song]:
        for name in self.names:
            yield self.load(name)

    def __repr__(self) -> str:
        return (
            f"PreparedDataset({str(self.cache_dir)!r}, songs={len(self)}, C={self.n_slots}, "
            f"T={self.n_chunks}, chunk={self.chunk_size}, sr={self.sample_rate})"
        )

    def _open(self, path: Path, mmap: bool, shape: tuple[int, ...] | None) -> np.ndarray:
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CacheError(
                f"cannot open cached array {path} ({e}); run deepmixing prepare again to rebuild it"
            ) from e
        if shape is not None and tuple(arr.shape) != shape:
            raise CacheError(f"cached array {path} has shape {arr.shape}, expected {shape}")
        return arr

    def load(self, name: str, *, mmap: bool = True) -> Song:
        """Open one prepared song.

        Args:
            name: A name from :attr:`names`.
            mmap: Memory-map the arrays read-only (default) instead of reading them in.

        Returns:
            The :class:`~mixing_env.data.song.Song`, stems [shape=(C, T, chunk)].

        Raises:
            CacheError: Unknown name, or a file missing or of the wrong shape.
        """
        record = self.manifest["songs"].get(name)
        if record is None:
            raise CacheError(
                f"song {name!r} is not in the prepared dataset {self.cache_dir}; "
                f"known: {self.names[:10]}{'...' if len(self) > 10 else ''}"
            )
        folder = song_dir(self.cache_dir, name)
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if missing:
            raise CacheError(f"prepared song {folder} is missing {missing}; prepare again")
        C, T, K = self.n_slots, self.n_chunks, self.chunk_size
        stems = self._open(folder / "stems.npy", mmap, (C, T, K))
        reference = self._open(folder / "reference.npy", mmap, (T, K))
        mask = np.asarray(self._open(folder / "track_mask.npy", False, (C,)), dtype=np.float32)
        gains = None
        if record.get("has_true_gains"):
            gains = self._open(folder / "true_gains.npy", mmap, (C, T))
        return Song(
            name=name,
            stems=stems,
            reference=reference,
            track_mask=mask,
            slot_names=self.slot_names,
            sample_rate=self.sample_rate,
            true_gains=gains,
            n_valid_chunks=int(record["n_valid_chunks"]),
            stem_files={s["slot"]: s["path"] for s in record["stems"] if s.get("slot")},
        )

    def tuples(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The report's iterator: per song ``(stems [C, T, chunk], mix [T, chunk])``."""
        for song in self:
            yield song.stems, song.reference
