"""Envs of one process share a song's precomputed features (so resets are cheap)."""

import os

import numpy as np
import pytest

from mixing_env.data import prepare
from mixing_env.data.cache import MANIFEST
from mixing_env.envs import song_features
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.songs import procedural as synthetic

SYNTH = {"n_songs": 2, "seconds": 0.4, "n_tracks": 3, "seed": 3}
LOGMEL = {"obs_features": "logmel", "n_track_features": 8, "level_features": True}


@pytest.fixture()
def cache_dir(tmp_path):
    synthetic.make_synthetic_dataset(tmp_path / "src", **SYNTH)
    prepare.prepare_dataset(tmp_path / "src", tmp_path / "cache", progress=False)
    song_features.clear_shared_cache()
    yield str(tmp_path / "cache")
    song_features.clear_shared_cache()


def test_envs_on_one_cache_share_features(cache_dir):
    a = MixingEnv({"dataset_dir": cache_dir, **LOGMEL})
    b = MixingEnv({"dataset_dir": cache_dir, **LOGMEL, "episode_chunks": 4, "rho": 0.0})
    name = a.song_names[0]
    assert a.song_features(name) is b.song_features(name)
    other = MixingEnv({"dataset_dir": cache_dir, **LOGMEL, "n_track_features": 6})
    assert other.song_features(name) is not a.song_features(name)
    assert other.song_features(name).track_features.shape[-1] == 6 + 4


def test_shared_features_equal_a_private_computation(cache_dir, monkeypatch):
    env = MixingEnv({"dataset_dir": cache_dir, **LOGMEL})
    name = env.song_names[1]
    shared = env.song_features(name)
    monkeypatch.setattr(env.source, "song_key", lambda _name: None)
    private = env.song_features(name)
    assert private is not shared
    np.testing.assert_array_equal(private.track_features, shared.track_features)
    np.testing.assert_array_equal(private.reference_mfcc, shared.reference_mfcc)


def test_a_rewritten_manifest_means_new_features(cache_dir):
    env = MixingEnv({"dataset_dir": cache_dir, **LOGMEL})
    name = env.song_names[0]
    before = env.song_features(name)
    manifest = os.path.join(cache_dir, MANIFEST)
    stat = os.stat(manifest)
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert MixingEnv({"dataset_dir": cache_dir, **LOGMEL}).song_features(name) is not before


def test_songs_given_in_memory_are_not_shared(songs):
    a, b = MixingEnv(LOGMEL, songs=songs), MixingEnv(LOGMEL, songs=songs)
    assert a.song_features(songs[0].name) is not b.song_features(songs[0].name)


def test_the_budget_evicts_the_oldest_song(cache_dir, monkeypatch):
    env = MixingEnv({"dataset_dir": cache_dir, **LOGMEL})
    first, second = env.song_names
    one_song = env.song_features(first).nbytes
    monkeypatch.setattr(song_features, "SHARED_CACHE_BYTES", one_song)
    env.song_features(second)
    assert len(song_features._SHARED) == 1
    assert MixingEnv({"dataset_dir": cache_dir, **LOGMEL}).song_features(second) \
        is env.song_features(second)
