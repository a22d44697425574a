"""The mixing model's optional content term: a lift for stems the rest of the band masks."""

import json

import numpy as np
import pytest

from mixing_env.data.sampled import generate_sampled_song, make_sampled_dataset
from mixing_env.data.sampled.masking import MASKING_REFERENCE, masking_index, masking_lift_db
from mixing_env.data.sampled.mixing_model import GROUP_SD_DB, ROLE_LEVEL_DB, mix_gains_db
from mixing_env.errors import ConfigError
from mixing_env.metrics import integrated_loudness
from rl_models.app.cli import main

SR, K = 44100, 500
SONG = {"seconds": 2.0, "n_tracks": (5, 6), "seed": 3}


def _tone(hz: float, seconds: float = 2.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _band(lo_hz: float, hi_hz: float, seconds: float = 2.0, amp: float = 0.3) -> np.ndarray:
    """A dense cluster of tones between lo_hz and hi_hz (a pad in that register)."""
    return sum(_tone(f, seconds, amp / 8) for f in np.geomspace(lo_hz, hi_hz, 8))


def _mix(stems, roles, *, seed=0, **options):
    stems = np.stack(stems)
    T = int(np.ceil(stems.shape[1] / K))
    return mix_gains_db(stems, roles=roles, chunk_sections=np.full(T, "verse"),
                        rng=np.random.default_rng(seed), sample_rate=SR, chunk_size=K,
                        **options)


def test_default_songs_are_unchanged_and_the_option_moves_only_the_balance():
    plain = generate_sampled_song(0, **SONG)
    default = generate_sampled_song(0, masking_db=0.0, own_sd_scale=1.0, **SONG)
    np.testing.assert_array_equal(default.true_gains, plain.true_gains)
    assert default.meta == plain.meta and "masking_index" not in plain.meta["mixing"]

    on = generate_sampled_song(0, masking_db=8.0, **SONG)
    np.testing.assert_array_equal(on.stems, plain.stems)  # the same performance
    mixing, base = on.meta["mixing"], plain.meta["mixing"]
    assert mixing["section_scale"] == base["section_scale"]  # the same random draws
    assert mixing["duck_db"] == base["duck_db"]
    lead = next(f for f, p in on.meta["parts"].items() if p["role"] == "lead")
    assert mixing["masking_lift_db"][lead] == 0.0
    for f, lift in mixing["masking_lift_db"].items():  # the lift is the only target change
        assert mixing["target_lu_vs_lead"][f] - base["target_lu_vs_lead"][f] == pytest.approx(
            lift, abs=1e-9)
    assert np.ptp(list(mixing["masking_lift_db"].values())) > 1.0
    assert not np.allclose(on.true_gains, plain.true_gains)


def test_the_lift_is_a_function_of_the_stems_not_of_the_draws():
    stems = [_tone(60), _band(300, 900), _tone(500, amp=0.1), _tone(1800)]
    roles = ["kick", "pad", "keys", "lead"]
    _, a = _mix(stems, roles, seed=1, masking_db=8.0)
    _, b = _mix(stems, roles, seed=2, masking_db=8.0)
    assert a.masking_lift_db == b.masking_lift_db and a.target_db != b.target_db
    # Raw level does not matter: every stem is measured at its role's mean loudness.
    _, c = _mix([stems[0], stems[1], stems[2] * 0.05, stems[3]], roles, seed=1, masking_db=8.0)
    np.testing.assert_allclose(c.masking_lift_db, a.masking_lift_db, atol=1e-6)
    _, off = _mix(stems, roles, seed=1)
    assert off.masking_index is None and off.masking_lift_db is None
    np.testing.assert_allclose(np.subtract(a.target_db, off.target_db), a.masking_lift_db,
                               atol=1e-9)


def test_a_buried_stem_gets_more_lift_than_the_same_stem_in_the_clear():
    keys, lead = _tone(440), _tone(3000)
    roles = ["keys", "pad", "lead"]
    lifts = {}
    for name, pad in {"same register": _band(330, 600), "other register": _band(4500, 9000),
                      "silent": np.zeros_like(keys)}.items():
        _, dec = _mix([keys, pad, lead], roles, masking_db=8.0)
        lifts[name] = dec.masking_lift_db[0]
    assert lifts["same register"] > lifts["other register"] + 3.0, lifts
    assert lifts["other register"] >= lifts["silent"] - 0.5, lifts
    # The index itself: a louder overlapping band masks more.
    stems = np.stack([keys, _band(330, 600), lead])
    loud = np.array([integrated_loudness(s, sample_rate=SR) for s in stems])
    quiet, louder = (masking_index(stems, levels_db=np.array([-9.0, pad_db, 0.0]),
                                   loudness=loud, sample_rate=SR, skip=2)
                     for pad_db in (-20.0, -5.0))
    assert louder[0] > quiet[0] + 0.2 and louder[2] == 0.0
    assert masking_lift_db(louder, 8.0, roles=roles, skip=2)[2] == 0.0


def test_scaled_offsets_leave_the_role_means_and_group_offsets():
    stems = [_tone(60), _tone(200), _tone(120), _tone(1800)]
    roles = ["kick", "snare", "bass", "lead"]
    _, dec = _mix(stems, roles, own_sd_scale=0.0)
    off = np.subtract(dec.target_db, [ROLE_LEVEL_DB[r][0] for r in roles])
    assert off[0] == pytest.approx(off[1]) and off[3] == 0.0  # kick and snare: one drum offset
    assert abs(off[0]) < 5 * GROUP_SD_DB and off[0] != pytest.approx(off[2])
    _, full = _mix(stems, roles)
    assert full.target_db[0] - full.target_db[1] != pytest.approx(off[0] - off[1])
    _, fixed = _mix(stems, roles, own_sd_scale=0.0, group_sd_scale=0.0)
    np.testing.assert_allclose(fixed.target_db, [ROLE_LEVEL_DB[r][0] for r in roles], atol=1e-12)
    assert set(MASKING_REFERENCE) == set(ROLE_LEVEL_DB)  # every role has its reference


@pytest.mark.parametrize("bad", [{"masking_db": -1.0}, {"masking_db": float("nan")},
                                 {"own_sd_scale": -0.5}, {"own_sd_scale": "half"},
                                 {"group_sd_scale": float("inf")},
                                 {"masking_db": True}])
def test_bad_options_are_named(bad, tmp_path):
    (name, value), = bad.items()
    with pytest.raises(ConfigError, match=f"{name} must be a finite number >= 0, got {name}="):
        generate_sampled_song(0, **SONG, **bad)
    with pytest.raises(ConfigError, match=name):
        make_sampled_dataset(tmp_path, n_songs=1, **SONG, **bad)
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_cli_synth_masking_options(tmp_path, capsys):
    rc = main(["synth", str(tmp_path / "out"), "--n-songs", "1", "--seconds", "2",
               "--tracks", "5", "--seed", "3", "--masking-db", "8", "--own-sd-scale", "0.5",
               "--group-sd-scale", "0.25"])
    assert rc == 0
    mixing = json.loads((tmp_path / "out" / "SampledSong001" / "sampled.json").read_text())[
        "mixing"]
    assert (mixing["masking_db"], mixing["own_sd_scale"], mixing["group_sd_scale"]) == (
        8.0, 0.5, 0.25)
    assert set(mixing["masking_index"]) == set(mixing["target_lu_vs_lead"])
    assert main(["synth", str(tmp_path / "bad"), "--masking-db", "-2"]) == 2
    assert "masking_db must be a finite number >= 0, got masking_db=-2.0" in capsys.readouterr().err
