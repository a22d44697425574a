"""The attention-LSTM policy network of report 4.1-4.2, as a plain torch module.

Kept apart from the RLlib wrapper so the whole policy path is one `nn.Module` that APPO's
target network can deep-copy.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rl_models.modules.config import DB_CENTER, DB_SPREAD, AttentionLSTMConfig
from rl_models.modules.derived_tensors import select_tracks
from rl_models.modules.grouped_lstm import GroupedBiLSTM, GroupedLinear

__all__ = ["AttentionLSTMCore", "masked_softmax"]

_LOG_KAPPA_MIN, _LOG_KAPPA_MAX = math.log(1e-2), math.log(1e4)


def masked_softmax(x: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over `dim` where `mask` is True; masked entries are exactly 0.

    An all-masked row gives all zeros (not NaN), so zero-padded time steps stay finite.
    """
    x = x.masked_fill(~mask, torch.finfo(x.dtype).min)
    return torch.softmax(x, dim=dim) * mask


class AttentionLSTMCore(nn.Module):
    """Per-track Bi-LSTMs + mix Uni-LSTM + position/track attention -> Dirichlet inputs.

    Args:
        config: The validated hyperparameters.
        n_tracks: C, the number of track slots.
        n_features: F, the size of one chunk's features (500 raw samples, or n log-mels).
        n_mfcc: Size of the mix MFCC observation.
    """

    skip_dummy_tracks = True
    """Compute only the tracks real in some row of a batch (exact; False: every slot, the
    tests' reference)."""

    def __init__(
        self, config: AttentionLSTMConfig, *, n_tracks: int, n_features: int, n_mfcc: int
    ) -> None:
        super().__init__()
        cfg = self.config = config
        self.n_tracks = n_tracks
        groups = 1 if cfg.share_encoder else n_tracks
        k, l_, r = cfg.hidden_size, cfg.mix_hidden_size, cfg.attention_dim
        in_features = n_features + int(cfg.log_rms_feature)
        self.embed = GroupedLinear(groups, in_features, cfg.embed_dim)
        self.bilstm = GroupedBiLSTM(groups, cfg.embed_dim, k // 2)
        self.mix_lstm = nn.LSTM(n_mfcc, l_, batch_first=True)
        # Report 4.2: H_i, F_i (r x k) per track; B1, B2 (r x l). Stored as (r, C, k), so
        # H[:, i] is H_i and H_i^T u for all tracks is one (N, r) @ (r, C*k) matmul.
        self.H = nn.Parameter(torch.randn(r, n_tracks, k) / math.sqrt(k))
        self.F = nn.Parameter(torch.randn(r, n_tracks, k) / math.sqrt(k))
        self.B1 = nn.Parameter(torch.randn(r, l_) / math.sqrt(l_ * r))
        self.B2 = nn.Parameter(torch.randn(r, l_) / math.sqrt(l_ * r))
        log_kappa = torch.tensor(math.log(cfg.concentration_scale))
        if cfg.learn_concentration_scale:
            self.log_kappa = nn.Parameter(log_kappa)
        else:
            self.register_buffer("log_kappa", log_kappa)

    def _active_tracks(self, mask: torch.Tensor) -> torch.Tensor | None:
        """Indices of the tracks real in some row of ``mask`` (N, C); None: compute all."""
        active = mask.any(0)
        if not self.skip_dummy_tracks or bool(active.all()) or not bool(active.any()):
            return None
        return active.nonzero().squeeze(1)

    @staticmethod
    def _to_slots(x: torch.Tensor, tracks: torch.Tensor | None, c: int) -> torch.Tensor:
        """Places per-active-track values x (N, A, ...) in their C slots, zeros elsewhere."""
        if tracks is None:
            return x
        return x.new_zeros((x.shape[0], c, *x.shape[2:])).index_copy(1, tracks, x)

    def _mix_lstm(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The Uni-LSTM over x (B, T, n_mfcc) from (h, c) (B, l): outputs, last h, last c."""
        lstm = self.mix_lstm
        if x.shape[1] == 1:  # one step (inference): the bare cell, a third of nn.LSTM's cost
            h, c = torch.lstm_cell(x[:, 0], (h, c), lstm.weight_ih_l0, lstm.weight_hh_l0,
                                   lstm.bias_ih_l0, lstm.bias_hh_l0)
            return h.unsqueeze(1), h, c
        out, (h_n, c_n) = lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
        return out, h_n.squeeze(0), c_n.squeeze(0)

    def chunk_features(self, chunks: torch.Tensor) -> torch.Tensor:
        """Normalizes chunks [shape=(..., F)] and appends the log-RMS feature if configured."""
        cfg = self.config
        if cfg.input_norm == "mu_law":
            x = torch.sign(chunks) * torch.log1p(cfg.mu * chunks.abs()) / math.log1p(cfg.mu)
        elif cfg.input_norm == "layer_norm":
            x = nn.functional.layer_norm(chunks, chunks.shape[-1:])
        elif cfg.input_norm == "db":
            x = (chunks - DB_CENTER) / DB_SPREAD
        else:
            x = chunks
        if cfg.log_rms_feature:
            level = torch.log(chunks.square().mean(-1, keepdim=True) + 1e-8) / 10.0
            x = torch.cat([x, level], dim=-1)
        return x

    def forward(
        self,
        chunks: torch.Tensor,
        mix_mfcc: torch.Tensor,
        track_mask: torch.Tensor,
        state: dict[str, torch.Tensor],
        need_features: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Runs B sequences of T steps from the given recurrent state.

        Args:
            chunks: Latest chunk per track [shape=(B, T, C, F)].
            mix_mfcc: Mix MFCC of the previous step [shape=(B, T, n_mfcc)].
            track_mask: 1 real, 0 dummy [shape=(B, T, C)].
            state: ``window`` (B, C, W, e), ``count`` (B, 1), ``h`` and ``c`` (B, l).
            need_features: Compute the value head's ``features`` (None otherwise: acting
                needs only the action distribution).

        Returns:
            dict with ``concentration`` and ``beta`` (B, T, C), ``alpha`` (B, T, C, W),
            ``features`` (B, T, 2k + l) for the value head, and ``state_out`` (as ``state``).
        """
        cfg = self.config
        b, t, c, _ = chunks.shape
        w = cfg.window
        n = b * t
        mask = track_mask.reshape(n, c) > 0.5
        # Only tracks real in some row are computed: a dummy slot's outputs are masked out
        # of everything downstream, so skipping it is exact, and a song rarely fills all C
        # slots. Skipped slots get zeros in alpha, beta and the state window.
        tracks = self._active_tracks(mask)
        active = chunks if tracks is None else chunks.index_select(2, tracks)
        a = active.shape[2]
        emb = torch.tanh(self.embed(self.chunk_features(active).reshape(n, a, -1), tracks))
        emb = self._to_slots(emb, tracks, c).view(b, t, c, -1)
        # Window at step j = the last W embeddings of [state window, embeddings 0..j].
        full = torch.cat([state["window"].transpose(1, 2), emb], dim=1)  # (B, W+T, C, e)
        active_full = full if tracks is None else full.index_select(2, tracks)
        windows = active_full.unfold(1, w, 1)[:, 1:]  # (B, T, A, e, W)
        windows = windows.permute(0, 1, 2, 4, 3).reshape(n, a, w, -1)
        steps = torch.arange(1, t + 1, device=chunks.device, dtype=state["count"].dtype)
        counts = (state["count"] + steps).clamp(max=w)  # (B, T)
        positions = torch.arange(w, device=chunks.device, dtype=counts.dtype)
        valid = (positions >= w - counts.unsqueeze(-1)).view(n, w)

        hs = self.bilstm(windows, valid, tracks)  # (N, A, W, k)
        bt, h_n, c_n = self._mix_lstm(mix_mfcc * cfg.mfcc_scale, state["h"], state["c"])
        bt = bt.reshape(n, -1)  # b_t, (N, l)

        H, F = self.H, self.F
        if tracks is not None:
            H, F = select_tracks(self, H, 1, tracks), select_tracks(self, F, 1, tracks)
            mask_a = mask[:, tracks]
        else:
            mask_a = mask
        # lambda_is = (B1 b_t)^T (H_i h_is), computed as (H_i^T B1 b_t)^T h_is.
        query = ((bt @ self.B1.T) @ H.flatten(1)).view(n, a, -1)
        lam = torch.einsum("ncwk,nck->ncw", hs, query)
        alpha = masked_softmax(lam, valid.unsqueeze(1))
        cv = torch.einsum("ncw,ncwk->nck", alpha, hs)  # CV_i
        # gamma_i = (B2 b_t)^T (F_i CV_i).
        key = ((bt @ self.B2.T) @ F.flatten(1)).view(n, a, -1)
        gamma = (key * cv).sum(-1)
        beta_a = masked_softmax(gamma, mask_a)
        beta = self._to_slots(beta_a, tracks, c)
        alpha = self._to_slots(alpha * mask_a.unsqueeze(-1), tracks, c)

        n_real = mask.sum(-1, keepdim=True).to(beta.dtype)
        kappa = self.log_kappa.clamp(_LOG_KAPPA_MIN, _LOG_KAPPA_MAX).exp()
        concentration = kappa * n_real * beta + cfg.concentration_floor

        features = None
        if need_features:
            maskf = mask_a.to(cv.dtype)
            mean_cv = (cv * maskf.unsqueeze(-1)).sum(1) / n_real.clamp_min(1.0)
            pooled = (cv * beta_a.unsqueeze(-1)).sum(1)
            features = torch.cat([pooled, mean_cv, bt], dim=-1).view(b, t, -1)

        return {
            "concentration": concentration.view(b, t, c),
            "beta": beta.view(b, t, c),
            "alpha": alpha.view(b, t, c, w),
            "features": features,
            "state_out": {
                "window": full[:, t:].transpose(1, 2),
                "count": counts[:, -1:],
                "h": h_n,
                "c": c_n,
            },
        }
