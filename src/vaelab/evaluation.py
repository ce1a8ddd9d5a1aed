"""Scoring a model on a whole split: -ELBO with its parts, and MSE / SSIM / PSNR of reconstructions.

Reconstructions are decoder means at z = mu. A plain autoencoder (``objective="ae"``) has no posterior
noise and no KL term: its ``nll`` is scored at z = mu, its ``kl`` is recorded as 0 and its ``loss`` is
that NLL, its training objective (its rate is not a KL, and the rate-distortion figure says so).
For a VAE ``loss`` is the true -ELBO (nll + kl, whatever beta
training used), so runs with different betas stay comparable. It uses one reparameterized sample drawn from a
generator seeded afresh at every call, so the figure is a deterministic function of the weights and
evaluation never touches the training run's random streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .losses import negative_elbo
from .metrics import CORE_KEYS, POINT_KEYS
from .models import VAE
from .precision import to_host_float64
from .quality import mse_per_image, psnr_orig_per_image, psnr_per_image, ssim_orig_per_image, ssim_per_image

# The order of metrics.POINT_METRICS: split_sums computes them as one vector in this order.
METRICS = POINT_KEYS
# What a run written before ssim_orig / psnr_orig existed still holds; the report reads those runs too.
CORE_METRICS = CORE_KEYS
EVAL_NOISE_SEED = 1234
METRIC_CHUNK = 250


@dataclass
class SplitEvaluation:
    metrics: dict[str, float]  # means over images: loss = -ELBO, nll, kl (nats); mse, ssim, psnr, ssim_orig, psnr_orig
    mu: torch.Tensor  # posterior means of every image, flattened to (N, latent units), on the CPU


@torch.no_grad()
def evaluate_split(model: VAE, images: torch.Tensor, batch_size: int = 2000) -> SplitEvaluation:
    """``images`` are floats in [0, 1] of shape (N, 1, 28, 28) on the model's device."""
    sums, mu = split_sums(model, images, (0, len(images)), batch_size)
    return SplitEvaluation(metrics=dict(zip(METRICS, (sums / len(images)).tolist(), strict=True)), mu=mu)


def reconstruction_scores(x: torch.Tensor, recon: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """MSE, SSIM, PSNR, published SSIM, published PSNR of each image, in chunks of ``METRIC_CHUNK`` images.

    Each score is per image, so chunking leaves every value bitwise the same; it keeps the SSIMs' moment maps
    (five per image) in the CPU's cache, which made them 1.2x (ours) to 3x (published) cheaper in CPU time
    on 2,000 images of the 2-core CPU (docs/performance.md).
    """
    pairs = zip(x.split(METRIC_CHUNK), recon.split(METRIC_CHUNK), strict=True)
    chunks = [(mse_per_image(a, b), ssim_per_image(a, b), psnr_per_image(a, b), ssim_orig_per_image(a, b),
               psnr_orig_per_image(a, b)) for a, b in pairs]
    return tuple(torch.cat(column) for column in zip(*chunks, strict=True))


@torch.no_grad()
def split_sums(
    model: VAE, images: torch.Tensor, rows: tuple[int, int], batch_size: int = 2000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 sums (on the CPU) of every metric over ``images[rows[0]:rows[1]]``, and those images' posterior means.

    The noise of every batch of the whole split is drawn, whatever ``rows`` covers, so each image gets the
    sample it gets when the split is scored at once: the sums over disjoint row ranges (one per rank of a
    data-parallel run) add up to the single-process figures.
    """
    was_training = model.training
    model.eval()
    cfg = model.config
    first, stop = rows
    generator = torch.Generator().manual_seed(EVAL_NOISE_SEED)  # on the CPU: the same draws on every device
    sums = torch.zeros(len(METRICS), dtype=torch.float64)  # on the host (precision.py says why)
    mus = []
    for start in range(0, len(images), batch_size):
        end = min(start + batch_size, len(images))
        # The whole batch's draw, whichever of its rows this call scores: see the docstring.
        eps = torch.randn((end - start, *model.latent_shape), generator=generator, dtype=images.dtype)
        eps = eps.to(images.device)
        lo, hi = max(start, first), min(end, stop)
        if lo >= hi:
            continue
        x = images[lo:hi]
        mu, logvar = model.encode(x)
        z = mu if model.is_autoencoder else model.reparameterize(mu, logvar, eps=eps[lo - start : hi - start])
        loss, nll, kl = negative_elbo(model.decode(z), x, mu, logvar, cfg.likelihood, 1.0, model.decoder_std(),
                                      model.linear_output)
        if model.is_autoencoder:  # no posterior noise and no KL term: the loss is its objective, the NLL at mu
            loss, kl = nll, torch.zeros_like(kl)
        recon = model.decoder_mean(model.decode(mu))
        per_image = (loss, nll, kl, *reconstruction_scores(x, recon))
        sums += torch.stack([to_host_float64(v).sum() for v in per_image])
        mus.append(mu.flatten(1).float().cpu())  # a spatial latent map becomes one vector per image
    model.train(was_training)
    mu = torch.cat(mus) if mus else torch.zeros((0, math.prod(model.latent_shape)))
    return sums, mu
