"""Attention over all positions s = 1..t of a track, carried as a running weighted sum.

The report (4.2) attends, at step t, over every position s of the song with
``alpha_is = softmax_s(lambda_is)`` and ``CV_i = sum_s alpha_is h_is``. Here each position's
score lambda_is is computed once, when chunk s arrives, from the mix state of that step; it is
not recomputed against later mix states. The softmax over s = 1..t of those scores is then
exact with two numbers per track and position-independent cost (online softmax):

    L_t  = logaddexp(L_{t-1}, lambda_t)                        (log of sum_s exp(lambda_s))
    CV_t = CV_{t-1} exp(L_{t-1} - L_t) + h_t exp(lambda_t - L_t)

so the state holds ``L`` (1) and ``CV`` (k) per track, whatever the song's length. An empty
history is ``L = NO_MASS`` (a large negative number standing for log 0), ``CV = 0``.

In training a sequence of T steps is computed in parallel, without a step loop: with M the
largest score of the sequence (history included), ``CV_t = exp(M - L_t) * sum_{s<=t}
exp(lambda_s - M) h_s`` is a cumulative sum, O(T) per sequence. Where some ``L_t`` lies far
below M (the early sums would underflow in float32) the sequence batch takes the exact
O(T^2) form instead: the softmax over [the history, positions 1..t] as a lower-triangular
(T, T + 1) weight matrix.
"""

from __future__ import annotations

import torch

__all__ = ["NO_MASS", "running_attention"]

NO_MASS = -1e9
"""Log-mass of an empty history (stands for log 0; finite so gradients stay finite)."""
_CUMULATIVE_RANGE = 40.0
"""The cumulative form is used while every L_t is within this many nats of the sequence's
largest score: its sums stay above float32's smallest normal numbers (exp(-87))."""


def running_attention(
    scores: torch.Tensor, values: torch.Tensor, log_mass: torch.Tensor, context: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax-weighted running mean of ``values`` over all positions so far.

    Args:
        scores: lambda of each new position [shape=(B, T, A)].
        values: h of each new position [shape=(B, T, A, k)].
        log_mass: L of the history before step 1 [shape=(B, A)] (NO_MASS: none).
        context: CV of the history before step 1 [shape=(B, A, k)].

    Returns:
        CV after each step [shape=(B, T, A, k)], L after each step [shape=(B, T, A)], and
        alpha_t, the weight of each new position at its own step [shape=(B, T, A)].
    """
    if scores.shape[1] == 1:  # one step (inference): the recurrence itself
        lam = scores[:, 0]
        new_mass = torch.logaddexp(log_mass, lam)
        keep, alpha = torch.exp(log_mass - new_mass), torch.exp(lam - new_mass)
        cv = context * keep.unsqueeze(-1) + values[:, 0] * alpha.unsqueeze(-1)
        return cv.unsqueeze(1), new_mass.unsqueeze(1), alpha.unsqueeze(1)
    logits = torch.cat([log_mass.unsqueeze(1), scores], dim=1)  # (B, 1 + T, A)
    masses = torch.logcumsumexp(logits, dim=1)[:, 1:]  # L_1..L_T
    top = logits.detach().amax(1, keepdim=True)  # M (the result does not depend on it)
    if bool(((masses.detach() - top) > -_CUMULATIVE_RANGE).all()):
        weight = torch.exp(logits - top)  # (B, 1 + T, A)
        sums = torch.cumsum(weight[:, 1:].unsqueeze(-1) * values, dim=1)
        sums = sums + weight[:, :1].unsqueeze(-1) * context.unsqueeze(1)
        cv = sums * torch.exp(top - masses).unsqueeze(-1)
        return cv, masses, torch.exp(scores - masses)
    return _quadratic(logits, masses, values, context)


def _quadratic(logits: torch.Tensor, masses: torch.Tensor, values: torch.Tensor,
               context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The running sums as one (T, 1 + T) weight matrix per (sequence, track).

    Args as :func:`running_attention`'s, with ``logits`` [history, scores] (B, 1 + T, A) and
    ``masses`` L_1..L_T (B, T, A).
    """
    # Tracks lead, so the weighted sum is one batched (T, 1 + T) @ (1 + T, k) matmul per
    # (sequence, track) with no transposed copies of the (B, T, 1 + T, A) weights.
    t = masses.shape[1]
    logits, masses = logits.transpose(1, 2), masses.transpose(1, 2)  # (B, A, 1 + T), (B, A, T)
    # weight[b, a, t, s] = exp(logit_s - L_t) for s <= t + 1 (s = 0 is the history).
    causal = torch.ones(t, t + 1, dtype=torch.bool, device=logits.device).tril(1)
    diff = logits.unsqueeze(2) - masses.unsqueeze(3)  # (B, A, T, 1 + T)
    weight = torch.exp(diff.masked_fill(~causal, float("-inf")))
    all_values = torch.cat([context.unsqueeze(2), values.permute(0, 2, 1, 3)], dim=2)
    cv = torch.matmul(weight, all_values)  # (B, A, T, k)
    alpha = torch.diagonal(weight[..., 1:], dim1=2, dim2=3)  # (B, A, T)
    return cv.permute(0, 2, 1, 3), masses.transpose(1, 2), alpha.transpose(1, 2)
