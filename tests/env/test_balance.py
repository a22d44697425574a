"""The instrument_balance baseline: its fit, its table file and its place in the registry."""

import numpy as np
import pytest
from _env_songs import make_song

from mixing_env.balance import fit_instrument_balance
from mixing_env.baselines import BALANCE_FILE, EqualGains, InstrumentBalance, make_baseline
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.episodes import run_episode
from mixing_env.errors import ConfigError
from mixing_env.features import stem_loudness

SLOTS = ["Drums/Kick#1", "Bass/Electric#1", "Keys/Piano#1", "Vocals/Lead#1"]
BALANCE_DB = np.array([3.0, 0.0, -8.0, 9.0])  # the level each slot sits at in every mix


def balanced_song(name: str, *, seed: int, spread_db: float = 0.0):
    """Stems recorded at random levels, mixed so each slot sits at its BALANCE_DB level.

    The per-song spread moves each stem's level by a random amount (N(0, spread_db)).
    """
    rng = np.random.default_rng(seed)
    song = make_song(name, n_real=4, n_dummy=0, n_chunks=48, seed=seed)
    song.slot_names = list(SLOTS)
    recording = 10 ** (rng.uniform(-24.0, 0.0, size=4) / 20)
    song.stems = (song.stems * recording[:, None, None]).astype(np.float32)
    level = BALANCE_DB + spread_db * rng.standard_normal(4)
    gains = 10 ** ((level - stem_loudness(song)) / 20)
    song.true_gains = np.repeat(gains[:, None], song.n_chunks, axis=1).astype(np.float32)
    song.reference = np.einsum("c,ctn->tn", gains, song.stems).astype(np.float32)
    return song


@pytest.fixture(scope="module")
def table():
    return fit_instrument_balance([balanced_song(f"train{i}", seed=i) for i in range(4)])


def test_fit_recovers_the_per_slot_balance(table):
    fitted = np.array([table.slots[s] for s in SLOTS])
    # Levels are relative (the simplex ignores one constant): compare centred.
    np.testing.assert_allclose(fitted, BALANCE_DB - BALANCE_DB.mean(), atol=0.05)
    assert table.meta["stems_per_slot"] == dict.fromkeys(SLOTS, 4)


def test_unseen_slot_falls_back_to_instrument_then_section_then_zero(table):
    assert table.level_db("Drums/Kick#2") == pytest.approx(table.slots["Drums/Kick#1"])
    assert table.level_db("Drums/Snare#1") == pytest.approx(table.sections["Drums"])
    assert table.level_db("Brass/Trumpet#1") == 0.0


def test_beats_equal_gains_on_held_out_songs(table, tmp_path):
    held_out = [balanced_song(f"test{i}", seed=100 + i, spread_db=1.0) for i in range(3)]
    policy = make_baseline(f"instrument_balance={table.write(tmp_path / 'b.json')}")
    env = MixingEnv(songs=held_out)
    for song in held_out:
        balance = run_episode(env, policy, song=song.name, start=0, seed=0)
        equal = run_episode(env, EqualGains(), song=song.name, start=0, seed=0)
        assert balance.mfcc_distance.mean() < 0.5 * equal.mfcc_distance.mean(), song.name
        truth = song.true_gains[:, 0] / song.true_gains[:, 0].sum()
        err = np.abs(20 * np.log10(balance.gains[:, 0] / truth))
        assert err.max() < 3.0, (song.name, err)


def test_table_round_trips_and_is_found_next_to_the_dataset(table, tmp_path):
    table.write(tmp_path / BALANCE_FILE)
    again = make_baseline("instrument_balance", dataset_dir=str(tmp_path))
    assert isinstance(again, InstrumentBalance)
    assert again.slots == pytest.approx(table.slots) and again.sections == table.sections
    song = balanced_song("x", seed=9)
    np.testing.assert_allclose(again.gains(song), table.gains(song))


def test_bad_tables_and_specs_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="needs its table"):
        make_baseline("instrument_balance")
    with pytest.raises(ConfigError, match="not found: .*nope.json"):
        make_baseline(f"instrument_balance={tmp_path / 'nope.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text('{"slots": [1, 2]}')
    with pytest.raises(ConfigError, match="bad.json is not an instrument balance table"):
        InstrumentBalance.read(bad)
    with pytest.raises(ConfigError, match="takes no argument"):
        make_baseline("equal=3")
    with pytest.raises(ConfigError, match="unknown baseline 'median'"):
        make_baseline("median")
