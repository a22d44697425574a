"""Where PPO's time goes: py-spy over the throughput benchmark's iterations, by component.

Runs the throughput benchmark's PPO (``benchmarks.bench_throughput``: one local env runner,
one epoch, the learning benchmark's module or RLlib's default LSTM), attaches py-spy
(``pip install -e .[peers]``) to itself for ``--iterations`` training iterations, and prints
the share of samples per component:

- sampling: env step (the vector env and MixingEnv), module forward, action distribution
  (building the Dirichlet, sampling, logp), the other
  module-to-env connectors, the env-to-module connectors, episode bookkeeping (adding steps,
  unbatching, ``to_numpy``);
- learning: the learner connectors (of which the value forward for GAE), forward_train, the
  loss, backward, the optimizer step, the rest (minibatching, metrics).

Usage:
    python benchmarks/profile_throughput.py [--module attention|default] [--iterations 4]
        [--raw out.txt]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import tempfile
import time

from benchmarks.bench_throughput import build_ppo
from benchmarks.quality import QualitySetup

SAMPLING = (  # (component, a frame that marks it), the first match wins
    ("env step", "_try_env_step"),
    ("module forward", "forward_exploration"),
    ("action distribution", "GetActions"),
    ("action distribution", "TorchMaskedDirichlet"),
    ("env-to-module connectors", "EnvToModulePipeline"),
    ("module-to-env connectors", "ConnectorPipelineV2.__call__"),
    ("episodes (add step, unbatch, to_numpy)", "SingleAgentEnvRunner._sample"),
)
LEARNING = (
    ("learner connectors: value forward", "compute_values"),
    ("learner connectors: batching, GAE", "_make_batch_if_necessary"),
    ("backward", "compute_gradients"),
    ("optimizer", "apply_gradients"),
    ("loss", "compute_losses"),
    ("forward_train", "forward_train"),
)


def component(stack: str) -> tuple[str, str]:
    """(phase, component) of one py-spy stack (frames joined by ';')."""
    if "synchronous_parallel_sample" in stack:
        phase, rules = "sampling", SAMPLING
    elif "learner_group" in stack.lower() or "Learner." in stack:
        phase, rules = "learning", LEARNING
    else:
        return "other", "other"
    for name, frame in rules:
        if frame in stack:
            return phase, name
    return phase, "other"


def breakdown(raw_path: str) -> dict[str, dict[str, float]]:
    """Share of samples per component within each phase, from py-spy's raw output."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    with open(raw_path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if stack:
                phase, name = component(stack)
                counts[phase][name] += int(n)
    total = sum(sum(c.values()) for c in counts.values())
    return {phase: {name: n / total for name, n in c.most_common()}
            for phase, c in counts.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--module", choices=("attention", "default"), default="attention")
    p.add_argument("--iterations", type=int, default=4, help="profiled PPO iterations")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--minibatch", type=int, default=1024)
    p.add_argument("--envs", type=int, default=32)
    p.add_argument("--songs", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=None)
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--raw", help="keep py-spy's raw stacks here")
    args = p.parse_args(argv)
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install -e .[peers]")

    import ray
    import torch

    torch.set_num_threads(1)
    if args.module == "attention":
        module, model = None, dict(QualitySetup().model)
    else:
        module, model = "rllib_default", {"use_lstm": True, "max_seq_len": 20}
    if args.max_seq_len:
        model["max_seq_len"] = args.max_seq_len
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    raw = args.raw or tempfile.mkstemp(suffix=".txt")[1]
    try:
        algo = build_ppo(module, model, batch=args.batch, minibatch=args.minibatch,
                         envs=args.envs, gamma=0.0, n_songs=args.songs)
        for _ in range(args.warmup):
            algo.train()
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(os.getpid()), "--rate", str(args.rate),
             "--format", "raw", "-o", raw, "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            algo.train()
        wall = time.perf_counter() - t0
        spy.send_signal(signal.SIGINT)
        spy.wait()
        algo.stop()
    finally:
        ray.shutdown()
    print(f"{args.module}: {args.iterations * args.batch / wall:,.0f} env steps/s under py-spy, "
          f"load average {os.getloadavg()}")
    for phase, shares in breakdown(raw).items():
        print(f"{phase}: {100 * sum(shares.values()):.0f}% of the samples")
        for name, share in shares.items():
            print(f"  {100 * share:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
