"""Per-track chunk encoders and Bi-LSTMs, all C tracks batched as grouped tensors."""

from __future__ import annotations

import math

import torch
from torch import nn

from rl_models.modules.derived_tensors import derived, select_tracks

__all__ = ["GroupedLinear", "GroupedBiLSTM"]


class GroupedLinear(nn.Module):
    """G independent linear maps applied along a track axis (G = C, or 1 = shared).

    Args:
        groups: Number of weight groups; 1 shares one map across all tracks.
        in_features: Input size.
        out_features: Output size.
    """

    def __init__(self, groups: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(groups, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(groups, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, tracks: torch.Tensor | None = None) -> torch.Tensor:
        """Maps x [shape=(N, A, in)] to [shape=(N, A, out)] with each track's weights.

        ``tracks`` [shape=(A,)] names the tracks x holds (None: all C, in order).
        """
        if self.weight.shape[0] == 1:  # shared: one plain matmul, no per-track weight copies
            return x @ self.weight[0] + self.bias[0]
        weight, bias = self.weight, self.bias
        if tracks is not None:
            weight, bias = (select_tracks(self, p, 0, tracks) for p in (weight, bias))
        return torch.matmul(x.transpose(0, 1), weight).transpose(0, 1) + bias


class GroupedBiLSTM(nn.Module):
    """C bidirectional single-layer LSTMs with their own weights, run as one grouped LSTM.

    Both directions and all groups are one batched matmul per time step: the recurrent
    weights have shape (2 directions, G, hidden, 4 * hidden). Gate order is (i, f, o, g).

    Args:
        groups: Number of weight groups (C, or 1 for a shared encoder).
        input_size: Size of each position's input (the chunk embedding, e).
        hidden_size: Hidden size per direction (k / 2).
    """

    def __init__(self, groups: int, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        bound = 1.0 / math.sqrt(hidden_size)  # torch.nn.LSTM's init
        g4 = 4 * hidden_size
        self.weight_ih = nn.Parameter(
            torch.empty(2, groups, input_size, g4).uniform_(-bound, bound)
        )
        self.weight_hh = nn.Parameter(
            torch.empty(2, groups, hidden_size, g4).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(2, groups, 1, g4).uniform_(-bound, bound))
        # Rows of torch's LSTM weights in its gate order (i, f, g, o), from ours (i, f, o, g).
        h = hidden_size
        order = torch.cat([torch.arange(0, 2 * h), torch.arange(3 * h, 4 * h),
                           torch.arange(2 * h, 3 * h)])
        self.register_buffer("_torch_gate_order", order, persistent=False)

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor, tracks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Runs both directions over each window.

        Args:
            x: Windows of chunk embeddings [shape=(N, A, W, e)], oldest position first.
            valid: Which positions hold a chunk already seen [shape=(N, W)] bool. Invalid
                positions must precede valid ones (a left-padded window): the forward
                direction skips them (its state stays zero), the backward direction reaches
                them only after every valid position.
            tracks: Which tracks x holds [shape=(A,)] (per-track weights are picked by it);
                None: all C, in order.

        Returns:
            h_is, the concatenated forward and backward outputs [shape=(N, A, W, 2 * hidden)].
            Outputs at invalid positions are meaningless; mask them downstream.
        """
        if self.weight_hh.shape[1] == 1:
            # Shared weights: windows whose positions are all seen (every step once W chunks
            # have played) go through torch's fused LSTM kernel, one call for both directions.
            full = valid.all(dim=1)
            if bool(full.all()):
                return self._fused(x)
            if bool(full.any()):
                rows_full, rows_part = full.nonzero().squeeze(1), (~full).nonzero().squeeze(1)
                out = self._fused(x[rows_full])
                out = out.new_zeros((x.shape[0], *out.shape[1:])).index_put(
                    (rows_full,), out)
                return out.index_put((rows_part,), self._loop(x[rows_part], valid[rows_part]))
        return self._loop(x, valid, tracks)

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        """Shared-weight Bi-LSTM over fully valid windows with ``torch.lstm`` (same maths)."""
        n, c, w, e = x.shape
        hs = self.hidden_size
        params = derived(self, "torch_lstm_weights", (self.weight_ih, self.weight_hh, self.bias),
                         self._torch_lstm_weights)
        h0 = x.new_zeros(2, n * c, hs)
        out, _, _ = torch.lstm(x.reshape(n * c, w, e), (h0, h0), params, True, 1, 0.0,
                               self.training, True, True)
        return out.view(n, c, w, 2 * hs)

    def _torch_lstm_weights(self) -> list[torch.Tensor]:
        """The shared weights in ``torch.lstm``'s layout and gate order, both directions."""
        params = []
        for d in range(2):
            params += [
                self.weight_ih[d, 0].T[self._torch_gate_order],
                self.weight_hh[d, 0].T[self._torch_gate_order],
                self.bias[d, 0, 0][self._torch_gate_order],
                self.bias.new_zeros(4 * self.hidden_size),  # torch's second bias; ours is one
            ]
        return params

    def _loop(
        self, x: torch.Tensor, valid: torch.Tensor, tracks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Both directions step by step, all groups in one batched matmul per position."""
        n, c, w, e = x.shape
        hs = self.hidden_size
        weight_ih, weight_hh, bias = self.weight_ih, self.weight_hh, self.bias
        # Shared weights (G = 1) fold the tracks into the matmul's rows; per-track weights
        # (G = C) are one batched matmul over the track axis. Never expand the weights.
        g = weight_hh.shape[1]
        rows = c if g == 1 else 1
        if g > 1 and tracks is not None:
            weight_ih, weight_hh, bias = (select_tracks(self, p, 1, tracks)
                                          for p in (weight_ih, weight_hh, bias))
        # Input projections for every position at once: (2, G, rows*N*W, 4h).
        xp = torch.matmul(x.transpose(0, 1).reshape(1, c // rows, rows * n * w, e), weight_ih)
        xp = (xp + bias).view(2, c, n, w, 4 * hs)
        # Time-reverse the backward direction so step j reads position j of both.
        xp = torch.cat([xp[:1], xp[1:].flip(3)], dim=0)
        need_mask = not bool(valid.all())
        if need_mask:
            vm = torch.stack([valid, valid.flip(1)]).view(2, 1, n, w, 1)
        h = x.new_zeros(2, c, n, hs)
        cell = x.new_zeros(2, c, n, hs)
        outs = []
        for j in range(w):
            rec = torch.matmul(h.view(2, c // rows, rows * n, hs), weight_hh)
            gates = xp[:, :, :, j] + rec.view(2, c, n, 4 * hs)
            sig = torch.sigmoid(gates[..., : 3 * hs])
            i, f, o = sig.chunk(3, dim=-1)
            cell_new = f * cell + i * torch.tanh(gates[..., 3 * hs :])
            h_new = o * torch.tanh(cell_new)
            if need_mask:
                m = vm[:, :, :, j]
                cell = torch.where(m, cell_new, cell)
                h = torch.where(m, h_new, h)
            else:
                cell, h = cell_new, h_new
            outs.append(h)
        out = torch.stack(outs, dim=3)  # (2, C, N, W, hs)
        out = torch.cat([out[0], out[1].flip(2)], dim=-1)  # (C, N, W, 2hs)
        return out.transpose(0, 1)
