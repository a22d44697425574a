"""``deepmixing train`` mistakes: one line, exit 2, before Ray or Tune start (issue 14)."""

from __future__ import annotations

import re

import pytest

from rl_models.app import cli, train


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the command got as far as starting Ray."""

    def refuse(**kwargs):
        raise AssertionError("Ray was started before the mistake was reported")

    monkeypatch.setattr(train, "init_ray", refuse)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("deepmixing: error: ") and "Traceback" not in err[0]
    return err[0]


def test_missing_dataset_fails_before_ray_and_leaves_nothing(tmp_path, capsys, no_ray):
    missing = tmp_path / "no_such_cache"
    assert cli.main(["train", "quickstart", "--storage-path", str(tmp_path / "runs"),
                     "--set", f"env.dataset_dir={missing}"]) == 2
    assert str(missing) in _one_line_error(capsys)
    assert not list(tmp_path.rglob("tuner.pkl")) and not (tmp_path / "runs").exists()


def test_missing_evaluation_songs_fail_before_ray(product_cache, tmp_path, capsys, no_ray):
    assert cli.main(["train", "quickstart", "--storage-path", str(tmp_path),
                     "--set", f"env.dataset_dir={product_cache}",
                     "--set", f"evaluation.env.dataset_dir={product_cache}",
                     "--set", "evaluation.env.songs=[NoSuchSong]"]) == 2
    assert "NoSuchSong" in _one_line_error(capsys)


@pytest.mark.parametrize("override, names", [
    ("algorithm=DQN", ["--set algorithm=DQN", "unknown algorithm 'DQN'"]),
    ("training.lr=abc", ["--set training.lr=abc", "training.lr must be a number"]),
    ("checkpoint.frequency=-1", ["--set checkpoint.frequency=-1", "checkpoint.frequency"]),
    ("evaluation.intervall=3", ["--set evaluation.intervall=3", "['intervall']"]),
], ids=["algorithm", "lr", "frequency", "evaluation-key"])
def test_bad_override_is_named_not_the_file(override, names, capsys, no_ray):
    assert cli.main(["train", "quickstart", "--set", override]) == 2
    line = _one_line_error(capsys)
    for name in names:
        assert name in line
    assert "quickstart.yaml" not in line


def test_a_mistake_in_the_file_names_the_file(tmp_path, capsys, no_ray):
    path = tmp_path / "exp.yaml"
    path.write_text("algorithm: DQN\n")
    assert cli.main(["train", str(path)]) == 2
    assert str(path) in _one_line_error(capsys)


def test_short_run_still_reports_gap_closed(product_cache, ray_session, tmp_path, capsys,
                                            tiny_sets):
    from mixing_env.data.cache import PreparedDataset

    names = PreparedDataset(product_cache).names
    assert cli.main([
        "train", "quickstart", "--storage-path", str(tmp_path), "--name", "short", "--verbose",
        "0", "--set", f"env.dataset_dir={product_cache}", "--set", f"env.songs=[{names[0]}]",
        "--set", f"evaluation.env.dataset_dir={product_cache}",
        "--set", f"evaluation.env.songs=[{names[1]}]", "--set", "evaluation.interval=5",
        "--set", "stop.training_iteration=1", "--set", "checkpoint.frequency=0", *tiny_sets,
    ]) == 0
    out = capsys.readouterr().out
    gap = re.search(r"gap_closed=(\S+)", out)
    assert gap and gap.group(1) not in ("nan", "-"), out
    float(gap.group(1))
    (trial,) = [p for p in (tmp_path / "short").iterdir() if (p / "result.json").is_file()]
    assert (trial / train.CURVE_FILE).stat().st_size > 0


def test_a_search_spec_in_train_points_to_tune(capsys, no_ray):
    assert cli.main(["train", "quickstart", "--set",
                     "training.lr={grid_search: [0.001, 0.0001]}"]) == 2
    assert "use `deepmixing tune` for a sweep" in _one_line_error(capsys)
