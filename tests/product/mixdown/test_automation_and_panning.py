"""Thinning a gain curve, and the panning convention."""

from __future__ import annotations

import numpy as np
import pytest

from mixing_env.errors import ConfigError
from rl_models.app.mixdown.automation import gain_at, thin_points
from rl_models.app.mixdown.panning import (
    PanTable,
    channel_matrix,
    pan_gains,
    pan_positions,
)


def db(x):
    return 20 * np.log10(x)


def test_a_curve_of_holds_and_ramps_keeps_its_corners_only():
    times = np.arange(1000) * 0.01
    level_db = np.interp(times, [0, 2, 3, 6, 9.99], [-20, -20, -8, -8, -30])
    kept = thin_points(times, 10 ** (level_db / 20), tolerance_db=0.1)
    # Linear in dB is not linear in gain: a ramp needs a few points, a hold none.
    assert kept[0] == 0 and kept[-1] == 999 and len(kept) < 40
    drawn = gain_at(times, times[kept], 10 ** (level_db[kept] / 20))
    assert np.abs(db(drawn) - level_db).max() <= 0.1


@pytest.mark.parametrize("tolerance", [0.01, 0.1, 1.0])
def test_thinned_noise_stays_within_the_tolerance(tolerance):
    rng = np.random.default_rng(3)
    times = np.sort(rng.random(3000)) * 180
    gains = 10 ** (np.cumsum(rng.normal(0, 0.05, 3000)) / 20) * 0.05
    kept = thin_points(times, gains, tolerance_db=tolerance)
    error = np.abs(db(gain_at(times, times[kept], gains[kept])) - db(gains))
    assert error.max() <= tolerance + 1e-9
    assert len(kept) < len(times)


def test_silence_in_a_curve_is_kept_as_silence():
    gains = np.array([0.5, 0.5, 0.0, 0.0, 0.0, 0.5])
    kept = thin_points(np.arange(6.0), gains)
    assert gain_at(np.arange(6.0), kept.astype(float), gains[kept]).tolist() == gains.tolist()


def test_the_convention_centres_the_core_and_mirrors_pairs():
    slots = ["Drums/Kick#1", "Drums/Snare#1", "Strings/Bass#1", "Vocals/Lead#1",
             "Drums/Overheads#1", "Drums/Overheads#2", "Strings/Electric#1",
             "Strings/Electric#2", "Vocals/Backing#1", "Vocals/Backing#2", "Keys/Piano#1",
             "Extra/Unknown#1"]
    pans = dict(zip(slots, pan_positions(slots), strict=True))
    assert [pans[s] for s in slots[:4]] == [0.0] * 4
    for first, second in [("Drums/Overheads#1", "Drums/Overheads#2"),
                          ("Strings/Electric#1", "Strings/Electric#2"),
                          ("Vocals/Backing#1", "Vocals/Backing#2")]:
        assert pans[first] != 0 and pans[second] == -pans[first]
    assert pans["Keys/Piano#1"] != 0 and pans["Extra/Unknown#1"] == 0.0


def test_every_pair_of_the_shipped_table_mirrors():
    table = PanTable.load()
    for name, positions in table.positions.items():
        if len(positions) >= 2:
            assert positions[1] == -positions[0], name


def test_pan_law_keeps_the_power():
    for position in np.linspace(-1, 1, 9):
        left, right = pan_gains(position)
        assert left**2 + right**2 == pytest.approx(1.0)
    assert pan_gains(0.0) == pytest.approx((2**-0.5, 2**-0.5))
    assert pan_gains(-1.0) == pytest.approx((1.0, 0.0))
    np.testing.assert_array_equal(channel_matrix(2, 0.7, out_channels=2), np.eye(2))
    assert channel_matrix(1, 0.7, out_channels=2, pan=False).ravel().tolist() == [1.0, 1.0]


def test_a_table_with_a_position_off_the_scale_is_refused(tmp_path):
    path = tmp_path / "pans.yaml"
    path.write_text("instruments:\n  Drums/Kick: {positions: [1.5]}\n")
    with pytest.raises(ConfigError, match="Drums/Kick"):
        PanTable.load(path)
