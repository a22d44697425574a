"""What a policy gradient hears: the per-step reward's variance, split into its parts.

For a checkpoint on songs (e.g. the learning benchmark's held-out songs), the benchmark plays
every song twice from chunk 0: once with the policy's mean action (how the agent mixes) and once
drawing each action from its distribution (how PPO samples). Per step it reports

- ``var_total``: the variance of the sampled policy's reward, what a baseline-free gradient
  sees;
- ``var_state``: the variance of the mean action's reward over the steps: how hard the song and
  the passage are, which no action changes (``var_between_songs`` is its song-mean part);
- ``var_sampling``: the variance of (sampled reward - mean action's reward) at the same chunk:
  what the drawn action changes, the part a policy gradient learns from;
- ``reward_cost_of_sampling``: the mean action's reward minus the sampled one's;
- ``var_after_episode_baseline``: for each horizon h, the variance left after the sampled
  reward less the running mean of its song's earlier rewards
  (:class:`rl_models.sequence_batch.SequenceTrainBatch`'s ``episode_baseline`` with a value
  head that predicts nothing, as on the learning benchmark).

    deepmixing benchmark reward_noise -- --checkpoint CKPT --songs runs/s45_7/seed7/heldout/cache

Writes ``reward_noise.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def reward_noise(checkpoint: str, env_config: dict, *, horizons: tuple[int, ...] = (2, 4, 8, 16),
                 seed: int = 0) -> dict:
    """The reward's variance parts of ``checkpoint`` on the songs of ``env_config``.

    ``env_config`` is laid over the env the checkpoint trained with (its observation settings
    stay, its training songs go), as evaluation does.

    Returns:
        The keys of the module docstring, ``mean_reward`` (mean action) and ``steps``.
    """
    import torch

    from mixing_env.envs.config import over_songs
    from rl_models.app.evaluate import play_songs
    from rl_models.app.module_policy import ModulePolicy
    from rl_models.checkpoints import load_policy
    from rl_models.sequence_batch import mean_of_earlier

    module, meta = load_policy(checkpoint)
    env_config = over_songs(meta["experiment"]["env"], {**env_config, "episode_chunks": None})
    mean = play_songs(ModulePolicy(module), env_config)
    torch.manual_seed(seed)
    sampled = play_songs(ModulePolicy(module, explore=True), env_config,
                         names=[r.song.name for r in mean])
    r_mean = [r.reward for r in mean]
    r_sampled = [r.reward for r in sampled]
    flat_sampled = np.concatenate(r_sampled)
    return {
        "checkpoint": str(checkpoint), "songs": len(mean), "steps": int(flat_sampled.size),
        "mean_reward": float(np.concatenate(r_mean).mean()),
        "reward_cost_of_sampling": float(np.concatenate(r_mean).mean() - flat_sampled.mean()),
        "var_total": float(flat_sampled.var()),
        "var_state": float(np.concatenate(r_mean).var()),
        "var_between_songs": float(np.var([r.mean() for r in r_mean])),
        "var_sampling": float(np.concatenate([s - m for s, m in zip(r_sampled, r_mean,
                                                                    strict=True)]).var()),
        "var_after_episode_baseline": {
            str(h): float(np.concatenate([r - mean_of_earlier(r - flat_sampled.mean(), h)
                                          for r in r_sampled]).var())
            for h in horizons},
    }


def main(argv: list[str] | None = None) -> int:
    from mixing_env.errors import ConfigError

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder")
    p.add_argument("--songs", required=True,
                   help="a prepared song folder (e.g. a learning run's heldout/cache)")
    p.add_argument("--out", default="runs/reward_noise", help="output folder")
    p.add_argument("--horizons", type=int, nargs="+", default=[2, 4, 8, 16],
                   help="episode-baseline horizons, steps")
    args = p.parse_args(argv)
    if not Path(args.songs).is_dir():
        raise ConfigError(f"--songs {args.songs}: no such folder")
    if any(h < 1 for h in args.horizons):
        raise ConfigError(f"--horizons must be >= 1, got {args.horizons}")
    result = reward_noise(args.checkpoint, {"dataset_dir": args.songs},
                          horizons=tuple(args.horizons))
    result["load_average"] = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward_noise.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
