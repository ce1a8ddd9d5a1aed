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
from .quality import (
    OrigReference,
    mse_per_image,
    psnr_orig_per_image,
    psnr_per_image,
    reference_bytes,
    ssim_orig_per_image,
    ssim_orig_reference,
    ssim_per_image,
    ssim_reference,
)

# The order of metrics.POINT_METRICS: split_sums computes them as one vector in this order.
METRICS = POINT_KEYS
# What a run written before ssim_orig / psnr_orig existed still holds; the report reads those runs too.
CORE_METRICS = CORE_KEYS
EVAL_NOISE_SEED = 1234
METRIC_CHUNK = 250
# The most memory a split's kept reference moments may take (MNIST's 10,000 images take about 65 MB): above it
# the originals are filtered again at each evaluation point, to the same values.
REFERENCE_BYTES_LIMIT = 256 * 2**20  # per split: a run keeps two (the test set and the training subset)


@dataclass
class SplitEvaluation:
    metrics: dict[str, float]  # means over images: loss = -ELBO, nll, kl (nats); mse, ssim, psnr, ssim_orig, psnr_orig
    mu: torch.Tensor  # posterior means of every image, flattened to (N, latent units), on the CPU


@dataclass(frozen=True)
class Originals:
    """What both SSIMs need of a split's original images alone, computed once for the run instead of at each of
    its evaluation points (the same values: ``quality.ssim_reference``). Rows are images."""

    channels: int
    ssim: torch.Tensor
    ssim_orig: OrigReference

    def rows(self, start: int, stop: int) -> Originals:
        a, b = start * self.channels, stop * self.channels  # the references hold one row per image channel
        return Originals(self.channels, self.ssim[a:b], OrigReference(*(t[a:b] for t in self.ssim_orig)))


@torch.no_grad()
def split_originals(images: torch.Tensor, limit_bytes: int = REFERENCE_BYTES_LIMIT) -> Originals | None:
    """The SSIM reference moments of a split's ``images`` (N, C, H, W), filtered in chunks of ``METRIC_CHUNK``
    as the scores are; None where they would take more than ``limit_bytes``, or where there are none."""
    if not len(images) or len(images) * reference_bytes(tuple(images.shape[1:])) > limit_bytes:
        return None
    chunks = images.split(METRIC_CHUNK)
    orig = [ssim_orig_reference(chunk) for chunk in chunks]
    return Originals(images.shape[1], torch.cat([ssim_reference(chunk) for chunk in chunks]),
                     OrigReference(*(torch.cat(parts) for parts in zip(*orig, strict=True))))


@torch.no_grad()
def evaluate_split(model: VAE, images: torch.Tensor, batch_size: int = 2000,
                   originals: Originals | None = None) -> SplitEvaluation:
    """``images`` are floats in [0, 1] of shape (N, 1, 28, 28) on the model's device; ``originals``, when given,
    are ``split_originals(images)``."""
    sums, mu = split_sums(model, images, (0, len(images)), batch_size, originals)
    return SplitEvaluation(metrics=dict(zip(METRICS, (sums / len(images)).tolist(), strict=True)), mu=mu)


def reconstruction_scores(x: torch.Tensor, recon: torch.Tensor, originals: Originals | None = None
                          ) -> tuple[torch.Tensor, ...]:
    """MSE, SSIM, PSNR, published SSIM, published PSNR of each image, in chunks of ``METRIC_CHUNK`` images.

    Each score is per image, so chunking leaves every value bitwise the same; it keeps the SSIMs' moment maps
    in the CPU's cache, which made them 1.2x (ours) to 3x (published) cheaper in CPU time on 2,000 images of
    the 2-core CPU (docs/performance.md). ``originals`` are ``x``'s reference moments, when kept.
    """
    chunks = []
    for start in range(0, len(x), METRIC_CHUNK):
        a, b = x[start : start + METRIC_CHUNK], recon[start : start + METRIC_CHUNK]
        kept = originals.rows(start, start + len(a)) if originals is not None else None
        ssim_ref, orig_ref = (None, None) if kept is None else (kept.ssim, kept.ssim_orig)
        chunks.append((mse_per_image(a, b), ssim_per_image(a, b, ssim_ref), psnr_per_image(a, b),
                       ssim_orig_per_image(a, b, orig_ref), psnr_orig_per_image(a, b)))
    return tuple(torch.cat(column) for column in zip(*chunks, strict=True))


@torch.no_grad()
def split_sums(
    model: VAE, images: torch.Tensor, rows: tuple[int, int], batch_size: int = 2000, originals: Originals | None = None
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
        output = model.decode(z)
        loss, nll, kl = negative_elbo(output, x, mu, logvar, cfg.likelihood, 1.0, model.decoder_std(),
                                      model.linear_output)
        if model.is_autoencoder:  # no posterior noise and no KL term: the loss is its objective, the NLL at mu
            loss, kl = nll, torch.zeros_like(kl)
        # The reconstruction decodes mu, which an autoencoder has just decoded.
        recon = model.decoder_mean(output if model.is_autoencoder else model.decode(mu))
        kept = originals.rows(lo, hi) if originals is not None else None
        per_image = (loss, nll, kl, *reconstruction_scores(x, recon, kept))
        sums += torch.stack([to_host_float64(v).sum() for v in per_image])
        mus.append(mu.flatten(1).float().cpu())  # a spatial latent map becomes one vector per image
    model.train(was_training)
    mu = torch.cat(mus) if mus else torch.zeros((0, math.prod(model.latent_shape)))
    return sums, mu
