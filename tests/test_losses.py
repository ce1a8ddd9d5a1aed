import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from vaelab.losses import kl_to_standard_normal, negative_elbo, reconstruction_nll, summed_negative_elbo


def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 2.0]])
    logvar = torch.tensor([[0.3, -1.2, 0.0]])
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(400_000, 3, generator=g)
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    monte_carlo = (log_q - log_p).mean()
    assert abs(kl_to_standard_normal(mu, logvar).item() - monte_carlo.item()) < 0.01


def test_kl_is_zero_at_the_prior_and_matches_torch_distributions():
    assert kl_to_standard_normal(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() < 1e-7
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), torch.distributions.Normal(0.0, 1.0)
    ).sum(1)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), reference, atol=1e-5)


def test_bernoulli_nll_is_the_log_likelihood_of_binary_pixels():
    logits = torch.randn(3, 1, 28, 28)
    x = (torch.rand(3, 1, 28, 28) > 0.5).float()
    expected = -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(reconstruction_nll(logits, x, "bernoulli"), expected, atol=1e-3)


def test_gaussian_nll_is_a_normal_log_density_in_nats():
    logits = torch.randn(2, 1, 28, 28)
    x = torch.rand(2, 1, 28, 28)
    expected = -torch.distributions.Normal(torch.sigmoid(logits), 0.2).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(reconstruction_nll(logits, x, "gaussian", gaussian_std=0.2), expected, atol=1e-3)


def test_negative_elbo_is_nll_plus_beta_kl():
    logits, x = torch.randn(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    mu, logvar = torch.randn(2, 4), torch.randn(2, 4)
    loss, nll, kl = negative_elbo(logits, x, mu, logvar, "bernoulli", beta=0.5)
    assert torch.allclose(nll, F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1))
    assert torch.allclose(loss, nll + 0.5 * kl)
    assert math.isfinite(loss.sum().item())


def test_continuous_bernoulli_nll_matches_torch_distributions_including_near_one_half():
    logits = torch.tensor([-14.0, -5.0, -0.5, -1e-2, -1e-3, 0.0, 1e-4, 5e-3, 0.02, 1.0, 7.0, 14.0], dtype=torch.float64)
    grid_logits, grid_x = torch.meshgrid(logits, torch.linspace(0.0, 1.0, 7, dtype=torch.float64), indexing="ij")
    # One pixel per row, so the per-image sum is the per-pixel value.
    ours = reconstruction_nll(grid_logits.reshape(-1, 1), grid_x.reshape(-1, 1), "continuous-bernoulli")
    reference = -torch.distributions.ContinuousBernoulli(logits=grid_logits.reshape(-1)).log_prob(grid_x.reshape(-1))
    assert torch.allclose(ours, reference, atol=1e-6)
    image = reconstruction_nll(grid_logits.reshape(1, -1), grid_x.reshape(1, -1), "continuous-bernoulli")
    assert torch.allclose(image, reference.sum().reshape(1))


def test_continuous_bernoulli_log_normaliser_is_smooth_and_finite_through_one_half():
    from vaelab.losses import continuous_bernoulli_log_norm

    logits = torch.linspace(-0.05, 0.05, 1001, requires_grad=True)
    log_c = continuous_bernoulli_log_norm(logits)
    log_c.sum().backward()
    assert torch.isfinite(log_c).all() and torch.isfinite(logits.grad).all()
    assert abs(log_c[500].item() - math.log(2.0)) < 1e-7  # C(1/2) = 2
    assert (log_c.diff().abs() < 1e-5).all()  # no jump where the Taylor branch takes over
    # The density integrates to one over [0, 1] for any lambda (midpoint rule).
    x = (torch.arange(20_000, dtype=torch.float64) + 0.5) / 20_000
    for eta in (-8.0, -0.3, 0.0, 0.004, 2.5):
        logits = torch.full((20_000, 1), eta, dtype=torch.float64)
        nll = reconstruction_nll(logits, x.view(-1, 1), "continuous-bernoulli")
        assert abs(torch.exp(-nll).mean().item() - 1.0) < 1e-6


def test_learned_gaussian_std_is_a_normal_density_and_receives_gradients():
    logits, x = torch.randn(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    log_std = torch.tensor(math.log(0.3), requires_grad=True)
    nll = reconstruction_nll(logits, x, "gaussian-learned", gaussian_std=log_std.exp())
    expected = -torch.distributions.Normal(torch.sigmoid(logits), 0.3).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(nll, expected, atol=1e-3)
    nll.sum().backward()
    assert log_std.grad is not None and log_std.grad.abs() > 0


def test_a_fixed_gaussian_std_never_becomes_a_tensor_on_the_device():
    """Building the std on the device from a Python float is a host-to-device copy, which blocks a GPU at every
    step: on the ``meta`` device (shapes only) no scalar may appear there; a learned std is a device parameter."""
    seen: list[torch.Tensor] = []

    class Scalars(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.extend(a for a in args if isinstance(a, torch.Tensor) and a.dim() == 0)
            return func(*args, **(kwargs or {}))

    logits, x, mu = (torch.zeros(4, 1, 28, 28, device="meta"), torch.zeros(4, 1, 28, 28, device="meta"),
                     torch.zeros(4, 2, device="meta"))
    with Scalars():
        loss = negative_elbo(logits, x, mu, mu, "gaussian", 1.0, 0.1)[0]
    assert loss.device.type == "meta" and seen and all(s.device.type == "cpu" for s in seen)
    learned = torch.nn.Parameter(torch.tensor(0.1, device="meta"))
    assert negative_elbo(logits, x, mu, mu, "gaussian-learned", 1.0, learned)[0].device.type == "meta"


@pytest.mark.parametrize("likelihood,linear", [("bernoulli", False), ("continuous-bernoulli", False),
                                               ("gaussian", False), ("gaussian", True)])
def test_the_summed_training_loss_has_the_per_image_losses_gradients_value_for_value(likelihood, linear):
    """The training step differentiates the batch's summed loss; its gradients must be those of the per-image
    losses' mean bitwise (the runs' numbers do not change), and its value equal up to the order of the sums."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=g)  # 96: a last batch's size, where 1/N is not a power of two
    leaves = [torch.randn(96, 1, 8, 8, generator=g), torch.randn(96, 3, generator=g), torch.randn(96, 3, generator=g)]

    def gradients(loss_of):
        inputs = [t.clone().requires_grad_() for t in leaves]
        loss = loss_of(*inputs)
        loss.backward()
        return loss.detach(), [t.grad for t in inputs]

    per_image, expected = gradients(lambda logits, mu, logvar: negative_elbo(
        logits, x, mu, logvar, likelihood, 0.7, 0.1, linear)[0].mean())
    summed, got = gradients(lambda logits, mu, logvar: summed_negative_elbo(
        logits, x, mu, logvar, likelihood, 0.7, 0.1, linear) / len(x))
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    torch.testing.assert_close(summed, per_image, rtol=1e-6, atol=0)
