"""The report's attention-LSTM policy (4.1-4.2) as a stateful RLlib TorchRLModule."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import (
    TARGET_NETWORK_ACTION_DIST_INPUTS,
    InferenceOnlyAPI,
    TargetNetworkAPI,
    ValueFunctionAPI,
)
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from mixing_env.errors import ConfigError
from rl_models.distributions import TorchMaskedDirichlet
from rl_models.modules.config import AttentionLSTMConfig
from rl_models.modules.core import AttentionLSTMCore
from rl_models.modules.running_attention import NO_MASS

__all__ = ["AttentionLSTMModule"]


class AttentionLSTMModule(TorchRLModule, ValueFunctionAPI, TargetNetworkAPI, InferenceOnlyAPI):
    """DeepMixing's policy: track Bi-LSTMs, a mix Uni-LSTM, attention, a Dirichlet.

    Every env step costs O(1) recurrent steps per track, however long the song: the report's
    attention over all positions s = 1..t is kept as a running sum in the state.

    Per step t and track i, the newest chunk is normalized (``input_norm``), embedded
    (e = ``embed_dim``; one shared encoder plus a learned per-slot embedding by default,
    per-track weights with ``share_encoder: false``) and fed to the track's Bi-LSTM (k/2 per
    direction). Its forward direction advances one step from the state it carries; its
    backward direction, which over chunks 1..t starts at chunk t, gives its output at t from
    one cell step. A Uni-LSTM (l) over the observed mix MFCC gives b_t. Report 4.2:
    lambda_it = (B1 b_t)^T (H_i h_it); alpha = softmax over all positions s = 1..t;
    CV_i = sum_s alpha_is h_is; gamma_i = (B2 b_t)^T (F_i CV_i); beta = softmax over real
    tracks (dummies get exactly 0).

    **How this reads the report's whole-song attention.** The report scores every position s
    against the current mix state b_t and recomputes the Bi-LSTM over 1..t at every t, which
    costs O(t) per step. Here position s keeps the representation h_is and the score
    lambda_is it had at the step it arrived (the report's values for s = t exactly); later
    steps do not revise them. With fixed scores the softmax over s = 1..t is exact as an
    online softmax: the state keeps L_i = log sum_s exp(lambda_is) and CV_i, and each step
    updates both in O(k) (`rl_models.modules.running_attention`). A training sequence computes
    the same values in parallel (no step loop), so ``forward_train`` over T steps equals T
    inference steps.

    The action distribution is `TorchMaskedDirichlet` with concentration
    kappa * n_real * beta + floor, whose mean (the deterministic action) is
    (kappa * beta + floor / n_real) / (kappa + floor). With ``level_prior`` set, gamma gets a
    loudness prior w * (-ln10/20) * level_i + bias_i from each track's observed level, so the
    initial mean is the loudness-equalised mix (w = 1) and per-slot biases can learn the
    per-instrument balance (``level_prior_bias_db`` starts them at a table, and a
    ``residual_gate`` at 0 starts the policy exactly at the prior).
    A value head (tanh MLP) reads
    [sum_i beta_i CV_i, mean over real i of CV_i, b_t].

    Only the tracks real in some row of a batch are computed: a dummy slot's outputs are
    masked out of the action and the value, so skipping it is exact, and a song seldom fills
    all C slots. Dummy slots get alpha = beta = 0. Over training sequences the track LSTM
    (shared weights) runs only the (sequence, track) pairs real in their sequence; the state
    of a slot dummy in its row is left unspecified (never read: a song keeps its tracks).

    Recurrent state (``get_initial_state``; numpy, unbatched):

    ==================  ========  ===============================================
    key                 shape     meaning
    ==================  ========  ===============================================
    ``track_h``, ``_c`` (C, k/2)  the forward direction of each track's Bi-LSTM
    ``log_mass``        (C,)      L_i, log of the attention mass over s = 1..t
                                  (NO_MASS = -1e9 before the first chunk)
    ``context``         (C, k)    CV_i, the attention-weighted mean of h_is
    ``h``, ``c``        (l,)      the Uni-LSTM state
    ==================  ========  ===============================================

    That is C * (2k + 1) + 2l floats per env step (report size C=72, k=100, l=5: 14,482),
    whatever the song's length.

    Observation (gymnasium Dict): ``chunks`` (C, W_obs, F) - only the newest chunk
    ``[:, -1]`` is read, history lives in the state; ``mix_mfcc`` (n_mfcc,); ``track_mask``
    (C,). Action space: Box(0, 1, (C,)). C, F and n_mfcc come from the observation space.
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        """Validates the spaces and model_config, then builds the layers."""
        cfg = AttentionLSTMConfig.from_dict(self.model_config)
        self._cfg = cfg
        # RLlib's connectors read max_seq_len from the module's model_config.
        self.model_config = {**(self.model_config or {}), **cfg.to_dict()}
        n_tracks, n_features, n_mfcc = self._check_spaces()
        self._n_tracks = n_tracks
        self._core = AttentionLSTMCore(cfg, n_tracks=n_tracks, n_features=n_features, n_mfcc=n_mfcc)
        k, l_ = cfg.hidden_size, cfg.mix_hidden_size
        layers: list[nn.Module] = []
        size = 2 * k + l_
        for hidden in cfg.value_hiddens:
            layers += [nn.Linear(size, hidden), nn.Tanh()]
            size = hidden
        layers.append(nn.Linear(size, 1))
        self._value_head = nn.Sequential(*layers)
        self.action_dist_cls = TorchMaskedDirichlet

    def _check_spaces(self) -> tuple[int, int, int]:
        obs, act = self.observation_space, self.action_space
        keys = {"chunks", "mix_mfcc", "track_mask"}
        if not isinstance(obs, gym.spaces.Dict) or not keys <= set(obs.spaces):
            raise ConfigError(
                f"observation_space must be a Dict with keys {sorted(keys)}, got {obs}"
            )
        chunks, mfcc, mask = obs["chunks"].shape, obs["mix_mfcc"].shape, obs["track_mask"].shape
        if len(chunks) != 3 or len(mfcc) != 1 or mask != (chunks[0],):
            raise ConfigError(
                "expected observation shapes chunks (C, W_obs, F), mix_mfcc (n_mfcc,), "
                f"track_mask (C,), got chunks={chunks}, mix_mfcc={mfcc}, track_mask={mask}"
            )
        if not isinstance(act, gym.spaces.Box) or act.shape != (chunks[0],):
            raise ConfigError(f"action_space must be Box(0, 1, ({chunks[0]},)), got {act}")
        return chunks[0], chunks[2], mfcc[0]

    @override(TorchRLModule)
    def get_initial_state(self) -> dict[str, np.ndarray]:
        """Returns the unbatched zero state (see the class docstring)."""
        cfg = self._cfg
        c, k = self._n_tracks, cfg.hidden_size
        return {
            "track_h": np.zeros((c, k // 2), np.float32),
            "track_c": np.zeros((c, k // 2), np.float32),
            "log_mass": np.full((c,), NO_MASS, np.float32),
            "context": np.zeros((c, k), np.float32),
            "h": np.zeros((cfg.mix_hidden_size,), np.float32),
            "c": np.zeros((cfg.mix_hidden_size,), np.float32),
        }

    def state_size(self) -> int:
        """Floats of recurrent state per env step."""
        return int(sum(v.size for v in self.get_initial_state().values()))

    def _run(self, core: AttentionLSTMCore, batch: dict[str, Any],
             need_features: bool = True) -> dict[str, Any]:
        """Runs `core` on a (B, T, ...) or (B, ...) batch; returns (B, T, ...) outputs."""
        obs = batch[Columns.OBS]
        chunks, mfcc, mask = obs["chunks"], obs["mix_mfcc"], obs["track_mask"]
        if mask.dim() == 2:  # no time axis: a single step
            chunks, mfcc, mask = chunks.unsqueeze(1), mfcc.unsqueeze(1), mask.unsqueeze(1)
        state = batch.get(Columns.STATE_IN)
        if state is None:
            raise ConfigError(
                "AttentionLSTMModule is stateful: the batch needs Columns.STATE_IN "
                "(batched get_initial_state() at an episode start)"
            )
        out = core(chunks[..., -1, :], mfcc, mask, state, need_features)
        out["dist_inputs"] = torch.cat([out["concentration"], mask.to(out["beta"].dtype)], -1)
        return out

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = self._run(self._core, batch, need_features=False)
        return {Columns.ACTION_DIST_INPUTS: out["dist_inputs"], Columns.STATE_OUT: out["state_out"]}

    @override(TorchRLModule)
    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Acting to collect training data: also each step's value (``VF_PREDS``).

        The learner's GAE then reads the values the env runner stored with the steps
        (`rl_models.sequence_batch`) instead of running the network over the batch again:
        on-policy, the env runner acts with the learner's current weights. Runs in
        ``torch.inference_mode`` (no autograd bookkeeping at all: 12 % less CPU per step than
        ``no_grad`` at 32 envs); its outputs are never differentiated.
        """
        with torch.inference_mode():
            out = self._run(self._core, batch)
            return {
                Columns.ACTION_DIST_INPUTS: out["dist_inputs"],
                Columns.STATE_OUT: out["state_out"],
                Columns.VF_PREDS: self._value_head(out["features"]).squeeze(-1),
            }

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = self._run(self._core, batch)
        return {
            Columns.ACTION_DIST_INPUTS: out["dist_inputs"],
            Columns.STATE_OUT: out["state_out"],
            Columns.EMBEDDINGS: out["features"],
        }

    def attention(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Returns the attention of a forward pass (no grad), for analysis and plots.

        Returns:
            ``beta`` (B, T, C) over tracks, ``alpha`` (B, T, C) the attention weight of
            each track's newest position among its positions 1..t (zeros for a dummy slot),
            ``concentration`` (B, T, C).
        """
        with torch.no_grad():
            out = self._run(self._core, batch)
        return {k: out[k] for k in ("beta", "alpha", "concentration")}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """Returns values [shape=(B, T)]; runs the network unless `embeddings` are given."""
        if embeddings is None:
            embeddings = self._run(self._core, batch)["features"]
        if self._cfg.value_detach:
            embeddings = embeddings.detach()
        return self._value_head(embeddings).squeeze(-1)

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        """Copies the whole policy path (everything but the value head) as target net."""
        self._target_core = make_target_network(self._core)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """Returns [(policy core, its target copy)]."""
        return [(self._core, self._target_core)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Distribution inputs of the target network, (B, T, 2C)."""
        return {
            TARGET_NETWORK_ACTION_DIST_INPUTS: self._run(
                self._target_core, batch, need_features=False)["dist_inputs"]
        }

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        """Env runners need no target network (they keep the small value head: VF_PREDS)."""
        return ["_target_core"]
