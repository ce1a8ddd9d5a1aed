"""Preparing images for a model, the same way everywhere: float conversion, fixed binarisation, posterior means.

Training, the evaluation points, the final measures, the digit classifier and the explorer all feed a
model through these functions, so an image is scored identically wherever it is scored. Under
``--binarize`` each evaluated set gets one fixed Bernoulli draw, seeded by ``BINARIZE_SEED`` plus the
set's offset in ``BINARIZE_OFFSETS``: every run and every resume sees the same binary images.
"""

from __future__ import annotations

import numpy as np
import torch

from .models import VAE

BINARIZE_SEED = 2024
# One seed per evaluated set, so the sets' draws are independent of each other and of their sizes.
BINARIZE_OFFSETS = {"train_eval": 0, "test": 1, "probe": 2}


def as_float_images(images: torch.Tensor | np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (N, H, W) grey or (N, C, H, W) in 0..255 -> float32 (N, C, H, W) in [0, 1], on ``device``
    (default: where they are)."""
    images = torch.as_tensor(images)
    if device is not None:
        images = images.to(device)
    return (images.unsqueeze(1) if images.ndim == 3 else images).float().div_(255.0)


def binarized(images: torch.Tensor, seed: int) -> torch.Tensor:
    """One fixed Bernoulli draw per pixel, with the grey level as its probability; drawn on the CPU, so a run on
    any device is scored on the same binary images."""
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(images.cpu(), generator=generator).to(images.device)


def evaluation_images(images: torch.Tensor, binarize: bool, which: str) -> torch.Tensor:
    """Float images as the run scores them: binarised with the fixed draw of set ``which`` under --binarize."""
    return binarized(images, BINARIZE_SEED + BINARIZE_OFFSETS[which]) if binarize else images


@torch.no_grad()
def posterior_means(model: VAE, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """E_q[z] of each float image, flattened to (N, latent units), on the CPU."""
    return torch.cat([model.encode(images[i : i + batch_size])[0].flatten(1).cpu()
                      for i in range(0, len(images), batch_size)])
