"""The learning benchmark's ceiling policies (benchmarks/bench_ceiling.py)."""

import numpy as np
import pytest
from _env_songs import make_song

from benchmarks.bench_ceiling import BalancePlusTrueDynamics, fit_table_to_reward, shifted_table
from mixing_env.baselines import InstrumentBalance


@pytest.fixture(scope="module")
def table():
    levels = {f"Extra/Track#{i + 1}": lvl for i, lvl in enumerate((0.0, -6.0, 4.0))}
    return InstrumentBalance(levels, {}, {})


def test_true_dynamics_move_the_table_as_the_reference_moves(table):
    song = make_song(n_real=3, n_dummy=1, n_chunks=32, seed=3)
    gains = BalancePlusTrueDynamics(table).gains(song)
    real = song.track_mask.astype(bool)
    np.testing.assert_allclose(gains[real].sum(axis=0), 1.0, atol=1e-5)  # on the simplex
    assert np.all(gains[~real] == 0)
    # Between two stems, the policy's level ratio changes from chunk to chunk exactly as the
    # reference's does (the dynamics), while its mean ratio is the table's (the balance).
    ratio = np.log(gains[0] / gains[1])
    true_ratio = np.log(song.true_gains[0] / song.true_gains[1])
    np.testing.assert_allclose(ratio - ratio[0], true_ratio - true_ratio[0], atol=1e-4)
    assert np.ptp(ratio) > 0.5  # the song's gains do move


def test_constant_reference_gains_leave_the_table_as_it_is(table):
    song = make_song(n_real=3, n_dummy=1, n_chunks=16, seed=4)
    song.true_gains = np.repeat(song.true_gains[:, :1], song.n_chunks, axis=1)
    np.testing.assert_allclose(BalancePlusTrueDynamics(table).gains(song), table.gains(song),
                               atol=1e-5)


def test_reward_fit_finds_the_offsets_that_minimise_the_distance(table):
    wanted = {"Extra/Track#1": 2.25, "Extra/Track#2": -3.0, "Extra/Track#3": 0.0}

    def distance(policy):
        return sum((policy.slots[s] - table.slots[s] - w) ** 2 for s, w in wanted.items())

    offsets, best = fit_table_to_reward(table, distance, log=lambda _: None, sweeps=8)
    assert offsets == {"Extra/Track#1": 2.25, "Extra/Track#2": -3.0}
    assert best == pytest.approx(0.0)
    assert shifted_table(table, offsets).slots["Extra/Track#2"] == pytest.approx(-9.0)
