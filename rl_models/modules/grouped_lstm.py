"""Per-track chunk encoders and track LSTMs, all tracks batched as grouped tensors.

G = 1 shares one set of weights across tracks (the default: a slot rarely seen in training
borrows what the others learned); G = C gives every track its own weights, the report's
per-track Bi-LSTMs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rl_models.modules.derived_tensors import derived, select_tracks

__all__ = ["GroupedLinear", "GroupedLSTM", "GroupedNewestBackwardStep", "bidirectional_step",
           "sigmoid_tanh"]


def sigmoid_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) computed as 2 sigmoid(2x) - 1.

    Equal to ``torch.tanh`` within float rounding; torch's CPU tanh kernel took 6x as long as
    its sigmoid per element on the project's machines (docs/throughput.md), and the policy's
    gates are mostly these two functions.
    """
    return torch.sigmoid(2.0 * x).mul(2.0).sub(1.0)


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


def _init(hidden: int, *shape: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(hidden)  # torch.nn.LSTM's init
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class GroupedLSTM(nn.Module):
    """The forward direction of the track LSTMs: one step per new chunk, state carried.

    Weights use torch's layout and gate order (i, f, g, o): ``weight_ih`` (G, 4h, e),
    ``weight_hh`` (G, 4h, h), ``bias`` (G, 4h). Shared weights (G = 1) run on torch's fused
    kernels (``torch.lstm_cell`` for one step, ``torch.lstm`` for a sequence); per-track
    weights (G = C) are one batched matmul over the track axis per step.

    Args:
        groups: Number of weight groups (1 shared, or C).
        input_size: Size of each chunk embedding (e).
        hidden_size: Hidden size (k / 2).
    """

    def __init__(self, groups: int, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = _init(hidden_size, groups, 4 * hidden_size, input_size)
        self.weight_hh = _init(hidden_size, groups, 4 * hidden_size, hidden_size)
        self.bias = _init(hidden_size, groups, 4 * hidden_size)
        self.register_buffer("_zero_bias", torch.zeros(4 * hidden_size), persistent=False)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
        tracks: torch.Tensor | None = None, real: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Runs T steps from state (h, c).

        Args:
            x: Chunk embeddings [shape=(B, T, A, e)].
            h: Hidden state [shape=(B, A, hidden)].
            c: Cell state [shape=(B, A, hidden)].
            tracks: Which tracks x holds [shape=(A,)] (per-track weights are picked by it);
                None: all C, in order.
            real: Which (sequence, track) pairs to compute [shape=(B, A)] bool, for shared
                weights over several steps; the others get zero outputs and keep their
                state. None: all.

        Returns:
            Outputs [shape=(B, T, A, hidden)], the last h and the last c.
        """
        b, t, a, e = x.shape
        hs = self.hidden_size
        if self.weight_hh.shape[0] == 1:
            w_ih, w_hh, bias = self.weight_ih[0], self.weight_hh[0], self.bias[0]
            if t == 1:
                h1, c1 = torch.lstm_cell(x.reshape(b * a, e), (h.reshape(b * a, hs),
                                         c.reshape(b * a, hs)), w_ih, w_hh, bias,
                                         self._zero_bias)
                h1, c1 = h1.view(b, a, hs), c1.view(b, a, hs)
                return h1.unsqueeze(1), h1, c1
            if real is not None and not bool(real.all()):
                return self._packed(x, h, c, real)
            seq = x.transpose(1, 2).reshape(b * a, t, e)
            out, h1, c1 = self._lstm(seq, h.reshape(b * a, hs), c.reshape(b * a, hs))
            out = out.view(b, a, t, hs).transpose(1, 2)
            return out, h1.view(b, a, hs), c1.view(b, a, hs)
        w_ih, w_hh, bias = self.weight_ih, self.weight_hh, self.bias
        if tracks is not None:
            w_ih, w_hh, bias = (select_tracks(self, p, 0, tracks) for p in (w_ih, w_hh, bias))
        # Input projections of every step at once: (A, B*T, 4h).
        xp = torch.matmul(x.permute(2, 0, 1, 3).reshape(a, b * t, e), w_ih.transpose(1, 2))
        xp = (xp + bias.unsqueeze(1)).view(a, b, t, 4 * hs)
        h, c = h.transpose(0, 1), c.transpose(0, 1)  # (A, B, hs)
        w_hh_t = w_hh.transpose(1, 2)
        outs = []
        for j in range(t):
            gates = xp[:, :, j] + torch.matmul(h, w_hh_t)
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * sigmoid_tanh(g)
            h = torch.sigmoid(o) * sigmoid_tanh(c)
            outs.append(h)
        out = torch.stack(outs, dim=2).permute(1, 2, 0, 3)  # (B, T, A, hs)
        return out, h.transpose(0, 1), c.transpose(0, 1)

    def _lstm(self, seq: torch.Tensor, h: torch.Tensor, c: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shared weights: torch's fused LSTM over seq (M, T, e) from (h, c) (M, hidden)."""
        out, h1, c1 = torch.lstm(seq, (h.unsqueeze(0), c.unsqueeze(0)),
                                 [self.weight_ih[0], self.weight_hh[0], self.bias[0],
                                  self._zero_bias], True, 1, 0.0, self.training, False, True)
        return out, h1.squeeze(0), c1.squeeze(0)

    def _packed(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, real: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shared weights over the ``real`` (sequence, track) pairs only.

        A training batch computes the union of its sequences' tracks, a quarter of whose
        (sequence, track) pairs are dummy slots of their sequence at the learning benchmark's
        songs; the LSTM is the largest part of a training step.
        """
        b, t, a, _ = x.shape
        hs = self.hidden_size
        pairs = real.reshape(-1).nonzero().squeeze(1)
        seq = x.transpose(1, 2)[real]  # (P, T, e)
        h, c = h.reshape(b * a, hs), c.reshape(b * a, hs)
        out_p, h_p, c_p = self._lstm(seq, h.index_select(0, pairs), c.index_select(0, pairs))
        out = out_p.new_zeros(b * a, t, hs).index_copy(0, pairs, out_p)
        out = out.view(b, a, t, hs).transpose(1, 2)
        h1, c1 = h.index_copy(0, pairs, h_p), c.index_copy(0, pairs, c_p)
        return out, h1.view(b, a, hs), c1.view(b, a, hs)


class GroupedNewestBackwardStep(nn.Module):
    """The backward direction of a Bi-LSTM over chunks 1..t, at its newest position t.

    The backward LSTM starts at chunk t from a zero state, so its output at position t is one
    cell step without recurrence or forget gate: ``c = sig(i) tanh(g)``, ``h = sig(o) tanh(c)``.
    Weights (G, 3h, e) in gate order (i, g, o), bias (G, 3h).

    Args:
        groups: Number of weight groups (1 shared, or C).
        input_size: Size of each chunk embedding (e).
        hidden_size: Hidden size (k / 2).
    """

    def __init__(self, groups: int, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = GroupedLinear(groups, input_size, 3 * hidden_size)
        scale = torch.ones(3 * hidden_size)
        scale[hidden_size:2 * hidden_size] = 2.0  # tanh(g) = 2 sigmoid(2g) - 1
        self.register_buffer("_gate_scale", scale, persistent=False)

    def forward(self, x: torch.Tensor, tracks: torch.Tensor | None = None) -> torch.Tensor:
        """Maps chunk embeddings [shape=(N, A, e)] to outputs [shape=(N, A, hidden)].

        All three gates come out of one sigmoid over the whole projection: a sigmoid per
        gate reads a strided third of it, which took 3x as long on CPU.
        """
        gates = torch.sigmoid(self.proj(x, tracks) * self._gate_scale)
        i, g, o = gates.chunk(3, dim=-1)
        return o * sigmoid_tanh(i * (2.0 * g - 1.0))


def _fused_weights(lstm: GroupedLSTM, backward: GroupedNewestBackwardStep
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """[x, h] @ W + b gives both directions' gate inputs, the tanh gates' doubled.

    W (e + hs, 7 hs) holds the forward LSTM's input and recurrent weights (gates i, f, g, o)
    beside the backward step's input weights (i, g, o; no recurrent input: zeros).
    """
    hs = lstm.hidden_size
    w_ih, w_hh, bias = lstm.weight_ih[0], lstm.weight_hh[0], lstm.bias[0]
    w_back, b_back = backward.proj.weight[0], backward.proj.bias[0]
    weight = torch.cat([torch.cat([w_ih.T, w_back], 1),
                        torch.cat([w_hh.T, w_hh.new_zeros(hs, 3 * hs)], 1)], 0)
    forward_scale = torch.ones(4 * hs, dtype=weight.dtype, device=weight.device)
    forward_scale[2 * hs:3 * hs] = 2.0  # forward g
    scale = torch.cat([forward_scale, backward._gate_scale])  # backward: (i, 2g, o)
    return weight * scale, torch.cat([bias, b_back]) * scale


def bidirectional_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, lstm: GroupedLSTM,
                       backward: GroupedNewestBackwardStep
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of a shared-weight (G = 1) track Bi-LSTM: one matmul and one sigmoid.

    Equals ``lstm`` for one step and ``backward`` on the same input (tested): tanh(g) is
    2 sigmoid(2g) - 1, the doubling folded into the weights, so every gate of both directions
    comes out of a single sigmoid.

    Args:
        x: Chunk embeddings [shape=(M, e)].
        h: Forward hidden state [shape=(M, hs)].
        c: Forward cell state [shape=(M, hs)].
        lstm: The forward direction (its weights).
        backward: The backward direction's newest step (its weights).

    Returns:
        The forward output (= new h), the new c, and the backward output, each (M, hs).
    """
    hs = lstm.hidden_size
    weight, bias = derived(lstm, "bidirectional_step", (
        lstm.weight_ih, lstm.weight_hh, lstm.bias, backward.proj.weight, backward.proj.bias),
        lambda: _fused_weights(lstm, backward))
    gates = torch.sigmoid(torch.addmm(bias, torch.cat([x, h], 1), weight))
    i, f, g, o, bi, bg, bo = gates.split(hs, 1)
    c1 = f * c + i * (2.0 * g - 1.0)
    h1 = o * sigmoid_tanh(c1)
    return h1, c1, bo * sigmoid_tanh(bi * (2.0 * bg - 1.0))
