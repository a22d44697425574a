"""One song of a dataset into the cache: the header pass and the streaming write.

:func:`plan_song` reads only headers; :func:`write_song` streams the mix and each stem into a
memory-mapped ``stems.npy`` in a temporary folder that :func:`move_into_place` swaps in, so a
run that dies mid-song leaves nothing half-written (see :mod:`mixing_env.data.prepare`).
"""

from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixing_env.data.audio_io import DataWarning, audio_info, read_audio, resampled_length
from mixing_env.data.cache import (
    SONGS_DIR,
    song_dir,
)
from mixing_env.data.layouts import SongSource
from mixing_env.data.slots import (
    Placement,
    fill_gains,
    fill_slots,
    place_stems,
)
from mixing_env.data.song_folder import load_true_gains
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.errors import DatasetError

__all__ = ["OLD_PREFIX", "SILENCE_PEAK", "TMP_PREFIX", "move_into_place", "plan_song",
           "source_signature", "warn_in_record", "write_song"]

SILENCE_PEAK = 1e-8
"""A stem whose absolute peak is at most this (about -160 dBFS) is marked silent."""

TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def source_signature(paths: Sequence[Path]) -> dict[str, list[int]]:
    """Size and modification time of each source file: what a rerun compares to skip a song."""
    out = {}
    for p in paths:
        st = p.stat()
        out[str(p.resolve())] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def warn_in_record(record: dict, message: str) -> None:
    """Keep a warning in the song's manifest record and show it as a DataWarning."""
    record["warnings"].append(message)
    warnings.warn(message, DataWarning, stacklevel=3)


def plan_song(source: SongSource, sample_rate: int) -> dict[str, Any]:
    """Header pass for one song: lengths and rates. Raises AudioFileError."""
    mix = audio_info(source.mix_path)
    stems = [audio_info(s.path) for s in source.stems]
    return {
        "source": source,
        "mix_info": mix,
        "stem_infos": stems,
        "n_samples": resampled_length(mix.frames, orig_sr=mix.sample_rate, target_sr=sample_rate),
    }


def write_song(
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
        "sources": source_signature(source.files),
    }
    placement = place_stems(
        [s.name for s in source.stems], slots, taxonomy, labels=[str(s.path) for s in source.stems]
    )
    for note in placement.notes:
        record["placement"].append(note)
        warn_in_record(record, note)
    tmp = cache_dir / SONGS_DIR / f"{TMP_PREFIX}{source.name}-{os.getpid()}"
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
            warn_in_record(
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
        move_into_place(tmp, song_dir(cache_dir, source.name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _check_stem(record: dict, entry: dict, y: np.ndarray, info, mix_info, mix_path: Path) -> None:
    """Warn about a stem's rate, length and silence (``y``: the part that is kept)."""
    if info.sample_rate != mix_info.sample_rate:
        warn_in_record(
            record,
            f"stem {entry['path']} is at {info.sample_rate} Hz but the mix "
            f"{mix_path.name} at {mix_info.sample_rate} Hz; resampled",
        )
    stem_seconds = info.frames / info.sample_rate
    mix_seconds = mix_info.frames / mix_info.sample_rate
    if abs(stem_seconds - mix_seconds) > 1.5 / min(info.sample_rate, mix_info.sample_rate):
        what = "shorter" if stem_seconds < mix_seconds else "longer"
        warn_in_record(
            record,
            f"stem {entry['path']} is {what} than the mix {mix_path.name} "
            f"({stem_seconds:.3f} s vs {mix_seconds:.3f} s); "
            f"{'zero-padded' if what == 'shorter' else 'trimmed'} to the mix",
        )
    if y.size == 0 or max(float(y.max()), -float(y.min())) <= SILENCE_PEAK:
        entry["silent"] = True
        record["silent"].append(entry["slot"])
        warn_in_record(
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
        warn_in_record(
            record,
            f"true gains {source.truth_path} were made for another chunk size or "
            f"sample rate; left out",
        )
        return None
    # Past the song's end the stems are zero: the gains hold their last value there.
    return fill_gains(placement, lambda i: found.get(files[i]), n_slots=n_slots, n_chunks=T)


def move_into_place(tmp: Path, final: Path) -> None:
    """Swap a finished temporary song folder in for ``final``."""
    # A folder cannot replace a non-empty folder: move the old one aside first.
    old = None
    if final.exists():
        old = final.with_name(f"{OLD_PREFIX}{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
