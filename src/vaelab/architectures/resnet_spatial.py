"""The published project's autoencoder (``resnet-spatial``): ResNet blocks with GroupNorm and SiLU, a
self-attention mid block, and a spatial latent of c channels at 7x7.

Read from the published code (its VAE with down channels 32, 64, 128, mid channels 128, one ResNet layer
per block, no attention in the down/up blocks, 32 norm groups, 16 attention heads); written afresh here.

Encoder: 3x3 conv in -> down blocks (ResNet block, then a 4x4 stride-2 conv) 28 -> 14 -> 7 -> mid block
(ResNet, self-attention, ResNet) -> GroupNorm, SiLU, 3x3 conv to 2c -> 1x1 "pre-quant" conv.
Decoder: 1x1 "post-quant" conv, 3x3 conv to the mid width, mid block, up blocks (4x4 stride-2 transposed
conv, then a ResNet block) 7 -> 14 -> 28, GroupNorm, SiLU, 3x3 conv out: the image on the [-1, 1] scale,
with no squashing function.

Widths that are not multiples of 32 (or 16 for the heads) use the largest group / head count dividing them,
so narrower variants stay buildable; the published widths use exactly 32 groups and 16 heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ._stages import stage_sizes
from .registry import Architecture, Networks, register

NORM_GROUPS = 32
ATTENTION_HEADS = 16


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(NORM_GROUPS, channels), channels)


def norm_act_conv(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(group_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2))


class ResBlock(nn.Module):
    """Two GroupNorm-SiLU-3x3-conv layers plus a 1x1-conv shortcut (a 1x1 conv even at equal widths,
    as in the published model)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.first = norm_act_conv(c_in, c_out)
        self.second = norm_act_conv(c_out, c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x)) + self.shortcut(x)

    def figure_label(self) -> str:
        """The block as one box of the architecture figure."""
        return f"ResBlock {self.shortcut.in_channels}→{self.shortcut.out_channels} (2× GroupNorm·SiLU·conv 3×3)"


class SelfAttention(nn.Module):
    """GroupNorm, then multi-head self-attention over the H*W positions, added back to the input.

    The weights live in an ``nn.MultiheadAttention`` (the published layout). On the CPU the product is
    written out as two batched matmuls and a softmax: torch's fused attention kernel was measured slower
    there on these 49-token sequences with 4-8-dim heads (docs/performance.md); on a GPU the fused kernel
    (``scaled_dot_product_attention``) saves the launches and the (tokens x tokens) weights in memory.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.attention = nn.MultiheadAttention(channels, math.gcd(ATTENTION_HEADS, channels), batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        heads = self.attention.num_heads
        tokens = self.norm(x).reshape(n, c, h * w).transpose(1, 2)
        q, k, v = F.linear(tokens, self.attention.in_proj_weight, self.attention.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, h * w, heads, c // heads).transpose(1, 2) for t in (q, k, v))
        attended = attend(q, k, v, fused=x.device.type != "cpu").transpose(1, 2).reshape(n, h * w, c)
        attended = self.attention.out_proj(attended)
        return x + attended.transpose(1, 2).reshape(n, c, h, w)

    def figure_label(self) -> str:
        return f"Self-attention, {self.attention.num_heads} heads"


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fused: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over (batch, heads, tokens, d): PyTorch's fused kernel, or written out."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1) @ v


def mid_block(channels: int) -> nn.Sequential:
    return nn.Sequential(ResBlock(channels, channels), SelfAttention(channels), ResBlock(channels, channels))


def resnet_encoder(latent_channels: int, widths: tuple[int, ...], image_shape: tuple[int, ...]) -> nn.Sequential:
    """widths = (stem, after down block 1, after down block 2); posterior maps of 2c channels at a quarter
    of the image's size (7x7 on MNIST)."""
    stem, c1, c2 = widths
    return nn.Sequential(
        nn.Conv2d(image_shape[0], stem, 3, padding=1),
        ResBlock(stem, c1), nn.Conv2d(c1, c1, 4, stride=2, padding=1),  # 28 -> 14
        ResBlock(c1, c2), nn.Conv2d(c2, c2, 4, stride=2, padding=1),  # 14 -> 7
        mid_block(c2),
        norm_act_conv(c2, 2 * latent_channels),
        nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1),  # the published "pre-quant" conv
    )


def resnet_decoder(latent_channels: int, widths: tuple[int, ...], image_shape: tuple[int, ...],
                   sizes: list[tuple[int, int]]) -> nn.Sequential:
    """``sizes``: the feature-map sizes image -> half -> quarter; output_padding restores odd sizes."""
    stem, c1, c2 = widths

    def up(channels: int, small: tuple[int, int], big: tuple[int, int]) -> nn.ConvTranspose2d:
        padding = (big[0] - 2 * small[0], big[1] - 2 * small[1])
        return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, output_padding=padding)

    return nn.Sequential(
        nn.Conv2d(latent_channels, latent_channels, 1),  # the published "post-quant" conv
        nn.Conv2d(latent_channels, c2, 3, padding=1),
        mid_block(c2),
        up(c2, sizes[2], sizes[1]), ResBlock(c2, c1),  # 7 -> 14
        up(c1, sizes[1], sizes[0]), ResBlock(c1, stem),  # 14 -> 28
        norm_act_conv(stem, image_shape[0]),
    )


def build(latent_channels: int, widths: tuple[int, ...], image_shape: tuple[int, ...]) -> Networks:
    sizes = stage_sizes(*image_shape[1:], stages=2)
    return Networks(resnet_encoder(latent_channels, widths, image_shape),
                    resnet_decoder(latent_channels, widths, image_shape, sizes), (latent_channels, *sizes[-1]))


RESNET_SPATIAL = register(Architecture(
    name="resnet-spatial", position=3, build=build,
    summary="the published project's ResNet/attention model around a latent map of c channels",
    widths_field="channels", default_widths=(32, 64, 128), widths_count=3,
    widths_meaning="three widths: its stem and two down blocks",
    spatial=True, likelihoods=("gaussian", "gaussian-learned"),
    likelihood_reason="outputs images on the [-1, 1] scale without a squashing function",
    linear_output=True,
    # bf16 where the hardware does it fast, within the tolerance (docs/original.md, "Precision"); GroupNorm and
    # attention want the default memory layout, so no channels-last (docs/performance.md).
    fast_in_bf16=True,
))
