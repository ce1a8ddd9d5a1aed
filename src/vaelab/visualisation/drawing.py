"""Drawing a run's figures and GIFs from its frames, its metric history and its trained model."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

# Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so vaelab never changes the backend of the
# program that imports it: a notebook's inline plots keep working after vaelab.study().
import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

# The standard normal's quantile function, the one scipy.stats.norm.ppf calls: importing scipy.stats, a large
# package, would slow the start of every process that imports vaelab for this one function.
from scipy.special import ndtri

from .. import rundir
from ..atomic import write_bytes_atomic
from ..metrics import POINT_METRICS
from ..models import VAE
from . import palette
from .frames import SUBSAMPLE_TOTAL, Frame, display_images, model_images
from .projection import latent_points

SAMPLES_SEED = 0
# Positions in the fixed reconstruction set (on MNIST its digits 0..9, so digit pairs 0-6, 1-7, ...).
INTERPOLATION_PAIRS = ((0, 6), (1, 7), (2, 5), (3, 8), (4, 9))
INTERPOLATION_STEPS = 10
MANIFOLD_SIZE = 20
MANIFOLD_QUANTILES = (0.05, 0.95)

P = ParamSpec("P")
R = TypeVar("R")

GIF_FRAME_MS = 700
GIF_LAST_FRAME_MS = 2500
GIF_COLOURS = 128
LEGEND_COLUMN_INCHES = 1.1  # a column of 7 pt class names such as 'kind 99'
LEGEND_ROWS = 25  # past twenty classes the legend wraps into columns of this many, so 100 fit the figure's height
BRIGHTNESS_CMAP = matplotlib.colormaps["viridis"]
SPLIT_STYLE = {"train": {"color": "#e07b39", "linestyle": "--"}, "test": {"color": "#2b6ca3", "linestyle": "-"}}
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "legend.frameon": False,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}


def _styled(draw: Callable[P, R]) -> Callable[P, R]:
    """Draw under the house style without touching Matplotlib's global settings: most style
    parameters are read when an artist is created, so the whole drawing runs inside the context."""

    @functools.wraps(draw)
    def styled(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return styled


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _rgb(fig: Figure) -> Image.Image:
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")


def save_gif(images: Sequence[Image.Image], path: Path) -> Path:
    """An endlessly looping GIF that lingers on its last frame; one adaptive palette per frame."""
    frames = [im.quantize(colors=GIF_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
              for im in images]
    durations = [GIF_FRAME_MS] * (len(frames) - 1) + [GIF_LAST_FRAME_MS]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=False, disposal=1)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _digit_legend(ax, frame: Frame, **kwargs) -> None:
    """A legend of the classes, or, without labels, a colour bar of mean brightness."""
    if not frame.labelled:
        mappable = matplotlib.cm.ScalarMappable(cmap=BRIGHTNESS_CMAP,
                                                norm=matplotlib.colors.Normalize(*_brightness_range(frame)))
        ax.figure.colorbar(mappable, ax=ax, label="mean brightness of the image", fraction=0.05, pad=0.02)
        return
    classes = int(frame.labels.max()) + 1
    styles = {int(c): palette.class_style(int(c), classes) for c in np.unique(frame.labels)}
    handles = [Line2D([], [], linestyle="", marker=marker, markersize=6, color=colour, label=frame.class_name(c))
               for c, (colour, marker) in styles.items()]
    title = "digit" if frame.digits_shown else "class"
    ax.legend(handles=handles, title=title, loc="center left", bbox_to_anchor=(1.01, 0.5),
              ncol=legend_columns(frame), fontsize=9 if len(handles) <= 20 else 7, **kwargs)


def legend_columns(frame: Frame) -> int:
    """The class legend's columns: one up to twenty classes, then one per LEGEND_ROWS."""
    shown = len(np.unique(frame.labels)) if frame.labelled else 0
    return math.ceil(shown / LEGEND_ROWS) if shown > 20 else 1


def _brightness_range(frame: Frame) -> tuple[float, float]:
    values = frame.brightness if frame.brightness is not None else np.zeros(1)
    return float(values.min()), float(max(values.max(), values.min() + 1e-6))


def _fixed_limits(points: Sequence[np.ndarray], pad: float = 0.05) -> tuple[tuple[float, float], tuple[float, float]]:
    """One square-ish window holding (almost) every frame's points, so the axes never jump; the most
    extreme 0.2% per frame are let go so one outlier cannot shrink the picture."""
    lows = np.min([np.percentile(p, 0.1, axis=0) for p in points], axis=0)
    highs = np.max([np.percentile(p, 99.9, axis=0) for p in points], axis=0)
    span = np.maximum(highs - lows, 1e-6)
    lows, highs = lows - pad * span, highs + pad * span
    return (float(lows[0]), float(highs[0])), (float(lows[1]), float(highs[1]))


def _scatter_values(frame: Frame) -> tuple[np.ndarray, Any, float, float]:
    """What a latent scatter is coloured by: the class (``palette``), else each image's mean brightness."""
    if not frame.labelled:
        return (frame.brightness, BRIGHTNESS_CMAP, *_brightness_range(frame))
    classes = int(frame.labels.max()) + 1
    cmap = palette.class_cmap(classes)
    return palette.class_value(frame.labels, classes), cmap, -0.5, cmap.N - 0.5


def _scatter_groups(frame: Frame, n: int) -> list[tuple[str, np.ndarray]]:
    """(marker, the indices of the points drawn with it, in drawing order): one group up to twenty classes."""
    order = _draw_order(n)
    if not frame.labelled:
        return [(palette.MARKERS[0], order)]
    markers = palette.class_marker(frame.labels[order], int(frame.labels.max()) + 1)
    return [(marker, order[markers == marker]) for marker in dict.fromkeys(markers)]


def marker_size(points: int, full: float = 5.0, at: int = SUBSAMPLE_TOTAL) -> float:
    """``full`` for a full subsample of ``at`` points, larger for fewer (a small test split), up to 8x:
    the ink per plot stays about the same, so 35 faces are as visible as 2,000 digits."""
    return float(np.clip(full * math.sqrt(at / max(points, 1)), full, 8 * full))


def _scatter_digits(ax, points: np.ndarray, frame: Frame, size: float | None = None) -> list[tuple[Any, np.ndarray]]:
    """The points coloured by class (or brightness), one collection per marker; returns each collection with
    the indices of the points it draws, for the next frame to move."""
    values, cmap, low, high = _scatter_values(frame)
    size = marker_size(len(points)) if size is None else size
    return [(ax.scatter(points[idx, 0], points[idx, 1], c=values[idx], cmap=cmap, vmin=low, vmax=high, s=size,
                        marker=marker, alpha=0.75, linewidths=0, rasterized=True), idx)
            for marker, idx in _scatter_groups(frame, len(points))]


def _image_grid(images: np.ndarray, rows: int, cols: int, gap: int = 2) -> np.ndarray:
    """(rows*cols, h, w) grey or (rows*cols, h, w, 3) colour images in [0, 1] tiled with white gaps."""
    h, w = images.shape[1:3]
    grid = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, *images.shape[3:]), dtype=np.float32)
    for k, image in enumerate(images[: rows * cols]):
        r, c = divmod(k, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    return grid


def _epoch_text(epoch: float) -> str:
    return f"epoch {epoch:.2f}" if epoch < 1 else f"epoch {epoch:g}"


@dataclass
class FrameFigure:
    """A GIF frame's figure and the artists that change from one evaluation point to the next. Moving
    those and redrawing costs a fraction of building a new figure per frame (layout, legend, ticks),
    which matters because a run has one frame per evaluation point (docs/performance.md)."""

    fig: Figure
    title: Any  # the suptitle Text
    changing: list[Any]  # what a frame updates: (scatter, its points' indices) pairs, or an image and its labels


def _draw_order(n: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n)  # no digit is always drawn on top


@_styled
def latent_frame_figure(points: np.ndarray, frame: Frame, latent_dim: int, method: str,
                        limits: tuple[tuple[float, float], tuple[float, float]]) -> FrameFigure:
    epoch = frame.epoch
    # each further legend column widens the figure, so that the plot keeps its width and its ticks stay apart
    fig = _figure(7.4 + LEGEND_COLUMN_INCHES * (legend_columns(frame) - 1), 6.2)
    ax = fig.add_subplot()
    groups = _scatter_digits(ax, points, frame)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    _digit_legend(ax, frame, **({"markerscale": 1.2} if frame.labelled else {}))
    if method == "z":
        ax.set_xlabel("$z_1$ (posterior mean)")
        ax.set_ylabel("$z_2$ (posterior mean)")
        what = "posterior means"
    elif method == "z1":
        ax.set_xlabel("$z_1$ (posterior mean)")
        ax.set_yticks([])
        what = "posterior means"
    else:
        name = {"tsne": "t-SNE", "pca": "PCA"}[method]
        ax.set_xlabel(f"{name} 1")
        ax.set_ylabel(f"{name} 2")
        ax.set_xticks([])  # projected coordinates have no units worth reading
        ax.set_yticks([])
        what = f"{name} of the posterior means"
    title = fig.suptitle(f"Latent size {latent_dim} · {_epoch_text(epoch)}")
    ax.set_title(f"{what} of {len(points):,} test images", fontsize=10, color="0.35")
    fig.tight_layout()  # the limits are fixed for the whole sequence, so this layout holds for every frame
    return FrameFigure(fig, title, groups)


def show_latent_frame(figure: FrameFigure, points: np.ndarray, frame: Frame, latent_dim: int) -> None:
    values = _scatter_values(frame)[0]
    for scatter, idx in figure.changing:  # the same images in every frame, so the same groups
        scatter.set_offsets(points[idx])
        scatter.set_array(values[idx])
    figure.title.set_text(f"Latent size {latent_dim} · {_epoch_text(frame.epoch)}")


@_styled
def render_latent_space(run_dir: Path, frames: Sequence[Frame], projection: str) -> list[Path]:
    points, method = latent_points(run_dir, frames, projection)
    limits = _fixed_limits(points)
    latent_dim = frames[0].mu.shape[1]
    figure = latent_frame_figure(points[0], frames[0], latent_dim, method, limits)
    images = []
    for frame, p in zip(frames, points, strict=True):
        show_latent_frame(figure, p, frame, latent_dim)
        images.append(_rgb(figure.fig))
    last = _save_png(figure.fig, run_dir / rundir.LATENT_SPACE_PNG)
    return [save_gif(images, run_dir / rundir.LATENT_SPACE_GIF), last]


RECONSTRUCTION_GAP = 6


def _reconstruction_grid(frame: Frame) -> np.ndarray:
    return _image_grid(np.concatenate([frame.digits, frame.reconstructions]), 2, len(frame.digits),
                       gap=RECONSTRUCTION_GAP)


def _reconstruction_scores(frame: Frame, k: int) -> str:
    return f"MSE {frame.mse[k]:.4f}\nSSIM {frame.ssim[k]:.3f}\nPSNR {frame.psnr[k]:.1f} dB"


def _reconstruction_title(frame: Frame, latent_dim: int) -> str:
    return f"Latent size {latent_dim} · reconstructions of fixed test {frame.what} · {_epoch_text(frame.epoch)}"


@_styled
def reconstruction_frame_figure(frame: Frame, latent_dim: int) -> FrameFigure:
    """Originals above, reconstructions below, drawn as one image on one axes: 20 separate axes per
    frame would cost several times more to draw, and there is one such figure per evaluation point."""
    n, gap = len(frame.digits), RECONSTRUCTION_GAP
    fig = _figure(max(1.25 * n + 0.9, 7.0), 3.9)  # wide enough for the title with few classes
    ax = fig.add_axes((0.045, 0.2, 0.945, 0.63))
    image = ax.imshow(_reconstruction_grid(frame), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    h, w = frame.digits.shape[1:3]
    scale = h / 28  # text offsets were tuned on 28 px images
    pitch = h + gap
    scores = []
    for k in range(n):
        left = k * (w + gap) - 0.5
        for row in (0, 1):
            ax.add_patch(Rectangle((left, row * pitch - 0.5), w, h, fill=False, edgecolor="0.75", linewidth=0.8))
        ax.text(left + w / 2, -2.5 * scale, frame.example_title(k), ha="center", va="bottom", fontsize=10)
        scores.append(ax.text(left + w / 2, pitch + h + 1.5 * scale, _reconstruction_scores(frame, k),
                              ha="center", va="top", fontsize=8, linespacing=1.3))
    for row, label in enumerate(("original", "reconstruction")):
        ax.text(-3.5 * scale, row * pitch + (h - 1) / 2, label, ha="right", va="center", rotation=90, fontsize=10)
    title = fig.suptitle(_reconstruction_title(frame, latent_dim))
    return FrameFigure(fig, title, [image, *scores])


def show_reconstruction_frame(figure: FrameFigure, frame: Frame, latent_dim: int) -> None:
    """The fixed digits and their labels are the same at every evaluation point; only the
    reconstructions, their scores and the epoch change."""
    image, *scores = figure.changing
    image.set_data(_reconstruction_grid(frame))
    for k, text in enumerate(scores):
        text.set_text(_reconstruction_scores(frame, k))
    figure.title.set_text(_reconstruction_title(frame, latent_dim))


@_styled
def render_reconstructions(run_dir: Path, frames: Sequence[Frame]) -> list[Path]:
    latent_dim = frames[0].mu.shape[1]
    figure = reconstruction_frame_figure(frames[0], latent_dim)
    images = []
    for frame in frames:
        show_reconstruction_frame(figure, frame, latent_dim)
        images.append(_rgb(figure.fig))
    last = _save_png(figure.fig, run_dir / rundir.RECONSTRUCTIONS_PNG)
    return [save_gif(images, run_dir / rundir.RECONSTRUCTIONS_GIF), last]


METRIC_PANELS = tuple((m.key, m.title, m.note or m.better_text) for m in POINT_METRICS if m.core)


def _log_epoch_axis(ax, low: float, high: float) -> None:
    ax.set_xscale("log")
    ticks = [m * 10**e for e in range(-3, 5) for m in (1, 2, 5) if low * 0.9 <= m * 10**e <= high * 1.1]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


@_styled
def render_metrics(run_dir: Path, history: Sequence[dict[str, Any]], latent_dim: int) -> Path:
    fig = _figure(13.0, 7.2)
    axes = fig.subplots(2, 3)
    epochs = [r["epoch"] for r in history]
    for ax, (key, title, note) in zip(axes.flat, METRIC_PANELS, strict=False):
        for split in ("train", "test"):
            ax.plot(epochs, [r[split][key] for r in history], marker="o", markersize=3, label=split,
                    **SPLIT_STYLE[split])
        ax.set_title(f"{title}", loc="left")
        ax.text(1.0, 1.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.45")
        if min(epochs) > 0 and max(epochs) / min(epochs) > 4:  # the first epoch holds most of the change
            _log_epoch_axis(ax, min(epochs), max(epochs))
        ax.set_xlabel("epoch" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    axes[0, 0].legend(loc="upper right")
    fig.suptitle(f"Latent size {latent_dim} · metrics during training (train: fixed subset, test: whole set)")
    fig.tight_layout()
    return _save_png(fig, run_dir / rundir.METRICS_PNG)


@_styled
@torch.no_grad()
def render_samples(run_dir: Path, model: VAE, seed: int = SAMPLES_SEED) -> Path:
    generator = torch.Generator().manual_seed(seed)
    images = display_images(model.sample(64, generator))  # z of the model's latent shape (a map for conv-spatial)
    fig = _figure(6.4, 6.9)
    ax = fig.add_subplot()
    ax.imshow(_image_grid(images, 8, 8), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    fig.suptitle(f"Latent size {model.latent_dim} · 64 samples from the prior")
    ax.set_title(f"decoder means at z ~ N(0, I), seed {seed}", fontsize=9, color="0.35")
    fig.tight_layout()
    return _save_png(fig, run_dir / rundir.SAMPLES_PNG)


@_styled
@torch.no_grad()
def render_interpolations(run_dir: Path, model: VAE, frame: Frame) -> Path:
    """Decodings along straight lines between the posterior means of pairs of the fixed test digits."""
    n = len(frame.digits)
    # With fewer than ten fixed examples (fewer classes), lines between neighbours, then the first and last.
    pairs = [(a, b) for a, b in INTERPOLATION_PAIRS if max(a, b) < n] or [(k, k + 1) for k in range(n - 1)][:5]
    mu, _ = model.encode(model_images(frame.digits))
    t = torch.linspace(0, 1, INTERPOLATION_STEPS).view(-1, *[1] * (mu.dim() - 1))  # broadcasts over any latent shape
    fig = _figure(1.0 * (INTERPOLATION_STEPS + 2) + 0.6, 1.05 * len(pairs) + 1.0)
    axes = fig.subplots(len(pairs), INTERPOLATION_STEPS + 2, squeeze=False,
                        gridspec_kw={"wspace": 0.05, "hspace": 0.08})
    for row, (a, b) in enumerate(pairs):
        path = display_images(model.decoder_mean(model.decode((1 - t) * mu[a] + t * mu[b])))
        shown = [frame.digits[a], *path, frame.digits[b]]
        for col, image in enumerate(shown):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            edge = "#2b6ca3" if col in (0, len(shown) - 1) else "0.85"  # the real images are framed in blue
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(edge)
                spine.set_linewidth(1.6 if edge != "0.85" else 0.8)
    for col, ax in enumerate(axes[0]):
        if col == 0 or col == INTERPOLATION_STEPS + 1:
            ax.set_title("original", fontsize=8, color="#2b6ca3")
        else:
            ax.set_title(f"t={(col - 1) / (INTERPOLATION_STEPS - 1):.2f}", fontsize=8, color="0.35")
    fig.suptitle(f"Latent size {model.latent_dim} · straight lines between posterior means of test {frame.what}")
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.85 / fig.get_figheight(), bottom=0.02)
    return _save_png(fig, run_dir / rundir.INTERPOLATIONS_PNG)


@_styled
@torch.no_grad()
def render_manifold(run_dir: Path, model: VAE, frame: Frame | None) -> Path:
    """Latent size 2: decodings over a grid of the prior's quantiles, beside the test means. A latent *map* of 2
    channels has no plane of its own; it is shown over the plane of uniform maps, each channel one value at every
    position, beside each test image's mean over positions of each channel."""
    q = ndtri(np.linspace(*MANIFOLD_QUANTILES, MANIFOLD_SIZE))
    z1, z2 = np.meshgrid(q, q[::-1])  # top row = largest z2, as on the scatter's y axis
    z = torch.from_numpy(np.stack([z1.ravel(), z2.ravel()], 1)).float()
    spatial = len(model.latent_shape) > 1
    if spatial:
        z = z[:, :, None, None].expand(-1, -1, *model.latent_shape[1:])
    images = display_images(model.decoder_mean(model.decode(z)))
    side = images.shape[1]
    columns = legend_columns(frame) if frame is not None else 1
    fig = _figure(14.5 + LEGEND_COLUMN_INCHES * (columns - 1), 7.0)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.12]})
    grid = _image_grid(images, MANIFOLD_SIZE, MANIFOLD_SIZE, gap=0)
    left.imshow(grid, cmap="gray", vmin=0, vmax=1)
    left.grid(False)
    ticks = np.arange(0, MANIFOLD_SIZE, 3)
    left.set_xticks(ticks * side + side // 2, [f"{q[i]:.2f}" for i in ticks])
    left.set_yticks(ticks * side + side // 2, [f"{q[::-1][i]:.2f}" for i in ticks])
    left.set_xlabel("$z_1$ (prior quantiles 5%…95%)" + (" at every position" if spatial else ""))
    left.set_ylabel("$z_2$ (prior quantiles 5%…95%)" + (" at every position" if spatial else ""))
    left.set_title("decoded manifold" + (" of uniform latent maps" if spatial else ""), loc="left")
    if frame is not None:
        mu = frame.mu.reshape(len(frame.mu), 2, -1).mean(axis=2)  # a vector latent is unchanged
        _scatter_digits(right, mu, frame, size=marker_size(len(mu), full=6.0))
        _digit_legend(right, frame, **({"markerscale": 1.2} if frame.labelled else {}))
        means = "channel means over positions" if spatial else "posterior means"
        right.set_title(f"{means} of {len(mu):,} test images · {_epoch_text(frame.epoch)}", loc="left")
    right.add_patch(Rectangle((q[0], q[0]), q[-1] - q[0], q[-1] - q[0], fill=False, edgecolor="0.2",
                              linestyle="--", linewidth=1.2, label="decoded region"))
    right.set_xlabel("$z_1$")
    right.set_ylabel("$z_2$")
    right.set_aspect("equal", adjustable="datalim")
    what = "images" if frame is None else frame.what
    if spatial:
        height, width = model.latent_shape[1:]
        fig.suptitle(f"Latent maps of 2 channels ({height}x{width}) · decodes of uniform maps, and the test {what}' "
                     "channel means (dashed: the region on the left)")
    else:
        fig.suptitle(f"Latent size 2 · the decoder over the prior, and where the test {what} land (dashed: the "
                     "region on the left)")
    fig.tight_layout()
    return _save_png(fig, run_dir / rundir.MANIFOLD_PNG)
