"""``deepmixing tune-report``: a real tiny ASHA sweep read back into its markdown table."""

from __future__ import annotations

import json
import math
import types

import pytest

from mixing_env.errors import CheckpointError, ConfigError
from rl_models.app.sweep_report import _status, format_markdown, read_sweep


def _last_result(trial_dir):
    lines = (trial_dir / "result.json").read_text().strip().splitlines()
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def tiny_sweep(product_cache, ray_session, tmp_path_factory, deepmixing, tiny_sets):
    """sweep_asha with its ASHA scheduler: 3 lr draws, 2 tiny iterations, evaluated each one."""
    from mixing_env.data.cache import PreparedDataset

    names = PreparedDataset(product_cache).names
    storage = tmp_path_factory.mktemp("sweeps")
    assert deepmixing(
        "tune", "sweep_asha", "--storage-path", storage, "--name", "asha", "--verbose", 0,
        "--set", f"env.dataset_dir={product_cache}", "--set", f"env.songs=[{names[0]}]",
        "--set", f"evaluation.env.dataset_dir={product_cache}",
        "--set", f"evaluation.env.songs=[{names[1]}]", "--set", "evaluation.interval=1",
        "--set", "tune.param_space={training: {lr: {loguniform: [0.0001, 0.01]}}}",
        "--set", "tune.num_samples=3",
        "--set", "tune.scheduler={type: asha, max_t: 2, grace_period: 1, reduction_factor: 2}",
        "--set", "stop.training_iteration=2", *tiny_sets,
    ) == 0
    return storage / "asha"


def test_the_table_has_one_row_per_trial_and_marks_the_best(tiny_sweep):
    trials = sorted(p for p in tiny_sweep.iterdir() if (p / "result.json").is_file())
    assert len(trials) == 3
    table = read_sweep(tiny_sweep)
    assert table.metric == "deepmixing/gap_closed"  # the held-out evaluation ran
    assert [r.trial for r in table.rows] == [t.name for t in trials]
    by_name = {r.trial: r for r in table.rows}
    for trial in trials:
        row, last = by_name[trial.name], _last_result(trial)
        assert row.settings == {"training.lr": last["config"]["training"]["lr"]}
        assert row.iterations == last["training_iteration"]
        assert row.status == ("done" if row.iterations == 2 else "stopped early")
        assert row.metric == pytest.approx(last["deepmixing"]["gap_closed"])
    gaps = {t.name: _last_result(t)["deepmixing"]["gap_closed"] for t in trials}
    assert table.best.trial == max(gaps, key=gaps.get)

    text = format_markdown(table)
    lines = text.splitlines()
    assert lines[0] == ("| trial | training.lr | iterations | stopped | deepmixing/gap_closed "
                        "| best |")
    rows = [line for line in lines if line.startswith("| PPO_")]
    assert len(rows) == 3
    assert [line for line in rows if line.endswith("| best |")] == [
        line for line in rows if line.startswith(f"| {table.best.trial} ")]
    assert f"--set training.lr={table.best.settings['training.lr']:.3g}" in text


def test_min_mode_and_another_metric(tiny_sweep):
    table = read_sweep(tiny_sweep, metric="env_runners/episode_return_mean", mode="min")
    returns = {r.trial: r.metric for r in table.rows}
    assert all(math.isfinite(v) for v in returns.values())
    assert table.best.trial == min(returns, key=returns.get)


def test_the_cli_prints_the_table_and_draws_the_curves(tiny_sweep, deepmixing, capsys,
                                                        tmp_path):
    picture = tmp_path / "curves.png"
    assert deepmixing("tune-report", tiny_sweep, "--plot", picture) == 0
    out = capsys.readouterr().out
    assert out.count("| PPO_") == 3 and "best by deepmixing/gap_closed (max)" in out
    assert f"curves: {picture}" in out and picture.stat().st_size > 0
    assert (tiny_sweep / "sweep_curves.png").is_file()  # drawn at the end of the sweep


def test_the_curves_hold_each_evaluated_iteration(tiny_sweep):
    table = read_sweep(tiny_sweep)
    for row in table.rows:
        curve = table.curves[row.trial]
        assert [it for it, _ in curve] == list(range(1, row.iterations + 1))
        assert curve[-1][1] == pytest.approx(row.metric)
    assert table.perturbations == []  # ASHA stops trials, it never changes their settings


def test_bad_folder_metric_and_mode(tiny_sweep, tmp_path, deepmixing, capsys):
    with pytest.raises(CheckpointError, match="not a Tune experiment folder"):
        read_sweep(tmp_path)
    with pytest.raises(ConfigError, match="no trial reports the metric 'no/such'"):
        read_sweep(tiny_sweep, metric="no/such")
    with pytest.raises(ConfigError, match="mode must be"):
        read_sweep(tiny_sweep, mode="best")
    assert deepmixing("tune-report", tmp_path / "missing") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepmixing: error: not a Tune experiment")


@pytest.mark.parametrize("status, iterations, expected", [
    ("TERMINATED", 24, "done"),
    ("TERMINATED", 6, "stopped early"),
    ("ERROR", 3, "error"),
    ("PAUSED", 8, "paused"),
])
def test_status_tells_the_scheduler_stop_from_a_full_run(status, iterations, expected):
    trial = types.SimpleNamespace(status=status, config={"stop": {"training_iteration": 24}})
    assert _status(trial, iterations) == expected


def test_a_setting_changed_while_training_reads_initial_to_final():
    from rl_models.app.sweep_report import SweepRow, SweepTable

    rows = [SweepRow(trial="a", settings={"training.gamma": 0.0}, initial={"training.gamma": 0.9},
                     iterations=8, status="done", metric=0.4),
            SweepRow(trial="b", settings={"training.gamma": 0.5}, initial={"training.gamma": 0.5},
                     iterations=8, status="done", metric=float("nan"))]
    text = format_markdown(SweepTable(metric="m", mode="max", rows=rows, best=rows[0]))
    assert "| a | 0.9 -> 0 | 8 | done | **0.400** | best |" in text
    assert "| b | 0.5 | 8 | done | - |  |" in text
    assert text.endswith("best by m (max): a = 0.400\n  --set training.gamma=0")


def test_a_real_pbt_sweep_reports_the_settings_its_members_changed(
        product_cache, ray_session, tmp_path, deepmixing, tiny_sets):
    """sweep_pbt with 4 tiny members, synchronous: at iteration 2 the worst copies the best."""
    from mixing_env.data.cache import PreparedDataset

    name = PreparedDataset(product_cache).names[0]
    assert deepmixing(
        "tune", "sweep_pbt", "--storage-path", tmp_path, "--name", "pbt", "--verbose", 0,
        "--set", f"env.dataset_dir={product_cache}", "--set", f"env.songs=[{name}]",
        "--set", "evaluation.interval=0", "--set", "tune.metric=env_runners/episode_return_mean",
        "--set", "tune.scheduler.perturbation_interval=2", "--set", "tune.scheduler.synch=true",
        "--set", "stop.training_iteration=3", "--set", "checkpoint.frequency=1", *tiny_sets,
    ) == 0
    table = read_sweep(tmp_path / "pbt")
    assert table.metric == "env_runners/episode_return_mean"  # no held-out evaluation ran
    assert len(table.rows) == 4 and all(r.iterations == 3 for r in table.rows)
    assert {r.status for r in table.rows} == {"done"}
    changed = [r for r in table.rows if r.initial["training.lr"] != r.settings["training.lr"]]
    assert changed  # an exploited member trains on with a perturbed lr
    text = format_markdown(table)
    for row in changed:
        assert f"{row.initial['training.lr']:.3g} -> {row.settings['training.lr']:.3g}" in text
    # The perturbations over time: when, which member, what changed, whom it copied.
    assert {p.trial for p in table.perturbations} == {r.trial for r in changed}
    names = {r.trial for r in table.rows}
    for p in table.perturbations:
        assert p.iteration == 3 and "training.lr" in p.changes
        assert p.source in names - {p.trial}
        before, after = p.changes["training.lr"]
        (line,) = [x for x in text.splitlines() if x.startswith(f"| 3 | {p.trial} | ")]
        assert f"training.lr: {before:.3g} -> {after:.3g}" in line and p.source in line
