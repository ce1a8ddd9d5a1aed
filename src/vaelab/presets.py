"""Named starting configurations (``--preset NAME``, ``RunConfig.from_preset(NAME)``), as plain data.

Each preset is a set of fields by dotted name over the defaults; on the command line, options given
explicitly still win over the preset's values.
"""

from __future__ import annotations

from typing import Any

ORIGINAL_STD = 0.1
# The published project configured a KL weight of 5e-6 on a loss of per-pixel *mean* squared error on the
# [-1, 1] scale, (4 / 784) * sum (x - x')^2 on [0, 1]; vaelab's Gaussian NLL weighs sum (x - x')^2 by
# 1 / (2 sigma^2). The same relative weight in vaelab's units is therefore 5e-6 * 784 / (8 sigma^2), with 784
# the published MNIST image's pixel count (the preset reproduces that project, whatever data it is used on).
ORIGINAL_KL_WEIGHT = 5e-6
ORIGINAL_PIXELS = 28 * 28
ORIGINAL_BETA = ORIGINAL_KL_WEIGHT * ORIGINAL_PIXELS / (8 * ORIGINAL_STD**2)
# The published project's training: its ResNet/attention autoencoder, squared error on the [-1, 1] scale,
# no KL term (configured but never added), Adam 1e-4 with betas (0.5, 0.999), batch 64, seed 1111, 20 epochs.
_ORIGINAL: dict[str, Any] = {
    "model.arch": "resnet-spatial", "model.channels": (32, 64, 128), "model.likelihood": "gaussian",
    "model.gaussian_std": ORIGINAL_STD, "train.beta": 0.0, "train.lr": 1e-4, "train.betas": (0.5, 0.999),
    "train.batch_size": 64, "train.seed": 1111, "train.epochs": 20}

PRESETS: dict[str, dict[str, Any]] = {
    "original": _ORIGINAL,
    "original-vae": {**_ORIGINAL, "train.beta": ORIGINAL_BETA},  # the configured KL weight, actually applied
    # The smaller model vaelab shipped as "original" before: conv-spatial, KL weight 1e-3.
    "original-small": {"model.arch": "conv-spatial", "model.likelihood": "gaussian",
                       "model.gaussian_std": ORIGINAL_STD, "train.beta": 1e-3},
    # vaelab's best recipe on the published metric (docs/original.md): conv-spatial at widths 128/256, no KL term,
    # a one-cycle schedule peaking at 3e-3, bf16 autocast, 20 epochs. bf16 is set because the measured runs used it.
    "original-wide": {"model.arch": "conv-spatial", "model.channels": (128, 256), "model.likelihood": "gaussian",
                      "model.gaussian_std": ORIGINAL_STD, "train.beta": 0.0, "train.lr": 3e-3,
                      "train.lr_schedule": "onecycle", "train.precision": "bf16", "train.epochs": 20},
    # The AE-vs-VAE claims study (STUDY_DESIGNS["claims"]): the default model, trained for fewer epochs.
    "claims": {"train.epochs": 3},
}

# Presets that are whole studies: their axes, latent sizes, seeds and jobs, used by `vaelab study --preset NAME`
# where the command line does not say otherwise (their run settings are the PRESETS entry of the same name).
STUDY_DESIGNS: dict[str, dict[str, Any]] = {
    # A plain autoencoder against a VAE of the same networks, at a small and a larger latent size, three seeds
    # each: the published project's comparison table put to a measurement (docs/studies.md).
    "claims": {"axes": {"model.objective": ["ae", "vae"]}, "latent_dims": [2, 16], "seeds": 3, "jobs": "auto"},
}

# What each preset is, in a sentence (``--preset``'s help).
PRESET_NOTES: dict[str, str] = {
    "original": "the published project's training (its ResNet/attention autoencoder 'resnet-spatial' around a latent "
                "of c channels at 7x7, c = the latent size; squared error on the [-1, 1] scale, no KL term, Adam 1e-4 "
                "with betas 0.5/0.999, batch 64, seed 1111, 20 epochs)",
    "original-vae": "the same with its configured KL weight applied",
    "original-small": "vaelab's earlier, much smaller conv-spatial stand-in",
    "original-wide": "vaelab's best recipe on the published metric (conv-spatial at widths 128,256, no KL term, "
                     "one-cycle lr peaking at 3e-3, bf16, 20 epochs; docs/original.md)",
    "claims": "(vaelab study only) a plain autoencoder against a VAE at latent sizes 2 and 16, 3 seeds, 3 epochs, runs "
              "side by side; its report measures the published AE-vs-VAE claims (docs/studies.md)",
}
