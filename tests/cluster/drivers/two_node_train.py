"""Driver: train PPO on MixingEnv with one env runner per node, surviving a lost node.

Run by tests/cluster/test_two_node.py against a cluster it started (RAY_ADDRESS set). After
``--kill-after`` iterations it writes ``<sync>/kill_now`` and waits for ``<sync>/killed``
(the test kills the worker node in between), then trains on to ``--iterations``. Prints one
JSON line per event, prefixed ``EVENT``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ray  # noqa: E402
from common import TINY_MODEL, TINY_TRAINING, make_tiny_cache  # noqa: E402

from rl_models.algorithms import build_algorithm_config  # noqa: E402
from rl_models.app.loopback_ray import loopback_addresses  # noqa: E402


def emit(**event) -> None:
    print("EVENT " + json.dumps(event), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--kill-after", type=int, default=1)
    args = ap.parse_args()

    with loopback_addresses():  # the cluster listens on 127.0.0.1 only
        ray.init(address="auto", log_to_driver=False, logging_level="WARNING")
    cache = make_tiny_cache(args.workdir)
    config = build_algorithm_config(
        "PPO",
        env_config={"dataset_dir": str(cache), "episode_chunks": 8},
        model=TINY_MODEL,
        training=TINY_TRAINING,
        # One runner per node: each needs the one "runner_slot" every node advertises.
        env_runners={"num_env_runners": 2, "rollout_fragment_length": 16,
                     "custom_resources_per_env_runner": {"runner_slot": 1}},
        fault_tolerance={"restart_failed_env_runners": True,
                         # A runner on a dead node cannot come back: don't wait 30 s per probe.
                         "env_runner_health_probe_timeout_s": 2.0},
        seed=0,
    )
    algo = config.build_algo()
    nodes = algo.env_runner_group.foreach_env_runner(
        lambda runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
    )
    emit(kind="runners", nodes=nodes)
    for i in range(1, args.iterations + 1):
        result = algo.train()
        emit(kind="iteration", iteration=i,
             healthy=algo.env_runner_group.num_healthy_remote_env_runners(),
             env_steps=result["env_runners"].get("num_env_steps_sampled_lifetime", 0))
        if i == args.kill_after:
            (args.workdir / "kill_now").touch()
            deadline = time.monotonic() + 120
            while not (args.workdir / "killed").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("the test never killed the worker node")
                time.sleep(0.2)
    algo.stop()
    emit(kind="done")


if __name__ == "__main__":
    main()
