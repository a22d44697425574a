import numpy as np
import pytest
import torch
import tree
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import TARGET_NETWORK_ACTION_DIST_INPUTS
from ray.rllib.core.rl_module.rl_module import RLModule

from mixing_env.errors import ConfigError
from rl_models.registry import MODULES, module_spec

from .conftest import TINY, C, make_batch, make_module, spaces


@pytest.mark.parametrize("share", [False, True], ids=["per-track", "shared-encoder"])
def test_output_shapes(share):
    module = make_module(share_encoder=share)
    batch = make_batch(module, b=2, t=5)
    out = module.forward_train(batch)
    assert out[Columns.ACTION_DIST_INPUTS].shape == (2, 5, 2 * C)
    assert out[Columns.EMBEDDINGS].shape == (
        2,
        5,
        2 * TINY["hidden_size"] + TINY["mix_hidden_size"],
    )
    state, k = out[Columns.STATE_OUT], TINY["hidden_size"]
    assert state["track_h"].shape == state["track_c"].shape == (2, C, k // 2)
    assert state["log_mass"].shape == (2, C) and state["context"].shape == (2, C, k)
    assert state["h"].shape == (2, TINY["mix_hidden_size"])
    assert module.compute_values(batch).shape == (2, 5)
    # The state does not grow with the song: C * (2k + 1) + 2l floats.
    assert module.state_size() == C * (2 * k + 1) + 2 * TINY["mix_hidden_size"]
    assert module.model_config["max_seq_len"] == TINY["max_seq_len"]


def test_single_step_without_time_axis(module):
    batch = make_batch(module, b=2, t=1)
    batch[Columns.OBS] = tree.map_structure(lambda x: x[:, 0], batch[Columns.OBS])
    out = module.forward_exploration(batch)
    assert out[Columns.ACTION_DIST_INPUTS].shape == (2, 1, 2 * C)


@pytest.mark.parametrize("share, prior", [(False, None), (True, None), (True, 1.0)],
                         ids=["per-track", "shared-encoder", "level-prior"])
def test_backward_reaches_every_parameter(share, prior):
    module = make_module(share_encoder=share, level_prior=prior)
    module.make_target_networks()
    batch = make_batch(module, b=2, t=6)
    out = module.forward_train(batch)
    dist = module.get_train_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    actions = dist.sample()
    loss = -(dist.logp(actions) * torch.linspace(-1, 1, 6)).sum() - dist.entropy().sum()
    loss = loss + module.compute_values(batch, out[Columns.EMBEDDINGS]).square().sum()
    loss.backward()
    trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    assert any(n.startswith("_core.H") for n in trainable)
    assert all(not n.startswith("_target_core") for n in trainable)
    for name, p in trainable.items():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    # Each per-track H_i and F_i gets its own gradient (dummy track 2 only from the batch row
    # where it is real).
    for name in ("H", "F") if not share else ():
        grad = getattr(module._core, name).grad
        assert all(grad[:, i].abs().sum() > 0 for i in range(C)), name
    if share:  # shared weights: each slot's own embedding gets its own gradient
        grad = module._core.slot_embedding.grad
        assert all(grad[i].abs().sum() > 0 for i in range(C))


@pytest.mark.parametrize("t", [3, 11], ids=["short", "long"])
@pytest.mark.parametrize("share", [False, True], ids=["per-track", "shared-encoder"])
def test_stepwise_matches_forward_train(share, t):
    torch.manual_seed(0)
    assert_stepwise_matches_forward_train(make_module(share_encoder=share), t)


def test_stepwise_matches_forward_train_with_level_prior():
    torch.manual_seed(0)
    assert_stepwise_matches_forward_train(make_module(level_prior=1.0), 6)


_TRACK_STATE = ("track_h", "track_c", "log_mass", "context")
"""The per-track state keys (the others are the mix LSTM's)."""


def assert_stepwise_matches_forward_train(module, t, mask=((1, 1, 0), (1, 1, 1))):
    batch = make_batch(module, b=2, t=t, mask=mask)
    full = module.forward_train(batch)
    state, steps, values = batch[Columns.STATE_IN], [], []
    for j in range(t):
        step = {
            Columns.OBS: tree.map_structure(lambda x, j=j: x[:, j : j + 1], batch[Columns.OBS]),
            Columns.STATE_IN: state,
        }
        out = module.forward_inference(step)
        steps.append(out[Columns.ACTION_DIST_INPUTS])
        with torch.no_grad():
            values.append(module.compute_values(step))
        state = out[Columns.STATE_OUT]
    torch.testing.assert_close(
        torch.cat(steps, 1), full[Columns.ACTION_DIST_INPUTS].detach(), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        torch.cat(values, 1), module.compute_values(batch).detach(), atol=1e-5, rtol=0
    )
    real = torch.tensor(mask, dtype=torch.bool)[:2]  # (row, slot) pairs a song has
    for key in state:
        # a dummy slot's state is never read (its outputs are masked, a song keeps its
        # tracks): only a real track's state must match
        stepwise, trained = state[key], full[Columns.STATE_OUT][key].detach()
        if key in _TRACK_STATE:
            stepwise, trained = stepwise[real], trained[real]
        torch.testing.assert_close(stepwise, trained, atol=1e-5, rtol=0)


def test_sequences_continue_from_state(module):
    """A sequence split in two, the second half from the first's STATE_OUT, is unchanged."""
    batch = make_batch(module, b=2, t=10)
    full = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    first = {
        Columns.OBS: tree.map_structure(lambda x: x[:, :6], batch[Columns.OBS]),
        Columns.STATE_IN: batch[Columns.STATE_IN],
    }
    out1 = module.forward_train(first)
    second = {
        Columns.OBS: tree.map_structure(lambda x: x[:, 6:], batch[Columns.OBS]),
        Columns.STATE_IN: tree.map_structure(torch.Tensor.detach, out1[Columns.STATE_OUT]),
    }
    out2 = module.forward_train(second)[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(
        torch.cat([out1[Columns.ACTION_DIST_INPUTS], out2], 1), full, atol=1e-5, rtol=0
    )


def test_attention_weights_are_masked_distributions(module):
    batch = make_batch(module, b=2, t=6)
    att = module.attention(batch)
    mask = batch[Columns.OBS]["track_mask"]
    beta, alpha = att["beta"], att["alpha"]
    torch.testing.assert_close(beta.sum(-1), torch.ones(2, 6))
    assert torch.all(beta[mask == 0] == 0.0) and torch.all(beta[mask == 1] > 0)
    assert torch.all(alpha[mask == 0] == 0.0)  # a dummy track attends nowhere
    # The first position is the only one seen at step 0; later ones share the mass.
    torch.testing.assert_close(alpha[:, 0], mask[:, 0])
    real = mask[:, 1:] == 1
    assert torch.all((alpha[:, 1:][real] > 0) & (alpha[:, 1:][real] < 1))


def test_all_dummy_padding_steps_stay_finite(module):
    batch = make_batch(module, b=1, t=4)
    batch[Columns.OBS] = tree.map_structure(torch.zeros_like, batch[Columns.OBS])  # RLlib padding
    out = module.forward_train(batch)
    dist = module.get_train_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    x = dist.sample()
    assert torch.all(x == 0) and torch.all(dist.logp(x) == 0)
    assert torch.isfinite(module.compute_values(batch)).all()


def test_dummy_slot_gets_exactly_zero_action(module):
    batch = make_batch(module, b=1, t=3, mask=((1, 0, 1),))
    out = module.forward_exploration(batch)
    dist = module.get_exploration_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    for actions in (dist.sample(), dist.to_deterministic().sample()):
        assert torch.all(actions[..., 1] == 0.0)
        torch.testing.assert_close(actions.sum(-1), torch.ones(1, 3))


def test_deterministic_action_is_beta_up_to_floor():
    module = make_module(concentration_floor=1e-4, learn_concentration_scale=False)
    batch = make_batch(module, b=2, t=4)
    out = module.forward_inference(batch)
    det = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    torch.testing.assert_close(
        det.to_deterministic().sample(), module.attention(batch)["beta"], atol=1e-4, rtol=0
    )


def test_checkpoint_roundtrip_gives_identical_deterministic_actions(module, tmp_path):
    with torch.no_grad():
        module._core.H.add_(0.5)  # move off the seed's init
    batch = make_batch(module, b=2, t=5)
    module.save_to_path(tmp_path / "module")
    restored = RLModule.from_checkpoint(tmp_path / "module")
    assert type(restored) is type(module)

    def act(m):
        out = m.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
        return m.get_inference_action_dist_cls().from_logits(out).to_deterministic().sample()

    assert torch.equal(act(module), act(restored))


def test_target_network_pairs_and_forward_target(module):
    module.make_target_networks()
    ((main, target),) = module.get_target_network_pairs()
    assert main is module._core and target is not main
    batch = make_batch(module, b=1, t=3)
    torch.testing.assert_close(
        module.forward_target(batch)[TARGET_NETWORK_ACTION_DIST_INPUTS],
        module.forward_train(batch)[Columns.ACTION_DIST_INPUTS],
    )
    with torch.no_grad():
        module._core.F.add_(1.0)
    assert not torch.allclose(
        module.forward_target(batch)[TARGET_NETWORK_ACTION_DIST_INPUTS],
        module.forward_train(batch)[Columns.ACTION_DIST_INPUTS],
    )


def test_inference_only_module_keeps_value_head_for_vf_preds():
    obs, act = spaces()
    m = MODULES["deepmixing_attention_lstm"](
        observation_space=obs, action_space=act, model_config=TINY, inference_only=True
    )
    assert m.get_non_inference_attributes() == ["_target_core"]
    batch = make_batch(m, b=1, t=2)
    assert m.forward_inference(batch)[Columns.ACTION_DIST_INPUTS].shape == (1, 2, 6)
    assert Columns.VF_PREDS not in m.forward_inference(batch)
    out = m.forward_exploration(batch)
    # The values the learner would compute for the same steps (GAE reads these).
    torch.testing.assert_close(out[Columns.VF_PREDS], m.compute_values(batch).detach())


@pytest.mark.parametrize(
    "override, match",
    [
        ({"hidden_size": 7}, "must be even"),
        ({"level_prior": "loud"}, "level_prior"),
        ({"input_norm": "zscore"}, "input_norm"),
        ({"concentration_floor": 0.0}, "concentration_floor"),
        ({"share_encoder": "yes"}, "share_encoder"),
        ({"value_hiddens": [0]}, "value_hiddens"),
        ({"lstm_size": 3}, "unknown model_config key"),
    ],
    ids=["odd-k", "bad-prior", "bad-norm", "zero-floor", "non-bool", "bad-hiddens", "unknown-key"],
)
def test_bad_config_raises(override, match):
    with pytest.raises(ConfigError, match=match):
        make_module(**override)
    with pytest.raises(ConfigError, match=match):
        module_spec("deepmixing_attention_lstm", {**TINY, **override})


def test_registry_spec_builds_module_and_rejects_unknown_name():
    obs, act = spaces()
    spec = module_spec("deepmixing_attention_lstm", {"vf_share_layers": False})
    assert spec.model_config["max_seq_len"] == 32 and spec.model_config["hidden_size"] == 100
    spec.observation_space, spec.action_space = obs, act
    assert spec.build().get_initial_state()["context"].shape == (C, 100)
    known = "known: \\['deepmixing_attention_lstm', 'rllib_default'\\]"
    with pytest.raises(ConfigError, match=known):
        module_spec("transformer", {})


def test_bad_spaces_raise():
    import gymnasium as gym

    obs, _ = spaces()
    with pytest.raises(ConfigError, match="action_space"):
        MODULES["deepmixing_attention_lstm"](
            observation_space=obs,
            action_space=gym.spaces.Box(0, 1, (5,), np.float32),
            model_config=TINY,
        )


def test_db_input_norm_keeps_absolute_level():
    from rl_models.modules.config import DB_CENTER, DB_SPREAD

    m = make_module(input_norm="db", log_rms_feature=False)
    chunks = torch.tensor([[DB_CENTER, -100.0, 0.0]])
    x = m._core.chunk_features(chunks)
    torch.testing.assert_close(
        x, torch.tensor([[0.0, (-100.0 - DB_CENTER) / DB_SPREAD, -DB_CENTER / DB_SPREAD]])
    )


def test_legacy_window_key_warns_and_is_ignored():
    with pytest.warns(DeprecationWarning, match="window"):
        spec = module_spec("deepmixing_attention_lstm", {**TINY, "window": 4})
    assert "window" not in spec.model_config


@pytest.mark.parametrize("share", [False, True], ids=["per-track", "shared-encoder"])
def test_skipping_dummy_tracks_is_exact(share):
    """Slots dummy in every row are not computed; outputs and gradients are unchanged."""
    torch.manual_seed(5)
    module = make_module(share_encoder=share)
    batch = make_batch(module, b=2, t=7, mask=((1, 0, 1), (0, 0, 1)))  # slot 1 never real

    def run():
        module.zero_grad(set_to_none=True)
        out = module.forward_train(batch)
        values = module.compute_values(batch, out[Columns.EMBEDDINGS])
        (out[Columns.ACTION_DIST_INPUTS].square().sum() + values.sum()).backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        return out, values.detach(), grads

    skipped, skipped_values, skipped_grads = run()
    module._core.skip_dummy_tracks = False
    full, full_values, full_grads = run()
    torch.testing.assert_close(skipped[Columns.ACTION_DIST_INPUTS],
                               full[Columns.ACTION_DIST_INPUTS], atol=1e-6, rtol=0)
    torch.testing.assert_close(skipped_values, full_values, atol=1e-6, rtol=0)
    assert skipped_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(skipped_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    real = torch.tensor(((1, 0, 1), (0, 0, 1)), dtype=torch.bool)
    for key in _TRACK_STATE:
        state_s, state_f = skipped[Columns.STATE_OUT][key], full[Columns.STATE_OUT][key]
        torch.testing.assert_close(state_s[real], state_f[real].detach())
        # never computed: the slot keeps its initial state
        assert torch.equal(state_s[:, 1], batch[Columns.STATE_IN][key][:, 1]), key
    if share:  # shared weights over several steps: only the real (row, slot) pairs run
        assert torch.equal(skipped[Columns.STATE_OUT]["track_h"][1, 0],
                           batch[Columns.STATE_IN]["track_h"][1, 0])
    for key in ("h", "c"):
        torch.testing.assert_close(skipped[Columns.STATE_OUT][key], full[Columns.STATE_OUT][key])


@pytest.mark.parametrize("share", [False, True], ids=["per-track", "shared-encoder"])
def test_stepwise_matches_forward_train_with_a_dummy_slot(share):
    torch.manual_seed(6)
    assert_stepwise_matches_forward_train(make_module(share_encoder=share), 7,
                                          mask=((1, 0, 1), (1, 0, 1)))


def test_with_concentration_scale_changes_the_spread_not_the_mean(module, tmp_path):
    from rl_models.checkpoints import load_rllib_module, with_concentration_scale

    module.save_to_path(tmp_path / "module")
    out = with_concentration_scale(tmp_path / "module", 400.0, tmp_path / "sharper")
    sharper = load_rllib_module(out)
    batch = make_batch(module, b=2, t=3)

    def dist(m):
        out = m.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
        return m.get_inference_action_dist_cls().from_logits(out)

    before, after = dist(module), dist(sharper)
    torch.testing.assert_close(after.to_deterministic().sample(),  # up to the floor
                               before.to_deterministic().sample(), atol=1e-4, rtol=0)
    assert float(sharper._core.log_kappa.detach().exp()) == pytest.approx(400.0, rel=1e-5)
    # Concentrations grow with the scale: the same mean, a smaller spread.
    assert torch.all(after.concentration.sum(-1) > before.concentration.sum(-1))
    with pytest.raises(ConfigError, match="positive number"):
        with_concentration_scale(tmp_path / "module", 0.0, tmp_path / "bad")
