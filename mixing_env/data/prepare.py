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
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mixing_env.constants import CACHE_FORMAT_VERSION, CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data.audio_io import DataWarning, audio_info, read_audio, resampled_length
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
    Placement,
    fill_gains,
    fill_slots,
    place_stems,
    resolve_layout,
)
from mixing_env.data.song_folder import load_true_gains
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.errors import AudioFileError, ConfigError, DatasetError

__all__ = ["SILENCE_PEAK", "STEREO_REFUSED", "prepare_dataset"]

logger = logging.getLogger(__name__)

SILENCE_PEAK = 1e-8
"""A stem whose absolute peak is at most this (about -160 dBFS) is marked silent."""

STEREO_REFUSED = (
    "stereo caches are not supported: the environment, evaluation and mixing read mono "
    "caches only; prepare without --stereo (mono=True); `deepmixing mix` still renders its "
    "output from the stereo source files"
)
"""The one line ``prepare_dataset(mono=False)`` raises."""

_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"


def _signature(paths: Sequence[Path]) -> dict[str, list[int]]:
    out = {}
    for p in paths:
        st = p.stat()
        out[str(p.resolve())] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def _warn(record: dict, message: str) -> None:
    record["warnings"].append(message)
    warnings.warn(message, DataWarning, stacklevel=3)


def _plan_song(source: SongSource, sample_rate: int) -> dict[str, Any]:
    """Header pass for one song: lengths and rates. Raises AudioFileError."""
    mix = audio_info(source.mix_path)
    stems = [audio_info(s.path) for s in source.stems]
    return {
        "source": source,
        "mix_info": mix,
        "stem_infos": stems,
        "n_samples": resampled_length(mix.frames, orig_sr=mix.sample_rate, target_sr=sample_rate),
    }


def _write_song(
    plan: dict[str, Any],
    cache_dir: Path,
    *,
    slots: list[str],
    taxonomy: Taxonomy,
    n_chunks: int,
    chunk_size: int,
    sample_rate: int,
) -> dict[str, Any]:
    """Stream one song into ``songs/<name>``; returns its manifest record."""
    source: SongSource = plan["source"]
    mix_info = plan["mix_info"]
    C, T, K = len(slots), n_chunks, chunk_size
    n_total = T * K
    record: dict[str, Any] = {
        "layout": source.layout,
        "folder": str(source.folder) if source.folder else None,
        "mix": str(source.mix_path),
        "mix_sample_rate": mix_info.sample_rate,
        "stems": [],
        "stem_to_slot": {},
        "silent": [],
        "placement": [],
        "warnings": [],
        "has_true_gains": False,
        "sources": _signature(source.files),
    }
    placement = place_stems(
        [s.name for s in source.stems], slots, taxonomy, labels=[str(s.path) for s in source.stems]
    )
    for note in placement.notes:
        record["placement"].append(note)
        _warn(record, note)
    tmp = cache_dir / SONGS_DIR / f"{_TMP_PREFIX}{source.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        mix = read_audio(source.mix_path, sample_rate=sample_rate, mono=True)[0]
        if max(float(mix.max()), -float(mix.min())) <= SILENCE_PEAK:
            raise DatasetError(
                f"song {source.name}: its reference mix {source.mix_path} is silent "
                f"(peak <= {SILENCE_PEAK:g}); no mix can be scored against it"
            )
        n_mix = mix.shape[0]
        if n_mix > n_total:
            _warn(
                record,
                f"mix {source.mix_path} is {n_mix} samples, longer than "
                f"n_chunks * chunk_size = {n_total}; trimmed",
            )
        n_keep = min(n_mix, n_total)
        ref = np.zeros(n_total, dtype=np.float32)
        ref[:n_keep] = mix[:n_keep]
        del mix
        np.save(tmp / "reference.npy", ref.reshape(T, K), allow_pickle=False)
        del ref

        for stem, info, slot in zip(
            source.stems, plan["stem_infos"], placement.slots, strict=True
        ):
            record["stems"].append({
                "path": str(stem.path),
                "name": stem.name,
                "slot": slot,
                "sample_rate": info.sample_rate,
                "channels": info.channels,
                "frames": info.frames,
                "silent": False,
            })

        def load(i: int) -> np.ndarray:
            stem, info, entry = source.stems[i], plan["stem_infos"][i], record["stems"][i]
            y = read_audio(stem.path, sample_rate=sample_rate, mono=True)[0]
            _check_stem(record, entry, y[:n_keep], info, mix_info, source.mix_path)
            record["stem_to_slot"][stem.path.name] = entry["slot"]
            return y

        stems = np.lib.format.open_memmap(
            tmp / "stems.npy", mode="w+", dtype=np.float32, shape=(C, T, K)
        )
        mask = fill_slots(stems, placement, load, n_samples=n_keep)
        stems.flush()
        del stems
        np.save(tmp / "track_mask.npy", mask, allow_pickle=False)

        if source.truth_path is not None:
            truth = _truth_rows(source, placement, record, n_slots=C, T=T, chunk_size=K,
                                sample_rate=sample_rate)
            if truth is not None:
                np.save(tmp / "true_gains.npy", truth, allow_pickle=False)
                record["has_true_gains"] = True
        record["n_samples"] = int(n_keep)
        record["n_valid_chunks"] = int(math.ceil(n_keep / K))
        record["prepared_at"] = time.time()
        _move_into_place(tmp, song_dir(cache_dir, source.name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _check_stem(record: dict, entry: dict, y: np.ndarray, info, mix_info, mix_path: Path) -> None:
    """Warn about a stem's rate, length and silence (``y``: the part that is kept)."""
    if info.sample_rate != mix_info.sample_rate:
        _warn(
            record,
            f"stem {entry['path']} is at {info.sample_rate} Hz but the mix "
            f"{mix_path.name} at {mix_info.sample_rate} Hz; resampled",
        )
    stem_seconds = info.frames / info.sample_rate
    mix_seconds = mix_info.frames / mix_info.sample_rate
    if abs(stem_seconds - mix_seconds) > 1.5 / min(info.sample_rate, mix_info.sample_rate):
        what = "shorter" if stem_seconds < mix_seconds else "longer"
        _warn(
            record,
            f"stem {entry['path']} is {what} than the mix {mix_path.name} "
            f"({stem_seconds:.3f} s vs {mix_seconds:.3f} s); "
            f"{'zero-padded' if what == 'shorter' else 'trimmed'} to the mix",
        )
    if y.size == 0 or max(float(y.max()), -float(y.min())) <= SILENCE_PEAK:
        entry["silent"] = True
        record["silent"].append(entry["slot"])
        _warn(
            record,
            f"stem {entry['path']} is silent (peak <= {SILENCE_PEAK:g}); kept, marked silent",
        )


def _truth_rows(
    source: SongSource, placement: Placement, record: dict, *, n_slots: int, T: int,
    chunk_size: int, sample_rate: int,
) -> np.ndarray | None:
    files = [s.path.name for s in source.stems]
    found = load_true_gains(
        source.truth_path, files, chunk_size=chunk_size, sample_rate=sample_rate
    )
    if found is None:
        _warn(
            record,
            f"true gains {source.truth_path} were made for another chunk size or "
            f"sample rate; left out",
        )
        return None
    # Past the song's end the stems are zero: the gains hold their last value there.
    return fill_gains(placement, lambda i: found.get(files[i]), n_slots=n_slots, n_chunks=T)


def _move_into_place(tmp: Path, final: Path) -> None:
    # A folder cannot replace a non-empty folder: move the old one aside first.
    old = None
    if final.exists():
        old = final.with_name(f"{_OLD_PREFIX}{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _clean_leftovers(cache_dir: Path) -> None:
    songs = cache_dir / SONGS_DIR
    if not songs.is_dir():
        return
    for p in songs.iterdir():
        if p.name.startswith((_TMP_PREFIX, _OLD_PREFIX)):
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
            plans.append(_plan_song(source, sample_rate))
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
            and rec.get("sources") == _signature(src.files)
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
                record = _write_song(
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
