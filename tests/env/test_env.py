import warnings

import gymnasium
import librosa
import numpy as np
import pytest
from _env_songs import make_song
from gymnasium.utils.env_checker import check_env

import mixing_env  # noqa: F401  (registers DeepMixing-v0)
from mixing_env.envs.config import EnvConfig
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.errors import ActionError, ConfigError
from mixing_env.features import ChunkMFCC

CONFIGS = {
    "default": {},
    "logmel": {"obs_features": "logmel", "n_track_features": 16},
    "window3": {"obs_window": 3, "episode_chunks": 5},
    "raw-report": {"reward_mode": "raw", "level_match": "none"},
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_check_env_without_warnings(songs, config):
    env = gymnasium.make("DeepMixing-v0", config=config, songs=songs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_make_by_id(song):
    env = gymnasium.make("DeepMixing-v0", config={"rho": 0.1}, songs=[song])
    obs, info = env.reset(seed=0)
    assert env.unwrapped.config.rho == 0.1
    assert obs["chunks"].shape == (4, 1, 500)
    assert info == {"song": "tiny", "chunk": 0}


def _play(env, seed, n=30):
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = [obs["chunks"].copy()]
    for _ in range(n):
        obs, r, term, _, info = env.step(env.action_space.sample())
        out += [obs["chunks"].copy(), obs["mix_mfcc"].copy(), r, info["song"], info["chunk"]]
        if term:
            obs, _ = env.reset()
            out.append(obs["chunks"].copy())
    return out


def test_same_seed_same_rollout(songs):
    cfg = {"episode_chunks": 6}
    a, b = _play(MixingEnv(cfg, songs=songs), 7), _play(MixingEnv(cfg, songs=songs), 7)
    c = _play(MixingEnv(cfg, songs=songs), 8)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=False))


def test_reward_equals_direct_computation(song):
    rho = 0.5
    env = MixingEnv({"rho": rho}, songs=[song])
    env.reset(seed=0, options={"song": "tiny", "start": 3})
    a1 = np.array([0.2, 0.3, 0.5, 0.0], np.float32)
    a2 = np.array([1.0, 1.0, 2.0, 0.7], np.float32)  # not normalized, dummy weight ignored
    _, r1, _, _, info1 = env.step(a1)
    _, r2, _, _, info2 = env.step(a2)

    mfcc = ChunkMFCC(44100, 500, 13)
    kw = mfcc.librosa_kwargs
    p, q = a1[:3] / a1[:3].sum(), a2[:3] / a2[:3].sum()
    for t, g, r, info, kl in [(3, p, r1, info1, 0.0), (4, q, r2, info2, None)]:
        mix = np.einsum("c,cn->n", g, song.stems[:3, t].astype(np.float64))
        ref = song.reference[t].astype(np.float64)
        mix *= np.sqrt(np.mean(ref**2) / np.mean(mix**2))
        d = np.linalg.norm(
            librosa.feature.mfcc(y=mix, sr=44100, **kw)[:, 0]
            - librosa.feature.mfcc(y=ref, sr=44100, **kw)[:, 0]
        )
        if kl is None:
            pe, qe = (p + 1e-6) / (p + 1e-6).sum(), (q + 1e-6) / (q + 1e-6).sum()
            kl = float(np.sum(pe * np.log(pe / qe)))
        np.testing.assert_allclose(info["gains"][:3], g, rtol=1e-6)
        np.testing.assert_allclose(info["mfcc_distance"], d, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(info["kl"], kl, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(r, np.exp(-(d**2) / 20.0**2 - rho * kl), rtol=1e-4)
    assert info2["kl"] > 0


def test_raw_report_mode(song):
    env = MixingEnv({"reward_mode": "raw", "level_match": "none"}, songs=[song])
    env.reset(seed=0, options={"start": 0})
    a = np.array([0.5, 0.25, 0.25, 0.0], np.float32)
    obs, r, _, _, info = env.step(a)
    mix = np.einsum("c,cn->n", a[:3].astype(np.float64), song.stems[:3, 0])
    kw = ChunkMFCC().librosa_kwargs
    m = librosa.feature.mfcc(y=mix, sr=44100, **kw)[:, 0]
    d = np.linalg.norm(m - librosa.feature.mfcc(y=song.reference[0], sr=44100, **kw)[:, 0])
    np.testing.assert_allclose(info["mfcc_distance"], d, rtol=1e-4)
    np.testing.assert_allclose(r, np.exp(-(d**2)), rtol=1e-4, atol=1e-300)
    # mix_mfcc is the MFCC of the agent's own (un-level-matched) mix
    np.testing.assert_allclose(obs["mix_mfcc"], m, rtol=1e-4, atol=1e-3)


def test_mix_mfcc_is_unmatched_mix_in_default_mode(song):
    env = MixingEnv(songs=[song])
    obs, _ = env.reset(seed=0, options={"start": 2})
    np.testing.assert_array_equal(obs["mix_mfcc"], 0)
    a = np.array([0.1, 0.1, 0.8, 0.0], np.float32)
    obs, *_ = env.step(a)
    mix = np.einsum("c,cn->n", a[:3].astype(np.float64), song.stems[:3, 2])
    np.testing.assert_allclose(obs["mix_mfcc"], ChunkMFCC()(mix), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "action, match",
    [
        (np.array([0.5, np.nan, 0.5, 0.0]), r"action\[1\]=nan at step 1"),
        (np.array([0.5, 0.5, np.inf, 0.0]), r"action\[2\]=inf at step 1"),
        (np.array([-np.inf, 0.5, 0.5, 0.0]), r"action\[0\]=-inf at step 1"),
        (np.array([0.5, 0.5, 0.0, np.inf], np.float32), r"action\[3\]=inf at step 1"),
        (np.ones(3), r"shape \(4,\).*got shape \(3,\) at step 1"),
        (np.ones((1, 4)), r"got shape \(1, 4\) at step 1"),
    ],
    ids=["nan", "inf", "neg-inf", "inf-in-dummy-slot", "short", "batched"],
)
def test_bad_actions_raise(song, action, match):
    env = MixingEnv(songs=[song])
    env.reset(seed=0)
    env.step(np.ones(4, np.float32))
    with pytest.raises(ActionError, match=match):
        env.step(action)


@pytest.mark.parametrize(
    "action, expected",
    [
        ([0.0, 0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3, 0.0]),  # only the dummy: equal gains
        ([0.2, 0.2, 0.6, 1.0], [0.2, 0.2, 0.6, 0.0]),
        ([-1.0, 1.0, 3.0, 1.0], [0.0, 0.25, 0.75, 0.0]),  # negatives clipped
        ([0.0, 0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3, 0.0]),
    ],
    ids=["dummy-only", "dummy-ignored", "negative", "zeros"],
)
def test_dummy_slots_get_no_gain(song, action, expected):
    env = MixingEnv(songs=[song])
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.asarray(action, np.float32))
    np.testing.assert_allclose(info["gains"], expected, rtol=1e-6)
    assert info["gains"][3] == 0.0


def test_observation_window_and_episode_end(song):
    env = MixingEnv({"obs_window": 3}, songs=[song])
    obs, info = env.reset(seed=0, options={"start": 0})
    assert obs["chunks"].shape == (4, 3, 500)
    np.testing.assert_array_equal(obs["chunks"][:, :2], 0)  # before the song starts
    np.testing.assert_array_equal(obs["chunks"][:, 2], song.stems[:, 0])
    np.testing.assert_array_equal(obs["track_mask"], [1, 1, 1, 0])
    steps = 0
    while True:
        obs, _, term, trunc, info = env.step(np.ones(4, np.float32))
        steps += 1
        if 2 <= env.t < song.n_chunks:
            np.testing.assert_array_equal(obs["chunks"][:, :], song.stems[:, env.t - 2 : env.t + 1])
        assert not trunc
        if term:
            break
    assert steps == song.n_chunks and info["chunk"] == song.n_chunks - 1
    assert obs in env.observation_space


def test_random_window(song):
    env = MixingEnv({"episode_chunks": 5}, songs=[song])
    starts = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        starts.add(info["chunk"])
        n = 0
        while not env.step(np.ones(4, np.float32))[2]:
            n += 1
        assert n + 1 == 5
    assert len(starts) > 1
    _, info = env.reset(options={"start": 21})  # near the end: window cut at the song's end
    assert env.episode_bounds == (21, 24)


def test_logmel_observation_is_absolute(song):
    env = MixingEnv({"obs_features": "logmel", "n_track_features": 16}, songs=[song])
    obs, _ = env.reset(seed=0, options={"start": 4})
    x = obs["chunks"]
    assert x.shape == (4, 1, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(x[3], -100.0)  # dummy slot: silence
    assert np.all(x[:3] > -100.0)
    from mixing_env.features import ChunkLogMel

    np.testing.assert_allclose(x[:, 0], ChunkLogMel(44100, 500, 16)(song.stems[:, 4]), atol=1e-4)


def test_reset_options_and_config_errors(songs):
    env = MixingEnv(songs=songs)
    _, info = env.reset(seed=0, options={"song": "song2", "start": 3})
    assert (info["song"], info["chunk"], env.song.name, env.t) == ("song2", 3, "song2", 3)
    with pytest.raises(ConfigError, match="song='nope'"):
        env.reset(options={"song": "nope"})
    with pytest.raises(ConfigError, match=r"start=99 must be a chunk index in \[0, 12\)"):
        env.reset(options={"song": "song0", "start": 99})
    with pytest.raises(ConfigError, match="unknown env config key"):
        MixingEnv({"rhoo": 0.1}, songs=songs)
    with pytest.raises(ConfigError, match="obs_features"):
        EnvConfig.from_dict({"obs_features": "mfcc"})
    with pytest.raises(ConfigError, match="not in the dataset"):
        MixingEnv({"songs": ["song0", "x"]}, songs=songs)


def test_songs_subset_and_song_draw(songs):
    env = MixingEnv({"songs": ["song1", "song2"]}, songs=songs)
    drawn = {env.reset(seed=s)[1]["song"] for s in range(10)}
    assert drawn == {"song1", "song2"}


def test_slot_mismatch_is_reported():
    from mixing_env.errors import DatasetError

    env = MixingEnv(songs=[make_song("a"), make_song("b", n_real=4)])
    with pytest.raises(DatasetError, match="song 'b' has"):
        env.reset(options={"song": "b"})
