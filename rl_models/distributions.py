"""A Dirichlet action distribution over the real track slots, for RLlib's new API stack.

RLlib 2.60 ships no Dirichlet for the new stack. `TorchMaskedDirichlet` puts a Dirichlet on
the simplex spanned by the *real* tracks of a song; dummy slots (``track_mask == 0``) are not
part of the distribution: samples give them exactly 0 and logp, entropy and kl sum over the
real slots only.

Distribution-input layout (``Columns.ACTION_DIST_INPUTS``, last axis of width ``2 * C``)::

    inputs[..., :C]   concentration alpha_i > 0 of each slot (values <= 0 are clamped to
                      CONCENTRATION_MIN; dummy slots' values are ignored)
    inputs[..., C:]   track mask, 1.0 = real track, 0.0 = dummy slot

A row whose mask is all zero (RLlib's zero-padded time steps in a training batch) is a
degenerate distribution: logp, entropy and kl are 0 there and samples are all-zero.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.distribution.distribution import Distribution
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchDistribution,
)
from ray.rllib.utils.annotations import override

__all__ = [
    "TorchMaskedDirichlet",
    "TorchDirichletMean",
    "ACTION_EPSILON",
    "CONCENTRATION_MIN",
]

ACTION_EPSILON = 1e-6
"""Real-slot action values are clamped to [ACTION_EPSILON, 1] inside logp, so an action with
exact zeros or ones (the simplex boundary) has a finite log-density."""

CONCENTRATION_MIN = 1e-4
"""Concentrations are clamped from below to this, so lgamma/digamma stay finite."""


class TorchMaskedDirichlet(TorchDistribution):
    """Dirichlet over the real slots of a C-slot action; dummy slots are exactly 0.

    Args:
        concentration: Positive concentration per slot [shape=(..., C)].
        mask: 1.0 for real slots and 0.0 for dummy slots [shape=(..., C)].
    """

    @override(TorchDistribution)
    def __init__(self, concentration: torch.Tensor, mask: torch.Tensor) -> None:
        if concentration.shape != mask.shape:
            raise ValueError(
                "concentration and mask must have the same shape, "
                f"concentration.shape={tuple(concentration.shape)}, mask.shape={tuple(mask.shape)}"
            )
        self.mask = (mask > 0.5).to(concentration.dtype)
        # Dummy slots get concentration 1 so the Gamma sampler and lgamma stay harmless;
        # every sum below multiplies them by the mask.
        self.concentration = torch.where(
            self.mask > 0,
            concentration.clamp_min(CONCENTRATION_MIN),
            torch.ones_like(concentration),
        )
        self.n_real = self.mask.sum(-1)
        # Total concentration over real slots; 1 for all-masked rows (lgamma(1) = 0).
        self.total = torch.where(
            self.n_real > 0,
            (self.concentration * self.mask).sum(-1),
            torch.ones_like(self.n_real),
        )
        super().__init__(concentration=self.concentration)

    @override(TorchDistribution)
    def _get_torch_distribution(self, concentration: torch.Tensor) -> torch.distributions.Gamma:
        # Independent Gamma(alpha_i, 1) draws, normalized over the real slots, are Dirichlet.
        return torch.distributions.Gamma(
            concentration, torch.ones_like(concentration), validate_args=False
        )

    @staticmethod
    @override(Distribution)
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        """Returns 2 * C: C concentrations followed by the C-slot track mask."""
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"expected a 1-D Box action space, got {space}")
        return int(2 * space.shape[0])

    @classmethod
    @override(TorchDistribution)
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> TorchMaskedDirichlet:
        """Builds the distribution from ``[concentration (C), mask (C)]`` on the last axis."""
        if logits.shape[-1] % 2:
            raise ValueError(
                f"expected distribution inputs of even width 2*C, got shape {tuple(logits.shape)}"
            )
        concentration, mask = logits.chunk(2, dim=-1)
        return cls(concentration=concentration, mask=mask)

    def _log_norm(self) -> torch.Tensor:
        """Returns log B(alpha) = sum lgamma(alpha_i) - lgamma(sum alpha_i) over real slots."""
        return (torch.lgamma(self.concentration) * self.mask).sum(-1) - torch.lgamma(self.total)

    @override(TorchDistribution)
    def logp(self, value: torch.Tensor, **kwargs) -> torch.Tensor:
        """Log-density of ``value`` [shape=(..., C)] over the real slots [shape=(...)]."""
        x = value.clamp(ACTION_EPSILON, 1.0)
        log_kernel = ((self.concentration - 1.0) * torch.log(x) * self.mask).sum(-1)
        return log_kernel - self._log_norm()

    @override(TorchDistribution)
    def entropy(self) -> torch.Tensor:
        """Differential entropy over the real slots [shape=(...)]."""
        a, m = self.concentration, self.mask
        ent = (
            self._log_norm()
            + (self.total - self.n_real) * torch.digamma(self.total)
            - ((a - 1.0) * torch.digamma(a) * m).sum(-1)
        )
        return torch.where(self.n_real > 0, ent, torch.zeros_like(ent))

    @override(TorchDistribution)
    def kl(self, other: TorchMaskedDirichlet) -> torch.Tensor:
        """KL(self || other) over the real slots of ``self`` [shape=(...)]."""
        a, b, m = self.concentration, other.concentration, self.mask
        b_total = torch.where(self.n_real > 0, (b * m).sum(-1), torch.ones_like(self.n_real))
        kl = (
            torch.lgamma(self.total)
            - (torch.lgamma(a) * m).sum(-1)
            - torch.lgamma(b_total)
            + (torch.lgamma(b) * m).sum(-1)
            + ((a - b) * (torch.digamma(a) - torch.digamma(self.total).unsqueeze(-1)) * m).sum(-1)
        )
        return torch.where(self.n_real > 0, kl, torch.zeros_like(kl))

    def _normalize(self, gammas: torch.Tensor) -> torch.Tensor:
        g = gammas * self.mask
        # Tiny concentrations can underflow every draw to 0; fall back to the mean then.
        total = g.sum(-1, keepdim=True)
        safe = torch.where(total > 0, g / total.clamp_min(1e-30), self.mean().expand_as(g))
        return safe * self.mask

    @override(TorchDistribution)
    def sample(self, *, sample_shape=None) -> torch.Tensor:
        """Draws actions [shape=(*sample_shape, ..., C)]: on the real simplex, dummies 0."""
        with torch.no_grad():
            return self._normalize(self._dist.sample(sample_shape or torch.Size()))

    @override(TorchDistribution)
    def rsample(self, *, sample_shape=None) -> torch.Tensor:
        """Reparameterized draw (torch's Gamma rsample), differentiable in the concentration."""
        return self._normalize(self._dist.rsample(sample_shape or torch.Size()))

    def mean(self) -> torch.Tensor:
        """Mean alpha_i / sum_j alpha_j over real slots; 0 for dummies [shape=(..., C)]."""
        return self.concentration * self.mask / self.total.unsqueeze(-1)

    @override(Distribution)
    def to_deterministic(self) -> TorchDirichletMean:
        """Returns the distribution whose sample is always the mean."""
        return TorchDirichletMean(loc=self.mean())


class TorchDirichletMean(TorchDeterministic):
    """Deterministic distribution at the Dirichlet mean; logp is 0 per batch item.

    RLlib's `TorchDeterministic.logp` returns one zero per action component; this one returns
    one per batch item, the shape RLlib's `GetActions` connector expects for ACTION_LOGP.
    """

    @override(TorchDeterministic)
    def logp(self, value: torch.Tensor, **kwargs) -> torch.Tensor:
        """Returns zeros [shape=(...)]."""
        return torch.zeros(self.loc.shape[:-1], dtype=self.loc.dtype, device=self.loc.device)

    @staticmethod
    @override(TorchDeterministic)
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        """Returns C (the mean itself)."""
        return int(np.prod(space.shape))
