"""Scoring a model on a whole split: -ELBO with its parts, and MSE / SSIM / PSNR of reconstructions.

Reconstructions are decoder means at z = mu. ``loss`` is the true -ELBO (nll + kl, whatever beta
training used), so runs with different betas stay comparable. It uses one reparameterized sample drawn from a
generator seeded afresh at every call, so the figure is a deterministic function of the weights and
evaluation never touches the training run's random streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .losses import negative_elbo
from .metrics import mse_per_image, psnr_per_image, ssim_per_image
from .models import VAE

METRICS = ("loss", "nll", "kl", "mse", "ssim", "psnr")
EVAL_NOISE_SEED = 1234


@dataclass
class SplitEvaluation:
    metrics: dict[str, float]  # means over images: loss = -ELBO, nll, kl (nats); mse, ssim, psnr
    mu: torch.Tensor  # posterior means of every image, on the CPU


@torch.no_grad()
def evaluate_split(model: VAE, images: torch.Tensor, batch_size: int = 2000) -> SplitEvaluation:
    """``images`` are floats in [0, 1] of shape (N, 1, 28, 28) on the model's device."""
    was_training = model.training
    model.eval()
    cfg = model.config
    generator = torch.Generator(device=images.device).manual_seed(EVAL_NOISE_SEED)
    sums = torch.zeros(len(METRICS), dtype=torch.float64, device=images.device)
    mus = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        mu, logvar = model.encode(x)
        z = model.reparameterize(mu, logvar, generator)
        loss, nll, kl = negative_elbo(model.decode(z), x, mu, logvar, cfg.likelihood, 1.0, cfg.gaussian_std)
        recon = torch.sigmoid(model.decode(mu))
        per_image = (loss, nll, kl, mse_per_image(x, recon), ssim_per_image(x, recon), psnr_per_image(x, recon))
        sums += torch.stack([v.double().sum() for v in per_image])
        mus.append(mu.float().cpu())
    model.train(was_training)
    means = (sums / len(images)).tolist()
    return SplitEvaluation(metrics=dict(zip(METRICS, means)), mu=torch.cat(mus))
