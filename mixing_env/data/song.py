"""The in-memory form of one prepared song, as the environment consumes it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Song"]


@dataclass
class Song:
    """One song, chunked: the report's tuple plus what the env and the evaluation need.

    Attributes:
        name: Song identifier (folder name).
        stems: Raw tracks, float32 [shape=(C, T, chunk_size)], one row per slot; dummy
            slots are all zeros. May be a read-only memory map.
        reference: Reference mix, float32 [shape=(T, chunk_size)].
        track_mask: 1.0 for a real track, 0.0 for a dummy slot, float32 [shape=(C,)].
        slot_names: Name of each slot, e.g. ``"Drums/Kick#1"`` [len C].
        sample_rate: Sample rate in Hz of ``stems`` and ``reference``.
        true_gains: Known per-chunk linear gains of each slot that made the reference,
            float32 [shape=(C, T)] (synthetic songs), else None.
        n_valid_chunks: Chunks that hold the song before padding (<= T).
        stem_files: Source file of each real slot, for reports (slot name -> path).
        measures: Measurements made with the song, one row per real track in slot order
            (a generated song carries the engineer's ``"analysis"``, so the env's features
            do not measure the same stems again); empty for a prepared song.
    """

    name: str
    stems: np.ndarray
    reference: np.ndarray
    track_mask: np.ndarray
    slot_names: list[str]
    sample_rate: int
    true_gains: np.ndarray | None = None
    n_valid_chunks: int | None = None
    stem_files: dict[str, str] = field(default_factory=dict)
    measures: dict = field(default_factory=dict)

    @property
    def n_slots(self) -> int:
        """C, the number of track slots (real plus dummy)."""
        return int(self.stems.shape[0])

    @property
    def n_chunks(self) -> int:
        """T, the number of chunks (time steps)."""
        return int(self.stems.shape[1])

    @property
    def chunk_size(self) -> int:
        """Samples per chunk."""
        return int(self.stems.shape[2])
