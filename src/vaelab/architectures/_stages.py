"""Stride-2 convolution stages shared by the convolutional architectures: how many the image size calls for,
their widths, and the layers down and back up."""

from __future__ import annotations

from torch import nn

BOTTLENECK_SIDE = 8  # conv: stride-2 stages are added until the feature map is at most this wide
MAX_CONV_CHANNELS = 256


def stage_sizes(height: int, width: int, stages: int | None = None) -> list[tuple[int, int]]:
    """Feature-map sizes through stride-2 4x4 convolutions (padding 1), from the image down.

    ``stages`` None: at least two, then more until the map is at most ``BOTTLENECK_SIDE`` wide, so the
    depth follows the image size (28 -> 14 -> 7; 32 -> 16 -> 8; 64 -> 32 -> 16 -> 8)."""
    sizes = [(height, width)]
    while (len(sizes) - 1 < (stages or 2) or (stages is None and max(sizes[-1]) > BOTTLENECK_SIDE)):
        h, w = sizes[-1]
        if min(h, w) < 2:
            raise ValueError(f"images of {height}x{width} are too small for {len(sizes)} stride-2 stages")
        sizes.append((h // 2, w // 2))
    return sizes


def stage_channels(channels: tuple[int, ...], stages: int) -> tuple[int, ...]:
    """The configured widths, then each further stage doubles the last (up to ``MAX_CONV_CHANNELS``)."""
    widths = list(channels[:stages])
    while len(widths) < stages:
        widths.append(min(2 * widths[-1], MAX_CONV_CHANNELS))
    return tuple(widths)


def down(in_channels: int, widths: tuple[int, ...]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.ReLU()]
        in_channels = width
    return layers


def up(widths: tuple[int, ...], out_channels: int, sizes: list[tuple[int, int]]) -> list[nn.Module]:
    """Transposed convolutions back up through ``sizes``; output_padding restores odd sizes (25 -> 12 -> 25)."""
    layers: list[nn.Module] = []
    targets = list(reversed(widths[:-1])) + [out_channels]
    in_channels = widths[-1]
    for k, width in enumerate(targets):
        (small_h, small_w), (big_h, big_w) = sizes[-1 - k], sizes[-2 - k]
        padding = (big_h - 2 * small_h, big_w - 2 * small_w)
        layers.append(nn.ConvTranspose2d(in_channels, width, 4, stride=2, padding=1, output_padding=padding))
        if k < len(targets) - 1:
            layers.append(nn.ReLU())
        in_channels = width
    return layers
