"""End-to-end RL throughput: PPO (one epoch) on MixingEnv, sampling and learning, env steps/s.

Trains the learning benchmark's module (``benchmarks.quality.QualitySetup.model``) and RLlib's
default LSTM module back to back in one run, on the same env (synthetic songs of 8-24 tracks,
log-mel + level observations as in the learning benchmark), same batch and env-runner
settings, and prints env steps/s end to end (sampled steps over the wall time of whole
training iterations, sampling and learning) for both and their ratio. The machine's load is
printed with them: on a shared machine the ratio is the number to compare.

Usage:
    python benchmarks/bench_throughput.py [--iterations 5] [--batch 4096] [--envs 32] [--songs 32]
        [--minibatch 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks.quality import QualitySetup


def env_config(n_songs: int) -> dict:
    """The learning benchmark's observation on ``n_songs`` in-memory synthetic songs of 6 s.

    MixingEnv computes a song's whole-song features at its first reset in the process; the
    env instances of a runner share them, so the warm-up pays for most songs once.
    """
    return {
        "synthetic": {"n_songs": n_songs, "seconds": 6.0, "n_tracks": [8, 24], "seed": 0},
        "episode_chunks": 128,
        "obs_features": "logmel",
        "n_track_features": 16,
        "level_features": True,
        "stem_level_features": True,
    }


def measure(module: str | None, model: dict, *, iterations: int, warmup: int, batch: int,
            minibatch: int, envs: int, gamma: float, n_songs: int) -> dict:
    """Env steps/s of ``iterations`` PPO iterations after ``warmup`` iterations."""
    from rl_models.algorithms import build_algorithm_config

    training = {"train_batch_size_per_learner": batch, "minibatch_size": minibatch,
                "num_epochs": 1, "gamma": gamma, "lr": 3e-4}
    config = build_algorithm_config(
        "PPO", env_config=env_config(n_songs), model=model, module=module, training=training,
        env_runners={"num_env_runners": 0, "num_envs_per_env_runner": envs}, seed=0)
    algo = config.build_algo()
    try:
        for _ in range(warmup):  # connectors, torch kernels, every env's song features
            result = algo.train()
        steps0 = _sampled(result)
        t0 = time.perf_counter()
        for _ in range(iterations):
            result = algo.train()
        wall = time.perf_counter() - t0
        # RLlib's timers are smoothed means per iteration, in seconds.
        timers = {k: v for k, v in result.get("timers", {}).items() if isinstance(v, float)}
        steps = _sampled(result) - steps0
    finally:
        algo.stop()
    return {"env_steps": steps, "wall_s": wall, "env_steps_per_s": steps / wall,
            "timers_s_per_iteration": {k: round(v, 3) for k, v in timers.items()}}


def _sampled(result: dict) -> int:
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=5, help="timed PPO iterations per module")
    p.add_argument("--warmup", type=int, default=3, help="untimed PPO iterations first")
    p.add_argument("--batch", type=int, default=4096, help="train_batch_size_per_learner")
    p.add_argument("--minibatch", type=int, default=1024, help="minibatch_size")
    p.add_argument("--envs", type=int, default=32, help="num_envs_per_env_runner")
    p.add_argument("--gamma", type=float, default=0.0, help="discount")
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="BPTT length of both modules (default: each module's own)")
    p.add_argument("--songs", type=int, default=32,
                   help="training songs (the learning benchmark has 32)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs given to Ray")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads of the driver, where the local env runner and the local "
                        "learner run (1: no thread contention on a small or busy machine)")
    p.add_argument("--only", choices=("attention", "default"), help="measure one module only")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    import ray
    import torch

    torch.set_num_threads(args.torch_threads)
    ours = dict(QualitySetup().model)
    default = {"use_lstm": True, "max_seq_len": 20}  # DefaultModelConfig's default
    if args.max_seq_len:
        ours["max_seq_len"] = default["max_seq_len"] = args.max_seq_len
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    res: dict = {"settings": vars(args), "load_average_at_start": os.getloadavg()}
    kw = dict(iterations=args.iterations, warmup=args.warmup, batch=args.batch,
              minibatch=args.minibatch, envs=args.envs, gamma=args.gamma,
              n_songs=args.songs)
    try:
        if args.only != "default":
            res["attention_lstm"] = measure(None, ours, **kw)
            print(json.dumps(res["attention_lstm"]), flush=True)
        if args.only != "attention":
            res["default_lstm"] = measure("rllib_default", default, **kw)
            print(json.dumps(res["default_lstm"]), flush=True)
    finally:
        ray.shutdown()
    if "attention_lstm" in res and "default_lstm" in res:
        res["ratio_attention_vs_default"] = (res["attention_lstm"]["env_steps_per_s"]
                                             / res["default_lstm"]["env_steps_per_s"])
    res["load_average_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
