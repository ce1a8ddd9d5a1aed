"""How a trained model's latent space is laid out: the measures behind the AE-vs-VAE claims.

- Aggregate-posterior KL: the Gaussian that matches the first two moments of the aggregate posterior
  q(z) = mean over test images of q(z|x) (for a plain autoencoder, of its codes) against the prior
  N(0, I): KL(N(m, S) || N(0, I)) = (tr S + m'm - d - log det S) / 2 nats. 0 when the codes fill the
  prior exactly; it grows as they shift, shrink, stretch or collapse. The covariance gets a floor of
  ``COVARIANCE_FLOOR`` on its diagonal, so codes that collapse onto a subspace score high, not infinite.
- Interpolation jump (continuity): for ``INTERPOLATION_PAIRS`` fixed pairs of test images, decode
  ``INTERPOLATION_STEPS`` + 1 evenly spaced points on the straight line between their posterior means and
  take the pixel distances between consecutive decodes; a pair's jump is the largest step over the mean
  step. 1 means the decode changes evenly along the line; ``INTERPOLATION_STEPS`` means all the change
  happens in one step. The measure is the mean over pairs whose decodes differ at all: lower is smoother.
- Fitted-prior samples: codes drawn from the Gaussian fitted to the training set's posterior means (the
  usual ex-post density for sampling a plain autoencoder), decoded like prior samples.

Every draw comes from a generator seeded afresh, so the measures are deterministic functions of the weights.
"""

from __future__ import annotations

import torch

from .models import VAE
from .precision import to_host_float64

COVARIANCE_FLOOR = 1e-6
INTERPOLATION_PAIRS = 200
INTERPOLATION_STEPS = 16
INTERPOLATION_SEED = 2468
FITTED_SEED = 1357


@torch.no_grad()
def posterior_moments(model: VAE, images: torch.Tensor, batch_size: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and variances of each image, flattened to (N, latent units), float64 on the CPU; a plain
    autoencoder's variances are 0 (its codes are points)."""
    means, variances = [], []
    for i in range(0, len(images), batch_size):
        mu, logvar = model.encode(images[i : i + batch_size])
        means.append(to_host_float64(mu.flatten(1)))
        noise = torch.zeros_like(mu) if model.is_autoencoder else logvar.exp()
        variances.append(to_host_float64(noise.flatten(1)))
    return torch.cat(means), torch.cat(variances)


def fitted_gaussian(means: torch.Tensor, variances: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, S): the mean and covariance of the mixture of N(means_i, diag variances_i), with the diagonal floor."""
    m = means.mean(0)
    centred = means - m
    covariance = centred.T @ centred / len(means)
    if variances is not None:
        covariance = covariance + torch.diag(variances.mean(0))
    return m, covariance + COVARIANCE_FLOOR * torch.eye(len(m), dtype=covariance.dtype)


def kl_to_prior(m: torch.Tensor, covariance: torch.Tensor) -> float:
    """KL(N(m, S) || N(0, I)) in nats."""
    logdet = torch.linalg.slogdet(covariance).logabsdet
    return float(0.5 * (torch.trace(covariance) + m @ m - len(m) - logdet))


def aggregate_posterior_kl(model: VAE, images: torch.Tensor) -> float:
    means, variances = posterior_moments(model, images)
    return kl_to_prior(*fitted_gaussian(means, variances))


@torch.no_grad()
def interpolation_jump(model: VAE, images: torch.Tensor, pairs: int = INTERPOLATION_PAIRS,
                       steps: int = INTERPOLATION_STEPS) -> float:
    generator = torch.Generator().manual_seed(INTERPOLATION_SEED)
    pairs = min(pairs, len(images) // 2)
    chosen = torch.randperm(len(images), generator=generator)[: 2 * pairs].to(images.device)
    mu, _ = model.encode(images[chosen])
    start, end = mu[:pairs], mu[pairs:]
    t = torch.linspace(0, 1, steps + 1, device=mu.device, dtype=mu.dtype).view(1, -1, *[1] * (mu.dim() - 1))
    line = start.unsqueeze(1) + t * (end - start).unsqueeze(1)  # (pairs, steps + 1, *latent_shape)
    decoded = to_host_float64(model.decoder_mean(model.decode(line.flatten(0, 1))).view(pairs, steps + 1, -1))
    step_sizes = (decoded[:, 1:] - decoded[:, :-1]).norm(dim=2)  # (pairs, steps)
    moved = step_sizes.sum(1) > 0  # two images with one code: no change along the line to judge
    if not moved.any():
        return 1.0
    jump = step_sizes[moved].max(1).values / step_sizes[moved].mean(1)
    return float(jump.mean())


@torch.no_grad()
def fitted_prior_samples(model: VAE, train_images: torch.Tensor, n: int, batch_size: int = 2000) -> torch.Tensor:
    """``n`` decodes of codes drawn from the Gaussian fitted to ``train_images``' posterior means."""
    means, _ = posterior_moments(model, train_images)
    m, covariance = fitted_gaussian(means)
    factor = torch.linalg.cholesky(covariance)
    generator = torch.Generator().manual_seed(FITTED_SEED)
    device = next(model.parameters()).device
    images = []
    for i in range(0, n, batch_size):
        eps = torch.randn((min(batch_size, n - i), len(m)), generator=generator, dtype=torch.float64)
        z = (m + eps @ factor.T).float().view(-1, *model.latent_shape).to(device)
        images.append(model.decoder_mean(model.decode(z)))
    return torch.cat(images)
