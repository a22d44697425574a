"""Fixtures for the data tests: tiny multitrack folders written by the tests themselves."""

from __future__ import annotations

import pytest
from _datafiles import SR, tone, write_cambridge_song


@pytest.fixture
def tiny_dataset(tmp_path):
    """Two Cambridge-style songs: 3 stems (0.30 s) and 4 stems with two guitars (0.25 s)."""
    src = tmp_path / "src"
    n1, n2 = int(0.30 * SR), int(0.25 * SR)
    write_cambridge_song(
        src / "SongA",
        {
            "01_Kick": tone(n1, 60),
            "02_Bass": tone(n1, 110),
            "03_LeadVox": tone(n1, 440),
        },
    )
    write_cambridge_song(
        src / "SongB",
        {
            "01_Kick": tone(n2, 65),
            "05_ElecGtr1": tone(n2, 220),
            "06_ElecGtr2": tone(n2, 330),
            "07_Vox": tone(n2, 523),
        },
    )
    return src
