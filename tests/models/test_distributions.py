import pytest
import torch
from torch.distributions import Dirichlet, kl_divergence

from rl_models.distributions import TorchDirichletMean, TorchMaskedDirichlet


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


def _inputs(conc, mask):
    return torch.cat([conc, mask], -1)


def test_unmasked_matches_torch_dirichlet(rng):
    a = torch.rand(5, 4, generator=rng) * 3 + 0.2
    b = torch.rand(5, 4, generator=rng) * 3 + 0.2
    mask = torch.ones(5, 4)
    p = TorchMaskedDirichlet.from_logits(_inputs(a, mask))
    q = TorchMaskedDirichlet.from_logits(_inputs(b, mask))
    torch.manual_seed(0)
    x = Dirichlet(a).sample()
    x = (x + 1e-3) / (1 + 4e-3)  # interior: logp clamps values below ACTION_EPSILON
    torch.testing.assert_close(p.logp(x), Dirichlet(a).log_prob(x))
    torch.testing.assert_close(p.entropy(), Dirichlet(a).entropy())
    torch.testing.assert_close(p.kl(q), kl_divergence(Dirichlet(a), Dirichlet(b)))


def test_masked_matches_dirichlet_over_real_slots(rng):
    a = torch.rand(2, 5, generator=rng) * 3 + 0.2
    b = torch.rand(2, 5, generator=rng) * 3 + 0.2
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 0]], dtype=torch.float32)
    p = TorchMaskedDirichlet.from_logits(_inputs(a, mask))
    q = TorchMaskedDirichlet.from_logits(_inputs(b, mask))
    torch.manual_seed(0)
    x = p.sample()
    x = (x + 1e-3 * mask) / (1 + 1e-3 * mask.sum(-1, keepdim=True))
    for row in range(2):
        real = mask[row].bool()
        ref_p, ref_q = Dirichlet(a[row, real]), Dirichlet(b[row, real])
        torch.testing.assert_close(p.logp(x)[row], ref_p.log_prob(x[row, real]))
        torch.testing.assert_close(p.entropy()[row], ref_p.entropy())
        torch.testing.assert_close(p.kl(q)[row], kl_divergence(ref_p, ref_q))


def test_samples_on_real_simplex_with_exact_zero_dummies(rng):
    torch.manual_seed(0)
    a = torch.full((1000, 4), 0.3)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0]).expand(1000, 4)
    d = TorchMaskedDirichlet(a, mask)
    for x in (d.sample(), d.rsample()):
        assert torch.all(x[:, 2] == 0.0)
        torch.testing.assert_close(x.sum(-1), torch.ones(1000))
        assert torch.all(x >= 0)
    assert d.sample(sample_shape=(3,)).shape == (3, 1000, 4)


def test_logp_finite_on_boundary_and_all_masked():
    a = torch.tensor([[2.0, 0.5, 3.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    a.requires_grad_(True)
    d = TorchMaskedDirichlet(a, mask)
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    logp = d.logp(x)
    assert torch.isfinite(logp).all()
    assert logp[1] == 0.0 and d.entropy()[1] == 0.0 and d.kl(d)[1] == 0.0
    (logp.sum() + d.entropy().sum()).backward()
    assert torch.isfinite(a.grad).all()


def test_rsample_is_differentiable():
    a = torch.tensor([[1.5, 2.0, 0.7]], requires_grad=True)
    x = TorchMaskedDirichlet(a, torch.ones(1, 3)).rsample()
    x[0, 0].backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_deterministic_is_mean():
    a = torch.tensor([[1.0, 3.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    det = TorchMaskedDirichlet.from_logits(_inputs(a, mask)).to_deterministic()
    assert isinstance(det, TorchDirichletMean)
    torch.testing.assert_close(det.sample(), torch.tensor([[0.25, 0.75, 0.0]]))
    assert det.logp(det.sample()).shape == (1,)


def test_required_input_dim_and_bad_inputs():
    import gymnasium as gym

    assert TorchMaskedDirichlet.required_input_dim(gym.spaces.Box(0, 1, (7,))) == 14
    with pytest.raises(ValueError, match="even width"):
        TorchMaskedDirichlet.from_logits(torch.ones(2, 5))
    with pytest.raises(ValueError, match="same shape"):
        TorchMaskedDirichlet(torch.ones(2, 3), torch.ones(2, 4))
