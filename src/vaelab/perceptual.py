"""The published project's two extra loss terms, as options: a PatchGAN discriminator (least squares)
and LPIPS, the learned perceptual distance on VGG16 features.

Both see images on the [-1, 1] scale, as in the published code. The discriminator trains from scratch.
LPIPS needs weights vaelab cannot download here: one file holding torchvision's VGG16 ``features.*``
tensors and LPIPS's ``lin0`` .. ``lin4`` tensors (its ``vgg.pth``), merged into one state dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import precision
from .errors import VaelabError
from .quality import to_signed_scale

ADVERSARIAL_START = 1000  # the step from which the generator gets the adversarial term (the published value)
ADVERSARIAL_WEIGHT = 0.5
LPIPS_WEIGHT = 1.0
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in VGG16 features
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# ImageNet normalisation expressed on the [-1, 1] scale, as LPIPS does.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


class PatchDiscriminator(nn.Module):
    """Three stride-2 4x4 convolutions (64, 128, 256 channels, LeakyReLU 0.2, BatchNorm after the first),
    then a 4x4 convolution to one logit per patch; 28x28 images give a 2x2 map."""

    def __init__(self, image_channels: int = 1, widths: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        dims = (image_channels, *widths, 1)
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            last = i == len(dims) - 2
            layers.append(nn.Conv2d(dims[i], dims[i + 1], 4, stride=1 if last else 2, padding=1, bias=i == 0))
            if not last:
                if i > 0:
                    layers.append(nn.BatchNorm2d(dims[i + 1]))
                layers.append(nn.LeakyReLU(0.2))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def least_squares(prediction: torch.Tensor, target: float) -> torch.Tensor:
    return (prediction - target).pow(2).mean()


class _NetLin(nn.Module):
    """LPIPS's 1x1 convolution on one feature level (named so its ``vgg.pth`` keys load as they are)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` layer for layer, so its state-dict keys (``features.N.*``) match."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """The LPIPS distance (VGG16 variant) between image batches on the [-1, 1] scale, per image."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()[: LPIPS_TAPS[-1] + 1]
        self.lins = nn.ModuleList(_NetLin(c) for c in LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        # A grey image broadcasts against the three-channel normalisation, as in the published code.
        h = (x - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in LPIPS_TAPS:
                taps.append(h)
        return taps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(a.shape[0], device=a.device, dtype=a.dtype)
        for lin, fa, fb in zip(self.lins, self._taps(a), self._taps(b), strict=True):
            diff = (nn.functional.normalize(fa, dim=1) - nn.functional.normalize(fb, dim=1)).pow(2)
            total = total + lin(diff).mean((1, 2, 3))
        return total


def lpips_state_dict(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision VGG16 keys (``features.N.*``; the classifier is ignored) plus LPIPS keys
    (``linK.model.1.weight``) renamed to this module's."""
    state = {k: v for k, v in raw.items() if k.startswith("features.")}
    for k in range(len(LPIPS_CHANNELS)):
        key = f"lin{k}.model.1.weight"
        if key in raw:
            state[f"lins.{k}.model.1.weight"] = raw[key]
    return state


def load_lpips(path: str | Path, device: torch.device) -> LPIPS:
    """The frozen LPIPS network from a user-supplied weights file; a clear error if it is missing or wrong."""
    path = Path(path).expanduser()
    help_text = ("vaelab cannot download anything here: pass a file holding torchvision's VGG16 weights "
                 "('features.N.weight' / '.bias') and LPIPS's VGG weights ('lin0.model.1.weight' .. 'lin4...', its "
                 "vgg.pth), merged into one state dict with torch.save.")
    if not path.is_file():
        raise VaelabError(f"--lpips-weights: {path} does not exist. {help_text}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise VaelabError(f"--lpips-weights: {path} is not a readable PyTorch state dict ({exc}). "
                          f"{help_text}") from None
    model = LPIPS()
    state = lpips_state_dict(raw if isinstance(raw, dict) else {})
    wanted = {k for k in model.state_dict() if k not in ("shift", "scale")}
    missing = sorted(wanted - set(state))
    if missing:
        raise VaelabError(f"--lpips-weights: {path} lacks {len(missing)} of the weights LPIPS needs (first: "
                          f"{missing[0]}). {help_text}")
    model.load_state_dict(state, strict=False)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.to(device).eval()


class PerceptualTerms:
    """The published project's extra terms as one objective beside the ELBO: what LPIPS and the adversarial
    term add to the generator's loss at a step, and the discriminator's own update after the step. With neither
    option on it adds nothing (``active`` is False).

    LPIPS and the adversarial term are weighted against the published loss, the per-pixel mean squared error on
    the [-1, 1] scale, (4 / P) sum (x - x')^2 on [0, 1]; vaelab's Gaussian NLL weighs the sum by 1 / (2 sigma^2),
    so the published weights are multiplied by P / (8 sigma^2) (``scale``) to keep the balance.
    """

    STATE = ("discriminator", "disc_optimizer")  # the checkpoint's keys when the discriminator is on

    def __init__(self, config: Any, device: torch.device, arithmetic: str,
                 make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], data_parallel: bool = False):
        model, train = config.model, config.train
        if train.adversarial and data_parallel:
            raise VaelabError("--adversarial does not run data-parallel (the discriminator is not synchronised "
                              "across processes); train it in one process.")
        self.device, self.precision = device, arithmetic  # "fp32" or "bf16", as precision.resolve chose
        self.scale = math.prod(model.image_shape) / (8 * model.gaussian_std**2)
        self.lpips = load_lpips(train.lpips_weights, device) if train.lpips_weights else None
        self.discriminator: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        if train.adversarial:
            with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
                torch.manual_seed(train.seed + 1)
                self.discriminator = PatchDiscriminator(model.image_shape[0]).to(device)
            self.optimizer = make_optimizer(self.discriminator)
        self._fake: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        return self.lpips is not None or self.discriminator is not None

    def generator_loss(self, model: Any, logits: torch.Tensor, x: torch.Tensor,
                       step: int) -> tuple[torch.Tensor | float, torch.Tensor | None]:
        """The terms added to step ``step``'s loss (0 when neither is on), and the decoded batch on the [-1, 1]
        scale that the discriminator then sees."""
        self._fake = None
        if not self.active:
            return 0.0, None
        fake = to_signed_scale(model.decoder_mean(logits.float()))
        real = to_signed_scale(x)
        total = torch.zeros((), device=self.device)
        with precision.autocast(self.precision, self.device):
            if self.lpips is not None:
                total = total + LPIPS_WEIGHT * self.lpips(fake, real).float().mean()
            if self.discriminator is not None and step + 1 >= ADVERSARIAL_START:
                total = total + ADVERSARIAL_WEIGHT * least_squares(self.discriminator(fake).float(), 1.0)
        self._fake = fake
        return self.scale * total, fake

    def after_step(self, x: torch.Tensor, step: int) -> None:
        """One least-squares update of the discriminator, from the step after ADVERSARIAL_START on (``step`` is the
        one just taken, counted from 0). As in the published code its gradients are not cleared after the
        generator's backward pass, so the generator's adversarial gradient enters this update too."""
        if self.discriminator is None or step + 1 <= ADVERSARIAL_START:
            return
        with precision.autocast(self.precision, self.device):
            fake_loss = least_squares(self.discriminator(self._fake.detach()).float(), 0.0)
            real_loss = least_squares(self.discriminator(to_signed_scale(x)).float(), 1.0)
        (self.scale * ADVERSARIAL_WEIGHT * (fake_loss + real_loss) / 2).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        if self.discriminator is None:
            return {}
        return {"discriminator": self.discriminator.state_dict(), "disc_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        if self.discriminator is not None:
            self.discriminator.load_state_dict(saved["discriminator"])
            self.optimizer.load_state_dict(saved["disc_optimizer"])
