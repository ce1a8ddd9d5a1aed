"""Image-quality metrics between inputs and reconstructions, per image, on whole batches.

Pixels are in [0, 1] (data range 1). MSE is per pixel. PSNR = 10 log10(1 / MSE) per image; a
perfect reconstruction (MSE = 0) is capped at ``PSNR_CAP_DB``. SSIM follows Wang et al. 2004 with
an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (not sample) covariances,
averaged over the window positions that lie wholly inside the image; this matches scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)``; colour images get it per channel, averaged, as ``channel_axis=0`` does. Images narrower
than the window (8 to 10 pixels, where scikit-image refuses) get the widest odd window that fits, the same
Gaussian cut shorter (7 taps on 8x8). The separable
Gaussian filter runs as two matrix products over the whole batch, or, on images wider than
``SSIM_BANDED_MAX_SIDE``, as two 1-D convolutions.

``ssim_orig`` / ``psnr_orig`` are the published project's definitions (scikit-image defaults on the
[-1, 1] scale, per-image data range), so vaelab's numbers compare like for like with its README.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # scikit-image: int(truncate * sigma + 0.5) with truncate = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
# The banded product costs O(side^3) per image, the convolutions O(11 side^2) but with a far slower
# kernel: on 2 CPU cores (torch 2.13, 5 moment maps) the product was 21x faster at 28 px, 7x at 128,
# 2.3x at 512, 1.2x at 1024, even at 1536 and 0.73x at 2048 (benchmark in docs/images.md).
SSIM_BANDED_MAX_SIDE = 1536


def mse_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).pow(2).flatten(1).mean(1)


def psnr_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mse = mse_per_image(x, y).clamp_min(10 ** (-PSNR_CAP_DB / 10))
    return -10.0 * torch.log10(mse)


def ssim_radius(height: int, width: int) -> int:
    """The Gaussian window's radius on images of this size: 5, or less where 11 pixels do not fit."""
    return min(SSIM_RADIUS, (min(height, width) - 1) // 2)


@functools.cache  # built once per size, device and dtype, not for every chunk of images (dozens of tiny kernels)
def _gaussian_band(size: int, radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 'valid' 1-D Gaussian filter over ``size`` pixels as a banded (size - 2 radius, size) matrix.

    Filtering an image along both axes is then two small matrix products, B @ img @ B.T, which
    runs several times faster on a CPU than grouped convolutions with 11x1 and 1x11 kernels.
    """
    taps = _gaussian_taps(radius, device, dtype)
    out = size - 2 * radius
    band = torch.zeros(out, size, device=device, dtype=dtype)
    for i in range(out):
        band[i, i : i + taps.numel()] = taps
    return band


def _gaussian_taps(radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    taps = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def _gaussian_filter(stacked: torch.Tensor) -> torch.Tensor:
    """'Valid' Gaussian filtering of (B, K, H, W) along both image axes."""
    height, width = stacked.shape[-2:]
    radius = ssim_radius(height, width)
    if max(height, width) <= SSIM_BANDED_MAX_SIDE:
        rows = _gaussian_band(height, radius, stacked.device, stacked.dtype)
        cols = _gaussian_band(width, radius, stacked.device, stacked.dtype)
        return rows @ stacked @ cols.T
    taps = _gaussian_taps(radius, stacked.device, stacked.dtype)
    flat = stacked.reshape(-1, 1, height, width)
    flat = F.conv2d(F.conv2d(flat, taps.view(1, 1, -1, 1)), taps.view(1, 1, 1, -1))
    return flat.view(*stacked.shape[:2], *flat.shape[-2:])


def _per_channel(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N * C, 1, H, W): each channel scored as an image of its own."""
    return images.reshape(-1, 1, *images.shape[-2:])


def ssim_reference(x: torch.Tensor) -> torch.Tensor:
    """The part of ``ssim_per_image`` that depends on the originals alone: the Gaussian-window means of each
    original channel and of its square, (N * C, 2, h, w). A split scored at every evaluation point filters its
    originals once this way instead of at every point; the values are bitwise those filtered beside the
    reconstructions' maps (each map is filtered on its own, whatever is stacked with it)."""
    flat = _per_channel(x)
    return _gaussian_filter(torch.cat([flat, flat * flat], dim=1))


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM of each image pair, averaged over channels; x and y are (N, C, H, W) in [0, 1].
    ``reference`` is ``ssim_reference(x)``, when the caller kept it."""
    n, channels = x.shape[:2]
    xf, yf = _per_channel(x), _per_channel(y)
    mu_x, m_xx = (ssim_reference(x) if reference is None else reference).unbind(1)
    # One filtering pass for the moment maps that involve the reconstruction: y, y^2, xy stacked as channels.
    mu_y, m_yy, m_xy = _gaussian_filter(torch.cat([yf, yf * yf, xf * yf], dim=1)).unbind(1)
    var_x = m_xx - mu_x**2
    var_y = m_yy - mu_y**2
    cov_xy = m_xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1).view(n, channels).mean(1)


# --- The published project's definitions ------------------------------------------------------------
# It scored each test image with scikit-image's defaults on the [-1, 1] scale it trained on: a 7x7
# uniform window, sample covariances (N / (N - 1)), K1 = 0.01, K2 = 0.03, data_range = max - min of the
# original image, and the decoder's raw output (not clamped). SSIM is not shift-invariant, so the scale
# matters: on [-1, 1] MNIST's black background sits at -1, not 0.
ORIG_WINDOW = 7


def to_signed_scale(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the scale the published project trained and scored on."""
    return 2.0 * images - 1.0


def _data_range(x: torch.Tensor) -> torch.Tensor:
    """max - min of each original image, as (N,); a constant image falls back to the scale's full range (2)."""
    flat = x.flatten(1)
    span = flat.amax(1) - flat.amin(1)
    return torch.where(span > 0, span, torch.full_like(span, 2.0))


def psnr_orig_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The published PSNR of each pair; x (originals) and y (reconstructions) given on the [0, 1] scale."""
    xs, ys = to_signed_scale(x), to_signed_scale(y)
    mse = mse_per_image(xs, ys).clamp_min(10 ** (-PSNR_CAP_DB / 10))
    return 10.0 * torch.log10(_data_range(xs).pow(2) / mse).clamp(max=PSNR_CAP_DB)


def _box_filter(stacked: torch.Tensor) -> torch.Tensor:
    """'Valid' 7x7 mean filtering of (B, K, H, W): a banded matrix product on each axis, as the Gaussian one."""
    height, width = stacked.shape[-2:]
    if max(height, width) > SSIM_BANDED_MAX_SIDE:
        return F.avg_pool2d(stacked, ORIG_WINDOW, stride=1)
    rows, cols = (_box_band(size, stacked.device, stacked.dtype) for size in (height, width))
    return rows @ stacked @ cols.T


@functools.cache  # as _gaussian_band
def _box_band(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 'valid' 7-pixel mean filter over ``size`` pixels as a banded (size - 6, size) matrix."""
    band = torch.zeros(size - ORIG_WINDOW + 1, size, device=device, dtype=dtype)
    for i in range(band.shape[0]):
        band[i, i : i + ORIG_WINDOW] = 1.0 / ORIG_WINDOW
    return band


class OrigReference(NamedTuple):
    """The part of ``ssim_orig_per_image`` that depends on the originals alone, per image channel."""

    level: torch.Tensor  # (N * C, 1, 1, 1): each original channel's mean on the [-1, 1] scale
    moments: torch.Tensor  # (N * C, 2, h, w): 7x7-window means of (x - level) and of its square
    data_range: torch.Tensor  # (N * C, 1, 1): the whole original image's max - min, for each of its channels


def ssim_orig_reference(x: torch.Tensor) -> OrigReference:
    """``ssim_orig_per_image``'s moments of the originals ``x`` (N, C, H, W) on [0, 1], to be kept where a split
    is scored again and again (bitwise what that function filters itself, as ``ssim_reference``)."""
    signed = to_signed_scale(x)
    xs = _per_channel(signed)
    level = xs.mean((1, 2, 3), keepdim=True)
    xc = xs - level
    data_range = _data_range(signed).repeat_interleave(x.shape[1]).view(-1, 1, 1)
    return OrigReference(level, _box_filter(torch.cat([xc, xc * xc], dim=1)), data_range)


def reference_bytes(image_shape: tuple[int, ...]) -> int:
    """The float32 bytes that ``ssim_reference`` and ``ssim_orig_reference`` hold per image of this (C, H, W)
    shape: what a caller keeping them for a whole split must budget."""
    channels, height, width = image_shape
    radius = ssim_radius(height, width)
    gaussian = 2 * (height - 2 * radius) * (width - 2 * radius)
    box = 2 * (height - ORIG_WINDOW + 1) * (width - ORIG_WINDOW + 1) + 2  # and the level and the data range
    return 4 * channels * (gaussian + box)


def ssim_orig_per_image(x: torch.Tensor, y: torch.Tensor, reference: OrigReference | None = None) -> torch.Tensor:
    """The published SSIM of each pair (scikit-image defaults on [-1, 1]); x, y (N, C, H, W) on [0, 1].
    ``reference`` is ``ssim_orig_reference(x)``, when the caller kept it.

    'Valid' windows only: the region scikit-image averages over after cropping its border. Colour images
    get it per channel with the whole image's data range, averaged (scikit-image's ``channel_axis``). The
    moments are taken about each original's mean level, so that in float32 the variances' differences
    keep their digits on flat images; the means add it back for the (shift-dependent) luminance term.
    """
    n, channels = x.shape[:2]
    level, moments, data_range = ssim_orig_reference(x) if reference is None else reference
    mc_x, m_xx = moments.unbind(1)
    xc = _per_channel(to_signed_scale(x)) - level
    yc = _per_channel(to_signed_scale(y)) - level
    mc_y, m_yy, m_xy = _box_filter(torch.cat([yc, yc * yc, xc * yc], dim=1)).unbind(1)
    cov_norm = ORIG_WINDOW**2 / (ORIG_WINDOW**2 - 1)
    var_x = cov_norm * (m_xx - mc_x**2)
    var_y = cov_norm * (m_yy - mc_y**2)
    cov_xy = cov_norm * (m_xy - mc_x * mc_y)
    mu_x, mu_y = mc_x + level.view(-1, 1, 1), mc_y + level.view(-1, 1, 1)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1).view(n, channels).mean(1)
