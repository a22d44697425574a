"""Tiny experiments run through the trial's own code, and what every one of them must pass.

Shared by the per-algorithm and per-module tests: two iterations with the held-out
evaluation on, the held-out score following the learner's weights, a checkpoint whose plain
files rebuild the policy (only the policy's weights: no target network).
"""

from __future__ import annotations

import math

import pytest
import torch

from mixing_env.envs.config import over_songs
from rl_models import checkpoints
from rl_models.app.callbacks import DeepMixingCallbacks
from rl_models.app.evaluate import evaluate_policy
from rl_models.app.experiment import validate_experiment
from rl_models.app.module_policy import ModulePolicy
from rl_models.app.train import DeepMixingTrainable

__all__ = ["check_trial", "experiment", "record_demonstrations", "train_two_iterations"]

SONGS = {"n_songs": 2, "seconds": 0.4, "n_tracks": 3, "seed": 0}
HELD_OUT = {"synthetic": {**SONGS, "n_songs": 1, "seed": 7}, "episode_chunks": None}
TINY_MODEL = {"embed_dim": 4, "hidden_size": 4, "mix_hidden_size": 2, "attention_dim": 4,
              "max_seq_len": 4, "value_hiddens": [8]}
TRAINING = {
    "PPO": {"train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 1,
            "lr": 0.01},
    "APPO": {"train_batch_size_per_learner": 64, "lr": 0.01},
    "IMPALA": {"train_batch_size_per_learner": 64, "lr": 0.01},
    "PG": {"train_batch_size_per_learner": 64, "lr": 0.01},
    "BC": {"train_batch_size_per_learner": 64, "lr": 0.01},
    "MARWIL": {"train_batch_size_per_learner": 64, "lr": 0.01},
}
# Async algorithms sample on a remote env runner (the case whose evaluation went stale).
RUNNERS = {"APPO": 1, "IMPALA": 1}


def record_demonstrations(out) -> str:
    """Oracle episodes of the training songs, in RLlib's offline format (BC, MARWIL)."""
    from rl_models.app.demonstrations import record_episodes, write_demonstrations

    env = {"synthetic": SONGS, "episode_chunks": 8}
    return str(write_demonstrations(record_episodes(env, episodes_per_song=2), out))


def experiment(algorithm: str, demos: str | None = None, **extra) -> dict:
    """A two-iteration experiment on tiny synthetic songs, evaluated at each iteration."""
    exp = {
        "name": algorithm.lower(), "algorithm": algorithm,
        "env": {"synthetic": SONGS, "episode_chunks": 8},
        "model": TINY_MODEL, "training": TRAINING.get(algorithm, TRAINING["PPO"]),
        "env_runners": {"num_env_runners": RUNNERS.get(algorithm, 0)},
        "evaluation": {"interval": 1, "env": HELD_OUT},
        "stop": {"training_iteration": 2},
        **extra,
    }
    if algorithm in ("BC", "MARWIL"):
        exp["offline_data"] = {"input_": demos}
    return validate_experiment(exp)


def train_two_iterations(exp: dict) -> tuple[DeepMixingTrainable, list[dict]]:
    """The trial's own Trainable, two ``train()`` calls; stop it when done."""
    trainable = DeepMixingTrainable(config=exp)
    results = [trainable.train() for _ in range(2)]
    return trainable, results


def perturbed(state: dict) -> dict:
    gen = torch.Generator().manual_seed(0)
    return {k: v + 0.5 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
            for k, v in state.items()}


def held_out_gap(module) -> float:
    from mixing_env.baselines import make_baseline
    from mixing_env.metrics import gap_closed

    env = {"synthetic": HELD_OUT["synthetic"]}
    d = {name: evaluate_policy(make_baseline(name), env_config=env)["mfcc_distance"]
         for name in ("equal", "oracle")}
    agent = evaluate_policy(ModulePolicy(module), env_config=env)["mfcc_distance"]
    return gap_closed(d_agent=agent, d_equal=d["equal"], d_oracle=d["oracle"])


def check_trial(trainable, results, tmp_path):
    """The assertions every algorithm and module must pass after two iterations."""
    algo = trainable.algo
    gaps = [r["deepmixing"]["gap_closed"] for r in results]
    assert all(math.isfinite(g) for g in gaps), gaps
    assert [r["deepmixing"]["eval_iteration"] for r in results] == [1, 2]

    # The held-out score follows the learner's weights: new weights, a new score.
    callback = DeepMixingCallbacks(evaluation={"interval": 1, "env": over_songs(
        trainable.typed.env, trainable.typed.evaluation.env)})
    before = callback._evaluate(algo, 3)["gap_closed"]
    policy = checkpoints.learner_policy(algo)
    algo.learner_group.foreach_learner(
        lambda learner: learner.module["default_policy"].unwrapped().load_state_dict(
            perturbed(policy["state"]), strict=False))
    after = callback._evaluate(algo, 4)["gap_closed"]
    assert after != before

    # The checkpoint's plain files rebuild the policy: exactly its weights, nothing else.
    ckpt = tmp_path / "checkpoint_000002"
    ckpt.mkdir()
    trainable.save_checkpoint(str(ckpt))
    state = torch.load(ckpt / checkpoints.WEIGHTS_FILE, weights_only=True)
    module, meta = checkpoints.load_policy(ckpt)
    assert set(state) == set(module.state_dict())  # no target network, nothing missing
    learner_state = checkpoints.learner_policy(algo)["state"]
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value, learner_state[key])
    assert meta["experiment"]["algorithm"] == trainable.typed.algorithm
    assert held_out_gap(module) == pytest.approx(after, abs=1e-9) or \
        trainable.typed.algorithm in RUNNERS  # async learners may update meanwhile
    return ckpt
