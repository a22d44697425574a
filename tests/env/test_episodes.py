"""The one episode runner: its record, its axis order, and the policy protocol."""

import numpy as np
import pytest

from mixing_env.baselines import BASELINES, OraclePolicy, make_baseline
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.episodes import Policy, run_episode
from mixing_env.errors import ConfigError


class Scripted:
    """A policy that plays fixed actions and remembers what reset told it."""

    name = "scripted"

    def __init__(self, actions):
        self.actions, self.k, self.reset_with = actions, 0, None

    def reset(self, song, start):
        self.k, self.reset_with = 0, (song.name, start)

    def act(self, obs):
        assert set(obs) == {"chunks", "mix_mfcc", "track_mask"}
        self.k += 1
        return self.actions[:, self.k - 1]


def test_record_is_slots_first_and_matches_the_baseline_gains(song):
    env = MixingEnv(songs=[song])
    policy = OraclePolicy()
    rec = run_episode(env, policy, song=song.name, start=3, seed=0)
    n = song.n_chunks - 3
    assert rec.gains.shape == rec.actions.shape == (song.n_slots, n)
    assert rec.reward.shape == rec.mfcc_distance.shape == rec.kl.shape == (n,)
    np.testing.assert_array_equal(rec.chunks, np.arange(3, song.n_chunks))
    # gains are (C, T) like the baseline's own gains and the song's true gains
    np.testing.assert_allclose(rec.gains, policy.gains(song)[:, 3:], rtol=1e-6, atol=1e-7)
    assert rec.terminated and not rec.truncated and rec.observations is None


def test_runner_resets_the_policy_and_keeps_observations(songs):
    env = MixingEnv({"episode_chunks": 5}, songs=songs)
    rng = np.random.default_rng(0)
    actions = rng.random((songs[1].n_slots, 5)).astype(np.float32)
    policy = Scripted(actions)
    assert isinstance(policy, Policy)
    rec = run_episode(env, policy, song=songs[1].name, start=2, keep_observations=True)
    assert policy.reset_with == (songs[1].name, 2) and rec.song is env.song
    np.testing.assert_array_equal(rec.actions, actions)
    assert len(rec.observations) == rec.n_steps + 1 == 6
    np.testing.assert_allclose(rec.gains.sum(axis=0), 1.0, rtol=1e-6)


def test_every_registered_baseline_follows_the_protocol():
    specs = [n for n in BASELINES if n != "instrument_balance"]
    for spec in specs:
        assert isinstance(make_baseline(spec), Policy), spec
    with pytest.raises(ConfigError, match="act\\(\\) before reset"):
        make_baseline("equal").act({})
