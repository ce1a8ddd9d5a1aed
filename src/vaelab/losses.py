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


CB_TAYLOR_BELOW = 1e-2  # |logit| under which log C uses its Taylor series instead of 0/0-prone tanh


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda) of the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), lambda = sigmoid(logits).

    C(lambda) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda), which in terms of the logit eta is
    eta / tanh(eta / 2): even in eta, 2 at eta = 0 (lambda = 1/2), growing like |eta|. Near eta = 0 the
    quotient is 0/0, so there it uses log 2 + log1p(eta^2 / 12 - eta^4 / 720) (error O(eta^6)).
    """
    a = logits.abs()
    safe = torch.where(a < CB_TAYLOR_BELOW, torch.ones_like(a), a)  # keeps the unused branch's gradient finite
    exact = torch.log(safe) - torch.log(torch.tanh(0.5 * safe))
    sq = logits.pow(2)
    taylor = math.log(2.0) + torch.log1p(sq / 12.0 - sq.pow(2) / 720.0)
    return torch.where(a < CB_TAYLOR_BELOW, taylor, exact)


def decoder_mean(output: torch.Tensor, linear_output: bool = False) -> torch.Tensor:
    """The decoder's mean image on the [0, 1] scale.

    Most architectures output logits and the mean is their sigmoid. ``linear_output`` (resnet-spatial, as
    the published project) outputs the image on the [-1, 1] scale without a squashing function; the mean is
    then (output + 1) / 2, left unclamped, as the published project scored it.
    """
    return (output + 1.0) * 0.5 if linear_output else torch.sigmoid(output)


def reconstruction_nll(
    logits: torch.Tensor, x: torch.Tensor, likelihood: str, gaussian_std: float | torch.Tensor = 0.1,
    linear_output: bool = False,
) -> torch.Tensor:
    """-log p(x|z) per sample, summed over pixels.

    bernoulli: binary cross-entropy on logits (x may be grey: the usual relaxation for MNIST).
    continuous-bernoulli: the normalised density on [0, 1] that makes grey pixels a proper likelihood:
    binary cross-entropy minus log C(lambda).
    gaussian, gaussian-learned: N(x; sigmoid(logits), gaussian_std^2) per pixel, i.e. scaled squared
    error plus its normalising constant, so the figure is a true NLL in nats. For gaussian-learned the
    caller passes the model's learned std (a tensor, so gradients reach it). With ``linear_output`` the
    Gaussian's mean is ``decoder_mean(logits, True)``: squared error on the [-1, 1] scale up to a factor 4.
    """
    if linear_output and likelihood not in ("gaussian", "gaussian-learned"):
        raise ValueError(f"a linear decoder output needs a gaussian likelihood, not {likelihood!r}")
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "continuous-bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none") - continuous_bernoulli_log_norm(logits)
    elif likelihood in ("gaussian", "gaussian-learned"):
        # A fixed std stays a CPU scalar, which every device's kernels take as an argument: building it on the
        # device would copy from the host, a blocking transfer at every step. A learned std is already there.
        std = torch.as_tensor(gaussian_std, dtype=logits.dtype)
        sq = (x - decoder_mean(logits, linear_output)).pow(2)
        nll = 0.5 * sq / std**2 + torch.log(std) + 0.5 * math.log(2 * math.pi)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return nll.flatten(1).sum(1)


def summed_negative_elbo(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    likelihood: str,
    beta: float = 1.0,
    gaussian_std: float | torch.Tensor = 0.1,
    linear_output: bool = False,
) -> torch.Tensor:
    """The loss of ``negative_elbo`` summed over the batch: what a training step differentiates.

    Its gradients are those of ``negative_elbo(...)[0].sum()`` value for value (each pixel's and each latent
    unit's term gets the same upstream gradient either way); only the loss itself is summed in another order.
    A Bernoulli likelihood's cross-entropy is then reduced inside its kernel, instead of being stored per pixel
    and summed per image: the step's largest saving beside the matrix products (docs/performance.md).
    """
    if likelihood == "bernoulli" and not linear_output:
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    else:
        nll = reconstruction_nll(logits, x, likelihood, gaussian_std, linear_output).sum()
    return nll + beta * kl_to_standard_normal(mu, logvar).sum()


def negative_elbo(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    likelihood: str,
    beta: float = 1.0,
    gaussian_std: float | torch.Tensor = 0.1,
    linear_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, nll, kl), each per sample; loss = nll + beta * kl."""
    nll = reconstruction_nll(logits, x, likelihood, gaussian_std, linear_output)
    kl = kl_to_standard_normal(mu, logvar)
    return nll + beta * kl, nll, kl
