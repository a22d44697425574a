"""The attention-LSTM policy network of report 4.1-4.2, as a plain torch module.

Kept apart from the RLlib wrapper so the whole policy path is one `nn.Module` that APPO's
target network can deep-copy. Every step costs O(1) recurrent steps per track, whatever the
song's length: see `AttentionLSTMCore`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mixing_env.errors import ConfigError
from rl_models.modules.config import DB_CENTER, DB_SPREAD, AttentionLSTMConfig
from rl_models.modules.derived_tensors import select_tracks
from rl_models.modules.grouped_lstm import (
    GroupedLinear,
    GroupedLSTM,
    GroupedNewestBackwardStep,
    bidirectional_step,
    sigmoid_tanh,
)
from rl_models.modules.row_products import row_dot, row_weighted_sum
from rl_models.modules.running_attention import running_attention

__all__ = ["DB_TO_LOG_GAIN", "PRIOR_NOBODY_PLAYS_DB", "PRIOR_SILENT_DB", "AttentionLSTMCore",
           "masked_softmax", "track_self_attention"]

_LOG_KAPPA_MIN, _LOG_KAPPA_MAX = math.log(1e-2), math.log(1e4)
PRIOR_SILENT_DB = -60.0
"""The level prior clamps levels to [this, 0] dB and treats a track at this as not playing
(yet): it takes the mean level of the tracks that play."""
PRIOR_NOBODY_PLAYS_DB = -20.0
"""The level the prior gives every track while none plays."""
DB_TO_LOG_GAIN = math.log(10.0) / 20.0
"""dB -> natural-log gain."""


def masked_softmax(x: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over `dim` where `mask` is True; masked entries are exactly 0.

    An all-masked row gives all zeros (not NaN), so zero-padded time steps stay finite.
    """
    x = x.masked_fill(~mask, torch.finfo(x.dtype).min)
    return torch.softmax(x, dim=dim) * mask


def track_self_attention(mixer: nn.MultiheadAttention, x: torch.Tensor,
                         silent: torch.Tensor) -> torch.Tensor:
    """``mixer(x, x, x, key_padding_mask=silent, need_weights=False)[0]``, in eight ops.

    The same computation as torch's one-head ``MultiheadAttention`` (input projection,
    softmax(q k^T / sqrt(e)) with the silent tracks' keys at -inf, output projection), equal
    within float rounding (tested), without its argument checks and dispatch, which cost more
    than the arithmetic at a few dozen tracks per row.

    Args:
        mixer: One-head, ``batch_first`` self-attention whose weights are used.
        x: Track embeddings [shape=(N, A, e)].
        silent: True where a track must not be attended to [shape=(N, A)] (never a whole row).
    """
    q, k, v = nn.functional.linear(x, mixer.in_proj_weight, mixer.in_proj_bias).chunk(3, -1)
    keys = x.new_zeros(silent.shape).masked_fill_(silent, float("-inf")).unsqueeze(1)
    scores = torch.baddbmm(keys, q, k.transpose(1, 2), alpha=1.0 / math.sqrt(x.shape[-1]))
    return nn.functional.linear(torch.bmm(torch.softmax(scores, -1), v),
                                mixer.out_proj.weight, mixer.out_proj.bias)


def _row_dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(x * y).sum(-1)`` for x (N, A, k) and y (N, A, k) or (N, 1, k) [shape=(N, A)].

    With one y per row (shared H, F) it is a batched matrix-vector product
    (:func:`row_dot`), which neither forward nor backward expands to (N, A, k) products.
    """
    if y.shape[1] == 1 and x.shape[1] != 1:
        return row_dot(x, y.squeeze(1))
    return (x * y).sum(-1)


class AttentionLSTMCore(nn.Module):
    """Track encoders + mix Uni-LSTM + position/track attention -> Dirichlet inputs.

    Per step t and track i: the newest chunk is embedded (plus a per-slot embedding); the
    forward direction of the track's Bi-LSTM advances one step from its carried state; the
    backward direction, which over chunks 1..t starts at t, gives its output at t from one
    cell step. h_it = [forward, backward] (k). The mix Uni-LSTM gives b_t. The position score
    lambda_it = (B1 b_t)^T (H_i h_it) is computed once, when chunk t arrives, and the context
    CV_i = sum_{s<=t} alpha_is h_is with alpha = softmax over all positions s = 1..t is kept
    as a running sum (`running_attention`). gamma_i = (B2 b_t)^T (F_i CV_i) (+ the optional
    loudness prior; with ``residual_gate``, g * gamma_i + prior_i), beta = softmax over real
    tracks.

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
        self.n_tracks, self.n_features = n_tracks, n_features
        groups = 1 if cfg.share_encoder else n_tracks
        k, l_, r, e = cfg.hidden_size, cfg.mix_hidden_size, cfg.attention_dim, cfg.embed_dim
        self.embed = GroupedLinear(groups, n_features + int(cfg.log_rms_feature), e)
        self.slot_embedding = (nn.Parameter(torch.randn(n_tracks, e) * 0.1)
                               if cfg.slot_embedding else None)
        self.track_mixer = (nn.MultiheadAttention(e, 1, batch_first=True)
                            if cfg.cross_track_attention else None)
        self.forward_lstm = GroupedLSTM(groups, e, k // 2)
        self.backward_step = GroupedNewestBackwardStep(groups, e, k // 2)
        self.mix_lstm = nn.LSTM(n_mfcc, l_, batch_first=True)
        # Report 4.2: H_i, F_i (r x k) per track (G = C) or one shared (G = 1); B1, B2 (r x l).
        # Stored as (r, G, k), so H_i^T u for all tracks is one (N, r) @ (r, G*k) matmul.
        self.H = nn.Parameter(torch.randn(r, groups, k) / math.sqrt(k))
        self.F = nn.Parameter(torch.randn(r, groups, k) / math.sqrt(k))
        self.B1 = nn.Parameter(torch.randn(r, l_) / math.sqrt(l_ * r))
        self.B2 = nn.Parameter(torch.randn(r, l_) / math.sqrt(l_ * r))
        self._param_or_buffer("log_kappa", torch.tensor(math.log(cfg.concentration_scale)),
                              cfg.learn_concentration_scale)
        self.has_prior = cfg.level_prior is not None
        if self.has_prior:
            if not -n_features <= cfg.level_prior_feature < n_features:
                raise ConfigError(f"model_config['level_prior_feature'] = "
                                  f"{cfg.level_prior_feature} is outside the {n_features} "
                                  "chunk features")
            self._param_or_buffer("prior_weight", torch.tensor(float(cfg.level_prior)),
                                  cfg.learn_level_prior)
            bias = torch.zeros(n_tracks)
            if cfg.level_prior_bias_db is not None:
                if len(cfg.level_prior_bias_db) != n_tracks:
                    raise ConfigError(f"model_config['level_prior_bias_db'] has "
                                      f"{len(cfg.level_prior_bias_db)} values, the slot layout "
                                      f"{n_tracks} slots: one bias per slot")
                bias = torch.tensor(cfg.level_prior_bias_db, dtype=torch.float32) * DB_TO_LOG_GAIN
            self._param_or_buffer("prior_bias", bias, cfg.learn_level_prior)
        self.residual_gate = (None if cfg.residual_gate is None
                              else nn.Parameter(torch.tensor(float(cfg.residual_gate))))

    def _param_or_buffer(self, name: str, value: torch.Tensor, learn: bool) -> None:
        if learn:
            setattr(self, name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def _active_tracks(self, mask: torch.Tensor) -> torch.Tensor | None:
        """Indices of the tracks real in some row of ``mask`` (N, C); None: compute all."""
        active = mask.any(0)
        if not self.skip_dummy_tracks or bool(active.all()) or not bool(active.any()):
            return None
        return active.nonzero().squeeze(1)

    @staticmethod
    def _to_slots(x: torch.Tensor, tracks: torch.Tensor | None, c: int,
                  base: torch.Tensor | None = None) -> torch.Tensor:
        """Places per-active-track values x (N, A, ...) in their C slots of ``base``.

        ``base`` None: zeros elsewhere.
        """
        if tracks is None:
            return x
        if base is None:
            base = x.new_zeros((x.shape[0], c, *x.shape[2:]))
        return base.index_copy(1, tracks, x)

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

    def level_prior(self, chunks: torch.Tensor, mask: torch.Tensor,
                    tracks: torch.Tensor | None) -> torch.Tensor:
        """Prior logits w * (-ln10/20) * level_i + bias_i [shape=(N, A)] (see the config).

        Args:
            chunks: Raw chunk features of the computed tracks [shape=(N, A, F)].
            mask: Which of them are real [shape=(N, A)] bool.
            tracks: Their slots [shape=(A,)]; None: all C.
        """
        level = chunks[..., self.config.level_prior_feature].clamp(PRIOR_SILENT_DB, 0.0)
        playing = mask & (level > PRIOR_SILENT_DB)
        n_playing = playing.sum(-1, keepdim=True)
        mean = (level * playing).sum(-1, keepdim=True) / n_playing.clamp_min(1)
        mean = torch.where(n_playing > 0, mean, torch.full_like(mean, PRIOR_NOBODY_PLAYS_DB))
        level = torch.where(playing, level, mean)
        bias = self.prior_bias if tracks is None else self.prior_bias[tracks]
        return -DB_TO_LOG_GAIN * self.prior_weight * level + bias

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
            state: ``track_h``, ``track_c`` (B, C, k/2), ``log_mass`` (B, C), ``context``
                (B, C, k), ``h`` and ``c`` (B, l).
            need_features: Compute the value head's ``features`` (None otherwise: acting
                needs only the action distribution).

        Returns:
            dict with ``concentration``, ``beta`` and ``alpha`` (the newest position's
            attention weight) (B, T, C), ``features`` (B, T, 2k + l) for the value head, and
            ``state_out`` (as ``state``).
        """
        cfg = self.config
        b, t, c, _ = chunks.shape
        n = b * t
        mask = track_mask.reshape(n, c) > 0.5
        # Only tracks real in some row are computed: a dummy slot's outputs are masked out
        # of everything downstream, so skipping it is exact, and a song rarely fills all C
        # slots. Skipped slots keep their state and get zeros in alpha and beta.
        tracks = self._active_tracks(mask)
        pick = (lambda x, dim: x) if tracks is None else (
            lambda x, dim: x.index_select(dim, tracks))
        active = pick(chunks, 2).reshape(n, -1, chunks.shape[-1])
        a = active.shape[1]
        mask_a = pick(mask, 1)
        emb = self.embed(self.chunk_features(active), tracks)
        if self.slot_embedding is not None:
            emb = emb + pick(self.slot_embedding, 0)
        emb = sigmoid_tanh(emb)  # (N, A, e)
        if self.track_mixer is not None:  # each track hears the other real tracks
            silent = ~mask_a
            silent = silent & ~silent.all(-1, keepdim=True)  # a padded row: no NaN softmax
            heard = track_self_attention(self.track_mixer, emb, silent)
            emb = emb + torch.where(mask_a.unsqueeze(-1), heard, torch.zeros_like(heard))
        h0, c0 = pick(state["track_h"], 1), pick(state["track_c"], 1)
        if t == 1 and self.forward_lstm.weight_hh.shape[0] == 1:  # acting, shared weights
            k2 = h0.shape[-1]
            h1, c1, back = bidirectional_step(emb.reshape(-1, emb.shape[-1]), h0.reshape(-1, k2),
                                              c0.reshape(-1, k2), self.forward_lstm,
                                              self.backward_step)
            track_h, track_c = h1.view(b, a, k2), c1.view(b, a, k2)
            hs = torch.cat([h1, back], -1).view(n, a, -1)  # h_it
        else:
            # Only the (sequence, track) pairs real in their sequence run; a dummy pair keeps
            # its state, which is never read (its outputs are masked, a song keeps its tracks).
            real = mask_a.view(b, t, a).any(1) if self.skip_dummy_tracks else None
            fwd, track_h, track_c = self.forward_lstm(emb.view(b, t, a, -1), h0, c0, tracks,
                                                      real)
            hs = torch.cat([fwd.reshape(n, a, -1), self.backward_step(emb, tracks)], -1)
        bt, h_n, c_n = self._mix_lstm(mix_mfcc * cfg.mfcc_scale, state["h"], state["c"])
        bt = bt.reshape(n, -1)  # b_t, (N, l)

        H, F = self.H, self.F
        if tracks is not None and H.shape[1] > 1:
            H, F = select_tracks(self, H, 1, tracks), select_tracks(self, F, 1, tracks)
        # lambda_it = (B1 b_t)^T (H_i h_it), computed as (H_i^T B1 b_t)^T h_it.
        query = ((bt @ self.B1.T) @ H.flatten(1)).view(n, H.shape[1], -1)
        lam = _row_dot(hs, query).view(b, t, a)
        cv, log_mass, alpha = running_attention(
            lam, hs.view(b, t, a, -1), pick(state["log_mass"], 1), pick(state["context"], 1))
        cv = cv.reshape(n, a, -1)  # CV_i
        # gamma_i = (B2 b_t)^T (F_i CV_i).
        key = ((bt @ self.B2.T) @ F.flatten(1)).view(n, F.shape[1], -1)
        gamma = _row_dot(cv, key)
        if self.residual_gate is not None:  # the attention learns a correction of the prior
            gamma = self.residual_gate * gamma
        if self.has_prior:
            gamma = gamma + self.level_prior(active, mask_a, tracks)
        beta_a = masked_softmax(gamma, mask_a)
        beta = self._to_slots(beta_a, tracks, c)
        alpha = self._to_slots(alpha.reshape(n, a) * mask_a, tracks, c)

        n_real = mask.sum(-1, keepdim=True).to(beta.dtype)
        kappa = self.log_kappa.clamp(_LOG_KAPPA_MIN, _LOG_KAPPA_MAX).exp()
        concentration = kappa * n_real * beta + cfg.concentration_floor

        features = None
        if need_features:
            # sum_i w_i CV_i as (1, A) @ (A, k) per row: no (N, A, k) temporaries.
            maskf = mask_a.to(cv.dtype)
            mean_cv = row_weighted_sum(maskf, cv) / n_real.clamp_min(1.0)
            pooled = row_weighted_sum(beta_a, cv)
            features = torch.cat([pooled, mean_cv, bt], dim=-1).view(b, t, -1)

        def keep(name: str, new: torch.Tensor) -> torch.Tensor:
            return self._to_slots(new, tracks, c, state[name])

        return {
            "concentration": concentration.view(b, t, c),
            "beta": beta.view(b, t, c),
            "alpha": alpha.view(b, t, c),
            "features": features,
            "state_out": {
                "track_h": keep("track_h", track_h),
                "track_c": keep("track_c", track_c),
                "log_mass": keep("log_mass", log_mass[:, -1]),
                "context": keep("context", cv.view(b, t, a, -1)[:, -1]),
                "h": h_n,
                "c": c_n,
            },
        }
