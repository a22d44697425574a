"""evaluate()'s table: gap columns on every row, the balance share, the one song source."""

import csv
import json

import numpy as np
import pytest

from mixing_env.balance import fit_instrument_balance
from mixing_env.envs import song_source
from mixing_env.envs.song_source import SongSource
from rl_models.app.evaluate import evaluate, format_table

HELD_OUT = {"synthetic": {"n_songs": 2, "seconds": 1.0, "n_tracks": 3, "seed": 5}}


@pytest.fixture(scope="module")
def balance_table(tmp_path_factory):
    train = SongSource({"synthetic": {"n_songs": 4, "seconds": 1.0, "n_tracks": 3, "seed": 1}})
    path = tmp_path_factory.mktemp("balance") / "balance.json"
    return fit_instrument_balance(train.songs()).write(path)


def test_table_shows_both_gaps_on_every_row(balance_table, tmp_path):
    specs = ["equal", "oracle", "loudness", f"instrument_balance={balance_table}"]
    rows = evaluate(specs, env_config=HELD_OUT, out_dir=tmp_path, plots=False, progress=False)
    assert len(rows) == 4 * (2 + 1)
    by = {(r["policy"], r["song"]): r for r in rows}
    for song in ("MEAN", *SongSource(HELD_OUT).names):
        assert by["equal", song]["gap_closed"] == pytest.approx(0.0)
        assert by["oracle", song]["gap_closed"] == pytest.approx(1.0)
        assert by["instrument_balance", song]["balance_gap_closed"] == pytest.approx(0.0)
        assert by["oracle", song]["balance_gap_closed"] == pytest.approx(1.0)
    loud = by["loudness", "MEAN"]
    d = {p: by[p, "MEAN"]["mfcc_distance"] for p in ("equal", "oracle", "instrument_balance")}
    assert loud["balance_gap_closed"] == pytest.approx(
        (d["instrument_balance"] - loud["mfcc_distance"]) / (d["instrument_balance"] - d["oracle"]))
    header = format_table(rows, means_only=True).splitlines()[0].split()
    assert header[-2:] == ["gap_closed", "balance_gap_closed"]
    with (tmp_path / "evaluation.csv").open() as f:
        assert csv.DictReader(f).fieldnames[-2:] == ["gap_closed", "balance_gap_closed"]
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["columns"][-2:] == ["gap_closed", "balance_gap_closed"]


def test_gap_closed_without_equal_and_oracle_rows(tmp_path):
    rows = evaluate(["loudness"], env_config=HELD_OUT, out_dir=tmp_path, plots=False,
                    progress=False)
    assert [r["policy"] for r in rows] == ["loudness"] * 3
    assert all(isinstance(r["gap_closed"], float) for r in rows)
    assert "balance_gap_closed" not in format_table(rows)


def test_synthetic_songs_are_made_once_per_config(monkeypatch, tmp_path):
    import mixing_env.songs.procedural as synthetic

    made = []
    real = synthetic.synthetic_songs
    monkeypatch.setattr(synthetic, "synthetic_songs", lambda **kw: made.append(kw) or real(**kw))
    song_source._synthetic_cache.clear()
    config = {"synthetic": {"n_songs": 3, "seconds": 0.5, "n_tracks": 2, "seed": 11}}
    evaluate(["equal", "static_oracle"], env_config=config, out_dir=tmp_path, plots=False,
             progress=False)
    assert len(made) == 1


def test_balance_fit_command_then_evaluate_demos_and_mix(product_cache, product_songs, tmp_path,
                                                         deepmixing, capsys):
    from mixing_env.data.cache import PreparedDataset
    from rl_models.app.demonstrations import read_demonstrations

    names = PreparedDataset(product_cache).names
    table = tmp_path / "balance.json"
    assert deepmixing("balance", "fit", product_cache, "--songs", names[0], "--out", table) == 0
    assert json.loads(table.read_text())["meta"]["songs"] == [names[0]]
    out = tmp_path / "eval"
    assert deepmixing("evaluate", f"instrument_balance={table}", "equal", "oracle",
                      "--dataset", product_cache, "--out", out, "--no-plots",
                      "--no-progress") == 0
    rows = json.loads((out / "evaluation.json").read_text())["rows"]
    assert {r["policy"] for r in rows} == {"instrument_balance", "equal", "oracle"}
    assert "balance_gap_closed" in capsys.readouterr().out
    demos = tmp_path / "demos"
    assert deepmixing("demos", "quickstart", "--policy", f"instrument_balance={table}",
                      "--episodes-per-song", 1, "--out", demos,
                      "--set", f"env.dataset_dir={product_cache}") == 0
    assert len(read_demonstrations(demos)) == len(names)
    assert deepmixing("demos", "quickstart", "--policy", "median", "--out", demos,
                      "--set", f"env.dataset_dir={product_cache}") == 2
    assert "unknown baseline 'median'" in capsys.readouterr().err
    song_dir = sorted(p for p in product_songs.iterdir() if p.is_dir())[0]
    assert deepmixing("mix", f"instrument_balance={table}", song_dir, "--out", tmp_path / "mix",
                      "--no-progress") == 0
    meta = json.loads((tmp_path / "mix" / f"{song_dir.name}_automation.json").read_text())
    assert meta["checkpoint"] == f"instrument_balance={table}" and not meta["unplaced_stems"]
    gains = np.array([t["gain"] for t in meta["tracks"]])
    np.testing.assert_allclose(gains.sum(axis=0), 1.0, rtol=1e-5)
    assert np.ptp(gains, axis=1).max() < 1e-6  # one static balance per song
