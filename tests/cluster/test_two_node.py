"""Fault tolerance on a real two-node Ray cluster on loopback.

Each test starts its own cluster with ``ray start`` (see ``conftest.py``) and drives it from
subprocesses, so it never meets the suite's in-process ``ray.init``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

DRIVERS = Path(__file__).resolve().parent / "drivers"
sys.path.insert(0, str(DRIVERS))
from common import TINY_MODEL, TINY_TRAINING  # noqa: E402

pytestmark = pytest.mark.ray


def _events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("EVENT ")]


def _wait_for(path, proc, *, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"driver exited ({proc.returncode}) before {path.name}:\n"
                        f"{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {path.name} after {timeout}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def test_training_survives_losing_a_worker_node(ray_cluster, tmp_path):
    ray_cluster.start_node("head", resources={"runner_slot": 1})
    ray_cluster.start_node("worker", resources={"runner_slot": 1})
    # The loopback recipe binds loopback only: nothing of the cluster faces the network.
    hosts = ray_cluster.listening_hosts()
    assert hosts and hosts <= ray_cluster.LOOPBACK_HOSTS, hosts
    log = tmp_path / "driver.log"
    iterations, kill_after = 4, 1
    driver = ray_cluster.popen_driver(
        str(DRIVERS / "two_node_train.py"), "--workdir", str(tmp_path),
        "--iterations", str(iterations), "--kill-after", str(kill_after), log=log,
    )
    try:
        _wait_for(tmp_path / "kill_now", driver, timeout=240, log=log)
        ray_cluster.kill_node("worker")
        (tmp_path / "killed").touch()
        driver.wait(timeout=240)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    output = log.read_text()
    assert driver.returncode == 0, output[-4000:]

    events = _events(output)
    (runners,) = [e for e in events if e["kind"] == "runners"]
    assert len(set(runners["nodes"])) == 2, f"env runners not on both nodes: {runners}"
    its = [e for e in events if e["kind"] == "iteration"]
    assert [e["iteration"] for e in its] == list(range(1, iterations + 1))
    before, after = its[: kill_after], its[kill_after:]
    assert all(e["healthy"] == 2 for e in before)
    # The runner on the dead node is gone for good; the head's runner carries on sampling.
    assert after[-1]["healthy"] == 1
    steps = [e["env_steps"] for e in its]
    assert all(b > a for a, b in zip(steps, steps[1:], strict=False)), f"stalled: {steps}"
    assert events[-1]["kind"] == "done"
    assert ray_cluster.alive_nodes() == 1


def _trial_dirs(experiment_dir):
    return [p for p in experiment_dir.glob("*") if (p / "params.json").exists()]


def _logged_iterations(experiment_dir) -> list[int]:
    """training_iteration of each row the driver has synced to storage, in order."""
    rows = []
    for trial in _trial_dirs(experiment_dir):
        if (trial / "result.json").exists():
            for line in (trial / "result.json").read_text().splitlines():
                try:
                    rows.append(json.loads(line)["training_iteration"])
                except ValueError:  # a row being written right now
                    break
    return rows


def _snapshot_iteration(experiment_dir) -> int:
    """The newest training_iteration the driver's experiment snapshot records (0: none yet)."""
    states = sorted(experiment_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return 0
    try:
        trials = json.loads(states[-1].read_text())["trial_data"]
    except (ValueError, KeyError):  # being replaced right now
        return 0
    return max((int(json.loads(meta).get("last_result", {}).get("training_iteration") or 0)
                for _, meta in trials), default=0)


def test_killed_driver_resumes_without_losing_an_iteration(ray_cluster, tmp_path):
    ray_cluster.start_node("head", num_cpus=2)
    cache = ray_cluster.run_driver(str(DRIVERS / "common.py"), str(tmp_path), timeout=120)
    iterations, kill_after = 10, 2  # 8 iterations left to run when the freeze comes
    experiment = {
        "name": "killed_driver",
        "algorithm": "PPO",
        "env": {"dataset_dir": cache.stdout.strip().splitlines()[-1], "episode_chunks": 8},
        "model": TINY_MODEL,
        "training": TINY_TRAINING,
        "env_runners": {"num_env_runners": 0},
        # A tiny iteration takes milliseconds: without a floor the run can finish between
        # seeing the kill_after checkpoint and freezing the trial.
        "reporting": {"min_time_s_per_iteration": 1.0},
        "stop": {"training_iteration": iterations},
        "checkpoint": {"frequency": 1},
        "fault_tolerance": {"restart_failed_env_runners": True, "max_failures": 1},
        "storage_path": str(tmp_path / "runs"),
        "seed": 0,
    }
    config = tmp_path / "killed_driver.yaml"
    config.write_text(yaml.safe_dump(experiment))
    exp_dir = tmp_path / "runs" / "killed_driver"

    log = tmp_path / "first.log"
    first = ray_cluster.popen_driver("-m", "rl_models.app.cli", "train", str(config),
                                     "--address", ray_cluster.address, log=log)
    try:
        deadline = time.monotonic() + 300
        target = f"checkpoint_{kill_after - 1:06d}"  # Tune numbers checkpoints from 0
        # The checkpoint folder (written by the trial) and the driver's result.json line both.
        while not (any((t / target).is_dir() for t in _trial_dirs(exp_dir))
                   and max(_logged_iterations(exp_dir), default=0) >= kill_after):
            assert first.poll() is None, f"driver ended before the kill:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"no {target}:\n{log.read_text()[-4000:]}"
            time.sleep(0.05)
        # Freeze the trial so the experiment cannot finish first, wait until the driver's
        # snapshot holds every iteration it has logged (as it does in a long run; waiting on
        # the snapshot itself, not on a fixed time, is what makes this deterministic), then
        # kill the driver.
        trial_pids = ray_cluster.pids("DeepMixingTrainable")
        assert trial_pids, "no trial actor process found"
        for pid in trial_pids:
            os.kill(pid, signal.SIGSTOP)
        logged = max(_logged_iterations(exp_dir), default=0)
        while _snapshot_iteration(exp_dir) < logged:
            assert first.poll() is None, f"driver ended:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline + 120, f"no snapshot of iteration {logged}"
            time.sleep(0.1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver dies mid-experiment
        first.wait()
        for pid in ray_cluster.pids("DeepMixingTrainable"):  # its trial dies with it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    done_before = _logged_iterations(exp_dir)
    assert done_before and max(done_before) < iterations, f"logged before kill: {done_before}"

    second = ray_cluster.run_driver("-m", "rl_models.app.cli", "train", "--resume", str(exp_dir),
                                    "--address", ray_cluster.address, timeout=400)
    (trial,) = _trial_dirs(exp_dir)
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    seen = [r["training_iteration"] for r in rows]
    # Every iteration logged before the kill is kept, and the count is continuous to the stop.
    assert seen[: len(done_before)] == done_before
    assert set(seen) == set(range(1, iterations + 1)), f"iterations {seen}"
    last = rows[-1]
    assert last["training_iteration"] == iterations, second.stdout[-2000:]
    # Resumed from a checkpoint, not restarted from scratch.
    # At most the last checkpoint period is trained again (its checkpoint can race the kill).
    restored_at = iterations - last["iterations_since_restore"]
    assert max(done_before) - 1 <= restored_at <= max(done_before), (restored_at, done_before)
    assert restored_at >= 1, "restarted from scratch instead of from a checkpoint"
    print(f"logged before the kill: {done_before}; resumed after iteration {restored_at}")
    # The checkpoints on storage hold consecutive iterations up to the last one.
    saved = [json.loads(m.read_text())["iteration"]
             for m in sorted(trial.glob("checkpoint_*/deepmixing.json"))]
    assert saved == list(range(1, iterations + 1)), saved


@pytest.mark.slow
def test_the_documented_recipe_runs_two_env_runners(ray_cluster, tmp_path):
    """docs/scaling_out.md, "Try it on one machine": two nodes, one env runner on each.

    The head holds the trial's main process and one runner (2 CPUs), the worker one runner
    (1 CPU); each node's ``runner_slot`` admits one runner, so they spread over both.
    """
    ray_cluster.start_node("head", num_cpus=2, resources={"runner_slot": 1})
    ray_cluster.start_node("worker", num_cpus=1, resources={"runner_slot": 1})
    hosts = ray_cluster.listening_hosts()
    assert hosts and hosts <= ray_cluster.LOOPBACK_HOSTS, hosts
    sets = {
        "env.synthetic": "{n_songs: 2, seconds: 0.5, n_tracks: 3, seed: 0}",
        "env_runners.num_env_runners": "2",
        "env_runners.custom_resources_per_env_runner": "{runner_slot: 1}",
        "model": "{hidden_size: 4, attention_dim: 4, embed_dim: 4, max_seq_len: 4}",
        "training.train_batch_size_per_learner": "64", "training.minibatch_size": "32",
        "evaluation.interval": "0", "stop.training_iteration": "2",
    }
    run = ray_cluster.run_driver(
        "-m", "rl_models.app.cli", "train", "quickstart", "--address", ray_cluster.address,
        "--storage-path", str(tmp_path / "runs"), "--name", "recipe",
        *[x for k, v in sets.items() for x in ("--set", f"{k}={v}")], timeout=400)
    assert "trial PPO_" in run.stdout
    (trial,) = [p for p in (tmp_path / "runs" / "recipe").iterdir() if p.is_dir()]
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in rows] == [1, 2]
    assert all(r["fault_tolerance"]["num_healthy_workers"] == 2 for r in rows)
