"""What a run needs in memory, estimated before anything is allocated, against what the machine has.

An absurd setting (a latent size or widths of 10^8, ``--iwae-k 10^8``) is refused with its estimate, before
training and before a study writes its plan, instead of failing in the allocator or, for the IWAE, only after
training. The estimate is deliberately simple (the parameters with their gradients and Adam's two moments, one
batch of activations, the IWAE's samples in flight): it is meant to catch settings that are out by orders of
magnitude, not to decide close cases, so a run is refused only when it needs more than the memory available.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from . import architectures
from .config import RunConfig
from .errors import SettingsError
from .models import VAE

BYTES = 4  # float32
TRAINING_COPIES = 4  # per parameter: the weight, its gradient and Adam's two moments
ACTIVATION_COPIES = 8  # per image and pixel in a training step: input, logits, means, losses, their gradients
IWAE_COPIES = 4  # per sample and pixel: the logits, the mean image and two log-probability terms
IWAE_ROWS = 8192  # images x samples the IWAE decodes at once (measures.iwae_log_likelihood)


def parameter_count(config: RunConfig) -> int:
    """The model's parameters, counted on PyTorch's meta device: nothing is allocated."""
    try:
        with torch.device("meta"):
            model = VAE(config.model)
    except (RuntimeError, OverflowError, TypeError) as exc:  # sizes beyond what a tensor shape holds
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SettingsError(f"a model of latent size {config.model.latent_dim} with widths "
                            f"{_widths(config)} cannot be built ({reason}); choose smaller sizes.") from None
    return sum(p.numel() for p in model.parameters())


def _widths(config: RunConfig) -> str:
    return ",".join(map(str, getattr(config.model, architectures.get(config.model.arch).widths_field)))


def needed_bytes(config: RunConfig, iwae_k: int | None) -> tuple[int, str]:
    """The larger of training's and the IWAE's memory, and what it is for."""
    params = parameter_count(config)
    pixels = math.prod(config.model.image_shape)
    training = params * TRAINING_COPIES * BYTES + config.train.batch_size * pixels * ACTIVATION_COPIES * BYTES
    iwae = max(iwae_k or 0, IWAE_ROWS) * pixels * IWAE_COPIES * BYTES if iwae_k else 0
    if iwae > training:
        return iwae, f"the IWAE's {iwae_k:,} samples per test image (--iwae-k)"
    return training, f"training {params:,} parameters (weights, gradients, Adam's moments) and a batch"


def available_bytes(device: torch.device) -> int | None:
    """Free memory where the run will compute: the GPU's, or the machine's (Linux); None where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(config: RunConfig, device: torch.device, iwae_k: int | None = None) -> None:
    """Refuse, with the estimate, a run that cannot fit in the memory available."""
    need, purpose = needed_bytes(config, iwae_k)
    free = available_bytes(device)
    if free is not None and need > free:
        raise SettingsError(
            f"this run needs about {need / 2**30:,.1f} GiB for {purpose} (latent size {config.model.latent_dim}), "
            f"but {device.type} has {free / 2**30:,.1f} GiB free. Choose a smaller latent size, smaller widths "
            "(--hidden, --widths), a smaller --batch-size or --iwae-k.")
