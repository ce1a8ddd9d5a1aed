"""The negative ELBO and its two parts, per image, in nats.

-ELBO(x) = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I)). The expectation is estimated with the
single reparameterized sample the caller decoded; the KL is exact (closed form for two Gaussians).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per sample, summed over latent dimensions."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str, gaussian_std: float = 0.1) -> torch.Tensor:
    """-log p(x|z) per sample, summed over pixels.

    bernoulli: binary cross-entropy on logits (x may be grey: the usual relaxation for MNIST).
    gaussian: N(x; sigmoid(logits), gaussian_std^2) per pixel, i.e. scaled squared error plus its
    normalising constant, so the figure is a true NLL in nats.
    """
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "gaussian":
        sq = (x - torch.sigmoid(logits)).pow(2)
        nll = 0.5 * sq / gaussian_std**2 + math.log(gaussian_std) + 0.5 * math.log(2 * math.pi)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return nll.flatten(1).sum(1)


def negative_elbo(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    likelihood: str,
    beta: float = 1.0,
    gaussian_std: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, nll, kl), each per sample; loss = nll + beta * kl."""
    nll = reconstruction_nll(logits, x, likelihood, gaussian_std)
    kl = kl_to_standard_normal(mu, logvar)
    return nll + beta * kl, nll, kl
