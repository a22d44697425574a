"""Slot layouts and slot placement: which row of the (C, T, chunk) array each stem goes to.

A *slot layout* is the ordered list of slot names every song of a dataset shares
(``["Drums/Kick#1", "Drums/Kick#2", ...]``). The default is the fixed C = 72 layout of
``layout.yaml`` (report Appendix 1 and 2), so a checkpoint trained on one dataset runs on any
other. ``"compact"`` derives a small layout from the dataset instead (per instrument, the most
stems any song has): tests and quick experiments use it.

:func:`place_stems` is the one place where stems get their slots, and :func:`fill_slots` /
:func:`build_song` the one place where they are padded into the chunked array; ``prepare``,
the synthetic songs and ``mix`` all go through them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from mixing_env.data.song import Song
from mixing_env.data.taxonomy import Taxonomy, parse_slot, slot_name
from mixing_env.errors import ConfigError

if TYPE_CHECKING:
    from mixing_env.data.layouts import SongSource

__all__ = [
    "COMPACT",
    "DEFAULT_LAYOUT_PATH",
    "Placement",
    "build_song",
    "check_layout",
    "compact_layout",
    "default_layout",
    "fill_gains",
    "fill_slots",
    "hold_gains",
    "layout_mismatch",
    "place_stems",
    "placement_table",
    "read_layout",
    "resolve_layout",
    "write_layout",
]

DEFAULT_LAYOUT_PATH = Path(__file__).with_name("layout.yaml")
"""The shipped C = 72 layout."""

COMPACT = "compact"
"""Layout choice: the smallest layout that holds the dataset (derived from its stems)."""

LayoutSpec = str | os.PathLike | Sequence[str] | None
"""None (the default layout), ``"compact"``, a layout file, or a list of slot names."""


def check_layout(slots: Iterable[str], source: str = "layout") -> list[str]:
    """Validate slot names: each ``Section/Instrument#n``, none repeated, at least one.

    Raises:
        ConfigError: Naming ``source`` and the bad slot.
    """
    out = [str(s) for s in slots]
    if not out:
        raise ConfigError(f"{source}: the slot layout is empty")
    for s in out:
        try:
            parse_slot(s)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    repeated = sorted({s for s in out if out.count(s) > 1})
    if repeated:
        raise ConfigError(f"{source}: slots repeated in the layout: {repeated}")
    return out


def _from_mapping(data: dict, source: str) -> list[str]:
    if "slots" in data:
        return check_layout(data["slots"] or [], source)
    if "slot_names" in data:  # a checkpoint's metadata JSON
        return check_layout(data["slot_names"] or [], source)
    counts = data.get("counts")
    if not isinstance(counts, dict):
        raise ConfigError(
            f"{source}: a layout file needs 'slots' (a list of slot names) or 'counts' "
            f"(Section/Instrument: n); a checkpoint's metadata needs 'slot_names'"
        )
    slots = []
    for key, n in counts.items():
        section, _, instrument = str(key).partition("/")
        if not instrument or isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(
                f"{source}: counts entry {key}: {n!r} must be 'Section/Instrument: n' with n >= 1"
            )
        slots += [slot_name(section, instrument, k) for k in range(1, n + 1)]
    return check_layout(slots, source)


def read_layout(path: str | os.PathLike) -> list[str]:
    """Read a slot layout from a file.

    Accepted: a YAML or JSON mapping with ``slots`` (slot names in order) or ``counts``
    (``Section/Instrument: n``, in order), or a checkpoint's metadata JSON (``slot_names``).
    A checkpoint folder is resolved to its metadata file by the caller (the CLI does).

    Raises:
        ConfigError: The file is missing, a folder, unreadable, or holds no valid layout.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"layout {path} is a folder; give a layout file or a checkpoint's "
                          f"metadata JSON")
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"layout file not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"layout file {path} is not readable YAML or JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"layout file {path} must hold a mapping, got {type(data).__name__}")
    return _from_mapping(data, f"layout file {path}")


def write_layout(path: str | os.PathLike, slots: Sequence[str]) -> Path:
    """Write a layout file (``slots:`` list) that :func:`read_layout` reads back unchanged."""
    slots = check_layout(slots)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# DeepMixing slot layout: C = {len(slots)} slots, in row order.\n"
    path.write_text(text + yaml.safe_dump({"slots": slots}, sort_keys=False))
    return path


@lru_cache(maxsize=1)
def _default() -> tuple[str, ...]:
    return tuple(read_layout(DEFAULT_LAYOUT_PATH))


def default_layout() -> list[str]:
    """The shipped fixed layout (C = 72)."""
    return list(_default())


def compact_layout(taxonomy: Taxonomy, songs: Iterable[Sequence[str]]) -> list[str]:
    """The smallest layout for these songs: per instrument, the most stems any song has.

    Args:
        taxonomy: Name rules.
        songs: For each song, its stem names (file names or labels).
    """
    return taxonomy.slot_layout(taxonomy.assign_slots(list(names)) for names in songs)


def resolve_layout(
    layout: LayoutSpec, *, taxonomy: Taxonomy, songs: Iterable[Sequence[str]] = ()
) -> tuple[list[str], str]:
    """Turn a layout choice into slot names and a description for manifests and messages.

    Args:
        layout: None or ``"default"`` (C = 72), ``"compact"`` (derived from ``songs``), a
            layout file, or a list of slot names.
        taxonomy: Name rules (for ``"compact"``).
        songs: For each song, its stem names (for ``"compact"``).

    Returns:
        ``(slots, source)``, source e.g. ``"default"``, ``"compact"``, the file's path.
    """
    if layout is None or (isinstance(layout, str) and layout == "default"):
        slots = default_layout()
        have = {slot.split("#")[0] for slot in slots}
        lacking = [f"{s}/{i}" for s, i in taxonomy.instruments if f"{s}/{i}" not in have]
        if lacking:  # a user taxonomy with sections of its own
            raise ConfigError(
                f"taxonomy {taxonomy.source} has instruments the default layout lacks "
                f"({', '.join(lacking[:6])}{' ...' if len(lacking) > 6 else ''}); give "
                f"layout='compact' (--layout compact) or a layout file of your own"
            )
        return slots, "default"
    if isinstance(layout, str) and layout == COMPACT:
        return compact_layout(taxonomy, songs), COMPACT
    if isinstance(layout, str | os.PathLike):
        return read_layout(layout), str(layout)
    return check_layout(layout, "slots"), "given"


def layout_mismatch(expected: Sequence[str], got: Sequence[str]) -> str | None:
    """None when two layouts are equal, else one line naming the slots that differ."""
    if list(expected) == list(got):
        return None
    missing = [s for s in expected if s not in set(got)]
    extra = [s for s in got if s not in set(expected)]

    def few(xs: list[str]) -> str:
        return ", ".join(xs[:6]) + (f" and {len(xs) - 6} more" if len(xs) > 6 else "")

    parts = [f"C = {len(expected)} expected, {len(got)} given"]
    if missing:
        parts.append(f"missing {few(missing)}")
    if extra:
        parts.append(f"not expected {few(extra)}")
    if not missing and not extra:
        parts.append("same slots in another order")
    return "slot layouts differ: " + "; ".join(parts)


@dataclass(frozen=True)
class Placement:
    """Where each stem of one song goes in a layout.

    Attributes:
        slots: Per stem, its slot name, or None when left out.
        rows: Per stem, its row in the layout, or None.
        notes: One line per stem that did not go to its own instrument's slot: a name no rule
            matches, an instrument with its slots full, a stem left out.
        unknown: Indices of the stems whose names no rule matches.
    """

    slots: tuple[str | None, ...]
    rows: tuple[int | None, ...]
    notes: tuple[str, ...]
    unknown: tuple[int, ...]

    @property
    def placed(self) -> list[tuple[int, int]]:
        """``(stem index, row)`` of every stem that has a slot."""
        return [(i, r) for i, r in enumerate(self.rows) if r is not None]

    @property
    def left_out(self) -> list[int]:
        """Indices of the stems with no slot."""
        return [i for i, r in enumerate(self.rows) if r is None]


def place_stems(
    names: Sequence[str],
    layout: Sequence[str],
    taxonomy: Taxonomy,
    *,
    labels: Sequence[str] | None = None,
) -> Placement:
    """Give each stem of one song a slot of ``layout``, in the order given.

    A stem takes the next free slot of its instrument (a second tom ``Drums/Tom#2``); when
    those are full it goes to its section's Extra (the global ``Extra/Extra`` for sections
    without one); a name no rule matches goes to ``Extra/Unknown``. A stem that finds no free
    slot at all is left out. Each of these cases gets a note.

    Args:
        names: What the taxonomy classifies (file names or labels).
        layout: The slot names.
        taxonomy: Name rules.
        labels: How the notes name each stem (default: ``names``).
    """
    labels = list(labels) if labels is not None else list(names)
    free: dict[tuple[str, str], list[int]] = {}
    for row, slot in enumerate(layout):
        section, instrument, _ = parse_slot(slot)
        free.setdefault((section, instrument), []).append(row)
    has = set(free)
    slots: list[str | None] = []
    rows: list[int | None] = []
    notes: list[str] = []
    unknown: list[int] = []
    for i, name in enumerate(names):
        matched = taxonomy.match(name)
        wanted = matched or taxonomy.fallback
        if matched is None:
            unknown.append(i)
        targets = [wanted, taxonomy.overflow(wanted[0])]
        row = None
        for target in targets:
            if target is not None and free.get(target):
                row = free[target].pop(0)
                break
        rows.append(row)
        slots.append(None if row is None else layout[row])
        what = "/".join(wanted)
        why = f"the layout's {what} slots are full" if wanted in has else (
            f"the layout has no {what} slot")
        if row is None:
            notes.append(f"stem {labels[i]}: {why}, and no Extra slot is free; left out")
        elif matched is None:
            notes.append(f"stem {labels[i]}: no name rule matches; placed in {layout[row]}")
        elif not layout[row].startswith(what + "#"):
            notes.append(f"stem {labels[i]}: {why}; placed in {layout[row]}")
    return Placement(tuple(slots), tuple(rows), tuple(notes), tuple(unknown))


def placement_table(
    songs: Sequence[SongSource], taxonomy: Taxonomy, layout: LayoutSpec = None
) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """What ``deepmixing taxonomy`` prints: each stem's instrument and slot, and the notes.

    Returns:
        ``(rows, notes)``: a header row then one row per stem (song, stem file,
        section/instrument, slot or ``"(left out)"``); the placement notes of every song.
    """
    names = [[s.name for s in song.stems] for song in songs]
    slots, source = resolve_layout(layout, taxonomy=taxonomy, songs=names)
    rows = [("song", "stem file", "section/instrument", f"slot ({source} layout, C={len(slots)})")]
    notes: list[str] = []
    for song, stem_names in zip(songs, names, strict=True):
        files = [Path(s.path).name for s in song.stems]
        placement = place_stems(stem_names, slots, taxonomy,
                                labels=[f"{song.name}/{f}" for f in files])
        notes += placement.notes
        for name, file, slot in zip(stem_names, files, placement.slots, strict=True):
            rows.append((song.name, file, "/".join(taxonomy.classify(name)), slot or "(left out)"))
    return rows, notes


def hold_gains(g: np.ndarray, n_chunks: int) -> np.ndarray:
    """Trim per-chunk gains to ``n_chunks``, or hold the last one past the song's end."""
    g = np.asarray(g, dtype=np.float32)
    return g[:n_chunks] if g.size >= n_chunks else np.pad(g, (0, n_chunks - g.size), mode="edge")


def fill_slots(
    out: np.ndarray,
    placement: Placement,
    load: Callable[[int], np.ndarray],
    *,
    n_samples: int | None = None,
) -> np.ndarray:
    """Write each placed stem into its row of ``out``, zero-padded or trimmed.

    Args:
        out: Zeros of shape (C, T, chunk) (an array or a memory map); rows of stems not
            placed stay zero (dummy slots).
        placement: From :func:`place_stems`.
        load: Stem index -> its samples [shape=(n,)], called once per placed stem, in order.
        n_samples: Keep at most this many samples of each stem (the song's length).

    Returns:
        The track mask, float32 [shape=(C,)]: 1 for a filled row.
    """
    mask = np.zeros(out.shape[0], dtype=np.float32)
    limit = out[0].size if n_samples is None else min(n_samples, out[0].size)
    for i, row in placement.placed:
        y = np.asarray(load(i)).reshape(-1)
        n = min(y.size, limit)
        out[row].reshape(-1)[:n] = y[:n]
        mask[row] = 1.0
    return mask


def fill_gains(
    placement: Placement, gains: Callable[[int], np.ndarray | None], *, n_slots: int,
    n_chunks: int,
) -> np.ndarray:
    """Per-slot true gains, float32 [shape=(C, T)].

    Each placed stem's gains are held to T; dummy slots, and stems ``gains`` has none for
    (None or empty), stay zero.
    """
    out = np.zeros((n_slots, n_chunks), dtype=np.float32)
    for i, row in placement.placed:
        g = gains(i)
        if g is not None and np.size(g):
            out[row] = hold_gains(g, n_chunks)
    return out


def build_song(
    name: str,
    placement: Placement,
    stems: Sequence[np.ndarray],
    *,
    layout: Sequence[str],
    sample_rate: int,
    chunk_size: int,
    reference: np.ndarray | None = None,
    n_chunks: int | None = None,
    true_gains: Sequence[np.ndarray] | None = None,
    stem_files: Sequence[str] | None = None,
    measures: dict | None = None,
) -> Song:
    """An in-memory :class:`Song` from one song's stems, placed and chunked.

    Args:
        name: Song name.
        placement: From :func:`place_stems` for these stems.
        stems: Each stem [shape=(n_i,)] at ``sample_rate``.
        layout: The slot names (C).
        sample_rate: Hz.
        chunk_size: Samples per chunk.
        reference: The mix [shape=(n,)]; None: the plain sum of the placed stems.
        n_chunks: T; None: enough chunks for the song.
        true_gains: Per stem, per-chunk gains, or None.
        stem_files: Per stem, its file name (for ``Song.stem_files``).
        measures: Per-stem measurements in stem order; each value with a ``take(indices)``
            method is put in slot order of the placed stems (``Song.measures``).
    """
    n = reference.size if reference is not None else max(np.size(s) for s in stems)
    T = n_chunks or math.ceil(n / chunk_size)
    C = len(layout)
    out = np.zeros((C, T, chunk_size), dtype=np.float32)
    mask = fill_slots(out, placement, lambda i: stems[i], n_samples=n)
    ref = np.zeros(T * chunk_size, dtype=np.float32)
    if reference is None:
        ref = out.sum(axis=0).reshape(-1)
    else:
        m = min(n, ref.size)
        ref[:m] = np.asarray(reference, dtype=np.float32)[:m]
    gains = None
    if true_gains is not None:
        gains = fill_gains(placement, lambda i: true_gains[i], n_slots=C, n_chunks=T)
    files = {} if stem_files is None else {placement.slots[i]: str(stem_files[i])
                                           for i, _ in placement.placed}
    order = [i for i, _ in sorted(placement.placed, key=lambda p: p[1])]  # stems by row
    in_rows = {k: v.take(order) for k, v in (measures or {}).items() if hasattr(v, "take")}
    return Song(name=name, stems=out, reference=ref.reshape(T, chunk_size), track_mask=mask,
                slot_names=list(layout), sample_rate=sample_rate, true_gains=gains,
                n_valid_chunks=min(T, math.ceil(n / chunk_size)), stem_files=files,
                measures=in_rows)
