"""The architecture figure: the trained model's layers, output shapes and parameter counts, read from the
model itself with forward hooks, drawn as encoder, latent and decoder columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.patches import FancyBboxPatch
from torch import nn

from .. import rundir
from ..models import VAE
from .drawing import _figure, _save_png, _styled


@dataclass
class LayerInfo:
    part: str  # "encoder" or "decoder"
    kind: str  # module class name
    detail: str
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int


def layer_detail(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}→{module.out_features}"
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        k, s = module.kernel_size[0], module.stride[0]
        return f"{type(module).__name__} {module.in_channels}→{module.out_channels}, {k}×{k}, stride {s}"
    if hasattr(module, "figure_label"):  # a composite block that labels itself (architectures/)
        return module.figure_label()
    return type(module).__name__


def _is_unit(module: nn.Module) -> bool:
    """A box of its own in the figure: a leaf layer, or a composite block drawn as one."""
    return hasattr(module, "figure_label") or len(list(module.children())) == 0


@torch.no_grad()
def describe_architecture(model: VAE) -> list[LayerInfo]:
    """Every leaf layer of encoder and decoder in execution order, with the output shape seen on a
    dummy batch: read off the model itself, so the figure cannot drift from the code."""
    layers: list[LayerInfo] = []
    handles = []
    for part, net in (("encoder", model.encoder), ("decoder", model.decoder)):
        inside_unit = {id(m) for u in net.modules() if hasattr(u, "figure_label")
                       for m in u.modules() if m is not u}
        for module in net.modules():
            if _is_unit(module) and id(module) not in inside_unit:
                def record(mod, _inputs, output, part=part):
                    layers.append(LayerInfo(part, type(mod).__name__, layer_detail(mod), tuple(output.shape[1:]),
                                            sum(p.numel() for p in mod.parameters())))
                handles.append(module.register_forward_hook(record))
    device = next(model.parameters()).device
    try:
        mu, _ = model.encode(torch.zeros((2, *model.config.image_shape), device=device))
        model.decode(torch.zeros_like(mu))
    finally:
        for handle in handles:
            handle.remove()
    return layers


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def _merged_layers(layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """Activations folded into the layer before them: one box per weight layer or reshape."""
    merged: list[LayerInfo] = []
    for layer in layers:
        if layer.params == 0 and layer.kind in ("ReLU", "LeakyReLU", "Tanh", "Sigmoid", "GELU", "SiLU") and merged:
            prev = merged[-1]
            detail = f"{prev.detail} + {layer.kind}"
            merged[-1] = LayerInfo(prev.part, prev.kind, detail, layer.output_shape, prev.params)
        else:
            merged.append(layer)
    return merged


ARCHITECTURE_COLOURS = {"encoder": "#dbe9f6", "decoder": "#fbe3d2", "latent": "#e4f2df", "io": "#eeeeee"}


Box = tuple[float, float, float]  # centre x, centre y, width


class _Diagram:
    """Boxes and arrows on one axes: the architecture figure's drawing kit."""

    half_height = 0.3

    def __init__(self, ax) -> None:
        self.ax = ax

    def box(self, x: float, y: float, title: str, subtitle: str, colour: str, width: float = 4.6) -> Box:
        self.ax.add_patch(FancyBboxPatch((x - width / 2, y - self.half_height), width, 2 * self.half_height,
                                         boxstyle="round,pad=0.02,rounding_size=0.1",
                                         facecolor=ARCHITECTURE_COLOURS[colour], edgecolor="0.55", linewidth=0.8))
        self.ax.text(x, y - 0.08, title, ha="center", va="center", fontsize=9.5, fontweight="bold")
        self.ax.text(x, y + 0.16, subtitle, ha="center", va="center", fontsize=8.5, color="0.3")
        return x, y, width

    def arrow(self, start: tuple[float, float], end: tuple[float, float], **style: Any) -> None:
        self.ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": "0.4", "linewidth": 1.0,
                                                               "shrinkA": 0, "shrinkB": 0, **style})

    def down(self, upper: Box, lower: Box) -> None:
        """A vertical arrow from the bottom centre of one box to the top centre of the next."""
        self.arrow((upper[0], upper[1] + self.half_height), (lower[0], lower[1] - self.half_height))

    @staticmethod
    def right(start: Box, end: Box) -> tuple[tuple[float, float], tuple[float, float]]:
        return (start[0] + start[2] / 2, start[1]), (end[0] - end[2] / 2, end[1])


def _layer_subtitle(layer: LayerInfo, last: bool = False) -> str:
    shape = _shape_text(layer.output_shape)
    return f"out {shape}{' = μ ‖ log σ²' if last else ''} · {layer.params:,} params"


def _draw_encoder(diagram: _Diagram, encoder: Sequence[LayerInfo], x: float, z: int, image: str) -> Box:
    """The input, the encoder's layers, then μ and log σ² beside its last layer and z beside them; returns z's box."""
    previous = diagram.box(x, 0, "input x", f"{image} image in [0, 1]", "io")
    for row, layer in enumerate(encoder, start=1):
        current = diagram.box(x, row, layer.detail, _layer_subtitle(layer, row == len(encoder)), "encoder")
        diagram.down(previous, current)
        previous = current
    last = len(encoder)
    mu_box = diagram.box(5.95, last - 0.42, "μ", f"{z} posterior means", "latent", 1.9)
    logvar_box = diagram.box(5.95, last + 0.42, "log σ²", f"{z} log-variances", "latent", 1.9)
    z_box = diagram.box(8.1, last, "z = μ + σ·ε", f"{z} · ε ~ N(0, I)", "latent", 1.9)
    for target in (mu_box, logvar_box):
        diagram.arrow(*diagram.right(previous, target))
        diagram.arrow(*diagram.right(target, z_box))
    return z_box


def _draw_decoder(diagram: _Diagram, decoder: Sequence[LayerInfo], x: float, z_box: Box, linear_output: bool,
                  image: str) -> None:
    """The decoder's layers from the top, fed by z from the left, then the output."""
    previous = z_box
    for row, layer in enumerate(decoder):
        current = diagram.box(x, row, layer.detail, _layer_subtitle(layer), "decoder")
        if row == 0:
            diagram.arrow((z_box[0], z_box[1] - diagram.half_height), (current[0] - current[2] / 2, current[1]),
                          connectionstyle="angle,angleA=90,angleB=0,rad=8")
        else:
            diagram.down(previous, current)
        previous = current
    out = (diagram.box(x, len(decoder), "(x + 1) / 2 → decoder mean", f"{image} image, [-1, 1] scale → [0, 1]", "io")
           if linear_output else
           diagram.box(x, len(decoder), "sigmoid → decoder mean", f"{image} pixel probabilities", "io"))
    diagram.down(previous, out)


@_styled
def render_architecture(run_dir: Path, model: VAE) -> Path:
    """Encoder column, latent column, decoder column; every box's shape and parameter count come
    from ``describe_architecture``."""
    layers = describe_architecture(model)
    encoder = [layer for layer in _merged_layers(layers) if layer.part == "encoder"]
    decoder = [layer for layer in _merged_layers(layers) if layer.part == "decoder"]
    z = model.latent_dim
    n_enc = sum(layer.params for layer in layers if layer.part == "encoder")
    n_dec = sum(layer.params for layer in layers if layer.part == "decoder")
    rows = max(len(encoder), len(decoder)) + 1  # + the input / output boxes
    fig = _figure(14.0, 1.5 + 0.8 * rows)
    ax = fig.add_axes((0.01, 0.0, 0.98, 1 - 0.55 / fig.get_figheight()))
    ax.set_xlim(0, 14)
    ax.set_ylim(rows + 0.1, -0.75)
    ax.set_axis_off()
    ex, lx, dx = 2.5, 7.03, 11.5
    for x, text in ((ex, f"encoder q(z|x) · {n_enc:,} parameters"), (dx, f"decoder p(x|z) · {n_dec:,} parameters")):
        ax.text(x, -0.62, text, ha="center", fontsize=10.5, fontweight="bold")
    ax.text(lx, len(encoder) - 0.95, f"latent · size {z}", ha="center", fontsize=10.5, fontweight="bold")
    diagram = _Diagram(ax)
    image = _shape_text(model.config.image_shape)  # e.g. 1×28×28
    _draw_decoder(diagram, decoder, dx, _draw_encoder(diagram, encoder, ex, z, image), model.linear_output, image)
    fig.suptitle(f"VAE ({model.config.arch}), latent size {z} · {n_enc + n_dec:,} parameters · "
                 f"{model.config.likelihood} likelihood")
    return _save_png(fig, run_dir / rundir.ARCHITECTURE_PNG)
