"""The latent-geometry measures against independent references: torch.distributions' KL, Monte Carlo moments
of a mixture, and decoders whose interpolation jump is known in closed form."""

import math

import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vaelab.config import ModelConfig
from vaelab.latent_geometry import (
    COVARIANCE_FLOOR,
    INTERPOLATION_STEPS,
    fitted_gaussian,
    fitted_prior_samples,
    interpolation_jump,
    kl_to_prior,
)
from vaelab.models import VAE


def test_kl_to_the_prior_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    covariance, m = a @ a.T + 0.5 * torch.eye(3, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    prior = MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    expected = kl_divergence(MultivariateNormal(m, covariance), prior).item()
    assert math.isclose(kl_to_prior(m, covariance), expected, rel_tol=1e-10)
    assert abs(kl_to_prior(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))) < 1e-12


def test_the_fitted_gaussian_has_the_mixtures_moments_by_monte_carlo():
    g = torch.Generator().manual_seed(1)
    means = torch.randn(50, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5], dtype=torch.float64)
    variances = torch.rand(50, 2, generator=g, dtype=torch.float64)
    m, covariance = fitted_gaussian(means, variances)
    pick = torch.randint(0, 50, (400_000,), generator=g)
    draws = means[pick] + variances[pick].sqrt() * torch.randn(400_000, 2, generator=g, dtype=torch.float64)
    assert torch.allclose(m, draws.mean(0), atol=0.02)
    empirical = torch.cov(draws.T, correction=0) + COVARIANCE_FLOOR * torch.eye(2, dtype=torch.float64)
    assert torch.allclose(covariance, empirical, atol=0.03)


class LineModel(VAE):
    """Codes are the first two pixels; decodes are a fixed linear map of the code, or its step function."""

    def __init__(self, step: bool = False):
        super().__init__(ModelConfig(latent_dim=2, hidden=()))
        self.step = step

    def encode(self, x):
        mu = x.flatten(1)[:, :2]
        return mu, torch.zeros_like(mu)

    def decode(self, z):
        return z @ torch.ones(2, 784) / 2

    def decoder_mean(self, output):
        return (output > 0.5).double() if self.step else output


def test_the_interpolation_jump_is_one_for_an_even_decoder_and_the_step_count_for_a_step():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(100, 1, 28, 28, generator=g)
    images[:50, 0, 0, :2], images[50:, 0, 0, :2] = 0.0, 1.0  # pairs straddle the step wherever they fall
    assert math.isclose(interpolation_jump(LineModel(), images, pairs=40), 1.0, rel_tol=1e-6)
    stepped = interpolation_jump(LineModel(step=True), images, pairs=40)
    assert 1.0 < stepped <= INTERPOLATION_STEPS


def test_fitted_prior_samples_are_deterministic_decodes_of_the_training_codes_density():
    model = VAE(ModelConfig(latent_dim=3, hidden=(16,))).eval()
    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    first, again = fitted_prior_samples(model, images, 10), fitted_prior_samples(model, images, 10)
    assert first.shape == (10, 1, 28, 28) and torch.equal(first, again) and 0 <= first.min() <= first.max() <= 1
