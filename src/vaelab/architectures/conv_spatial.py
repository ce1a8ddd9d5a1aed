"""``conv-spatial``: fully convolutional, around a latent *map* of latent_dim channels at a quarter of the image's
size (7x7 on MNIST)."""

from __future__ import annotations

from torch import nn

from ._stages import down, stage_channels, stage_sizes, up
from .registry import Architecture, Networks, register


def spatial_encoder(latent_channels: int, channels: tuple[int, ...], image_shape: tuple[int, ...]) -> nn.Module:
    """Posterior parameters are maps of 2 * latent_channels at a quarter of the image's size."""
    widths = stage_channels(channels, 2)
    return nn.Sequential(*down(image_shape[0], widths), nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1))


def spatial_decoder(latent_channels: int, channels: tuple[int, ...], image_shape: tuple[int, ...]) -> nn.Module:
    widths = stage_channels(channels, 2)
    sizes = stage_sizes(*image_shape[1:], stages=2)
    return nn.Sequential(nn.Conv2d(latent_channels, widths[-1], 3, padding=1), nn.ReLU(),
                         *up(widths, image_shape[0], sizes))


def build(latent_channels: int, channels: tuple[int, ...], image_shape: tuple[int, ...]) -> Networks:
    side = stage_sizes(*image_shape[1:], stages=2)[-1]
    return Networks(spatial_encoder(latent_channels, channels, image_shape),
                    spatial_decoder(latent_channels, channels, image_shape), (latent_channels, *side))


CONV_SPATIAL = register(Architecture(
    name="conv-spatial", position=2, build=build,
    summary="fully convolutional around a latent map of c channels at a quarter of the image size",
    widths_field="channels", default_widths=(32, 64), widths_meaning="the two stride-2 stages' widths",
    spatial=True, channels_last=True,
))
