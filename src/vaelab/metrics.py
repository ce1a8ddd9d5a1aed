"""Image-quality metrics between inputs and reconstructions, per image, on whole batches.

Pixels are in [0, 1] (data range 1). MSE is per pixel. PSNR = 10 log10(1 / MSE) per image; a
perfect reconstruction (MSE = 0) is capped at ``PSNR_CAP_DB``. SSIM follows Wang et al. 2004 with
an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (not sample) covariances,
averaged over the window positions that lie wholly inside the image; this matches scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)``; colour images get it per channel, averaged, as ``channel_axis=0`` does. The separable
Gaussian filter runs as two matrix products over the whole batch, or, on images wider than
``SSIM_BANDED_MAX_SIDE``, as two 1-D convolutions.
"""

from __future__ import annotations

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


def _gaussian_band(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 'valid' 1-D Gaussian filter over ``size`` pixels as a banded (size - 10, size) matrix.

    Filtering an image along both axes is then two small matrix products, B @ img @ B.T, which
    runs several times faster on a CPU than grouped convolutions with 11x1 and 1x11 kernels.
    """
    taps = _gaussian_taps(device, dtype)
    out = size - 2 * SSIM_RADIUS
    band = torch.zeros(out, size, device=device, dtype=dtype)
    for i in range(out):
        band[i, i : i + taps.numel()] = taps
    return band


def _gaussian_taps(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, device=device, dtype=dtype)
    taps = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def _gaussian_filter(stacked: torch.Tensor) -> torch.Tensor:
    """'Valid' Gaussian filtering of (B, K, H, W) along both image axes."""
    height, width = stacked.shape[-2:]
    if max(height, width) <= SSIM_BANDED_MAX_SIDE:
        rows = _gaussian_band(height, stacked.device, stacked.dtype)
        cols = _gaussian_band(width, stacked.device, stacked.dtype)
        return rows @ stacked @ cols.T
    taps = _gaussian_taps(stacked.device, stacked.dtype)
    flat = stacked.reshape(-1, 1, height, width)
    flat = F.conv2d(F.conv2d(flat, taps.view(1, 1, -1, 1)), taps.view(1, 1, 1, -1))
    return flat.view(*stacked.shape[:2], *flat.shape[-2:])


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each image pair, averaged over channels; x and y are (N, C, H, W) in [0, 1]."""
    n, channels = x.shape[:2]
    if channels > 1:  # each channel as an image of its own, then the channel mean
        return ssim_per_image(x.reshape(n * channels, 1, *x.shape[-2:]),
                              y.reshape(n * channels, 1, *y.shape[-2:])).view(n, channels).mean(1)
    # One filtering pass for all five moment maps: x, y, x^2, y^2, xy stacked as channels.
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    mu_x, mu_y, m_xx, m_yy, m_xy = _gaussian_filter(stacked).unbind(1)
    var_x = m_xx - mu_x**2
    var_y = m_yy - mu_y**2
    cov_xy = m_xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)
