import numpy as np
import pytest

from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.errors import ConfigError
from mixing_env.features import (
    LEVEL_FEATURES,
    STEM_LEVEL_FEATURES,
    stem_spectrum_features,
    track_level_features,
)

SR = 44100


def test_level_features_by_hand():
    rng = np.random.default_rng(0)
    stems = np.zeros((2, 6, 500), np.float32)
    stems[0, 1] = 0.5 * rng.standard_normal(500)  # one loud chunk, then silence
    stems[0, 4] = 0.05 * rng.standard_normal(500)
    feats = track_level_features(
        stems, sample_rate=SR, hold_decay_db_per_s=10.0, recent_decay_db_per_s=40.0
    )
    assert feats.shape == (2, 6, len(LEVEL_FEATURES))
    energy = np.mean(stems[0].astype(np.float64) ** 2, axis=-1)
    np.testing.assert_allclose(feats[0, 1, 0], 10 * np.log10(energy[1] + 1e-10), rtol=1e-5)
    peak = 20 * np.log10(np.abs(stems[0, 1]).max())
    decay = 10.0 * 500 / SR
    np.testing.assert_allclose(feats[0, 3, 1], peak - 2 * decay, rtol=1e-5)
    np.testing.assert_allclose(feats[0, 3, 2], peak - 2 * 4 * decay, rtol=1e-5)
    # Mean over the chunks that played so far (1 and 4), silent ones excluded.
    np.testing.assert_allclose(
        feats[0, 5, 3], 10 * np.log10((energy[1] + energy[4]) / 2), rtol=1e-5
    )
    assert np.all(feats[0, 0] == -100.0)  # nothing played yet
    assert np.all(feats[1] == -100.0)  # a silent track stays at the floor


def test_level_features_are_causal():
    rng = np.random.default_rng(1)
    stems = rng.standard_normal((3, 20, 500)).astype(np.float32) * 0.1
    full = track_level_features(stems, sample_rate=SR)
    prefix = track_level_features(stems[:, :8], sample_rate=SR)
    np.testing.assert_allclose(full[:, :8], prefix, rtol=1e-6)


TINY_LOGMEL = {
    "synthetic": {"n_songs": 1, "seconds": 1.0, "n_tracks": 3, "seed": 0},
    "obs_features": "logmel",
    "n_track_features": 8,
}


def test_env_appends_level_features():
    env = MixingEnv({**TINY_LOGMEL, "level_features": True})
    obs, _ = env.reset(seed=0)
    assert obs["chunks"].shape == (env.n_slots, 1, 8 + len(LEVEL_FEATURES))
    for _ in range(20):
        obs, *_ = env.step(env.action_space.sample())
    expected = track_level_features(env.song.stems, sample_rate=SR)[:, env.t]
    np.testing.assert_allclose(obs["chunks"][:, -1, 8:], expected, rtol=1e-5)


def test_level_features_need_logmel():
    with pytest.raises(ConfigError, match="level_features=True needs obs_features='logmel'"):
        MixingEnv({"obs_features": "raw", "level_features": True})


def test_env_appends_whole_stem_levels():
    env = MixingEnv({**TINY_LOGMEL, "level_features": True, "stem_level_features": True})
    obs, _ = env.reset(seed=0)
    n_causal = 8 + len(LEVEL_FEATURES)
    assert obs["chunks"].shape == (env.n_slots, 1, n_causal + len(STEM_LEVEL_FEATURES))
    stems = np.asarray(env.song.stems, dtype=np.float64)
    real = np.asarray(env.song.track_mask) > 0
    # By hand: the stem's peak over the whole song, and its mean energy over playing chunks.
    peak_db = 20 * np.log10(np.abs(stems).max(axis=(1, 2)))
    energy = np.mean(stems**2, axis=-1)
    playing = 10 * np.log10(energy + 1e-10) > -60
    mean_db = 10 * np.log10((energy * playing).sum(1) / np.maximum(playing.sum(1), 1))
    for _ in range(3):  # the same at the first step and later: known from the start
        np.testing.assert_allclose(obs["chunks"][real, -1, n_causal], peak_db[real], atol=1e-3)
        np.testing.assert_allclose(obs["chunks"][real, -1, n_causal + 1], mean_db[real],
                                   atol=1e-3)
        obs, *_ = env.step(env.action_space.sample())


def test_stem_levels_alone_and_need_logmel():
    env = MixingEnv({**TINY_LOGMEL, "stem_level_features": True})
    obs, _ = env.reset(seed=0)
    assert obs["chunks"].shape[-1] == 8 + len(STEM_LEVEL_FEATURES)
    assert env.observation_space.contains(obs)
    with pytest.raises(ConfigError, match="stem_level_features=True needs obs_features='logmel'"):
        MixingEnv({"obs_features": "raw", "stem_level_features": True})


def test_stem_spectrum_by_hand():
    db = np.full((3, 4, 2), -100.0)
    db[0, 1] = [-20.0, -40.0]  # plays in chunks 1 and 3
    db[0, 3] = [-30.0, -100.0]
    db[1, 2] = [-10.0, -10.0]
    spectrum = stem_spectrum_features(db)
    # Energy mean over the chunks where the stem plays (silent chunks do not dilute it).
    low = 10 * np.log10((10 ** -2.0 + 10 ** -3.0) / 2)
    high = 10 * np.log10((10 ** -4.0 + 10 ** -10.0) / 2)
    np.testing.assert_allclose(spectrum[0], [low, high], atol=1e-4)
    np.testing.assert_allclose(spectrum[1], [-10.0, -10.0], atol=1e-4)
    assert np.all(spectrum[2] == -100.0)  # a silent stem stays at the floor


def test_env_appends_stem_spectra_before_the_loudness():
    env = MixingEnv({**TINY_LOGMEL, "stem_spectrum_features": True,
                     "stem_loudness_feature": True})
    obs, _ = env.reset(seed=0)
    assert obs["chunks"].shape == (env.n_slots, 1, 8 + 8 + 1)
    assert env.observation_space.contains(obs)
    per_chunk = []
    for _ in range(env.song.n_chunks - 1):  # every chunk's own log-mel, as the env saw it
        per_chunk.append(obs["chunks"][:, -1, :8])
        first = obs["chunks"][:, -1, 8:]
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        np.testing.assert_array_equal(obs["chunks"][:, -1, 8:], first)  # the same every step
        if terminated or truncated:
            break
    per_chunk.append(obs["chunks"][:, -1, :8])
    expected = stem_spectrum_features(np.stack(per_chunk, axis=1))
    real = np.asarray(env.song.track_mask) > 0
    np.testing.assert_allclose(obs["chunks"][real, -1, 8:16], expected[real], atol=1e-3)
    plain = MixingEnv({**TINY_LOGMEL, "stem_loudness_feature": True})
    plain_obs, _ = plain.reset(seed=0)
    np.testing.assert_array_equal(obs["chunks"][:, -1, -1], plain_obs["chunks"][:, -1, -1])
    with pytest.raises(ConfigError, match="stem_spectrum_features=True needs obs_features"):
        MixingEnv({"obs_features": "raw", "stem_spectrum_features": True})
