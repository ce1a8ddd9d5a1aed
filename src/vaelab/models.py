"""The VAE: a Gaussian encoder q(z|x) = N(mu, diag sigma^2), the reparameterization trick and a
decoder that outputs per-pixel logits. Three architectures (``mlp``, ``conv`` with a latent vector,
``conv-spatial`` with a latent map of ``latent_dim`` channels at 7x7), any latent size.

Images enter as float tensors in [0, 1] of shape (N, 1, 28, 28). The decoder's output is always a
logit map; the decoder *mean* image is its sigmoid, for every likelihood, so reconstructions stay
in [0, 1]. (For the continuous Bernoulli, sigmoid(logits) is its shape parameter lambda, not the
distribution's mean, which lies nearer 1/2; vaelab shows and scores lambda, as PyTorch's VAE example
does.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ARCHITECTURES, ModelConfig

IMAGE_SHAPE = (1, 28, 28)
IMAGE_PIXELS = math.prod(IMAGE_SHAPE)


def mlp_encoder(latent_dim: int, hidden: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = IMAGE_PIXELS
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 2 * latent_dim))
    return nn.Sequential(*layers)


def mlp_decoder(latent_dim: int, hidden: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    width = latent_dim
    for h in reversed(hidden):
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers += [nn.Linear(width, IMAGE_PIXELS), nn.Unflatten(1, IMAGE_SHAPE)]
    return nn.Sequential(*layers)


def conv_encoder(latent_dim: int, channels: tuple[int, ...]) -> nn.Module:
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(),  # 28 -> 14
        nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),  # 14 -> 7
        nn.Flatten(),
        nn.Linear(c2 * 7 * 7, 256), nn.ReLU(),
        nn.Linear(256, 2 * latent_dim),
    )


def conv_decoder(latent_dim: int, channels: tuple[int, ...]) -> nn.Module:
    c1, c2 = channels
    return nn.Sequential(
        nn.Linear(latent_dim, 256), nn.ReLU(),
        nn.Linear(256, c2 * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (c2, 7, 7)),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),  # 7 -> 14
        nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),  # 14 -> 28
    )


def spatial_encoder(latent_channels: int, channels: tuple[int, ...]) -> nn.Module:
    """Fully convolutional: posterior parameters are maps of 2 * latent_channels at 7x7."""
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(),  # 28 -> 14
        nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),  # 14 -> 7
        nn.Conv2d(c2, 2 * latent_channels, 3, padding=1),
    )


def spatial_decoder(latent_channels: int, channels: tuple[int, ...]) -> nn.Module:
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(latent_channels, c2, 3, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),  # 7 -> 14
        nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),  # 14 -> 28
    )


class VAE(nn.Module):
    """A VAE with a standard normal prior. ``forward`` returns (logits, mu, logvar)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {config.arch!r}; choose from {ARCHITECTURES}")
        if config.latent_dim < 1:
            raise ValueError(f"latent size must be >= 1, got {config.latent_dim}")
        self.config = config
        self.latent_dim = config.latent_dim
        # The shape of one z; consumers that want vectors (evaluation, measures) flatten it.
        self.latent_shape: tuple[int, ...] = (config.latent_dim,)
        if config.arch == "mlp":
            self.encoder = mlp_encoder(config.latent_dim, config.hidden)
            self.decoder = mlp_decoder(config.latent_dim, config.hidden)
        elif config.arch == "conv":
            self.encoder = conv_encoder(config.latent_dim, config.channels)
            self.decoder = conv_decoder(config.latent_dim, config.channels)
        else:
            self.encoder = spatial_encoder(config.latent_dim, config.channels)
            self.decoder = spatial_decoder(config.latent_dim, config.channels)
            self.latent_shape = (config.latent_dim, 7, 7)
        if config.likelihood == "gaussian-learned":
            # One global log sigma: a per-pixel one would shrink without bound on MNIST's always-black
            # border pixels and drive the NLL to minus infinity.
            self.log_std = nn.Parameter(torch.tensor(math.log(config.gaussian_std)))

    def decoder_std(self) -> float | torch.Tensor:
        """The Gaussian likelihood's std: fixed from the config, or the learned one."""
        return self.log_std.exp() if self.config.likelihood == "gaussian-learned" else self.config.gaussian_std

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (mu, log sigma^2), each of shape (N, *latent_shape)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits of shape (N, 1, 28, 28)."""
        return self.decoder(z)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): the sample stays differentiable in mu and sigma."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder mean at z = mu, in [0, 1]."""
        mu, _ = self.encode(x)
        return torch.sigmoid(self.decode(mu))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (decoder means) from z ~ N(0, I)."""
        device = next(self.parameters()).device
        z = torch.randn((n, *self.latent_shape), generator=generator, device=device)
        return torch.sigmoid(self.decode(z))
