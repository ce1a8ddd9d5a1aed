"""What vaelab knows about an architecture, declared once in the architecture's own module.

Every other part asks the registry, never the architecture's name: the config (its choices, default widths,
likelihoods and width count), the model (how to build it), ``--precision auto``, the training step's memory
layout, the figures (a plane latent or a map) and the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Networks:
    """An encoder (image -> 2 * latent channels of posterior parameters), a decoder (z -> a logit map or, with
    ``linear_output``, the image on the [-1, 1] scale) and the shape of one z."""

    encoder: nn.Module
    decoder: nn.Module
    latent_shape: tuple[int, ...]


# (latent size, widths, image shape (C, H, W)) -> the networks
Builder = Callable[[int, tuple[int, ...], tuple[int, ...]], Networks]


@dataclass(frozen=True)
class Architecture:
    name: str
    position: int  # where it stands in lists (--arch's choices, error messages)
    summary: str  # one line for --help and the docs
    build: Builder
    widths_field: str  # the ModelConfig field that holds its widths: "hidden" (mlp) or "channels" (--widths)
    default_widths: tuple[int, ...]
    widths_meaning: str  # what its widths are, for messages
    widths_count: int | None = None  # exactly this many widths, or any number
    spatial: bool = False  # the latent is a map of latent_dim channels, not a vector of latent_dim numbers
    likelihoods: tuple[str, ...] | None = None  # the decoder likelihoods it supports (None: every one)
    likelihood_reason: str = ""  # why only those, for the message that refuses another
    linear_output: bool = False  # the decoder outputs the image on the [-1, 1] scale, not logits
    fast_in_bf16: bool = False  # --precision auto picks bf16 on hardware that does bf16 fast
    channels_last: bool = False  # in bf16 the training step runs in the channels-last memory layout

    def has_latent_plane(self, latent_dim: int) -> bool:
        """Whether a manifold of decodes is drawn over a plane of the latent space: a vector of two numbers, or for
        a latent map of two channels the plane of uniform maps (each channel one value at every position)."""
        return latent_dim == 2


REGISTRY: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    if architecture.name in REGISTRY:
        raise ValueError(f"two architectures are called {architecture.name!r}")
    REGISTRY[architecture.name] = architecture
    return architecture
