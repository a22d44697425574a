"""End-to-end RL throughput: PPO (one epoch) on MixingEnv, sampling and learning, env steps/s.

One run measures, on the same env (synthetic songs of 8-24 tracks, log-mel + level
observations as in the learning benchmark) and the same settings (one local env runner with
``--envs`` envs, batch ``--batch``, one epoch, ``--num-cpus`` cores):

- PPO end to end (sampled steps over the wall time of whole training iterations, sampling and
  learning) with the learning benchmark's module (``benchmarks.quality.QualitySetup.model``)
  and with RLlib's default LSTM module;
- each module's sampling-alone rate (the same env runner sampling ``--batch`` steps, no
  learning, after each timed iteration), so ``learner_s_per_batch`` = end-to-end time minus
  sampling time per batch; the two algorithms are built side by side and take turns, round
  by round, so both see the same machine load, and the ratio of each round is kept too
  (``attention_vs_default_lstm_median_round``);
- where installed (``pip install -e .[peers]``), Stable-Baselines3's PPO with its
  feed-forward ``MultiInputPolicy`` and sb3-contrib's ``RecurrentPPO`` on the same env and
  settings;
- the two ratios the spec asks for (ours / default LSTM, target >= 1.5; ours end to end /
  ours sampling alone, target >= 0.6), and the load average before and after.

Absolute rates vary between machines; the ratios of one run are the numbers to compare. The
songs' whole-song features are computed before timing (a training run pays that once per
process and song), so the steady state is measured.

Usage:
    python benchmarks/bench_throughput.py [--iterations 5] [--batch 4096] [--envs 32]
        [--songs 8] [--minibatch 1024] [--only attention default sb3_ppo sb3_recurrent]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from benchmarks.quality import QualitySetup

RUNS = ("attention", "default", "sb3_ppo", "sb3_recurrent")
"""What one run can measure: our module, RLlib's default LSTM, SB3 PPO, sb3-contrib
RecurrentPPO."""


def env_config(n_songs: int) -> dict:
    """The learning benchmark's observation on ``n_songs`` in-memory synthetic songs of 6 s.

    Fixed procedural songs, not the learning benchmark's stream of new ones: this measures
    the algorithm and the module; what making songs costs is ``benchmark songs``.
    """
    return {
        "synthetic": {"n_songs": n_songs, "seconds": 6.0, "n_tracks": [8, 24], "seed": 0},
        "episode_chunks": 128,
        **QualitySetup().features(),
    }


def warm_song_features(env: Any) -> None:
    """Computes every song's whole-song features in this process (the envs share them)."""
    first = env.unwrapped.envs[0].unwrapped if hasattr(env.unwrapped, "envs") else env.unwrapped
    for name in first.song_names:
        first.song_features(name)


def build_ppo(module: str | None, model: dict, *, batch: int, minibatch: int, envs: int,
              gamma: float, n_songs: int, env: dict | None = None) -> Any:
    """The benchmark's PPO algorithm (one epoch, one local env runner), songs warmed.

    ``env``: another MixingEnv config than :func:`env_config` (``n_songs``), e.g. tiny songs.
    """
    from rl_models.algorithms import build_algorithm_config

    training = {"train_batch_size_per_learner": batch, "minibatch_size": minibatch,
                "num_epochs": 1, "gamma": gamma, "lr": 3e-4}
    config = build_algorithm_config(
        "PPO", env_config=env or env_config(n_songs), model=model, module=module, training=training,
        env_runners={"num_env_runners": 0, "num_envs_per_env_runner": envs}, seed=0)
    algo = config.build_algo()
    warm_song_features(algo.env_runner.env)
    return algo


def measure_rllib(runs: dict[str, tuple[str | None, dict]], *, iterations: int, warmup: int,
                  batch: int, envs: int, **settings: Any) -> dict[str, dict]:
    """Env steps/s of PPO iterations, and of the env runner sampling alone, for each module.

    The algorithms are built side by side and take turns, one timed iteration and one
    sampling-alone batch each per round, so every module sees the same machine load (a job
    starting or ending on a shared machine moves all of them, not one).

    Args:
        runs: Name -> (registered module or None for ours, its model config).

    Returns:
        Name -> rates over all rounds, and ``rounds``: each round's end-to-end env steps/s.
    """
    algos = {}
    try:
        for name, (module, model) in runs.items():
            algos[name] = build_ppo(module, model, batch=batch, envs=envs, **settings)
            for _ in range(warmup):  # connectors, torch kernels
                algos[name].train()
        totals = {name: {"steps": 0, "wall": 0.0, "sampled": 0, "sample_wall": 0.0,
                         "rounds": []} for name in algos}
        per_iteration = -(-batch // envs) * envs  # PPO samples whole vector steps
        for _ in range(iterations):
            for name, algo in algos.items():
                total = totals[name]
                t0 = time.perf_counter()
                algo.train()
                wall = time.perf_counter() - t0
                total["steps"] += per_iteration
                total["wall"] += wall
                total["rounds"].append(per_iteration / wall)
                t0 = time.perf_counter()
                total["sampled"] += sum(len(e) for e in algo.env_runner.sample(
                    num_timesteps=batch, explore=True))
                total["sample_wall"] += time.perf_counter() - t0
    finally:
        for algo in algos.values():
            algo.stop()
    results = {}
    for name, t in totals.items():
        e2e, alone = t["steps"] / t["wall"], t["sampled"] / t["sample_wall"]
        results[name] = {"env_steps_per_s": e2e, "sampling_alone_env_steps_per_s": alone,
                         "sampling_s_per_batch": batch / alone,
                         "learner_s_per_batch": batch / e2e - batch / alone,
                         "env_steps": t["steps"], "wall_s": t["wall"], "rounds": t["rounds"]}
    return results


def measure_sb3(recurrent: bool, *, iterations: int, warmup: int, batch: int, minibatch: int,
                envs: int, gamma: float, n_songs: int) -> dict | None:
    """Env steps/s of Stable-Baselines3 PPO (or sb3-contrib RecurrentPPO); None if missing."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv
        if recurrent:
            from sb3_contrib import RecurrentPPO
    except ImportError:
        return None
    from mixing_env.envs.mixing_env import MixingEnv

    vec = DummyVecEnv([lambda: MixingEnv(env_config(n_songs)) for _ in range(envs)])
    warm_song_features(vec.envs[0])
    algo_cls, policy = (RecurrentPPO, "MultiInputLstmPolicy") if recurrent else (
        PPO, "MultiInputPolicy")
    model = algo_cls(policy, vec, n_steps=batch // envs, batch_size=minibatch, n_epochs=1,
                     gamma=gamma, learning_rate=3e-4, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=warmup * batch)
    t0 = time.perf_counter()
    model.learn(total_timesteps=iterations * batch, reset_num_timesteps=False)
    wall = time.perf_counter() - t0
    vec.close()
    return {"env_steps_per_s": iterations * batch / wall, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=5, help="timed iterations per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--batch", type=int, default=4096, help="train_batch_size_per_learner")
    p.add_argument("--minibatch", type=int, default=1024, help="minibatch_size")
    p.add_argument("--envs", type=int, default=32, help="num_envs_per_env_runner")
    p.add_argument("--gamma", type=float, default=0.0, help="discount")
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="BPTT length of both RLlib modules (default: each module's own)")
    p.add_argument("--songs", type=int, default=8,
                   help="songs in play (the learning benchmark's envs play a pool of 4-8 at a "
                        "time; more than fit the process's 1 GB feature cache, about 13 of "
                        "6 s, measure feature recomputation instead)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs given to Ray")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads of the driver, where the local env runner and the local "
                        "learner run (1: no thread contention on a small or busy machine)")
    p.add_argument("--only", nargs="+", choices=RUNS, default=list(RUNS),
                   help="what to measure (SB3 runs are skipped when not installed)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    import ray
    import torch

    torch.set_num_threads(args.torch_threads)
    ours = dict(QualitySetup().model)
    default = {"use_lstm": True, "max_seq_len": 20}  # DefaultModelConfig's default
    if args.max_seq_len:
        ours["max_seq_len"] = default["max_seq_len"] = args.max_seq_len
    res: dict[str, Any] = {"settings": vars(args), "load_average_at_start": os.getloadavg()}
    kw = dict(iterations=args.iterations, warmup=args.warmup, batch=args.batch,
              minibatch=args.minibatch, envs=args.envs, gamma=args.gamma, n_songs=args.songs)
    rllib_runs = {run: spec for run, spec in (("attention", (None, ours)),
                                              ("default", ("rllib_default", default)))
                  if run in args.only}
    if rllib_runs:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        try:
            res |= measure_rllib(rllib_runs, **kw)
        finally:
            ray.shutdown()
        for run in rllib_runs:
            print(run, json.dumps(res[run]), flush=True)
    for run, recurrent in (("sb3_ppo", False), ("sb3_recurrent", True)):
        if run in args.only:
            res[run] = measure_sb3(recurrent, **kw)
            print(run, json.dumps(res[run]) if res[run] else "not installed", flush=True)
    res["load_average_at_end"] = os.getloadavg()
    res["ratios"] = ratios(res)
    print(summary(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


def ratios(res: dict) -> dict[str, float]:
    """The spec's ratios, where both sides were measured."""
    def rate(run: str, key: str = "env_steps_per_s") -> float | None:
        return (res.get(run) or {}).get(key)

    pairs = {
        "attention_vs_default_lstm": (rate("attention"), rate("default")),
        "attention_e2e_vs_sampling_alone": (
            rate("attention"), rate("attention", "sampling_alone_env_steps_per_s")),
        "sb3_ppo_vs_attention": (rate("sb3_ppo"), rate("attention")),
        "attention_vs_sb3_recurrent": (rate("attention"), rate("sb3_recurrent")),
    }
    out = {name: a / b for name, (a, b) in pairs.items() if a and b}
    ours, default = (res.get(run) or {} for run in ("attention", "default"))
    if ours.get("rounds") and default.get("rounds"):  # the rounds ran side by side
        out["attention_vs_default_lstm_median_round"] = float(np.median(
            np.array(ours["rounds"]) / np.array(default["rounds"])))
    return out


def summary(res: dict) -> str:
    """A plain-text table of the rates and ratios."""
    lines = ["run                                   env steps/s end to end   sampling alone"]
    names = {"attention": "attention-LSTM (learning benchmark)", "default": "RLlib default LSTM",
             "sb3_ppo": "SB3 PPO MultiInputPolicy", "sb3_recurrent": "sb3-contrib RecurrentPPO"}
    for run, name in names.items():
        r = res.get(run)
        if r:
            alone = r.get("sampling_alone_env_steps_per_s")
            lines.append(f"{name:38s}{r['env_steps_per_s']:>12,.0f}"
                         + (f"{alone:>23,.0f}" if alone else ""))
    targets = {"attention_vs_default_lstm": ">= 1.5",
               "attention_vs_default_lstm_median_round": ">= 1.5 (round by round)",
               "attention_e2e_vs_sampling_alone":
               ">= 0.6 (moonshot 0.8)", "sb3_ppo_vs_attention": "<= 1.5 (moonshot)"}
    for name, value in res["ratios"].items():
        lines.append(f"{name:38s}{value:12.2f}   {targets.get(name, '')}")
    lines.append(f"load average: start {res['load_average_at_start']}, "
                 f"end {res['load_average_at_end']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
