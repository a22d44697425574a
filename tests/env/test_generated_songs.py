"""Songs without end: the training stream, the env's ``generated`` route, listening features."""

import numpy as np
import pytest

from mixing_env.baselines import make_baseline
from mixing_env.engineer.listening import LISTENING_FEATURES, listening_features
from mixing_env.envs.config import EnvConfig, over_songs
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.envs.song_source import GeneratedPool
from mixing_env.errors import ConfigError
from mixing_env.songs.stream import SongStream, StreamConfig
from rl_models.app.evaluate import play_songs

STREAM = {"seed": 5, "seconds": 2.0, "n_tracks": [4, 6], "songs_per_skeleton": 2,
          "episodes_per_song": 2, "pool": 2}


def test_a_stream_makes_new_songs_from_skeletons_it_renders_once():
    stream = SongStream(StreamConfig.from_dict(STREAM), stream=2)
    songs = [stream.next_song() for _ in range(4)]
    assert len({s.name for s in songs}) == 4 and stream.songs_made == 4
    assert stream.cpu_seconds > 0
    assert all(s.n_slots == 72 and s.true_gains is not None for s in songs)
    # Songs 0 and 1 share a skeleton (same tempo, so the same song length), 2 starts another.
    assert songs[0].name.rsplit("-", 2)[1] == songs[1].name.rsplit("-", 2)[1]
    assert songs[2].name.rsplit("-", 2)[1] != songs[0].name.rsplit("-", 2)[1]
    again = SongStream(StreamConfig.from_dict(STREAM), stream=2).next_song()
    np.testing.assert_array_equal(again.stems, songs[0].stems)  # deterministic
    other = SongStream(StreamConfig.from_dict(STREAM), stream=3).next_song()
    assert other.stems.shape != songs[0].stems.shape or not np.array_equal(other.stems,
                                                                           songs[0].stems)
    with pytest.raises(ConfigError, match="0 is for datasets on disk"):
        SongStream(StreamConfig.from_dict(STREAM), stream=0)


def test_stream_settings_are_checked():
    with pytest.raises(ConfigError, match="unknown generated key"):
        StreamConfig.from_dict({"seconds": 2.0, "songz": 3})
    with pytest.raises(ConfigError, match="episodes_per_song"):
        StreamConfig.from_dict({"episodes_per_song": 0})
    with pytest.raises(ConfigError, match="unknown engineer style"):
        EnvConfig.from_dict({"generated": {"style": "jazz"}})
    with pytest.raises(ConfigError, match="cannot be combined"):
        EnvConfig.from_dict({"generated": {}, "dataset_dir": "/x"})


def test_the_env_draws_songs_from_a_pool_it_renews():
    env = MixingEnv({"generated": STREAM, "episode_chunks": 16, "obs_features": "logmel",
                     "n_track_features": 8, "listening_features": True,
                     "stem_loudness_feature": True})
    assert env.observation_space["chunks"].shape == (72, 1, 8 + len(LISTENING_FEATURES) + 1)
    names = []
    for k in range(8):
        obs, info = env.reset(seed=1 if k == 0 else None)
        assert env.observation_space.contains(obs)
        names.append(info["song"])
    # 8 episodes, 2 per song: 4 songs (the pool of 2 is renewed as songs are used up).
    assert len(set(names)) == 4
    stats = env.source.pool.stats()
    assert stats["episodes"] == 8 and stats["songs_made"] >= 4
    assert GeneratedPool.process_stats()["songs_made"] >= 4
    with pytest.raises(ConfigError, match="cannot be narrowed"):
        env.source.subset(["x"])


def test_truth_plays_the_reference_and_the_listening_block_is_sane():
    song = SongStream(StreamConfig.from_dict(STREAM), stream=4).next_song()
    env = {"episode_chunks": None}
    (record,) = play_songs(make_baseline("truth"), env, songs=[song])
    assert record.mfcc_distance.mean() < 1e-3  # the reference is the truth's mix
    f = listening_features(song.stems, slot_names=song.slot_names, stem_files=song.stem_files,
                           track_mask=song.track_mask, n_valid=song.n_valid_chunks,
                           sample_rate=song.sample_rate)
    real = np.flatnonzero(song.track_mask)
    dummy = np.flatnonzero(song.track_mask == 0)
    assert f.shape == (72, song.n_chunks, len(LISTENING_FEATURES))
    assert (f[real, :, 0] > -70).all() and (f[dummy, :, 0] == -100).all()
    song_wide = [LISTENING_FEATURES.index(k) for k in ("n_tracks", "density", "lead_on")]
    assert np.ptp(f[:, :, song_wide], axis=0).max() == 0  # the same on every row
    assert f[real[0], :, LISTENING_FEATURES.index("n_tracks")][0] == pytest.approx(
        10 * np.log10(real.size))
    with pytest.raises(ConfigError, match="no true gains"):
        song.true_gains = None
        make_baseline("truth").gains(song)


def test_scoring_other_songs_drops_the_training_route():
    trained = {"generated": STREAM, "songs": ["a"], "obs_features": "logmel"}
    assert over_songs(trained, {"dataset_dir": "/c"}) == {"dataset_dir": "/c",
                                                          "obs_features": "logmel"}
    assert over_songs(trained, {"rho": 0.1}) == {**trained, "rho": 0.1}


def test_every_step_observation_lies_in_the_space_with_listening_features():
    # Procedural hi-hats are bright (centroid > 3 octaves over 1 kHz: column value > 30) and the
    # density column counts parts: neither is a dB level under the log-mel bound.
    env = MixingEnv({"synthetic": {"n_songs": 2, "seconds": 2.0, "n_tracks": [8, 12], "seed": 0},
                     "episode_chunks": 32, "obs_features": "logmel", "n_track_features": 8,
                     "level_features": True, "listening_features": True,
                     "stem_loudness_feature": True})
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    start = env.observation_space["chunks"].shape[-1] - 1 - len(LISTENING_FEATURES)
    brightest = obs["chunks"][..., start + LISTENING_FEATURES.index("centroid")].max()
    assert brightest > 30  # the case the bound must cover
    for _ in range(64):
        assert env.observation_space.contains(obs)
        obs, _, terminated, truncated, _ = env.step(rng.random(72, dtype=np.float32))
        if terminated or truncated:
            obs, _ = env.reset()
