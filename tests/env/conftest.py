"""Fixtures for the env tests (songs from :mod:`_env_songs`)."""

from __future__ import annotations

import pytest
from _env_songs import make_song

from mixing_env.data.song import Song


@pytest.fixture(scope="session")
def song() -> Song:
    return make_song()


@pytest.fixture(scope="session")
def songs() -> list[Song]:
    return [make_song(f"song{i}", seed=i, n_chunks=12 + 4 * i) for i in range(3)]
