"""An interrupted Tune run resumes from its checkpoint and finishes with every iteration."""

from __future__ import annotations

import csv
import json
import os
import signal

import pytest
from ray import tune

from rl_models.app import train


class InterruptAfter(tune.Callback):
    """Sends this process SIGINT (Ctrl+C) once the checkpoint of iteration ``n`` is saved.

    Interrupting on the saved checkpoint, not on the reported result, makes the state the
    resume starts from deterministic: Tune has registered the iteration-``n`` checkpoint
    before the signal, so the resume never depends on whether an in-flight save finished.
    Tune pickles callbacks into the experiment state and restores them on resume, so "once"
    is a marker file rather than an attribute.
    """

    def __init__(self, n: int, marker):
        self.n = n
        self.marker = str(marker)

    @property
    def sent(self) -> bool:
        return os.path.exists(self.marker)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if trial.last_result.get("training_iteration", 0) >= self.n and not self.sent:
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupted_run_resumes_with_all_iterations(product_cache, ray_session, tmp_path,
                                                     deepmixing, tiny_sets, monkeypatch,
                                                     capsys):
    from mixing_env.data.cache import PreparedDataset

    name = PreparedDataset(product_cache).names[0]
    interrupt = InterruptAfter(2, tmp_path / "interrupted")
    make_tuner = train.make_tuner
    monkeypatch.setattr(train, "make_tuner", lambda *a, **kw: make_tuner(
        *a, **{**kw, "callbacks": [*(kw.get("callbacks") or []), interrupt]}))
    code = deepmixing(
        "train", "quickstart", *tiny_sets, "--set", f"env.dataset_dir={product_cache}",
        "--set", f"env.songs=[{name}]", "--set", "evaluation.interval=0",
        "--set", "stop.training_iteration=4", "--set", "checkpoint.frequency=1",
        "--storage-path", tmp_path, "--name", "resume")
    exp_dir = tmp_path / "resume"
    # Ctrl+C: a non-zero status and the project's own resume command, not Ray's hint.
    assert interrupt.sent and code == 130
    err = capsys.readouterr().err
    assert f"deepmixing train --resume {exp_dir}" in err and "Tuner.restore" not in err
    (trial,) = [p for p in exp_dir.iterdir() if (p / "progress.csv").exists()]
    with (trial / "progress.csv").open() as f:
        before = [int(r["training_iteration"]) for r in csv.DictReader(f)]
    assert 2 <= max(before) < 4, before  # interrupted before the stop criterion
    saved = sorted(json.loads((p / "deepmixing.json").read_text())["iteration"]
                   for p in trial.glob("checkpoint_*"))
    assert 2 in saved, saved  # the checkpoint the interruption waited for

    assert deepmixing("train", "--resume", exp_dir) == 0

    with (trial / "progress.csv").open() as f:
        after = [int(r["training_iteration"]) for r in csv.DictReader(f)]
    # Every iteration 1..4 is there, in order; the resumed part continues the count from the
    # last checkpoint (an iteration after it may be redone, none is lost).
    assert after[-1] == 4
    assert sorted(set(after)) == [1, 2, 3, 4]
    resumed = after[len(before):]
    assert resumed and resumed[0] <= max(saved) + 1 and resumed == list(
        range(resumed[0], 5))
    assert after[:len(before)] == before



def _iterations(trial) -> list[int]:
    with (trial / "progress.csv").open() as f:
        return [int(r["training_iteration"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_from_its_checkpoints(product_cache, ray_session, tmp_path,
                                                           deepmixing, tiny_sets, monkeypatch,
                                                           capsys):
    """sweep_asha's own checkpoint frequency: a resume redoes less than one period."""
    from rl_models.app.experiment import load_experiment

    period = load_experiment("sweep_asha")["checkpoint"]["frequency"]
    stop = 2 * period
    interrupt = InterruptAfter(period, tmp_path / "interrupted")
    make_tuner = train.make_tuner
    monkeypatch.setattr(train, "make_tuner", lambda *a, **kw: make_tuner(
        *a, **{**kw, "callbacks": [*(kw.get("callbacks") or []), interrupt]}))
    code = deepmixing(
        "tune", "sweep_asha", *tiny_sets, "--set", f"env.dataset_dir={product_cache}",
        "--set", "evaluation.interval=0", "--set", "tune.scheduler=null",
        "--set", "tune.metric=env_runners/episode_return_mean", "--set", "tune.num_samples=2",
        "--set", "tune.param_space={training: {lr: {grid_search: [0.001, 0.002]}}}",
        "--set", f"stop.training_iteration={stop}", "--storage-path", tmp_path, "--name", "sw")
    exp_dir = tmp_path / "sw"
    assert code == 130 and f"deepmixing tune --resume {exp_dir}" in capsys.readouterr().err
    trials = sorted(p for p in exp_dir.iterdir() if (p / "progress.csv").exists())
    before = {t.name: _iterations(t) for t in trials}
    assert any(max(b) >= period for b in before.values()), before

    assert deepmixing("tune", "--resume", exp_dir) == 0
    for trial in sorted(p for p in exp_dir.iterdir() if (p / "progress.csv").exists()):
        after = _iterations(trial)
        assert after[-1] == stop and sorted(set(after)) == list(range(1, stop + 1))
        done = before.get(trial.name, [])
        assert after[:len(done)] == done  # nothing logged before the interruption is lost
        resumed = after[len(done):]
        if done and resumed:
            # It continues from its last checkpoint: fewer than one period is trained again.
            redone = max(done) - resumed[0] + 1
            assert redone < period, (done, resumed)
