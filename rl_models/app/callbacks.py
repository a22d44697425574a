"""RLlib callbacks that add DeepMixing's metrics to every training result.

Per episode (on the env runners): the mean MFCC distance and the mean per-step reward, read from
the env's ``info`` and rewards. Per iteration (on the algorithm): those means copied under
``result["deepmixing"]``, and every ``interval`` iterations (and at the last iteration of a run
stopped by ``training_iteration``) a deterministic evaluation of the
learner's current policy on held-out songs with the shared evaluation code, giving ``gap_closed`` =
``(d_equal - d_agent) / (d_equal - d_oracle)``. The baselines are evaluated once; between
evaluations the last values are carried forward so every result has the same keys.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

__all__ = ["DeepMixingCallbacks", "EVALUATION_KEYS", "RESULT_KEY"]

RESULT_KEY = "deepmixing"
"""Key of the custom metrics in each training result (TensorBoard: ``ray/tune/deepmixing/*``)."""

EVALUATION_KEYS = ("eval_mfcc_distance", "eval_reward", "eval_d_equal", "eval_d_oracle",
                   "gap_closed", "eval_iteration")
"""Keys under :data:`RESULT_KEY` that only the held-out evaluation (``evaluation.interval``)
fills; NaN (iteration 0) before the first one."""


class DeepMixingCallbacks(RLlibCallback):
    """Logs MFCC distance and reward per episode; evaluates ``gap_closed`` every N iterations.

    Args:
        evaluation: ``{"interval": N, "env": held-out EnvConfig dict, "last_iteration": M}``;
            interval 0 turns the held-out evaluation off; with ``last_iteration`` (the run's
            ``stop.training_iteration``) that iteration is evaluated too. RLlib builds
            callbacks with no arguments, so pass this class to ``config.callbacks`` through
            ``functools.partial``.
    """

    def __init__(self, evaluation: dict | None = None):
        super().__init__()
        self.evaluation = dict(evaluation or {})
        self._score = None  # the held-out songs' scorer, made at the first evaluation
        self._module = None  # the evaluated policy: built once, given the learner's weights
        self._last_eval: dict[str, float] = {key: math.nan for key in EVALUATION_KEYS}
        self._last_eval["eval_iteration"] = 0

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs: Any) -> None:
        """Logs the episode's mean MFCC distance and mean per-step reward."""
        if metrics_logger is None:
            return
        infos = episode.get_infos()
        distances = [i["mfcc_distance"] for i in infos if isinstance(i, dict)
                     and "mfcc_distance" in i]
        rewards = np.asarray(episode.get_rewards(), dtype=np.float64)
        if distances:
            metrics_logger.log_value("mfcc_distance", float(np.mean(distances)), reduce="mean")
        if rewards.size:
            metrics_logger.log_value("reward_per_step", float(rewards.mean()), reduce="mean")
        from mixing_env.envs.song_source import GeneratedPool

        made = GeneratedPool.process_stats()
        if made["songs_made"]:  # a stream of new songs: what making them has cost so far
            metrics_logger.log_value("songs_made", made["songs_made"], reduce="max")
            metrics_logger.log_value("song_cpu_s", made["song_cpu_s"], reduce="max")

    def on_train_result(self, *, algorithm, metrics_logger=None, result: dict, **kwargs) -> None:
        """Adds ``result["deepmixing"]`` and, every ``interval`` iterations, ``gap_closed``."""
        runners = result.get("env_runners", {}) or {}
        custom = {
            "mfcc_distance_mean": float(runners.get("mfcc_distance", math.nan)),
            "reward_mean": float(runners.get("reward_per_step", math.nan)),
        }
        for key in ("songs_made", "song_cpu_s"):
            if key in runners:
                custom[key] = float(runners[key])
        interval = int(self.evaluation.get("interval", 0) or 0)
        # RLlib calls this from Algorithm.log_result, after Trainable.train() has counted
        # the iteration: algorithm.iteration is the 1-based number of this result.
        iteration = int(algorithm.iteration)
        last = self.evaluation.get("last_iteration")
        if interval > 0 and (iteration % interval == 0 or iteration == last):
            self._last_eval = self._evaluate(algorithm, iteration)
        custom.update(self._last_eval)
        result[RESULT_KEY] = custom

    def _evaluate(self, algorithm, iteration: int) -> dict[str, float]:
        from rl_models.app.evaluate import HeldOutScore

        if self._score is None:
            self._score = HeldOutScore(self.evaluation.get("env", {}))
        return {**self._score(self._learner_module(algorithm)), "eval_iteration": iteration}

    def _learner_module(self, algorithm):
        """A module holding the learner's current weights.

        Not the algorithm's env-runner module: APPO and IMPALA sample on remote env runners,
        so the local one never receives new weights, and BC and MARWIL have none at all.
        """
        from rl_models.checkpoints import build_policy_module, learner_policy

        policy = learner_policy(algorithm)
        if self._module is None:
            self._module = build_policy_module(policy["module_name"], policy["model_config"],
                                               policy["observation_space"],
                                               policy["action_space"])
            self._module.eval()
        self._module.load_state_dict(policy["state"])
        return self._module
