"""A user's algorithm and module, named in an experiment, with no edit to the package.

The documented example (``examples/``, ``docs/extending.md``) runs as a user runs it: the
command in the folder holding ``my_algos.py`` and ``tiny_module.py``, Ray started by the
command, so Tune's trial processes (which run in their own folders) import the user's files
only because the command shipped them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rl_models.app import cli

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
TINY = ["--num-cpus", "2", "--set", "stop.training_iteration=1",
        "--set", "training.train_batch_size_per_learner=64", "--set", "training.minibatch_size=32",
        "--set", "training.num_epochs=1", "--set", "env_runners.num_envs_per_env_runner=2",
        "--set", "env.synthetic={n_songs: 2, seconds: 0.5, n_tracks: 3, seed: 0}",
        "--set", "evaluation.interval=1",
        "--set", "evaluation.env.synthetic={n_songs: 1, seconds: 0.5, n_tracks: 3, seed: 9}"]


@pytest.fixture
def user_folder(tmp_path):
    """A copy of examples/: the user's own folder, outside the package."""
    folder = tmp_path / "mine"
    shutil.copytree(REPO / "examples", folder)
    return folder


def deepmixing(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    """``deepmixing ARGV`` run in ``folder`` as a new process (it starts its own Ray)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "rl_models.app.cli", *argv], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600)


def trial_dirs(experiment_dir: Path) -> list[Path]:
    return sorted(p for p in experiment_dir.iterdir() if (p / "params.json").is_file())


def test_train_then_evaluate_a_user_algorithm_and_module(user_folder, monkeypatch, capsys):
    run = deepmixing(user_folder, "train", "custom.yaml", "--set",
                     "algorithm=my_algos:TinyPPOConfig", *TINY)
    assert run.returncode == 0, run.stderr[-3000:]
    (trial,) = trial_dirs(user_folder / "runs" / "custom")
    assert trial.name.startswith("TinyPPOConfig_")
    (ckpt,) = trial.glob("checkpoint_*")
    assert json.loads((ckpt / "policy.json").read_text())["module"] == \
        "tiny_module:TinyMixerModule"
    assert json.loads((trial / "params.json").read_text())["algorithm"] == \
        "my_algos:TinyPPOConfig"

    # evaluate imports the module where it runs, and reads the checkpoint's plain files.
    monkeypatch.chdir(user_folder)
    assert cli.main(["evaluate", "runs/custom", "equal", "--out", "runs/eval", "--no-plots",
                     "--no-progress", "--means-only"]) == 0
    means = [line.split() for line in capsys.readouterr().out.splitlines()
             if " MEAN " in f" {line} "]
    assert sorted(row[0] for row in means) == ["custom", "equal"]  # the policy, the baseline


def test_tune_ships_the_user_files_to_its_trials(user_folder):
    run = deepmixing(
        user_folder, "tune", "custom.yaml", *TINY, "--set",
        "tune.param_space={training: {equal_gains_coeff: {grid_search: [0.0, 0.3]}}}")
    assert run.returncode == 0, run.stderr[-3000:]
    trials = trial_dirs(user_folder / "runs" / "custom")
    assert len(trials) == 2
    coeffs = sorted(json.loads((t / "params.json").read_text())["training"]["equal_gains_coeff"]
                    for t in trials)
    assert coeffs == [0.0, 0.3]
    for trial in trials:
        last = json.loads((trial / "result.json").read_text().splitlines()[-1])
        assert "equal_gains_penalty" in last["learners"]["default_policy"]
    # Quiet by default: one line per finished trial, no Tune status boxes.
    out = run.stdout
    assert out.count(" finished: 1 iterations") == 2 and "Trial status" not in out


def test_user_files_travel_with_ray_to_every_node(user_folder, monkeypatch):
    """The files named in an experiment become Ray's runtime_env py_modules.

    On one machine Ray's workers also see the driver's folder; on a cluster only what the
    job ships reaches the other nodes, so the job must ship the user's files.
    """
    import ray

    from rl_models.app import train
    from rl_models.app.experiment import load_experiment

    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("my_algos", "tiny_module"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.chdir(user_folder.parent)
    experiment = load_experiment(user_folder / "custom.yaml", overrides=[
        "algorithm=mine/my_algos.py:TinyPPOConfig", "module=tiny_module:TinyMixerModule"])
    # A file path is made absolute where the command runs (trials run in other folders).
    assert experiment["algorithm"] == f"{user_folder}/my_algos.py:TinyPPOConfig"
    monkeypatch.syspath_prepend(str(user_folder))  # tiny_module importable "where it runs"
    shipped = train.plugin_modules([experiment])
    assert shipped == [str(user_folder / "my_algos.py"), str(user_folder / "tiny_module.py")]

    started = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.update(kwargs))
    train.init_ray(num_cpus=1, py_modules=shipped)
    assert started["runtime_env"] == {"py_modules": shipped}
