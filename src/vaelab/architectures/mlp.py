"""``mlp``: fully connected layers on the flattened image, the default study's model (784-512-256-z on MNIST,
and its mirror)."""

from __future__ import annotations

import math

from torch import nn

from .registry import Architecture, Networks, register


def mlp_encoder(latent_dim: int, hidden: tuple[int, ...], image_shape: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(image_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 2 * latent_dim))
    return nn.Sequential(*layers)


def mlp_decoder(latent_dim: int, hidden: tuple[int, ...], image_shape: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    width = latent_dim
    for h in reversed(hidden):
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers += [nn.Linear(width, math.prod(image_shape)), nn.Unflatten(1, tuple(image_shape))]
    return nn.Sequential(*layers)


def build(latent_dim: int, hidden: tuple[int, ...], image_shape: tuple[int, ...]) -> Networks:
    return Networks(mlp_encoder(latent_dim, hidden, image_shape), mlp_decoder(latent_dim, hidden, image_shape),
                    (latent_dim,))


MLP = register(Architecture(
    name="mlp", position=0, build=build,
    summary="fully connected layers (--hidden) on the flattened image",
    widths_field="hidden", default_widths=(512, 256), widths_meaning="the hidden layers' widths",
    # In fp32 on every machine: the default study's numbers stay those of every earlier vaelab.
    fast_in_bf16=False,
))
