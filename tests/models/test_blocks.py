"""The policy's building blocks against slow, obviously right twins."""

import pytest
import torch
from ray.rllib.core.columns import Columns

from rl_models.modules.core import track_self_attention
from rl_models.modules.grouped_lstm import (
    GroupedLSTM,
    GroupedNewestBackwardStep,
    bidirectional_step,
    sigmoid_tanh,
)
from rl_models.modules.running_attention import NO_MASS, running_attention
from rl_models.modules.running_attention import _quadratic as _QUADRATIC

from .conftest import C, make_batch, make_module


def _softmax_context(scores, values):
    """The report's alpha/CV over positions 1..t, recomputed from scratch at every t."""
    out = []
    for t in range(scores.shape[1]):
        alpha = torch.softmax(scores[:, : t + 1], dim=1)  # (B, t+1, A)
        out.append(torch.einsum("bsa,bsak->bak", alpha, values[:, : t + 1]))
    return torch.stack(out, 1)


@pytest.mark.parametrize("jump", [0.0, 100.0], ids=["cumulative", "quadratic"])
@pytest.mark.parametrize("t", [1, 5])
def test_running_attention_is_the_softmax_over_all_positions(t, jump, monkeypatch):
    import importlib

    module = importlib.import_module("rl_models.modules.running_attention")
    quadratic = []
    monkeypatch.setattr(module, "_quadratic",
                        lambda *args: quadratic.append(1) or _QUADRATIC(*args))
    g = torch.Generator().manual_seed(0)
    b, a, k, split = 2, 3, 4, 7
    scores = torch.randn(b, split + t, a, generator=g) * 5.0
    # A last score 100 nats above the rest puts the earlier L_t beyond the cumulative form's
    # range: a sequence of several steps then takes the exact O(T^2) form
    scores[:, -1] += jump
    values = torch.rand(b, split + t, a, k, generator=g) * 2 - 1
    reference = _softmax_context(scores, values)
    # The first `split` positions stepwise from an empty history, then t more in one call.
    mass, cv = torch.full((b, a), NO_MASS), torch.zeros(b, a, k)
    for s in range(split):
        out, masses, _ = running_attention(scores[:, s : s + 1], values[:, s : s + 1], mass, cv)
        mass, cv = masses[:, -1], out[:, -1]
    out, masses, alpha = running_attention(scores[:, split:], values[:, split:], mass, cv)
    torch.testing.assert_close(out, reference[:, split:], atol=1e-5, rtol=0)
    torch.testing.assert_close(masses, torch.logcumsumexp(scores, 1)[:, split:])
    newest = torch.softmax(scores, 1)  # at the last step, the newest position's weight
    torch.testing.assert_close(alpha[:, -1], newest[:, -1])
    assert len(quadratic) == int(bool(jump) and t > 1)


def test_both_forms_of_the_running_sums_give_the_same_values_and_gradients():
    g = torch.Generator().manual_seed(1)
    b, t, a, k = 3, 6, 4, 5
    inputs = [torch.randn(b, t, a, generator=g, dtype=torch.float64) * 3,
              torch.randn(b, t, a, k, generator=g, dtype=torch.float64),
              torch.randn(b, a, generator=g, dtype=torch.float64) * 3,
              torch.randn(b, a, k, generator=g, dtype=torch.float64)]
    inputs[2][0] = NO_MASS  # one sequence starts a song

    def both(scores, values, log_mass, context):
        logits = torch.cat([log_mass.unsqueeze(1), scores], dim=1)
        masses = torch.logcumsumexp(logits, dim=1)[:, 1:]
        return running_attention(scores, values, log_mass, context), _QUADRATIC(
            logits, masses, values, context)

    fast, exact = both(*inputs)
    for x, y in zip(fast, exact, strict=True):
        torch.testing.assert_close(x, y)
    leaves = [x.requires_grad_() for x in inputs]
    grads = [torch.autograd.grad(sum((o * torch.cos(o)).sum() for o in outs), leaves)
             for outs in both(*leaves)]
    for x, y in zip(*grads, strict=True):
        torch.testing.assert_close(x, y)


def test_row_products_give_bmms_values_and_gradients():
    from rl_models.modules.row_products import row_dot, row_weighted_sum

    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(row_dot(x, y), (x * y.unsqueeze(1)).sum(-1))
    torch.testing.assert_close(row_weighted_sum(w, x), (w.unsqueeze(-1) * x).sum(1))
    assert torch.autograd.gradcheck(row_dot, (x, y))
    assert torch.autograd.gradcheck(row_weighted_sum, (w, x))
    only_x = row_dot(x, y.detach()).sum()  # a gradient asked for one input only
    assert torch.autograd.grad(only_x, x)[0].shape == x.shape


def test_running_attention_gradients_are_finite_from_an_empty_history():
    scores = torch.randn(1, 4, 2, requires_grad=True)
    values = torch.randn(1, 4, 2, 3, requires_grad=True)
    out, _, _ = running_attention(scores, values, torch.full((1, 2), NO_MASS),
                                  torch.zeros(1, 2, 3))
    out.sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0


@pytest.mark.parametrize("groups", [1, 3], ids=["shared", "per-track"])
def test_grouped_lstm_matches_torch_lstm(groups):
    torch.manual_seed(3)
    e, h, b, t, a = 4, 5, 2, 6, 3
    grouped = GroupedLSTM(groups, e, h)
    x = torch.randn(b, t, a, e)
    h0, c0 = torch.randn(b, a, h), torch.randn(b, a, h)
    out, h_n, c_n = grouped(x, h0, c0)
    for i in range(a):
        g = 0 if groups == 1 else i
        ref = torch.nn.LSTM(e, h, batch_first=True)
        with torch.no_grad():
            ref.weight_ih_l0.copy_(grouped.weight_ih[g])
            ref.weight_hh_l0.copy_(grouped.weight_hh[g])
            ref.bias_ih_l0.copy_(grouped.bias[g])
            ref.bias_hh_l0.zero_()
        ref_out, (ref_h, ref_c) = ref(x[:, :, i], (h0[None, :, i], c0[None, :, i]))
        torch.testing.assert_close(out[:, :, i], ref_out, atol=1e-6, rtol=0)
        torch.testing.assert_close(h_n[:, i], ref_h[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(c_n[:, i], ref_c[0], atol=1e-6, rtol=0)
    # One step at a time gives the same.
    state = (h0, c0)
    for j in range(t):
        step, *state = grouped(x[:, j : j + 1], *state)
        torch.testing.assert_close(step[:, 0], out[:, j], atol=1e-6, rtol=0)


def test_newest_backward_step_is_the_bilstm_backward_output_at_t():
    torch.manual_seed(4)
    e, h, t = 4, 5, 6
    step = GroupedNewestBackwardStep(1, e, h)
    ref = torch.nn.LSTM(e, h, batch_first=True, bidirectional=True)
    w, bias = step.proj.weight[0].T, step.proj.bias[0]  # (3h, e) rows (i, g, o)
    with torch.no_grad():
        # torch's order (i, f, g, o); the forget gate never acts from a zero state.
        ref.weight_ih_l0_reverse.copy_(torch.cat([w[:h], torch.zeros(h, e), w[h:2 * h], w[2 * h:]]))
        ref.bias_ih_l0_reverse.copy_(torch.cat([bias[:h], torch.zeros(h), bias[h:]]))
        ref.bias_hh_l0_reverse.zero_()
    x = torch.randn(2, t, e)
    backward_at_t = ref(x)[0][:, -1, h:]  # the Bi-LSTM over 1..t, backward half, position t
    torch.testing.assert_close(step(x[:, -1:])[:, 0], backward_at_t, atol=1e-6, rtol=0)


def test_level_prior_starts_at_loudness_equalised_gains():
    torch.manual_seed(5)
    module = make_module(level_prior=1.0, concentration_floor=1e-4,
                         learn_concentration_scale=False)
    with torch.no_grad():  # no attention term: the prior alone sets the mean
        module._core.B2.zero_()
    batch = make_batch(module, b=1, t=2, mask=((1, 1, 1),))
    levels = torch.tensor([-10.0, -30.0, -80.0])  # the last track is not playing yet
    batch[Columns.OBS]["chunks"][..., -1] = levels.view(1, 1, C, 1)
    beta = module.attention(batch)["beta"][0, 0]
    playing = torch.tensor([-10.0, -30.0, -20.0])  # a silent track takes the playing mean
    gains = torch.pow(10.0, -playing / 20.0)
    torch.testing.assert_close(beta, gains / gains.sum(), atol=1e-5, rtol=0)


def test_sigmoid_tanh_is_tanh():
    x = torch.linspace(-30, 30, 10001)
    torch.testing.assert_close(sigmoid_tanh(x), torch.tanh(x), atol=3e-7, rtol=0)


@pytest.mark.parametrize("grad", [False, True], ids=["acting", "training"])
def test_bidirectional_step_is_torch_lstm_cell_and_backward_step(grad):
    torch.manual_seed(0)
    e, hs, m = 5, 4, 6
    lstm, backward = GroupedLSTM(1, e, hs), GroupedNewestBackwardStep(1, e, hs)
    x, h, c = torch.randn(m, e), torch.randn(m, hs), torch.randn(m, hs)
    with torch.set_grad_enabled(grad):
        h1, c1, back = bidirectional_step(x, h, c, lstm, backward)
        ref_h, ref_c = torch.lstm_cell(x, (h, c), lstm.weight_ih[0], lstm.weight_hh[0],
                                       lstm.bias[0], torch.zeros(4 * hs))
        i, g, o = (x @ backward.proj.weight[0] + backward.proj.bias[0]).chunk(3, -1)
        ref_back = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))
    for got, ref in ((h1, ref_h), (c1, ref_c), (back, ref_back)):
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    if grad:  # gradients reach the weights of both directions as through the reference
        (h1.sum() + c1.sum() + back.sum()).backward()
        got = [p.grad.clone() for p in (*lstm.parameters(), *backward.parameters())]
        for p in (*lstm.parameters(), *backward.parameters()):
            p.grad = None
        (ref_h.sum() + ref_c.sum() + ref_back.sum()).backward()
        for g_got, p in zip(got, (*lstm.parameters(), *backward.parameters()), strict=True):
            torch.testing.assert_close(g_got, p.grad, atol=1e-5, rtol=0)
    else:  # acting reuses the fused weights until a parameter changes
        with torch.no_grad():
            lstm.bias.add_(1.0)
            moved, _, _ = bidirectional_step(x, h, c, lstm, backward)
        assert not torch.allclose(moved, h1)


@pytest.mark.parametrize("grad", [False, True], ids=["acting", "training"])
def test_track_self_attention_is_torch_multihead_attention(grad):
    torch.manual_seed(0)
    mixer = torch.nn.MultiheadAttention(6, 1, batch_first=True)
    x = torch.randn(5, 4, 6, requires_grad=grad)
    silent = torch.tensor([[0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0],
                           [0, 1, 0, 1]], dtype=torch.bool)
    expected = mixer(x, x, x, key_padding_mask=silent, need_weights=False)[0]
    got = track_self_attention(mixer, x, silent)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    if grad:
        w = torch.randn_like(got)
        want = torch.autograd.grad((expected * w).sum(), [x, *mixer.parameters()])
        have = torch.autograd.grad((got * w).sum(), [x, *mixer.parameters()])
        for a, b in zip(have, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
