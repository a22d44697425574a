"""Fixtures for the mix tests (songs from :mod:`_mix_songs`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _mix_songs import STEMS, write_song


@pytest.fixture
def mixed_song(tmp_path) -> Path:
    """Eight stems, mono and stereo, 2 s."""
    return write_song(tmp_path / "MixedSong")


@pytest.fixture
def mono_song(tmp_path) -> Path:
    """Four mono stems, 2 s."""
    return write_song(tmp_path / "MonoSong", stems={k: (1, v[1]) for k, v in STEMS.items()
                                                    if v[0] == 1 and "Gtr2" not in k})
