import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vaelab import quality
from vaelab.quality import (
    PSNR_CAP_DB,
    mse_per_image,
    psnr_orig_per_image,
    psnr_per_image,
    ssim_orig_per_image,
    ssim_per_image,
)


def image_pairs(n=12, seed=0, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    x[: n // 2] = (x[: n // 2] > 0.7).float()  # sparse, MNIST-like images too
    noise = torch.linspace(0.01, 0.5, n).view(n, 1, 1, 1)
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def test_ssim_matches_scikit_image():
    x, y = image_pairs()
    ours = ssim_per_image(x, y).numpy()
    reference = [
        structural_similarity(a[0].double().numpy(), b[0].double().numpy(), gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=1)
        for a, b in zip(x, y, strict=True)
    ]
    np.testing.assert_allclose(ours, reference, atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 25, 40), (1, 13, 64)])
def test_ssim_per_channel_matches_scikit_image_on_colour_and_other_sizes(shape):
    x, y = image_pairs(n=6, shape=shape)
    ours = ssim_per_image(x, y).numpy()
    reference = [
        structural_similarity(a.double().numpy(), b.double().numpy(), gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=1, channel_axis=0)
        for a, b in zip(x, y, strict=True)
    ]
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def gaussian_ssim(a: np.ndarray, b: np.ndarray, radius: int) -> float:
    """Wang et al.'s SSIM with SciPy's Gaussian filter (sigma 1.5) cut at ``radius``, averaged over the window
    positions wholly inside the image: scikit-image's recipe, with the window's width free."""
    from scipy.ndimage import gaussian_filter

    def blur(image):
        return gaussian_filter(image, sigma=1.5, truncate=radius / 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim[radius:-radius, radius:-radius].mean())


@pytest.mark.parametrize("side,radius", [(8, 3), (9, 4), (10, 4), (28, 5)])
def test_ssim_on_images_narrower_than_its_window_cuts_the_gaussian_to_fit(side, radius):
    x, y = image_pairs(n=5, shape=(1, side, side))
    assert quality.ssim_radius(side, side) == radius
    pairs = [(a[0].double().numpy(), b[0].double().numpy()) for a, b in zip(x, y, strict=True)]
    reference = [gaussian_ssim(a, b, radius) for a, b in pairs]
    np.testing.assert_allclose(ssim_per_image(x, y).numpy(), reference, atol=1e-4)
    if side == 28:  # the reference is scikit-image's own where scikit-image accepts the size
        skimage = [structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=1) for a, b in pairs]
        np.testing.assert_allclose(reference, skimage, atol=1e-6)


def test_ssim_convolution_path_for_large_images_agrees(monkeypatch):
    x, y = image_pairs(n=4, shape=(3, 40, 40))
    banded = ssim_per_image(x, y)
    monkeypatch.setattr(quality, "SSIM_BANDED_MAX_SIDE", 16)  # as if 40 px were large
    torch.testing.assert_close(ssim_per_image(x, y), banded, atol=1e-5, rtol=0)


def test_ssim_of_identical_images_is_one():
    x, _ = image_pairs()
    assert torch.allclose(ssim_per_image(x, x), torch.ones(len(x)), atol=1e-5)


def test_psnr_and_mse_match_scikit_image():
    x, y = image_pairs()
    reference = [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1) for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(psnr_per_image(x, y).numpy(), reference, rtol=1e-4)
    np.testing.assert_allclose(mse_per_image(x, y).numpy(), ((x - y) ** 2).mean((1, 2, 3)).numpy(), rtol=1e-6)


def test_perfect_reconstruction_psnr_is_capped():
    x, _ = image_pairs()
    assert psnr_per_image(x, x).tolist() == pytest.approx([PSNR_CAP_DB] * len(x), rel=1e-5)


# --- the published project's definitions -------------------------------------------------------------


def skimage_orig(x, y):
    """What the published project computed: scikit-image defaults on [-1, 1], data range of the original."""
    ssims, psnrs = [], []
    for a, b in zip(x, y, strict=True):
        a, b = 2 * a[0].double().numpy() - 1, 2 * b[0].double().numpy() - 1
        span = a.max() - a.min()
        ssims.append(structural_similarity(a, b, data_range=span))
        psnrs.append(peak_signal_noise_ratio(a, b, data_range=span))
    return np.array(ssims), np.array(psnrs)


def test_orig_metrics_match_scikit_image_on_random_images():
    x, y = image_pairs(seed=3)
    y[:3] = y[:3] * 1.2 - 0.1  # unclamped decoder outputs, as the published project scored them
    ssim, psnr = skimage_orig(x, y)
    np.testing.assert_allclose(ssim_orig_per_image(x, y).numpy(), ssim, atol=2e-5)
    np.testing.assert_allclose(psnr_orig_per_image(x, y).numpy(), psnr, rtol=1e-5)


def test_orig_metrics_match_scikit_image_on_mnist(mnist):
    g = torch.Generator().manual_seed(1)
    x = mnist.test.images[:64].unsqueeze(1).float() / 255
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)  # a near reconstruction
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)  # a poorer one
    for recon in (y, blurred):
        ssim, psnr = skimage_orig(x, recon)
        np.testing.assert_allclose(ssim_orig_per_image(x, recon).numpy(), ssim, atol=2e-5)
        np.testing.assert_allclose(psnr_orig_per_image(x, recon).numpy(), psnr, rtol=1e-5)


def test_orig_metrics_use_each_images_own_data_range():
    x = torch.full((1, 1, 28, 28), 0.25)
    x[..., 10:18, 10:18] = 0.75  # range 0.5 on [0, 1], 1.0 on [-1, 1]
    y = x + 0.01
    ssim, psnr = skimage_orig(x, y)
    assert psnr_orig_per_image(x, y).item() == pytest.approx(psnr[0], rel=1e-5)
    assert psnr_orig_per_image(x, y).item() == pytest.approx(10 * np.log10(1.0 / 0.02**2), rel=1e-4)
    assert ssim_orig_per_image(x, y).item() == pytest.approx(ssim[0], abs=2e-5)


def test_orig_ssim_on_colour_images_matches_scikit_image_channel_axis():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 20, 24, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    reference = []
    for a, b in zip(x, y, strict=True):
        a, b = 2 * a.double().numpy() - 1, 2 * b.double().numpy() - 1
        reference.append(structural_similarity(a, b, data_range=a.max() - a.min(), channel_axis=0))
    np.testing.assert_allclose(ssim_orig_per_image(x, y).numpy(), reference, atol=2e-5)
