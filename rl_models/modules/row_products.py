"""Per-row products of a track axis with one vector per row, with cheap backward passes.

Both are batched matrix-vector products, which ``torch.bmm`` computes well forward; its
autograd backward, though, turns one of the two gradients into a batched outer product (a
``bmm`` with an inner size of 1), which on CPU costs several times a broadcast multiply
(measured 2.5 -> 1.4 ms forward + backward at 1,024 rows of 24 tracks x 48). These functions
compute the same values and gradients, the outer products as broadcast multiplies.
"""

from __future__ import annotations

import torch

__all__ = ["row_dot", "row_weighted_sum"]


class _RowDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, y)
        return torch.bmm(x, y.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, y = ctx.saved_tensors
        grad_x = grad.unsqueeze(-1) * y.unsqueeze(1) if ctx.needs_input_grad[0] else None
        grad_y = (torch.bmm(grad.unsqueeze(1), x).squeeze(1) if ctx.needs_input_grad[1]
                  else None)
        return grad_x, grad_y


class _RowWeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w, v)
        return torch.bmm(w.unsqueeze(1), v).squeeze(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        w, v = ctx.saved_tensors
        grad_w = (torch.bmm(v, grad.unsqueeze(-1)).squeeze(-1) if ctx.needs_input_grad[0]
                  else None)
        grad_v = w.unsqueeze(-1) * grad.unsqueeze(1) if ctx.needs_input_grad[1] else None
        return grad_w, grad_v


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def row_dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(x * y[:, None]).sum(-1)``: each track's dot with its row's vector.

    Args:
        x: Per-track vectors [shape=(N, A, k)].
        y: One vector per row [shape=(N, k)].

    Returns:
        [shape=(N, A)].
    """
    if _needs_grad(x, y):
        return _RowDot.apply(x, y)
    return torch.bmm(x, y.unsqueeze(-1)).squeeze(-1)  # acting: no Function's bookkeeping


def row_weighted_sum(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(w[..., None] * v).sum(1)``: each row's tracks summed with weights.

    Args:
        w: Weight per track [shape=(N, A)].
        v: Per-track vectors [shape=(N, A, k)].

    Returns:
        [shape=(N, k)].
    """
    if _needs_grad(w, v):
        return _RowWeightedSum.apply(w, v)
    return torch.bmm(w.unsqueeze(1), v).squeeze(1)
