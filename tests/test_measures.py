import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from vaelab.config import DataConfig, ModelConfig, RunConfig
from vaelab.data import Dataset, ImageSplit
from vaelab.evaluation import evaluate_split
from vaelab.losses import negative_elbo
from vaelab.measures import (
    active_units,
    class_entropy,
    class_yardsticks,
    feature_statistics,
    final_measures,
    frechet_distance,
    iwae_each_epoch,
    iwae_log_likelihood,
    log_importance_weights,
    probe_accuracy,
)
from vaelab.models import VAE
from vaelab.prepare import as_float_images, posterior_means

DEPENDENT_PIXELS = 8


def one_dimensional_latent_model(likelihood: str) -> VAE:
    """Linear encoder and decoder, latent size 1: log p(x) is a 1-D integral we can do by quadrature.
    Only 8 pixels depend on z, weakly, so the posterior is broad and the proposal fits it well."""
    model = VAE(ModelConfig(latent_dim=1, hidden=(), likelihood=likelihood, gaussian_std=0.25))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        decoder = model.decoder[0]
        decoder.weight.zero_()
        decoder.weight[:DEPENDENT_PIXELS, 0] = 0.5 * torch.randn(DEPENDENT_PIXELS, generator=g)
        decoder.bias.copy_(torch.randn(784, generator=g))
        encoder = model.encoder[1]
        encoder.weight.mul_(0.01)  # q(z|x) ~ N(0.1, 0.9^2) whatever x
        encoder.bias.copy_(torch.tensor([0.1, 2 * math.log(0.9)]))
    return model


def log_marginal_by_quadrature(model: VAE, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """log of integral p(x|z) N(z; 0, 1) dz on a fine grid, with torch.distributions densities in float64.
    The pixels that do not depend on z contribute one constant factor, computed once."""

    def log_px_z(logits: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        if likelihood == "bernoulli":  # grey pixels: x log lambda + (1 - x) log(1 - lambda)
            return (pixels * F.logsigmoid(logits) + (1 - pixels) * F.logsigmoid(-logits)).sum(-1)
        if likelihood == "continuous-bernoulli":
            return torch.distributions.ContinuousBernoulli(logits=logits).log_prob(pixels).sum(-1)
        return torch.distributions.Normal(torch.sigmoid(logits), 0.25).log_prob(pixels).sum(-1)

    z = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    w = model.decoder[0].weight.detach().double()[:DEPENDENT_PIXELS, 0]
    b = model.decoder[0].bias.detach().double()
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z)
    out = []
    for image in x.double().flatten(1):
        varying = log_px_z(z[:, None] * w + b[:DEPENDENT_PIXELS], image[:DEPENDENT_PIXELS])
        constant = log_px_z(b[DEPENDENT_PIXELS:], image[DEPENDENT_PIXELS:])
        out.append(torch.logsumexp(varying + log_prior, 0) + math.log(z[1] - z[0]) + constant)
    return torch.stack(out)


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "gaussian", "gaussian-learned"])
def test_iwae_reaches_the_exact_marginal_of_a_one_dimensional_latent_model(likelihood):
    model = one_dimensional_latent_model(likelihood)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        z0 = torch.randn(4, 1, generator=g)
        x = (torch.sigmoid(model.decode(z0)) + 0.05 * torch.randn(4, 1, 28, 28, generator=g)).clamp(0.01, 0.99)
    exact = log_marginal_by_quadrature(model, x, likelihood)
    estimate = iwae_log_likelihood(model, x, k=2048)
    assert torch.allclose(estimate, exact, atol=0.03), (estimate - exact)


@pytest.fixture(scope="module")
def trained_small_model(mnist):
    """An mlp VAE after 150 Adam steps on 4,096 MNIST images (~1 s on an idle machine)."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=4, hidden=(128,)))
    x = as_float_images(mnist.train.images[:4096], torch.device("cpu"))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = x[torch.randint(0, len(x), (64,), generator=g)]
        logits, mu, logvar = model(batch, g)
        loss = negative_elbo(logits, batch, mu, logvar, "bernoulli")[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.slow
def test_iwae_is_at_least_the_elbo_and_tightens_with_k(trained_small_model, mnist):
    model = trained_small_model
    x = as_float_images(mnist.test.images[:300], torch.device("cpu"))
    with torch.no_grad():
        log_w = log_importance_weights(model, x, 100, torch.Generator().manual_seed(0)).double()
    # For the same samples, log-mean-exp >= mean-log (Jensen): image by image, not just on average.
    assert (torch.logsumexp(log_w, 0) - math.log(100) >= log_w.mean(0)).all()
    # The mean log-weight estimates the ELBO, which evaluation computes with its closed-form KL.
    elbo = -evaluate_split(model, x).metrics["loss"]
    assert abs(log_w.mean().item() - elbo) < 0.5
    bounds = [iwae_log_likelihood(model, x, k).mean().item() for k in (1, 4, 32, 256)]
    assert abs(bounds[0] - elbo) < 1.0
    assert bounds == sorted(bounds) and bounds[-1] > elbo + 1.0, bounds


def test_iwae_handles_a_spatial_latent_and_is_reproducible():
    model = VAE(ModelConfig(arch="conv-spatial", latent_dim=2, channels=(4, 8), likelihood="gaussian"))
    x = torch.rand(3, 1, 28, 28)
    a, b = iwae_log_likelihood(model, x, k=7, rows=8), iwae_log_likelihood(model, x, k=7, rows=8)
    assert a.shape == (3,) and torch.isfinite(a).all() and torch.equal(a, b)
    assert posterior_means(model, x).shape == (3, 2 * 7 * 7)


def test_active_units_count_only_the_dimensions_the_encoder_uses():
    model = VAE(ModelConfig(latent_dim=4, hidden=()))  # encoder: one linear map to (mu, logvar)
    with torch.no_grad():
        weight = model.encoder[1].weight  # rows 0-3: mu, rows 4-7: logvar
        weight[1].zero_()  # mu_1 ignores the image
        weight[2].mul_(1e-3)  # mu_2 barely moves: Cov_x below 0.01
        weight[0].mul_(20.0)
    images = torch.rand(2000, 1, 28, 28)
    mu = posterior_means(model, images)
    variances = mu.var(0, unbiased=False)
    assert variances[1] == 0 and variances[2] < 0.01 and variances[0] > 0.01 and variances[3] > 0.01
    assert active_units(mu) == 2


def test_probe_is_at_chance_on_random_codes_and_near_perfect_on_separable_ones():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (4000,), generator=g)
    noise = torch.randn(4000, 8, generator=g)
    random_accuracy = probe_accuracy(noise[:3000], labels[:3000], noise[3000:], labels[3000:])
    assert abs(random_accuracy - 0.1) < 0.04
    centres = 10 * torch.randn(10, 8, generator=g)
    codes = centres[labels] + noise
    assert probe_accuracy(codes[:3000], labels[:3000], codes[3000:], labels[3000:]) > 0.99


def test_frechet_distance_is_zero_for_identical_features_and_matches_closed_forms():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5000, 6)) @ rng.normal(size=(6, 6))
    stats = feature_statistics(features)
    assert frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-8)
    # Diagonal covariances commute: d = |m_a - m_b|^2 + sum (s_a - s_b)^2.
    m_a, m_b = rng.normal(size=6), rng.normal(size=6)
    s_a, s_b = rng.uniform(0.5, 2, size=6), rng.uniform(0.5, 2, size=6)
    expected = np.sum((m_a - m_b) ** 2) + np.sum((s_a - s_b) ** 2)
    assert frechet_distance(m_a, np.diag(s_a**2), m_b, np.diag(s_b**2)) == pytest.approx(expected, rel=1e-10)
    # Full covariances: against the usual formula with scipy's general matrix square root.
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    cov_a, cov_b = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    reference = np.sum((m_a - m_b) ** 2) + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
    assert frechet_distance(m_a, cov_a, m_b, cov_b) == pytest.approx(reference, rel=1e-8)


def test_class_entropy_is_log_ten_for_balanced_predictions_and_zero_for_one_class():
    assert class_entropy(torch.arange(1000) % 10) == pytest.approx(math.log(10))
    assert class_entropy(torch.full((1000,), 3)) == 0.0
    assert math.copysign(1.0, class_entropy(torch.full((1000,), 3))) == 1.0  # not -0.0, printed "-0.000"
    assert class_entropy(torch.tensor([0, 1])) == pytest.approx(math.log(2))


@pytest.mark.slow
def test_iwae_hook_adds_the_figure_at_whole_epochs_only(trained_small_model):
    x = torch.rand(20, 1, 28, 28)
    score = iwae_each_epoch(x, k=4)
    records = [{"epoch": 0.2}, {"epoch": 1.0}]
    for record in records:
        record.update(score(trained_small_model, record))
    assert "test_iwae_log_likelihood" not in records[0]
    expected = iwae_log_likelihood(trained_small_model, x, 4).mean().item()
    assert records[1]["test_iwae_log_likelihood"] == pytest.approx(expected)


@pytest.mark.slow
def test_final_measures_of_a_trained_model_are_in_range(trained_small_model, mnist, tiny_classifier):
    data = Dataset(mnist.name, mnist.root, ImageSplit(mnist.train.images[:3000], mnist.train.labels[:3000]),
                   ImageSplit(mnist.test.images[:1000], mnist.test.labels[:1000]))
    config = RunConfig(data=DataConfig(), model=trained_small_model.config)
    measures, seconds = final_measures(trained_small_model, config, data, tiny_classifier, iwae_k=8)
    assert set(measures) == {"iwae_log_likelihood", "iwae_k", "active_units", "latent_units", "probe_accuracy",
                             "fd_classifier", "recon_class_accuracy", "sample_class_entropy",
                             "classifier_test_accuracy", "chance_accuracy", "max_class_entropy"}
    majority = torch.bincount(data.test.labels).max().item() / len(data.test.labels)
    assert measures["chance_accuracy"] == majority and measures["max_class_entropy"] == math.log(10)
    elbo = -evaluate_split(trained_small_model, as_float_images(data.test.images, torch.device("cpu"))).metrics["loss"]
    assert elbo < measures["iwae_log_likelihood"] < 0
    assert measures["iwae_k"] == 8 and 1 <= measures["active_units"] <= measures["latent_units"] == 4
    assert 0.5 < measures["probe_accuracy"] <= 1 and 0.15 < measures["recon_class_accuracy"] <= 1
    assert measures["fd_classifier"] > 0 and 0 < measures["sample_class_entropy"] <= math.log(10)
    assert measures["classifier_test_accuracy"] == tiny_classifier.test_accuracy
    assert set(seconds) == {"iwae", "active_units", "probe", "generation"}


def test_the_class_yardsticks_are_the_majority_share_and_ln_k_of_the_data():
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    dataset = Dataset("folder", None, ImageSplit(images, torch.tensor([0, 1, 2, 2])),
                      ImageSplit(images, torch.tensor([1, 1, 1, 0])))
    yardsticks = class_yardsticks(dataset)
    assert yardsticks["chance_accuracy"] == 0.75  # always answering class 1 on the test set
    assert yardsticks["max_class_entropy"] == pytest.approx(math.log(3))  # three classes, not the classifier's ten
