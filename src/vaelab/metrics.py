"""Image-quality metrics between inputs and reconstructions, per image, on whole batches.

Pixels are in [0, 1] (data range 1). MSE is per pixel. PSNR = 10 log10(1 / MSE) per image; a
perfect reconstruction (MSE = 0) is capped at ``PSNR_CAP_DB``. SSIM follows Wang et al. 2004 with
an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (not sample) covariances,
averaged over the window positions that lie wholly inside the image; this matches scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)``. The separable Gaussian filter runs as two matrix products over the whole batch.
"""

from __future__ import annotations

import torch

PSNR_CAP_DB = 100.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # scikit-image: int(truncate * sigma + 0.5) with truncate = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


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
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, device=device, dtype=dtype)
    taps = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    taps = taps / taps.sum()
    out = size - 2 * SSIM_RADIUS
    band = torch.zeros(out, size, device=device, dtype=dtype)
    for i in range(out):
        band[i, i : i + taps.numel()] = taps
    return band


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each image pair; x and y are (N, 1, H, W) in [0, 1]."""
    rows = _gaussian_band(x.shape[-2], x.device, x.dtype)
    cols = _gaussian_band(x.shape[-1], x.device, x.dtype)
    # One filtering pass for all five moment maps: x, y, x^2, y^2, xy stacked as channels.
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    mu_x, mu_y, m_xx, m_yy, m_xy = (rows @ stacked @ cols.T).unbind(1)
    var_x = m_xx - mu_x**2
    var_y = m_yy - mu_y**2
    cov_xy = m_xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)
