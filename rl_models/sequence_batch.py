"""Episodes to a stateful module's train batch with GAE, in one vectorized connector pass.

RLlib's default learner pipeline for PPO and PG on a stateful module runs eight connector
pieces, each looping over episodes and batch items in Python: it appends an artificial
timestep to every episode fragment (the bootstrap observation), cuts each fragment into
``max_seq_len`` sequences zero-padded at the end (the extra timestep alone adds a whole padded
sequence per fragment), batches and converts every column, then runs the value function over
the whole padded batch *with autograd on* to compute GAE. On the learning benchmark's module
that connector pass took about half of the learner's time.

`SequenceTrainBatch` computes the same train batch in one pass: one gather per column into
(sequences, max_seq_len) rows, ``STATE_IN`` read from each sequence's stored state, the
values the env runner recorded with each step (``VF_PREDS``; where a module records none,
one forward under ``torch.no_grad`` on the real sequences), and the bootstrap values from one
single-step forward of the fragments' last observations (skipped when gamma is 0). Advantages
(standardized) and value targets equal RLlib's ``GeneralAdvantageEstimation`` on the same
episodes (tested); the train batch has no sequence made only of padding.

With gamma 0 (the reward of one step is all that counts) the baseline can also learn from the
episode's own past: ``episode_baseline=h`` subtracts from each step's advantage the running
mean (horizon h steps) of the value's error over the fragment's earlier steps. On the learning
benchmark most of the reward's variance is how hard the song and passage are, which no value
head reading the observation predicts (its explained variance stays near 0 on songs without
end), while the steps just before know it; that mean depends on earlier actions only, so the
gradient stays unbiased.

With a ``self_critical`` env (gamma 0) the baseline is exact instead: each step's advantage
is its reward less the reward the policy's mean action got on the same chunk
(``info["baseline_reward"]``, :class:`~mixing_env.envs.mixing_env.MixingEnv`), so the
passage's difficulty cancels and only what the drawn action did better or worse is left.

`SequenceBatchLearner` puts it in place of the default pipeline when a learner builds one
(PPO's, PG's) for a stateful module; any other pipeline is left as it is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.signal
import torch
import tree
from ray.rllib.connectors.common import (
    AddObservationsFromEpisodesToBatch,
    AddStatesFromEpisodesToBatch,
    AddTimeDimToBatchAndZeroPad,
    BatchIndividualItems,
    NumpyToTensor,
)
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.learner import (
    AddColumnsFromEpisodesToTrainBatch,
    AddOneTsToEpisodesAndTruncate,
    GeneralAdvantageEstimation,
)
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.annotations import override

from mixing_env.errors import ConfigError

__all__ = ["DEFAULT_PIPELINE", "SequenceBatchLearner", "SequenceTrainBatch", "mean_of_earlier",
           "sequence_layout"]

DEFAULT_PIPELINE = (
    AddOneTsToEpisodesAndTruncate,
    AddObservationsFromEpisodesToBatch,
    AddColumnsFromEpisodesToTrainBatch,
    AddTimeDimToBatchAndZeroPad,
    AddStatesFromEpisodesToBatch,
    BatchIndividualItems,
    NumpyToTensor,
    GeneralAdvantageEstimation,
)
"""The learner pipeline PPO and PG build for a single-agent module, piece by piece: the one
`SequenceBatchLearner` replaces."""


def sequence_layout(lengths: list[int], max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each step of concatenated episodes goes in zero-padded sequences.

    Args:
        lengths: Steps per episode fragment, in order.
        max_seq_len: T, the longest sequence; each fragment is cut into ceil(L / T).

    Returns:
        ``src`` int64 [shape=(S, T)]: the index of the step in the concatenated steps at each
        sequence slot, ``sum(lengths)`` at padded slots; ``seq_lens`` int32 [shape=(S,)].
    """
    total = int(sum(lengths))
    src, seq_lens, offset = [], [], 0
    for n in lengths:
        n_seq = math.ceil(n / max_seq_len)
        idx = np.arange(n_seq * max_seq_len) + offset
        idx[n:] = total  # the padding row
        src.append(idx.reshape(n_seq, max_seq_len))
        seq_lens.append(np.minimum(max_seq_len, n - max_seq_len * np.arange(n_seq)))
        offset += n
    return np.concatenate(src), np.concatenate(seq_lens).astype(np.int32)


def _pad_gather(steps: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``steps[src]`` with a zero row at index len(steps) (the padded slots)."""
    padded = np.concatenate([steps, np.zeros((1, *steps.shape[1:]), steps.dtype)])
    return padded[src]


def _to_sequences(arrays: tuple[np.ndarray, ...], lengths: list[int], first_row: np.ndarray,
                  shape: tuple[int, int]) -> np.ndarray:
    """The first ``lengths[j]`` rows of each ``arrays[j]`` in zero-padded sequences.

    Equals ``_pad_gather(np.concatenate([a[:n] for a, n in ...]), src)`` for the ``src`` of
    `sequence_layout`, with one copy: fragment j fills the consecutive slots from
    ``first_row[j]`` of the flattened (S * T) sequences.
    """
    first = arrays[0]
    out = np.zeros((shape[0] * shape[1], *first.shape[1:]), first.dtype)
    for a, n, row in zip(arrays, lengths, first_row, strict=True):
        out[row:row + n] = a[:n]
    return out.reshape(*shape, *first.shape[1:])


def _concat(items: list[Any]) -> Any:
    return tree.map_structure(lambda *xs: np.concatenate(xs), *items)


class SequenceTrainBatch(ConnectorV2):
    """Learner connector: episodes -> the train batch of one stateful module, with GAE.

    The batch equals what RLlib's default pipeline plus ``AddOneTsToEpisodesAndTruncate``
    and ``GeneralAdvantageEstimation`` make from the same episodes, without their padded
    bootstrap timestep: ``obs``, ``actions``, ``rewards``, every extra model output but
    ``state_out`` (action logp and distribution inputs, ...) as (S, T, ...) zero-padded
    sequences, ``state_in`` (S, ...) the state each sequence starts from, ``seq_lens``,
    ``loss_mask``, and ``advantages`` (standardized over the batch) and ``value_targets``.

    Needs numpy episodes that store ``state_out`` at every step (the env runners' default
    for a stateful module).

    Args:
        input_observation_space: Unused (connector API).
        input_action_space: Unused (connector API).
        gamma: Discount.
        lambda_: GAE lambda (1: Monte-Carlo returns bootstrapped at fragment ends).
        device: Where the tensors go (the learner's device); None: CPU.
        episode_baseline: Horizon in steps of the running mean of the value's error over
            the fragment's earlier steps that is subtracted from each advantage (0: none;
            gamma must be 0, where no later value depends on this step's reward).
        self_critical: Advantages are each step's reward less its ``baseline_reward`` info
            (the mean action's reward on the same chunk); gamma must be 0.

    Raises:
        ConfigError: ``episode_baseline`` not an int >= 0, either baseline with gamma > 0,
            or both at once.
    """

    def __init__(self, input_observation_space=None, input_action_space=None, *,
                 gamma: float, lambda_: float, device: Any = None,
                 episode_baseline: int = 0, self_critical: bool = False) -> None:
        super().__init__(input_observation_space, input_action_space)
        self.gamma, self.lambda_, self.device = float(gamma), float(lambda_), device
        if (isinstance(episode_baseline, bool) or not isinstance(episode_baseline, int)
                or episode_baseline < 0):
            raise ConfigError(f"episode_baseline must be an int >= 0 (steps), got "
                              f"{episode_baseline!r}")
        if episode_baseline and self.gamma != 0.0:
            raise ConfigError(f"episode_baseline needs gamma 0 (got gamma={gamma}): with "
                              f"gamma > 0 later values would read this step's reward")
        self.episode_baseline = episode_baseline
        self.self_critical = bool(self_critical)
        if self.self_critical and (self.gamma != 0.0 or episode_baseline):
            raise ConfigError(f"self_critical needs gamma 0 and no episode_baseline, got "
                              f"gamma={gamma}, episode_baseline={episode_baseline}")

    @override(ConnectorV2)
    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 shared_data: dict | None = None, **kwargs) -> Any:
        """Returns ``{module_id: train batch}`` (see the class docstring)."""
        if any(isinstance(e, MultiAgentEpisode) for e in episodes):
            raise ValueError("SequenceTrainBatch handles single-agent episodes only")
        module = (rl_module[DEFAULT_MODULE_ID] if isinstance(rl_module, MultiRLModule)
                  else rl_module)
        max_seq_len = int(module.model_config["max_seq_len"])
        lengths = [len(e) for e in episodes]
        src, seq_lens = sequence_layout(lengths, max_seq_len)
        to_tensor = self._to_tensor

        obs_all = [e.get_observations() for e in episodes]  # L + 1 each: the last bootstraps
        columns = {
            Columns.OBS: obs_all,
            Columns.ACTIONS: [e.get_actions() for e in episodes],
            Columns.REWARDS: [e.get_rewards().astype(np.float32) for e in episodes],
        }
        extra_keys = [k for k in episodes[0].extra_model_outputs if k != Columns.STATE_OUT]
        for key in extra_keys:
            columns[key] = [e.get_extra_model_outputs(key) for e in episodes]
        # Each fragment fills consecutive rows of the (S * T) sequence slots: one copy per
        # fragment and column, straight into the padded batch.
        first_row = np.concatenate([[0], np.cumsum(np.ceil(np.asarray(lengths) / max_seq_len)
                                                   .astype(np.int64))[:-1]]) * max_seq_len
        out = {col: tree.map_structure(
            lambda *xs: to_tensor(_to_sequences(xs, lengths, first_row, src.shape)), *data)
            for col, data in columns.items()}
        steps = {col: np.concatenate(columns[col]) for col in (Columns.REWARDS, Columns.VF_PREDS)
                 if col in columns}

        state_outs = [e.get_extra_model_outputs(Columns.STATE_OUT) for e in episodes]
        initial = tree.map_structure(np.asarray, module.get_initial_state())
        starts = []
        for e, outs, n in zip(episodes, state_outs, lengths, strict=True):
            first = (initial if e.t_started == 0 else e.get_extra_model_outputs(
                Columns.STATE_OUT, indices=-1, neg_index_as_lookback=True))
            # Sequence s > 0 starts from the state after step s * T - 1.
            starts.append(tree.map_structure(
                lambda f, o, n=n: np.concatenate([f[None], o[max_seq_len - 1:n - 1:max_seq_len]]),
                first, outs))
        out[Columns.STATE_IN] = tree.map_structure(to_tensor, _concat(starts))
        out[Columns.SEQ_LENS] = to_tensor(seq_lens)
        out[Columns.LOSS_MASK] = to_tensor(src < len(steps[Columns.REWARDS]))

        if Columns.VF_PREDS in steps:  # recorded while sampling, with these weights
            values = steps[Columns.VF_PREDS].astype(np.float32)
        else:
            values = self._values(module, out, src, len(steps[Columns.REWARDS]))
        bootstrap = self._bootstrap_values(module, episodes, obs_all, state_outs, lengths)
        baseline = _baseline_rewards(episodes) if self.self_critical else None
        advantages, targets = self._gae(steps[Columns.REWARDS], values, bootstrap, lengths,
                                        baseline)
        out[Postprocessing.ADVANTAGES] = to_tensor(_pad_gather(advantages, src))
        out[Postprocessing.VALUE_TARGETS] = to_tensor(_pad_gather(targets, src))
        if shared_data is not None:
            shared_data[f"_zero_padded_for_mid={DEFAULT_MODULE_ID}"] = True
        return {DEFAULT_MODULE_ID: out}

    def _to_tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device or "cpu")

    @staticmethod
    def _values(module: Any, batch: dict[str, Any], src: np.ndarray, n_steps: int
                ) -> np.ndarray:
        """V(s_t) of every real step, in step order [shape=(n_steps,)]."""
        with torch.no_grad():
            values = module.compute_values(batch).cpu().numpy()
        real = src < n_steps
        flat = np.empty(n_steps, np.float32)
        flat[src[real]] = values[real]
        return flat

    def _bootstrap_values(self, module: Any, episodes: list[Any], obs_all: list[Any],
                          state_outs: list[Any], lengths: list[int]) -> np.ndarray:
        """V of each fragment's last observation; 0 where it terminated or gamma is 0."""
        boot = np.zeros(len(episodes), np.float32)
        cut = [i for i, e in enumerate(episodes) if not e.is_terminated]
        if self.gamma == 0.0 or not cut:
            return boot
        last = {
            Columns.OBS: _concat([tree.map_structure(lambda x, n=lengths[i]: x[n:n + 1, None],
                                                     obs_all[i]) for i in cut]),
            Columns.STATE_IN: _concat([tree.map_structure(lambda x: x[-1:], state_outs[i])
                                       for i in cut]),
        }
        batch = tree.map_structure(self._to_tensor, last)
        with torch.no_grad():
            boot[cut] = module.compute_values(batch)[:, 0].cpu().numpy()
        return boot

    def _gae(self, rewards: np.ndarray, values: np.ndarray, bootstrap: np.ndarray,
             lengths: list[int], baseline: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Standardized GAE advantages and value targets of the concatenated steps.

        With ``baseline`` (gamma 0: one per step) the advantages are ``rewards - baseline``;
        the value head still learns the rewards.
        """
        ends = np.cumsum(lengths)
        next_values = np.append(values[1:], 0.0).astype(np.float32)
        next_values[ends - 1] = bootstrap
        deltas = rewards + self.gamma * next_values - values
        decay = self.gamma * self.lambda_
        advantages = deltas
        if decay != 0.0:  # discounted sums, reversed, within each fragment
            advantages = np.concatenate([
                scipy.signal.lfilter([1.0], [1.0, -decay], d[::-1])[::-1]
                for d in np.split(deltas, ends[:-1])]).astype(np.float32)
        targets = (advantages + values).astype(np.float32)
        if baseline is not None:
            advantages = rewards - baseline
        if self.episode_baseline:
            advantages = advantages - np.concatenate([
                mean_of_earlier(d, self.episode_baseline) for d in np.split(deltas, ends[:-1])])
        advantages = (advantages - advantages.mean()) / max(1e-4, advantages.std())
        return advantages.astype(np.float32), targets


def _baseline_rewards(episodes: list[Any]) -> np.ndarray:
    """Each step's ``info["baseline_reward"]``, the fragments' steps concatenated.

    Raises:
        ConfigError: A step without one (the env is not ``self_critical``, or the env runner
            sent no mean action).
    """
    out = []
    for e in episodes:
        infos = e.get_infos()  # a step's info comes with the observation after it
        infos = infos[len(infos) - len(e):]
        try:
            out.extend(info["baseline_reward"] for info in infos)
        except KeyError:
            raise ConfigError(
                "self_critical: a step's info has no 'baseline_reward'; set env "
                "self_critical: true and use the project's step connectors, which send the "
                "policy's mean action with each drawn one") from None
    return np.asarray(out, np.float32)


def mean_of_earlier(x: np.ndarray, horizon: int) -> np.ndarray:
    """Exponential mean (weight 1 - 1/horizon per step back) of x[:t] at every t; 0 at t = 0.

    Bias-corrected as Adam's moments are, so the first steps average what there is.
    """
    keep = 1.0 - 1.0 / horizon
    running = scipy.signal.lfilter([1.0 - keep], [1.0, -keep], x.astype(np.float64))
    weight = 1.0 - keep ** np.arange(1, len(x) + 1)
    earlier = np.zeros(len(x))
    earlier[1:] = running[:-1] / weight[:-1]
    return earlier.astype(np.float32)


class SequenceBatchLearner(Learner):
    """Learner mixin: `SequenceTrainBatch` in place of the default PPO / PG pipeline.

    Put it first among the bases (``class L(SequenceBatchLearner, PPOTorchLearner)``). After
    the learner has built its pipeline, a pipeline that is exactly :data:`DEFAULT_PIPELINE`
    for a stateful module becomes one `SequenceTrainBatch` with the same gamma and lambda
    (and ``learner_config_dict["episode_baseline"]``, default 0); anything else (custom
    connectors, a stateless module) is kept.

    Raises:
        ConfigError: ``episode_baseline`` asked for where the pipeline is not swapped.
    """

    @override(Learner)
    def build(self) -> None:
        """Builds as the base learner does, then swaps the pipeline where it applies."""
        super().build()
        baseline = self.config.learner_config_dict.get("episode_baseline", 0)
        self_critical = bool((self.config.env_config or {}).get("self_critical"))
        pipeline = self._learner_connector
        pieces = pipeline.connectors if pipeline is not None else []
        if (DEFAULT_MODULE_ID not in self.module.keys()
                or tuple(type(p) for p in pieces) != DEFAULT_PIPELINE
                or not self.module[DEFAULT_MODULE_ID].is_stateful()):
            if baseline or self_critical:
                raise ConfigError("learner_config_dict['episode_baseline'] and env "
                                  "self_critical need the one-pass sequence pipeline: a single "
                                  "stateful module and RLlib's default learner connectors")
            return
        gae = pieces[-1]
        for piece in list(pieces):
            pipeline.remove(type(piece).__name__)
        pipeline.append(SequenceTrainBatch(gamma=gae.gamma, lambda_=gae.lambda_,
                                           device=self._device, episode_baseline=baseline,
                                           self_critical=self_critical))
