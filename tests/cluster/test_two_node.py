"""Fault tolerance on a real two-node Ray cluster on loopback.

Each test starts its own cluster with ``ray start`` (see ``conftest.py``) and drives it from
subprocesses, so it never meets the suite's in-process ``ray.init``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

DRIVERS = Path(__file__).resolve().parent / "drivers"

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
    assert all(b > a for a, b in zip(steps, steps[1:])), f"sampling stalled: {steps}"
    assert events[-1]["kind"] == "done"
    assert ray_cluster.alive_nodes() == 1
