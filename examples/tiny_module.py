"""A policy network of your own, trained by ``deepmixing train`` without editing the package.

Name it in an experiment as ``module: tiny_module:TinyMixerModule`` (run the command in this
folder). It follows the contract in ``docs/extending.md``: it reads the env's Dict
observation, returns the inputs of the project's masked Dirichlet, keeps a recurrent state,
has a value function (PPO, IMPALA, PG, MARWIL need one) and declares the ``model`` keys it
reads (``model_config_class``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rl_models.distributions import TorchMaskedDirichlet

__all__ = ["TinyMixerConfig", "TinyMixerModule"]


@dataclass(frozen=True)
class TinyMixerConfig:
    """The ``model`` keys :class:`TinyMixerModule` reads (any other key is an error)."""

    hidden: int = 16
    """Size of the track embeddings and of the mix GRU."""
    concentration: float = 20.0
    """Mean concentration of the Dirichlet over the real tracks (less: more exploration)."""
    max_seq_len: int = 8
    """Length of the sequences RLlib trains the GRU on."""


class TinyMixerModule(TorchRLModule, ValueFunctionAPI):
    """Per-track scores from the newest chunk, matched against a GRU over the mix's MFCC.

    ``score_i = <tanh(W chunk_i + slot_i), g_t>``, ``g_t`` the GRU state after the mix MFCCs
    so far; gains = a Dirichlet around the softmax of the scores over the real tracks.
    State: ``{"h": (hidden,)}``.
    """

    model_config_class = TinyMixerConfig

    def setup(self) -> None:
        """Builds the layers from the spaces and the model config."""
        names = {f.name for f in dataclasses.fields(TinyMixerConfig)}
        self.cfg = TinyMixerConfig(**{k: v for k, v in (self.model_config or {}).items()
                                      if k in names})
        # RLlib's connectors read max_seq_len from the module's model_config.
        self.model_config = {**(self.model_config or {}), **dataclasses.asdict(self.cfg)}
        n_tracks, _, n_features = self.observation_space["chunks"].shape
        n_mfcc = self.observation_space["mix_mfcc"].shape[0]
        h = self.cfg.hidden
        self.track = nn.Linear(n_features, h)
        self.slot = nn.Parameter(torch.zeros(n_tracks, h))
        self.mix = nn.GRU(n_mfcc, h, batch_first=True)
        self.value = nn.Linear(h, 1)
        self.action_dist_cls = TorchMaskedDirichlet

    def get_initial_state(self) -> dict[str, np.ndarray]:
        """The GRU's zero state, unbatched."""
        return {"h": np.zeros(self.cfg.hidden, np.float32)}

    def _run(self, batch: dict[str, Any]) -> dict[str, Any]:
        obs = batch[Columns.OBS]  # every entry (B, T, ...): a stateful module gets a time axis
        chunks = obs["chunks"][..., -1, :].float()  # the newest chunk of each track
        mix, h = self.mix(obs["mix_mfcc"].float(), batch[Columns.STATE_IN]["h"][None])
        scores = (torch.tanh(self.track(chunks) + self.slot) * mix.unsqueeze(-2)).sum(-1)
        real = obs["track_mask"].to(scores.dtype)
        scores = scores.masked_fill(real < 0.5, -1e9)
        beta = torch.softmax(scores, -1) * real
        concentration = self.cfg.concentration * real.sum(-1, keepdim=True) * beta + 0.05
        return {Columns.ACTION_DIST_INPUTS: torch.cat([concentration, real], -1),
                Columns.STATE_OUT: {"h": h[0]}, Columns.EMBEDDINGS: mix}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = self._run(batch)
        return {k: out[k] for k in (Columns.ACTION_DIST_INPUTS, Columns.STATE_OUT)}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._run(batch)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """V(s_t) from the mix GRU's output, (B, T)."""
        if embeddings is None:
            embeddings = self._run(batch)[Columns.EMBEDDINGS]
        return self.value(embeddings).squeeze(-1)
