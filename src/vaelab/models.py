"""The VAE: a Gaussian encoder q(z|x) = N(mu, diag sigma^2), the reparameterization trick and a
decoder that outputs per-pixel logits, around the networks of any registered architecture (``architectures/``,
one module each: ``mlp``, ``conv`` with a latent vector, ``conv-spatial`` with a latent map of ``latent_dim``
channels at a quarter of the image size, 7x7 on MNIST, and ``resnet-spatial``, the published project's larger
model around the same map), any latent size, any image shape (C, H, W): ``ModelConfig.image_shape``, saved with
the run.

Images enter as float tensors in [0, 1] of shape (N, C, H, W), (N, 1, 28, 28) on MNIST. The decoder's output is always a
logit map; the decoder *mean* image is its sigmoid, for every likelihood, so reconstructions stay
in [0, 1]. The exception is resnet-spatial, which like the published model outputs the image on the
[-1, 1] scale with no squashing: its mean is (output + 1) / 2 and it needs a Gaussian likelihood
(``decoder_mean`` hides the difference from every consumer). (For the continuous Bernoulli,
sigmoid(logits) is its shape parameter lambda, not the distribution's mean, which lies nearer 1/2;
vaelab shows and scores lambda, as PyTorch's VAE example does.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from pathlib import Path

import torch
from torch import nn

from . import architectures
from .atomic import write_text_atomic
from .config import MIN_IMAGE_SIDE, ModelConfig, check_architecture
from .errors import CheckpointError, SettingsError
from .losses import decoder_mean
from .rundir import PRETRAINED_CONFIG, PRETRAINED_WEIGHTS

# A portable model: its weights as safetensors (no pickle, readable from any language) and its config as JSON.
PRETRAINED_FORMAT = "vaelab-pretrained"
PRETRAINED_VERSION = 1


class VAE(nn.Module):
    """A VAE with a standard normal prior (or, with ``objective="ae"``, the same networks as a plain
    autoencoder). ``forward`` returns (logits, mu, logvar)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        check_architecture(config)  # the config's own rules, again: a config may be changed after it is made
        if config.latent_dim < 1:
            raise ValueError(f"latent size must be >= 1, got {config.latent_dim}")
        self.config = config
        self.latent_dim = config.latent_dim
        shape = config.image_shape
        if min(shape[1:]) < MIN_IMAGE_SIDE:
            raise ValueError(f"images of {shape[1]}x{shape[2]} are too small; the models need at least "
                             f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
        arch = architectures.get(config.arch)
        networks = arch.build(config.latent_dim, getattr(config, arch.widths_field), shape)
        self.encoder, self.decoder = networks.encoder, networks.decoder
        # The shape of one z; consumers that want vectors (evaluation, measures) flatten it.
        self.latent_shape: tuple[int, ...] = networks.latent_shape
        self.linear_output = arch.linear_output
        # A plain autoencoder on the same networks: z is the encoder's mean, and no KL term is trained (the
        # log-variance head is still built, so an AE and a VAE of one size share every weight's shape).
        self.is_autoencoder = config.objective == "ae"
        if config.likelihood == "gaussian-learned":
            # One global log sigma: a per-pixel one would shrink without bound on MNIST's always-black
            # border pixels and drive the NLL to minus infinity.
            self.log_std = nn.Parameter(torch.tensor(math.log(config.gaussian_std)))

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the model as ``model.safetensors`` + ``config.json`` in ``directory``; no pickle involved."""
        from safetensors.torch import save_file

        from . import __version__

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}
        save_file(weights, str(directory / PRETRAINED_WEIGHTS), metadata={"format": PRETRAINED_FORMAT})
        description = {"format": PRETRAINED_FORMAT, "format_version": PRETRAINED_VERSION,
                       "vaelab_version": __version__, "model": dataclasses.asdict(self.config)}
        write_text_atomic(directory / PRETRAINED_CONFIG, json.dumps(description, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> VAE:
        """The model ``save_pretrained`` wrote, in eval mode on ``device``."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        config = _read_pretrained_config(directory)
        model = cls(config)
        try:
            model.load_state_dict(load_file(str(directory / PRETRAINED_WEIGHTS)))
        except FileNotFoundError:
            raise CheckpointError(f"{directory}: no {PRETRAINED_WEIGHTS} beside its {PRETRAINED_CONFIG}.") from None
        except (SafetensorError, RuntimeError, OSError) as exc:
            raise CheckpointError(f"{directory / PRETRAINED_WEIGHTS}: weights do not fit the model its config "
                                  f"describes, or the file is damaged ({exc}).") from None
        return model.to(device).eval()
    def decoder_mean(self, output: torch.Tensor) -> torch.Tensor:
        """The mean image on the [0, 1] scale of a decoder output (for resnet-spatial not clamped)."""
        return decoder_mean(output, self.linear_output)

    def decoder_std(self) -> float | torch.Tensor:
        """The Gaussian likelihood's std: fixed from the config, or the learned one."""
        return self.log_std.exp() if self.config.likelihood == "gaussian-learned" else self.config.gaussian_std

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (mu, log sigma^2), each of shape (N, *latent_shape)."""
        # resnet-spatial sees images on the [-1, 1] scale, as the published model did.
        mu, logvar = self.encoder(2.0 * x - 1.0 if self.linear_output else x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits of shape (N, *image_shape), (N, 1, 28, 28) on MNIST (resnet-spatial: the image on
        the [-1, 1] scale)."""
        return self.decoder(z)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): the sample stays differentiable in mu and sigma.

        ``eps`` is drawn from ``generator`` unless given (a draw made elsewhere, or several samples per
        image that broadcast against mu)."""
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        z = mu if self.is_autoencoder else self.reparameterize(mu, logvar, generator)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder mean at z = mu, in [0, 1]."""
        mu, _ = self.encode(x)
        return self.decoder_mean(self.decode(mu))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (decoder means) from z ~ N(0, I); z is drawn where ``generator`` lives (a CPU generator
        gives the same images on every device) and decoded where the model is."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise SettingsError(f"sample(n): n is the number of images to draw, a whole number >= 0; got {n!r}.")
        device = next(self.parameters()).device
        z = torch.randn((n, *self.latent_shape), generator=generator,
                        device=generator.device if generator is not None else device).to(device)
        return self.decoder_mean(self.decode(z))


def _read_pretrained_config(directory: Path) -> ModelConfig:
    path = directory / PRETRAINED_CONFIG
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: no {PRETRAINED_CONFIG} here; is this a directory written by "
                              "save_pretrained (or 'vaelab export RUN_DIR --pretrained DIR')?") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc}).") from None
    if not isinstance(raw, dict) or raw.get("format") != PRETRAINED_FORMAT:
        run_dir = isinstance(raw, dict) and "train" in raw
        hint = " It is a run directory: use vaelab.load_model, or export it first." if run_dir else ""
        raise CheckpointError(f"{path}: not a vaelab pretrained model.{hint}")
    if raw.get("format_version", 0) > PRETRAINED_VERSION:
        raise CheckpointError(f"{path}: written by a newer vaelab ({raw.get('vaelab_version', '?')}); upgrade vaelab.")
    try:
        return ModelConfig(**raw["model"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: malformed model config ({exc}).") from None
