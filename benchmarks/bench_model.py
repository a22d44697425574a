"""Benchmark of the attention-LSTM policy at the report's size (C=72, chunk 500, k=r=100, l=5).

Measures in one run: parameter count, recurrent state size, single-step inference latency on
one CPU core (batch 1, no_grad, median; 24 real tracks of the 72 slots, and all 72 real: the
module computes only real tracks; early in a song and 1,000 steps into it, since the cost
must not grow with the history), RLlib's default LSTM module on the same observation
(flattened) for the ratio, one training forward+backward (PPO-style loss) on
B x max_seq_len sequences with extrapolation to a 4000-step batch, and env steps sampled per
second by one RLlib SingleAgentEnvRunner on MixingEnv with this module against RLlib's default
LSTM module. MixingEnv's synthetic songs have at most 24 tracks; a wrapper pads them to C=72
slots (dummy slots, as a prepared report-size dataset would have).

Usage:
    python benchmarks/bench_model.py [--quick] [--per-track] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
import tree
from ray.rllib.core.columns import Columns

from rl_models.registry import DEFAULT_MODULE, module_spec

C, F, N_MFCC = 72, 500, 13
N_REAL = 24  # real tracks of the C slots, as in the synthetic songs the env runners play


def report_spaces(c: int = C, f: int = F) -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    obs = gym.spaces.Dict(
        {
            "chunks": gym.spaces.Box(-1.0, 1.0, (c, 1, f), np.float32),
            "mix_mfcc": gym.spaces.Box(-np.inf, np.inf, (N_MFCC,), np.float32),
            "track_mask": gym.spaces.Box(0.0, 1.0, (c,), np.float32),
        }
    )
    return obs, gym.spaces.Box(0.0, 1.0, (c,), np.float32)


def build(model_config: dict):
    spec = module_spec(DEFAULT_MODULE, model_config)
    spec.observation_space, spec.action_space = report_spaces()
    return spec.build()


def batch_of(module, b: int, t: int, seed: int = 0, n_real: int = N_REAL) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, t, C)
    mask[..., :n_real] = 1.0
    obs = {
        "chunks": torch.randn(b, t, C, 1, F, generator=g) * 0.1 * mask[..., None, None],
        "mix_mfcc": torch.randn(b, t, N_MFCC, generator=g),
        "track_mask": mask,
    }
    state = tree.map_structure(
        lambda s: torch.as_tensor(s).unsqueeze(0).repeat(b, *[1] * s.ndim),
        module.get_initial_state(),
    )
    return {Columns.OBS: obs, Columns.STATE_IN: state}


def bench_inference(module, steps: int, n_real: int = N_REAL, obs: dict | None = None,
                    late_from: int = 1000) -> dict:
    """Median ms per single-step forward (and + sample) over ``steps`` steps after a 20-step
    warm-up, and the forward's median over ``steps`` steps from step ``late_from`` (0: skip).
    ``obs`` replaces the observation (RLlib's default module reads a flat Box)."""
    torch.set_num_threads(1)
    batch = batch_of(module, 1, 1, n_real=n_real)
    obs = batch[Columns.OBS] if obs is None else obs
    dist_cls = module.get_exploration_action_dist_cls()
    fwd, full, late = [], [], []
    state = batch[Columns.STATE_IN]
    total = max(steps + 20, late_from + steps if late_from else 0)
    with torch.no_grad():
        for i in range(total):
            t0 = time.perf_counter()
            out = module.forward_exploration({Columns.OBS: obs, Columns.STATE_IN: state})
            t1 = time.perf_counter()
            if 20 <= i < steps + 20:
                dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
                dist.logp(dist.sample())
                fwd.append(t1 - t0)
                full.append(time.perf_counter() - t0)
            if late_from and i >= late_from:
                late.append(t1 - t0)
            state = out[Columns.STATE_OUT]
    res = {
        "inference_forward_ms_median": 1e3 * statistics.median(fwd),
        "inference_forward_plus_sample_ms_median": 1e3 * statistics.median(full),
    }
    if late:
        res[f"inference_forward_ms_median_from_step_{late_from}"] = 1e3 * statistics.median(late)
    return res


def default_lstm_module():
    """RLlib's default PPO module with ``use_lstm`` on the report-size observation, flattened."""
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    obs_space, act_space = report_spaces()
    flat = gym.spaces.Box(-np.inf, np.inf, (gym.spaces.flatdim(obs_space),), np.float32)
    module = DefaultPPOTorchRLModule(observation_space=flat, action_space=act_space,
                                     model_config=DefaultModelConfig(use_lstm=True))
    return module, flat


def bench_train(module, n_seq: int, seq_len: int, threads: int, reps: int) -> dict:
    torch.set_num_threads(threads)
    batch = batch_of(module, n_seq, seq_len)
    dist_cls = module.get_train_action_dist_cls()
    with torch.no_grad():
        out = module.forward_exploration(batch)
        actions = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS]).sample()
    adv = torch.randn(n_seq, seq_len)
    times = []
    for _ in range(reps):
        module.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = module.forward_train(batch)
        dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
        values = module.compute_values(batch, out[Columns.EMBEDDINGS])
        loss = (
            -(dist.logp(actions) * adv).mean()
            - 0.01 * dist.entropy().mean()
            + values.square().mean()
        )
        loss.backward()
        times.append(time.perf_counter() - t0)
    steps = n_seq * seq_len
    sec = statistics.median(times)
    return {
        "train_steps": steps,
        "train_threads": threads,
        "train_fwd_bwd_s": sec,
        "train_fwd_bwd_s_per_4000_steps_extrapolated": sec * 4000 / steps,
    }


class PadSlots(gym.Wrapper):
    """Pads MixingEnv's C_env slots to `n_slots` with dummy slots; slices actions back."""

    def __init__(self, env: gym.Env, n_slots: int) -> None:
        super().__init__(env)
        c, w, f = env.observation_space["chunks"].shape
        self._c = c
        self.observation_space, self.action_space = report_spaces(n_slots, f)
        self.observation_space = gym.spaces.Dict(
            {
                "chunks": gym.spaces.Box(-np.inf, np.inf, (n_slots, w, f), np.float32),
                "mix_mfcc": env.observation_space["mix_mfcc"],
                "track_mask": gym.spaces.Box(0.0, 1.0, (n_slots,), np.float32),
            }
        )
        self._chunks = np.zeros((n_slots, w, f), np.float32)
        self._mask = np.zeros((n_slots,), np.float32)

    def _pad(self, obs):
        self._chunks[: self._c] = obs["chunks"]
        self._mask[: self._c] = obs["track_mask"]
        return {
            "chunks": self._chunks.copy(),
            "mix_mfcc": obs["mix_mfcc"],
            "track_mask": self._mask.copy(),
        }

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._pad(obs), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(np.asarray(action)[: self._c])
        return self._pad(obs), r, term, trunc, info


def bench_env_runner(model_config: dict | None, steps: int, n_tracks: int,
                     n_envs: int = 1) -> float:
    """Env steps/s of one SingleAgentEnvRunner stepping ``n_envs`` envs (one batched forward
    per step of all of them); model_config None = RLlib's default LSTM."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
    from ray.tune.registry import register_env

    from mixing_env.envs import make_env

    env_config = {"synthetic": {"n_songs": 2, "seconds": 4.0, "n_tracks": n_tracks, "seed": 0}}
    register_env("deepmixing_pad72", lambda cfg: PadSlots(make_env(dict(cfg)), C))
    config = (
        PPOConfig()
        .environment(
            "deepmixing_pad72", env_config=env_config, normalize_actions=False, clip_actions=False
        )
        .env_runners(num_env_runners=0, num_envs_per_env_runner=n_envs)
    )
    if model_config is None:
        from ray.rllib.connectors.env_to_module import FlattenObservations

        # RLlib's default encoders need a flat Box observation.
        config = config.rl_module(model_config=DefaultModelConfig(use_lstm=True)).env_runners(
            env_to_module_connector=lambda env, spaces, device: FlattenObservations()
        )
    else:
        config = config.rl_module(
            rl_module_spec=module_spec(DEFAULT_MODULE, model_config)
        )
    torch.set_num_threads(1)
    runner = SingleAgentEnvRunner(config=config)
    runner.sample(num_timesteps=100, explore=True)  # warm-up
    t0 = time.perf_counter()
    runner.sample(num_timesteps=steps, explore=True)
    rate = steps / (time.perf_counter() - t0)
    runner.stop()
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--per-track", action="store_true",
                        help="the report's per-track weights (default: shared + slot embedding)")
    parser.add_argument(
        "--train-seqs",
        type=int,
        nargs="+",
        default=[4, 16],
        help="training batch sizes in sequences of max_seq_len (32)",
    )
    parser.add_argument("--no-env", action="store_true", help="skip the env-runner comparison")
    parser.add_argument("--envs-per-runner", type=int, nargs="+", default=[1, 8],
                        help="num_envs_per_env_runner values of the env-runner comparison")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model_config = {"share_encoder": not args.per_track}
    module = build(model_config)
    res: dict = {
        "config": module._cfg.to_dict(),
        "C": C,
        "F": F,
        "params": int(sum(p.numel() for p in module.parameters())),
        "state_floats_per_step": module.state_size(),
        "load_average_at_start": os.getloadavg(),
    }
    res.update(bench_inference(module, 100 if args.quick else 400))
    # The module computes only real tracks; a song that fills all C slots is the worst case.
    res.update({f"{k}_all_{C}_real": v for k, v in
                bench_inference(module, 100 if args.quick else 400, C, late_from=0).items()})
    default, flat = default_lstm_module()
    flat_obs = torch.randn(1, 1, flat.shape[0]) * 0.1
    ref = bench_inference(default, 100 if args.quick else 400, obs=flat_obs, late_from=0)
    res["default_lstm_inference_forward_ms_median"] = ref["inference_forward_ms_median"]
    res["inference_ratio_attention_vs_default_lstm"] = (
        res["inference_forward_ms_median"] / ref["inference_forward_ms_median"])
    for n_seq in args.train_seqs:
        res[f"train_{n_seq}x32"] = bench_train(
            module, n_seq, 32, threads=2, reps=1 if args.quick else 3
        )
    print(json.dumps(res, indent=2), flush=True)
    if not args.no_env:
        steps = 300 if args.quick else 1000
        for n_envs in args.envs_per_runner:
            # Both modules on the same machine load, back to back; their ratio is the number.
            ours = bench_env_runner(model_config, steps, N_REAL, n_envs)
            default = bench_env_runner(None, steps, N_REAL, n_envs)
            res[f"env_steps_per_s_attention_lstm_{n_envs}_envs"] = ours
            res[f"env_steps_per_s_default_lstm_{n_envs}_envs"] = default
            res[f"env_steps_ratio_attention_vs_default_{n_envs}_envs"] = ours / default
    res["load_average_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
