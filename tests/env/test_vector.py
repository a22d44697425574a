import gymnasium
import numpy as np
import pytest
from _env_songs import make_song

from mixing_env.envs.mixing_env import MixingEnv


def _make(seed):
    songs = [make_song(f"s{i}", seed=i, n_chunks=8 + 2 * i) for i in range(2)]
    return lambda: MixingEnv({"episode_chunks": 5}, songs=songs)


@pytest.mark.parametrize("cls", [gymnasium.vector.SyncVectorEnv, gymnasium.vector.AsyncVectorEnv],
                         ids=["sync", "async"])
def test_vector_envs_step_and_autoreset(cls):
    envs = cls([_make(i) for i in range(2)])
    try:
        obs, info = envs.reset(seed=[1, 2])
        assert obs["chunks"].shape == (2, 4, 1, 500)
        assert obs["mix_mfcc"].shape == (2, 13)
        envs.action_space.seed(0)
        total = np.zeros(2)
        terminations = 0
        seen_gains = False
        for _ in range(12):
            obs, reward, term, trunc, info = envs.step(envs.action_space.sample())
            assert obs in envs.observation_space
            total += reward
            terminations += int(term.sum())
            assert not trunc.any()
            if "gains" in info:  # absent on an autoreset step
                assert info["gains"].shape == (2, 4)
                seen_gains = True
        assert terminations >= 2  # each sub-env finished its 5-chunk window at least once
        assert np.all((total > 0) & (total <= 12))
        assert seen_gains
    finally:
        envs.close()


def test_sync_and_async_agree():
    actions = np.random.default_rng(0).random((6, 2, 4)).astype(np.float32)
    out = []
    for cls in (gymnasium.vector.SyncVectorEnv, gymnasium.vector.AsyncVectorEnv):
        envs = cls([_make(i) for i in range(2)])
        envs.reset(seed=[3, 4])
        out.append([envs.step(a)[1] for a in actions])
        envs.close()
    np.testing.assert_allclose(out[0], out[1])
