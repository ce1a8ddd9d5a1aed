"""``conv``: stride-2 convolutions down to a map at most 8 wide (28 -> 14 -> 7 on MNIST), a dense layer to a
latent vector, and the mirror back up with transposed convolutions."""

from __future__ import annotations

from torch import nn

from ._stages import down, stage_channels, stage_sizes, up
from .registry import Architecture, Networks, register


def conv_encoder(latent_dim: int, channels: tuple[int, ...], image_shape: tuple[int, ...]) -> nn.Module:
    sizes = stage_sizes(*image_shape[1:])
    widths = stage_channels(channels, len(sizes) - 1)
    h, w = sizes[-1]
    return nn.Sequential(
        *down(image_shape[0], widths),  # MNIST: 28 -> 14 -> 7
        nn.Flatten(),
        nn.Linear(widths[-1] * h * w, 256), nn.ReLU(),
        nn.Linear(256, 2 * latent_dim),
    )


def conv_decoder(latent_dim: int, channels: tuple[int, ...], image_shape: tuple[int, ...]) -> nn.Module:
    sizes = stage_sizes(*image_shape[1:])
    widths = stage_channels(channels, len(sizes) - 1)
    h, w = sizes[-1]
    return nn.Sequential(
        nn.Linear(latent_dim, 256), nn.ReLU(),
        nn.Linear(256, widths[-1] * h * w), nn.ReLU(),
        nn.Unflatten(1, (widths[-1], h, w)),
        *up(widths, image_shape[0], sizes),  # MNIST: 7 -> 14 -> 28
    )


def build(latent_dim: int, channels: tuple[int, ...], image_shape: tuple[int, ...]) -> Networks:
    return Networks(conv_encoder(latent_dim, channels, image_shape), conv_decoder(latent_dim, channels, image_shape),
                    (latent_dim,))


CONV = register(Architecture(
    name="conv", position=1, build=build,
    summary="stride-2 convolutions (--widths) and a dense layer to a latent vector; better than mlp on images",
    widths_field="channels", default_widths=(32, 64), widths_meaning="the stride-2 stages' widths",
    # bf16 is opt-in (docs/original.md, "Precision"): on the small conv recipe it moved the numbers beyond
    # the tolerance; channels-last helps its bf16 step on CPU (docs/performance.md).
    channels_last=True,
))
