"""Preprocessing (report 3.2) of a multitrack dataset into an on-disk, memory-mappable cache.

Two passes. The first reads only file headers (``soundfile.info``): each song's length, the
slot layout and the length T. The second streams one song at a time: the mix and then each
stem is read, resampled, downmixed, put in its slot (:mod:`mixing_env.data.slots`), padded
and written straight into a memory-mapped ``stems.npy``, so peak memory stays near one
song's float32 size however large the dataset.

Each song is written into a temporary folder and moved into place with ``os.replace``; the
manifest, replaced atomically after every song, is the only record of what is finished. A
run that dies mid-song leaves at most a temporary folder that the next run deletes; a rerun
skips songs whose sources (size and modification time) and options are unchanged and whose
arrays are intact; it refuses a cache prepared with other options or from another dataset
unless asked to rebuild it (see :mod:`mixing_env.data.cache_reuse`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mixing_env.constants import CACHE_FORMAT_VERSION, CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data.cache import (
    SONGS_DIR,
    PreparedDataset,
    read_manifest,
    song_dir,
    write_manifest,
)
from mixing_env.data.cache_reuse import (
    check_cache_folder,
    check_replace,
    remove_songs,
    song_arrays_intact,
)
from mixing_env.data.layouts import SongSource, scan_songs
from mixing_env.data.slots import (
    LayoutSpec,
    resolve_layout,
)
from mixing_env.data.song_writer import (
    OLD_PREFIX,
    SILENCE_PEAK,
    TMP_PREFIX,
    plan_song,
    source_signature,
    write_song,
)
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.errors import AudioFileError, ConfigError, DatasetError

__all__ = ["SILENCE_PEAK", "STEREO_REFUSED", "prepare_dataset"]

logger = logging.getLogger(__name__)

STEREO_REFUSED = (
    "stereo caches are not supported: the environment, evaluation and mixing read mono "
    "caches only; prepare without --stereo (mono=True); `deepmixing mix` still renders its "
    "output from the stereo source files"
)
"""The one line ``prepare_dataset(mono=False)`` raises."""

def _clean_leftovers(cache_dir: Path) -> None:
    songs = cache_dir / SONGS_DIR
    if not songs.is_dir():
        return
    for p in songs.iterdir():
        if p.name.startswith((TMP_PREFIX, OLD_PREFIX)):
            shutil.rmtree(p, ignore_errors=True)


def _check_options(sample_rate, chunk_size, n_chunks) -> None:
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ConfigError(f"chunk_size must be a positive int (samples), got {chunk_size!r}")
    if n_chunks is not None and (not isinstance(n_chunks, int) or n_chunks <= 0):
        raise ConfigError(f"n_chunks must be a positive int or None, got {n_chunks!r}")


def prepare_dataset(
    source_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    sample_rate: int = SAMPLE_RATE,
    chunk_size: int = CHUNK_SIZE,
    mono: bool = True,
    n_chunks: int | None = None,
    slots: Sequence[str] | None = None,
    layout: LayoutSpec = None,
    taxonomy: Taxonomy | str | os.PathLike | None = None,
    strict: bool = False,
    progress: bool = True,
    mix_pattern: str = "*Mix*",
    rebuild: bool = False,
) -> PreparedDataset:
    """Prepare a multitrack dataset into a memory-mappable cache (report 3.2).

    Every song is read at ``sample_rate`` (soxr resampling), downmixed to mono, its stems
    put in the slots of one layout (by default the fixed C = 72 layout; dummy zero slots for
    missing ones), padded to the longest song (or ``n_chunks``) and cut into T chunks of
    ``chunk_size`` samples. Stems that go to an Extra slot (a name no rule matches, an
    instrument whose slots are full) or to no slot are reported: a :class:`DataWarning`
    each, and the song's manifest record lists them under ``placement``.

    Args:
        source_dir: Dataset folder (Cambridge-MT, MedleyDB or MUSDB18 layout) or one song.
        cache_dir: Output folder; reused across runs (finished songs are skipped).
        sample_rate: Target sample rate in Hz.
        chunk_size: Samples per chunk.
        mono: Must be True: stems are downmixed to mono (C, T, chunk). False is refused
            (:data:`STEREO_REFUSED`): nothing downstream reads a stereo cache.
        n_chunks: T; None pads to the longest song. Longer songs are trimmed, with a warning.
        slots: Slot names to force (e.g. a training cache's); same as ``layout=slots``.
        layout: None (the fixed C = 72 layout of ``layout.yaml``), ``"compact"`` (per
            instrument, the most stems any song has), a layout file (see
            :func:`~mixing_env.data.slots.read_layout`) or a list of slot names.
        taxonomy: A :class:`Taxonomy`, a user taxonomy YAML file, or None for the default.
        strict: Raise on the first bad song instead of recording it and going on.
        progress: Show a progress bar.
        mix_pattern: Case-insensitive glob for the mix of Cambridge-MT folders.
        rebuild: Replace a cache prepared with other options, from another dataset or in
            another format (its songs that this run does not prepare are deleted).

    Returns:
        The prepared dataset.

    Raises:
        DatasetError: The folder is missing or empty, or no song could be prepared
            (or, with ``strict``, any song folder is unusable).
        AudioFileError: With ``strict``, a file is missing, corrupt, or holds NaN/inf.
        ConfigError: An option is out of range.
        CacheError: ``cache_dir`` is a file, or (without ``rebuild``) holds songs prepared
            with other options or from another dataset.
    """
    _check_options(sample_rate, chunk_size, n_chunks)
    if not mono:
        raise ConfigError(STEREO_REFUSED)
    if slots is not None:  # the older spelling of layout=[...]
        layout = list(slots)
    if not isinstance(taxonomy, Taxonomy):
        taxonomy = Taxonomy.load(taxonomy)
    cache_dir = Path(cache_dir)
    check_cache_folder(cache_dir)
    sources, scan_errors = scan_songs(source_dir, mix_pattern=mix_pattern)
    failed: dict[str, str] = {}
    for folder, err in scan_errors.items():
        if strict:
            raise err
        failed[Path(folder).name] = str(err)
        logger.warning("skipping song folder %s: %s", folder, err)

    plans = []
    for source in sources:
        try:
            plans.append(plan_song(source, sample_rate))
        except AudioFileError as e:
            if strict:
                raise
            failed[source.name] = str(e)
            logger.warning("skipping song %s: %s", source.name, e)
    if not plans:
        reasons = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise DatasetError(
            f"no song in {source_dir} could be prepared" + (f" ({reasons})" if reasons else "")
        )

    base_options = {
        "sample_rate": sample_rate,
        "chunk_size": chunk_size,
        "mono": True,
        "taxonomy": taxonomy.fingerprint,
        "mix_pattern": mix_pattern,
    }
    previous = read_manifest(cache_dir)
    old = None if rebuild else previous
    if not (
        old
        and old.get("format_version") == CACHE_FORMAT_VERSION
        and {k: old.get("options", {}).get(k) for k in base_options} == base_options
    ):
        old = None
    # Songs cached before whose sources now fail stay in the dataset (nothing cached is
    # lost), so they still count for the slot layout and the length.
    kept_old = {
        n: r
        for n, r in (old or {}).get("songs", {}).items()
        if n in failed and song_dir(cache_dir, n).is_dir()
    }
    song_names = [[s.name for s in p["source"].stems] for p in plans]
    song_names += [[e["name"] for e in r["stems"]] for r in kept_old.values()]
    lengths = [p["n_samples"] for p in plans] + [r["n_samples"] for r in kept_old.values()]
    layout, layout_source = resolve_layout(layout, taxonomy=taxonomy, songs=song_names)
    T = n_chunks or max(math.ceil(n / chunk_size) for n in lengths)
    options = dict(base_options, n_chunks=T, slots=layout)
    source = str(Path(source_dir).resolve())
    replaced = check_replace(cache_dir, previous, options=options, source_dir=source,
                             rebuild=rebuild)
    reusable: dict[str, dict] = {}
    if old is not None and old.get("options") == options:
        reusable = old.get("songs", {})
    manifest: dict[str, Any] = {
        "format_version": CACHE_FORMAT_VERSION,
        "complete": False,
        "sample_rate": sample_rate,
        "chunk_size": chunk_size,
        "n_chunks": T,
        "channels": None,
        "slots": layout,
        "layout_source": layout_source,
        "source_dir": source,
        "taxonomy_source": taxonomy.source,
        "options": options,
        "songs": {},
        "failed": failed,
        "updated_at": time.time(),
    }
    todo = []
    for plan in plans:
        src: SongSource = plan["source"]
        rec = reusable.get(src.name)
        if (
            rec is not None
            and rec.get("sources") == source_signature(src.files)
            and song_dir(cache_dir, src.name).is_dir()
            and song_arrays_intact(cache_dir, src.name, rec)
        ):
            manifest["songs"][src.name] = rec
        else:
            todo.append(plan)
    # Songs of this cache whose sources now fail keep their finished arrays.
    for name in failed:
        if name in reusable and song_dir(cache_dir, name).is_dir():
            manifest["songs"][name] = dict(reusable[name], stale=True)
    _clean_leftovers(cache_dir)
    write_manifest(cache_dir, manifest)

    with tqdm(total=len(todo), desc="prepare", unit="song", disable=not progress) as bar:
        for plan in todo:
            name = plan["source"].name
            bar.set_postfix_str(name)
            try:
                record = write_song(
                    plan,
                    cache_dir,
                    slots=layout,
                    taxonomy=taxonomy,
                    n_chunks=T,
                    chunk_size=chunk_size,
                    sample_rate=sample_rate,
                )
            except (AudioFileError, DatasetError) as e:
                if strict:
                    raise
                failed[name] = str(e)
                logger.warning("skipping song %s: %s", name, e)
                if name in reusable and song_dir(cache_dir, name).is_dir():
                    manifest["songs"][name] = dict(reusable[name], stale=True)
            else:
                manifest["songs"][name] = record
                failed.pop(name, None)
            manifest["updated_at"] = time.time()
            write_manifest(cache_dir, manifest)
            bar.update(1)

    if not manifest["songs"]:
        reasons = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise DatasetError(f"no song in {source_dir} could be prepared ({reasons})")
    manifest["songs"] = dict(sorted(manifest["songs"].items()))
    manifest["complete"] = True
    write_manifest(cache_dir, manifest)
    remove_songs(cache_dir, [n for n in replaced if n not in manifest["songs"]])
    return PreparedDataset(cache_dir)
