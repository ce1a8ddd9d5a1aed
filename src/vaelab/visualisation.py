"""Per-run artifacts: what a run looked like while it trained, and what the trained model does.

Two halves, kept apart so training stays fast:

* ``ArtifactRecorder`` is a trainer hook. At every evaluation point it saves, under
  ``RUN_DIR/frames/``, only data: the posterior means of a fixed stratified subsample of the test
  set (200 images per digit, 2,000 on MNIST) and the reconstructions of one fixed test digit per
  class with their MSE / SSIM / PSNR. It costs one 10-image forward pass and a ~0.1 MB file.
* ``render_run_artifacts`` builds every figure from what is on disk (frames, metrics.json, the
  checkpoint), so it works on a finished run, an interrupted one and one still training.

Latent spaces larger than 2 are shown through a 2-D projection (t-SNE by default, or PCA). The
projection of frame k starts from frame k-1's embedding and is then rotated/reflected onto it
(orthogonal Procrustes), so the animation shows the same clusters moving rather than a fresh random
layout per frame. Projections are cached per run, so re-rendering a growing run only projects the
new frames.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Rectangle
from PIL import Image
from scipy.linalg import orthogonal_procrustes
from scipy.stats import norm
from torch import nn

from .atomic import atomic_file
from .checkpoint import CHECKPOINT_NAME, CONFIG_NAME, load_model
from .config import PROJECTIONS, RunConfig, write_text_atomic
from .errors import ArtifactError
from .metrics import mse_per_image, psnr_per_image, ssim_per_image
from .models import VAE
from .resnet import ResBlock, SelfAttention
from .training import METRICS_JSON, EvalPoint

FRAMES_DIR = "frames"
PROJECTION_FILE = "projection.json"  # which projection the run was last rendered with
SUBSAMPLE_PER_CLASS = 200  # 2,000 test images on MNIST: enough to see every cluster, cheap to embed
SUBSAMPLE_SEED = 0
SAMPLES_SEED = 0
INTERPOLATION_PAIRS = ((0, 6), (1, 7), (2, 5), (3, 8), (4, 9))  # digits of the fixed reconstruction set
INTERPOLATION_STEPS = 10
MANIFOLD_SIZE = 20
MANIFOLD_QUANTILES = (0.05, 0.95)

TSNE_PERPLEXITY = 30.0
TSNE_SEED = 0
# The first frame is a fresh t-SNE with shortened phases. Later frames start from the previous layout
# and get a brief, mild exaggeration (to let clusters that have formed pull together) and a short
# normal phase. Measured on a latent-16 run (2,000 points, 8 frames): the last frame's 10-NN digit
# accuracy in 2-D is 0.895, against 0.914 for a fresh fit and 0.876 without the exaggerated phase,
# at ~1.3 CPU-s per frame.
TSNE_FIRST_EXAGGERATION_ITER = 100
TSNE_FIRST_ITER = 250
TSNE_NEXT_EXAGGERATION_ITER = 25
TSNE_NEXT_EXAGGERATION = 4.0
TSNE_NEXT_ITER = 100
TSNE_EXACT_NEIGHBOURS_UP_TO = 5000  # exact neighbour search is faster than annoy at these sizes

P = ParamSpec("P")
R = TypeVar("R")

GIF_FRAME_MS = 700
GIF_LAST_FRAME_MS = 2500
GIF_COLOURS = 128
DIGIT_CMAP = matplotlib.colormaps["tab10"]
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


# -- recording (on the training path) ----------------------------------------------------------------


def stratified_subsample(labels: np.ndarray, per_class: int = SUBSAMPLE_PER_CLASS,
                         seed: int = SUBSAMPLE_SEED) -> np.ndarray:
    """Sorted indices of up to ``per_class`` images of every label, the same for every run on the same data."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def first_index_per_class(labels: np.ndarray) -> np.ndarray:
    """The first test image of every label, in label order: the fixed digits shown reconstructed."""
    return np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)])


@dataclass
class Frame:
    """What one evaluation point left on disk."""

    index: int
    epoch: float
    step: int
    mu: np.ndarray  # (n, latent) posterior means of the subsample
    labels: np.ndarray  # (n,)
    digits: np.ndarray  # (10, 28, 28) the fixed originals, in [0, 1]
    digit_labels: np.ndarray  # (10,)
    reconstructions: np.ndarray  # (10, 28, 28) decoder means at z = mu
    mse: np.ndarray  # (10,) per image
    ssim: np.ndarray
    psnr: np.ndarray


def frame_path(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / FRAMES_DIR / f"point_{index:04d}.npz"


def save_frame(run_dir: Path, frame: Frame) -> Path:
    """Atomically, so a reader never sees half a frame and a resumed run overwrites in place."""
    path = frame_path(run_dir, frame.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        np.savez(f, **{k: np.asarray(v) for k, v in vars(frame).items()})
    return path


class ArtifactRecorder:
    """Trainer hook saving one frame per evaluation point; all drawing happens later.

    ``test_images`` are the images the trainer scores (float (N, 1, 28, 28) in [0, 1], binarised
    if the run binarises), so the per-image metrics in the figures are those the trainer measures.
    """

    def __init__(self, run_dir: str | Path, test_images: torch.Tensor, test_labels: torch.Tensor,
                 per_class: int = SUBSAMPLE_PER_CLASS):
        self.run_dir = Path(run_dir)
        labels = test_labels.cpu().numpy()
        self.subsample = torch.from_numpy(stratified_subsample(labels, per_class))
        self.subsample_labels = labels[self.subsample.numpy()]
        digit_index = first_index_per_class(labels)
        self.digit_labels = labels[digit_index]
        self.digits = test_images[torch.from_numpy(digit_index).to(test_images.device)]

    @torch.no_grad()
    def __call__(self, point: EvalPoint) -> None:
        model = point.model
        was_training = model.training
        model.eval()
        digits = self.digits.to(next(model.parameters()).device)
        recon = model.reconstruct(digits)
        model.train(was_training)
        save_frame(self.run_dir, Frame(
            index=point.index,
            epoch=float(point.record["epoch"]),
            step=int(point.record["step"]),
            mu=point.test_mu[self.subsample].numpy().astype(np.float32),
            labels=self.subsample_labels,
            digits=digits[:, 0].cpu().numpy().astype(np.float32),
            digit_labels=self.digit_labels,
            reconstructions=recon[:, 0].cpu().numpy().astype(np.float32),
            mse=mse_per_image(digits, recon).cpu().numpy(),
            ssim=ssim_per_image(digits, recon).cpu().numpy(),
            psnr=psnr_per_image(digits, recon).cpu().numpy(),
        ))


def load_frames(run_dir: str | Path) -> list[Frame]:
    """The run's frames in order. Frames a crash left beyond the recorded history, or that no longer
    match it, are left out: the history in metrics.json is the truth about where the run is."""
    run_dir = Path(run_dir)
    paths = sorted((run_dir / FRAMES_DIR).glob("point_*.npz"))
    history = read_history(run_dir)
    frames = []
    for path in paths:
        try:
            with np.load(path) as data:
                fields = {k: data[k] for k in data.files}
            frame = Frame(**{k: v.item() if v.ndim == 0 else v for k, v in fields.items()})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ArtifactError(f"{path}: not a readable vaelab frame ({exc}); delete it and re-render.") from None
        if history is not None and (frame.index >= len(history) or history[frame.index]["step"] != frame.step):
            continue
        frames.append(frame)
    return frames


def read_history(run_dir: Path) -> list[dict[str, Any]] | None:
    path = Path(run_dir) / METRICS_JSON
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["history"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: cannot read the metric history ({exc}).") from None


# -- 2-D projections ------------------------------------------------------------------------------------


def procrustes_align(moving: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``moving`` translated, rotated and possibly reflected (no scaling) to best match ``reference``
    point by point in least squares."""
    moving_centre, reference_centre = moving.mean(0), reference.mean(0)
    rotation, _ = orthogonal_procrustes(moving - moving_centre, reference - reference_centre)
    return (moving - moving_centre) @ rotation + reference_centre


def tsne_embedding(x: np.ndarray, init: np.ndarray | None = None, seed: int = TSNE_SEED) -> np.ndarray:
    """t-SNE of ``x``. Without ``init``: a fresh embedding from a PCA start. With ``init`` (an
    earlier embedding of the same points): a short run that adjusts that layout to the new ``x``,
    with only a brief mild exaggeration, so clusters keep their places."""
    from openTSNE import TSNEEmbedding, affinity, initialization

    x = np.asarray(x, dtype=np.float64)
    perplexity = min(TSNE_PERPLEXITY, (len(x) - 1) / 3)  # openTSNE needs 3 * perplexity neighbours
    neighbours = "exact" if len(x) <= TSNE_EXACT_NEIGHBOURS_UP_TO else "annoy"
    affinities = affinity.PerplexityBasedNN(x, perplexity=perplexity, method=neighbours, n_jobs=1, random_state=seed)
    if init is None:
        initialise = initialization.pca if x.shape[1] >= 2 else initialization.random
        start = initialise(x, random_state=seed)
    else:
        start = np.asarray(init, dtype=np.float64)
    embedding = TSNEEmbedding(start, affinities, negative_gradient_method="bh", n_jobs=1, random_state=seed)
    if init is None:
        embedding = embedding.optimize(TSNE_FIRST_EXAGGERATION_ITER, exaggeration=12, momentum=0.5)
        embedding = embedding.optimize(TSNE_FIRST_ITER, momentum=0.8)
    else:
        embedding = embedding.optimize(TSNE_NEXT_EXAGGERATION_ITER, exaggeration=TSNE_NEXT_EXAGGERATION, momentum=0.5)
        embedding = embedding.optimize(TSNE_NEXT_ITER, momentum=0.8)
    return np.asarray(embedding)


def pca_embedding(x: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] == 1:  # nothing to project: spread the single coordinate against zero
        return np.hstack([x - x.mean(), np.zeros_like(x)])
    return PCA(n_components=2, random_state=0).fit_transform(x)


def project_sequence(mus: Sequence[np.ndarray], method: str, previous: np.ndarray | None = None) -> list[np.ndarray]:
    """Temporally coherent 2-D projections of a sequence of posterior-mean sets of the same points.

    Each frame is aligned (Procrustes) to the one before it, and t-SNE frames also start from it;
    ``previous`` is the embedding of the frame just before ``mus[0]``, if it was projected earlier.
    """
    if method not in PROJECTIONS:
        raise ArtifactError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}.")
    embeddings = []
    for mu in mus:
        if method == "tsne":
            y = tsne_embedding(mu, init=previous)
        else:
            y = pca_embedding(mu)
        if previous is not None:
            y = procrustes_align(y, previous)
        embeddings.append(y)
        previous = y
    return embeddings


def independent_projections(mus: Sequence[np.ndarray], method: str) -> list[np.ndarray]:
    """Each frame projected from scratch, as the original study did: the baseline coherence beats."""
    return [tsne_embedding(mu) if method == "tsne" else pca_embedding(mu) for mu in mus]


def mean_displacement(embeddings: Sequence[np.ndarray]) -> float:
    """Mean distance a point moves between consecutive frames, in units of each frame's spread, so
    sequences of different scales compare."""
    moves = []
    for a, b in zip(embeddings, embeddings[1:], strict=False):
        scale = math.sqrt(((b - b.mean(0)) ** 2).sum(1).mean())
        moves.append(np.linalg.norm(b - a, axis=1).mean() / scale)
    return float(np.mean(moves)) if moves else 0.0


def cached_projections(run_dir: Path, frames: Sequence[Frame], method: str) -> list[np.ndarray]:
    """Projections of every frame, reusing the cached ones whose frames are unchanged: a coherent
    sequence only depends on earlier frames, so a growing run only projects its new frames."""
    cache = Path(run_dir) / FRAMES_DIR / f"projection_{method}.npz"
    steps = np.array([f.step for f in frames])
    reused: list[np.ndarray] = []
    if cache.exists():
        try:
            with np.load(cache) as data:
                cached_steps, cached = data["steps"], data["embeddings"]
            if cached.shape[1:] == (len(frames[0].mu), 2):
                agree = 0
                while agree < min(len(steps), len(cached_steps)) and steps[agree] == cached_steps[agree]:
                    agree += 1
                reused = list(cached[:agree])
        except (OSError, ValueError, KeyError):
            reused = []  # a damaged cache is only lost time: project again
    fresh = project_sequence([f.mu for f in frames[len(reused):]], method, reused[-1] if reused else None)
    embeddings = reused + fresh
    if fresh:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache) as f:
            np.savez(f, steps=steps, embeddings=np.stack(embeddings))
    return embeddings


# -- figure helpers -------------------------------------------------------------------------------------


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
    _write_bytes_atomic(path, buffer.getvalue())
    return path


def _rgb(fig: Figure) -> Image.Image:
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def save_gif(images: Sequence[Image.Image], path: Path) -> Path:
    """An endlessly looping GIF that lingers on its last frame; one adaptive palette per frame."""
    frames = [im.quantize(colors=GIF_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
              for im in images]
    durations = [GIF_FRAME_MS] * (len(frames) - 1) + [GIF_LAST_FRAME_MS]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=False, disposal=1)
    _write_bytes_atomic(path, buffer.getvalue())
    return path


def _digit_legend(ax, labels: np.ndarray, **kwargs) -> None:
    handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=DIGIT_CMAP(int(c)), label=str(int(c)))
               for c in np.unique(labels)]
    ax.legend(handles=handles, title="digit", loc="center left", bbox_to_anchor=(1.01, 0.5), **kwargs)


def _fixed_limits(points: Sequence[np.ndarray], pad: float = 0.05) -> tuple[tuple[float, float], tuple[float, float]]:
    """One square-ish window holding (almost) every frame's points, so the axes never jump; the most
    extreme 0.2% per frame are let go so one outlier cannot shrink the picture."""
    lows = np.min([np.percentile(p, 0.1, axis=0) for p in points], axis=0)
    highs = np.max([np.percentile(p, 99.9, axis=0) for p in points], axis=0)
    span = np.maximum(highs - lows, 1e-6)
    lows, highs = lows - pad * span, highs + pad * span
    return (float(lows[0]), float(highs[0])), (float(lows[1]), float(highs[1]))


def _scatter_digits(ax, points: np.ndarray, labels: np.ndarray, size: float = 5.0):
    order = _draw_order(len(points))
    return ax.scatter(points[order, 0], points[order, 1], c=labels[order], cmap=DIGIT_CMAP, vmin=-0.5, vmax=9.5,
               s=size, alpha=0.75, linewidths=0, rasterized=True)


def _image_grid(images: np.ndarray, rows: int, cols: int, gap: int = 2) -> np.ndarray:
    """(rows*cols, h, w) images in [0, 1] tiled with white gaps into one array."""
    h, w = images.shape[1:]
    grid = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap), dtype=np.float32)
    for k, image in enumerate(images[: rows * cols]):
        r, c = divmod(k, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    return grid


def _epoch_text(epoch: float) -> str:
    return f"epoch {epoch:.2f}" if epoch < 1 else f"epoch {epoch:g}"


# -- latent space -----------------------------------------------------------------------------------


def latent_points(run_dir: Path, frames: Sequence[Frame], projection: str) -> tuple[list[np.ndarray], str]:
    """2-D points per frame and the axis-naming method: the means themselves for latent size 2."""
    latent_dim = frames[0].mu.shape[1]
    if latent_dim == 2:
        return [f.mu for f in frames], "z"
    if latent_dim == 1:
        return project_sequence([f.mu for f in frames], "pca"), "z1"
    return cached_projections(run_dir, frames, projection), projection


@dataclass
class FrameFigure:
    """A GIF frame's figure and the artists that change from one evaluation point to the next. Moving
    those and redrawing costs a fraction of building a new figure per frame (layout, legend, ticks),
    which matters because a run has one frame per evaluation point (docs/performance.md)."""

    fig: Figure
    title: Any  # the suptitle Text
    changing: list[Any]  # the artists a frame updates: a scatter, or an image and its metric labels


def _draw_order(n: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n)  # no digit is always drawn on top


@_styled
def latent_frame_figure(points: np.ndarray, labels: np.ndarray, latent_dim: int, epoch: float, method: str,
                        limits: tuple[tuple[float, float], tuple[float, float]]) -> FrameFigure:
    fig = _figure(7.4, 6.2)
    ax = fig.add_subplot()
    scatter = _scatter_digits(ax, points, labels)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    _digit_legend(ax, labels, markerscale=1.2)
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
    return FrameFigure(fig, title, [scatter])


def show_latent_frame(figure: FrameFigure, points: np.ndarray, labels: np.ndarray, latent_dim: int,
                      epoch: float) -> None:
    order = _draw_order(len(points))
    scatter = figure.changing[0]
    scatter.set_offsets(points[order])
    scatter.set_array(labels[order])
    figure.title.set_text(f"Latent size {latent_dim} · {_epoch_text(epoch)}")


@_styled
def render_latent_space(run_dir: Path, frames: Sequence[Frame], projection: str) -> list[Path]:
    points, method = latent_points(run_dir, frames, projection)
    limits = _fixed_limits(points)
    latent_dim = frames[0].mu.shape[1]
    figure = latent_frame_figure(points[0], frames[0].labels, latent_dim, frames[0].epoch, method, limits)
    images = []
    for frame, p in zip(frames, points, strict=True):
        show_latent_frame(figure, p, frame.labels, latent_dim, frame.epoch)
        images.append(_rgb(figure.fig))
    last = _save_png(figure.fig, run_dir / "latent_space.png")
    return [save_gif(images, run_dir / "latent_space.gif"), last]


# -- reconstructions ------------------------------------------------------------------------------------

RECONSTRUCTION_GAP = 6


def _reconstruction_grid(frame: Frame) -> np.ndarray:
    return _image_grid(np.concatenate([frame.digits, frame.reconstructions]), 2, len(frame.digits),
                       gap=RECONSTRUCTION_GAP)


def _reconstruction_scores(frame: Frame, k: int) -> str:
    return f"MSE {frame.mse[k]:.4f}\nSSIM {frame.ssim[k]:.3f}\nPSNR {frame.psnr[k]:.1f} dB"


def _reconstruction_title(frame: Frame, latent_dim: int) -> str:
    return f"Latent size {latent_dim} · reconstructions of fixed test digits · {_epoch_text(frame.epoch)}"


@_styled
def reconstruction_frame_figure(frame: Frame, latent_dim: int) -> FrameFigure:
    """Originals above, reconstructions below, drawn as one image on one axes: 20 separate axes per
    frame would cost several times more to draw, and there is one such figure per evaluation point."""
    n, gap = len(frame.digits), RECONSTRUCTION_GAP
    fig = _figure(1.25 * n + 0.9, 3.9)
    ax = fig.add_axes((0.045, 0.2, 0.945, 0.63))
    image = ax.imshow(_reconstruction_grid(frame), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    pitch = 28 + gap
    scores = []
    for k in range(n):
        left = k * pitch - 0.5
        for row in (0, 1):
            ax.add_patch(Rectangle((left, row * pitch - 0.5), 28, 28, fill=False, edgecolor="0.75", linewidth=0.8))
        ax.text(left + 14, -2.5, f"digit {int(frame.digit_labels[k])}", ha="center", va="bottom", fontsize=10)
        scores.append(ax.text(left + 14, pitch + 28 + 1.5, _reconstruction_scores(frame, k),
                              ha="center", va="top", fontsize=8, linespacing=1.3))
    for row, label in enumerate(("original", "reconstruction")):
        ax.text(-3.5, row * pitch + 13.5, label, ha="right", va="center", rotation=90, fontsize=10)
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
    last = _save_png(figure.fig, run_dir / "reconstructions.png")
    return [save_gif(images, run_dir / "reconstructions.gif"), last]


# -- metric curves ----------------------------------------------------------------------------------


METRIC_PANELS = (
    ("loss", "−ELBO (nats/image)", "lower is better"),
    ("nll", "reconstruction NLL (nats)", "−E[log p(x|z)]"),
    ("kl", "KL(q(z|x) ‖ p(z)) (nats)", "rate"),
    ("mse", "MSE per pixel", "lower is better"),
    ("ssim", "SSIM", "higher is better"),
    ("psnr", "PSNR (dB)", "higher is better"),
)


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
    return _save_png(fig, run_dir / "metrics.png")


# -- generation -----------------------------------------------------------------------------------------


@_styled
@torch.no_grad()
def render_samples(run_dir: Path, model: VAE, seed: int = SAMPLES_SEED) -> Path:
    generator = torch.Generator().manual_seed(seed)
    images = model.sample(64, generator)[:, 0].numpy()  # z of the model's latent shape (a 7x7 map for conv-spatial)
    fig = _figure(6.4, 6.9)
    ax = fig.add_subplot()
    ax.imshow(_image_grid(images, 8, 8), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    fig.suptitle(f"Latent size {model.latent_dim} · 64 samples from the prior")
    ax.set_title(f"decoder means at z ~ N(0, I), seed {seed}", fontsize=9, color="0.35")
    fig.tight_layout()
    return _save_png(fig, run_dir / "samples.png")


@_styled
@torch.no_grad()
def render_interpolations(run_dir: Path, model: VAE, frame: Frame) -> Path:
    """Decodings along straight lines between the posterior means of pairs of the fixed test digits."""
    by_label = {int(c): k for k, c in enumerate(frame.digit_labels)}
    pairs = [(by_label[a], by_label[b]) for a, b in INTERPOLATION_PAIRS if a in by_label and b in by_label]
    digits = torch.from_numpy(frame.digits).unsqueeze(1)
    mu, _ = model.encode(digits)
    t = torch.linspace(0, 1, INTERPOLATION_STEPS).view(-1, *[1] * (mu.dim() - 1))  # broadcasts over any latent shape
    fig = _figure(1.0 * (INTERPOLATION_STEPS + 2) + 0.6, 1.05 * len(pairs) + 1.0)
    axes = fig.subplots(len(pairs), INTERPOLATION_STEPS + 2, squeeze=False,
                        gridspec_kw={"wspace": 0.05, "hspace": 0.08})
    for row, (a, b) in enumerate(pairs):
        path = model.decoder_mean(model.decode((1 - t) * mu[a] + t * mu[b]))[:, 0].numpy()
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
    fig.suptitle(f"Latent size {model.latent_dim} · straight lines between posterior means of test digits")
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.85 / fig.get_figheight(), bottom=0.02)
    return _save_png(fig, run_dir / "interpolations.png")


@_styled
@torch.no_grad()
def render_manifold(run_dir: Path, model: VAE, frame: Frame | None) -> Path:
    """Latent size 2: decodings over a grid of the prior's quantiles, beside the test means."""
    q = norm.ppf(np.linspace(*MANIFOLD_QUANTILES, MANIFOLD_SIZE))
    z1, z2 = np.meshgrid(q, q[::-1])  # top row = largest z2, as on the scatter's y axis
    z = torch.from_numpy(np.stack([z1.ravel(), z2.ravel()], 1)).float()
    images = model.decoder_mean(model.decode(z))[:, 0].numpy()
    fig = _figure(14.5, 7.0)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.12]})
    grid = _image_grid(images, MANIFOLD_SIZE, MANIFOLD_SIZE, gap=0)
    left.imshow(grid, cmap="gray", vmin=0, vmax=1)
    left.grid(False)
    ticks = np.arange(0, MANIFOLD_SIZE, 3)
    left.set_xticks(ticks * 28 + 14, [f"{q[i]:.2f}" for i in ticks])
    left.set_yticks(ticks * 28 + 14, [f"{q[::-1][i]:.2f}" for i in ticks])
    left.set_xlabel("$z_1$ (prior quantiles 5%…95%)")
    left.set_ylabel("$z_2$ (prior quantiles 5%…95%)")
    left.set_title("decoded manifold", loc="left")
    if frame is not None:
        _scatter_digits(right, frame.mu, frame.labels, size=6)
        _digit_legend(right, frame.labels, markerscale=1.2)
        right.set_title(f"posterior means of {len(frame.mu):,} test images · {_epoch_text(frame.epoch)}", loc="left")
    right.add_patch(Rectangle((q[0], q[0]), q[-1] - q[0], q[-1] - q[0], fill=False, edgecolor="0.2",
                              linestyle="--", linewidth=1.2, label="decoded region"))
    right.set_xlabel("$z_1$")
    right.set_ylabel("$z_2$")
    right.set_aspect("equal", adjustable="datalim")
    fig.suptitle("Latent size 2 · the decoder over the prior, and where the test digits land "
                 "(dashed: the region on the left)")
    fig.tight_layout()
    return _save_png(fig, run_dir / "manifold.png")


# -- architecture ---------------------------------------------------------------------------------------


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
    if isinstance(module, ResBlock):
        return f"ResBlock {module.shortcut.in_channels}→{module.shortcut.out_channels} (2× GroupNorm·SiLU·conv 3×3)"
    if isinstance(module, SelfAttention):
        return f"Self-attention, {module.attention.num_heads} heads"
    return type(module).__name__


def _is_unit(module: nn.Module) -> bool:
    """A box of its own in the figure: a leaf layer, or a composite block drawn as one."""
    return isinstance(module, (ResBlock, SelfAttention)) or len(list(module.children())) == 0


@torch.no_grad()
def describe_architecture(model: VAE) -> list[LayerInfo]:
    """Every leaf layer of encoder and decoder in execution order, with the output shape seen on a
    dummy batch: read off the model itself, so the figure cannot drift from the code."""
    layers: list[LayerInfo] = []
    handles = []
    for part, net in (("encoder", model.encoder), ("decoder", model.decoder)):
        inside_unit = {id(m) for u in net.modules() if isinstance(u, (ResBlock, SelfAttention))
                       for m in u.modules() if m is not u}
        for module in net.modules():
            if _is_unit(module) and id(module) not in inside_unit:
                def record(mod, _inputs, output, part=part):
                    layers.append(LayerInfo(part, type(mod).__name__, layer_detail(mod), tuple(output.shape[1:]),
                                            sum(p.numel() for p in mod.parameters())))
                handles.append(module.register_forward_hook(record))
    device = next(model.parameters()).device
    try:
        mu, _ = model.encode(torch.zeros((2, 1, 28, 28), device=device))
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
    colours = {"encoder": "#dbe9f6", "decoder": "#fbe3d2", "latent": "#e4f2df", "io": "#eeeeee"}
    half_height = 0.3

    def box(x: float, y: float, title: str, subtitle: str, colour: str,
            width: float = 4.6) -> tuple[float, float, float]:
        ax.add_patch(FancyBboxPatch((x - width / 2, y - half_height), width, 2 * half_height,
                                    boxstyle="round,pad=0.02,rounding_size=0.1", facecolor=colours[colour],
                                    edgecolor="0.55", linewidth=0.8))
        ax.text(x, y - 0.08, title, ha="center", va="center", fontsize=9.5, fontweight="bold")
        ax.text(x, y + 0.16, subtitle, ha="center", va="center", fontsize=8.5, color="0.3")
        return x, y, width

    def arrow(start: tuple[float, float], end: tuple[float, float]) -> None:
        ax.annotate("", xy=end, xytext=start,
                    arrowprops={"arrowstyle": "-|>", "color": "0.4", "linewidth": 1.0, "shrinkA": 0, "shrinkB": 0})

    def below(b):  # bottom-centre / top-centre of a box, for vertical arrows
        return b[0], b[1] + half_height

    def above(b):
        return b[0], b[1] - half_height

    ex, lx, dx = 2.5, 7.03, 11.5
    for x, text in ((ex, f"encoder q(z|x) · {n_enc:,} parameters"), (dx, f"decoder p(x|z) · {n_dec:,} parameters")):
        ax.text(x, -0.62, text, ha="center", fontsize=10.5, fontweight="bold")
    ax.text(lx, len(encoder) - 0.95, f"latent · size {z}", ha="center", fontsize=10.5, fontweight="bold")
    previous = box(ex, 0, "input x", "1×28×28 image in [0, 1]", "io")
    for row, layer in enumerate(encoder, start=1):
        subtitle = f"out {_shape_text(layer.output_shape)} · {layer.params:,} params"
        if row == len(encoder):
            subtitle = f"out {_shape_text(layer.output_shape)} = μ ‖ log σ² · {layer.params:,} params"
        current = box(ex, row, layer.detail, subtitle, "encoder")
        arrow(below(previous), above(current))
        previous = current
    # mu and log sigma^2 sit beside the encoder's last layer, z beside them; the decoder starts at the top.
    last = len(encoder)
    mu_box = box(5.95, last - 0.42, "μ", f"{z} posterior means", "latent", 1.9)
    logvar_box = box(5.95, last + 0.42, "log σ²", f"{z} log-variances", "latent", 1.9)
    z_box = box(8.1, last, "z = μ + σ·ε", f"{z} · ε ~ N(0, I)", "latent", 1.9)
    for target in (mu_box, logvar_box):
        arrow((previous[0] + previous[2] / 2, previous[1]), (target[0] - target[2] / 2, target[1]))
        arrow((target[0] + target[2] / 2, target[1]), (z_box[0] - z_box[2] / 2, z_box[1]))
    previous = z_box
    for row, layer in enumerate(decoder):
        current = box(dx, row, layer.detail, f"out {_shape_text(layer.output_shape)} · {layer.params:,} params",
                      "decoder")
        if row == 0:
            ax.annotate("", xy=(current[0] - current[2] / 2, current[1]), xytext=above(z_box),
                        arrowprops={"arrowstyle": "-|>", "color": "0.4", "linewidth": 1.0, "shrinkA": 0,
                                    "shrinkB": 0, "connectionstyle": "angle,angleA=90,angleB=0,rad=8"})
        else:
            arrow(below(previous), above(current))
        previous = current
    out = (box(dx, len(decoder), "(x + 1) / 2 → decoder mean", "1×28×28 image, [-1, 1] scale → [0, 1]", "io")
           if model.linear_output else
           box(dx, len(decoder), "sigmoid → decoder mean", "1×28×28 pixel probabilities", "io"))
    arrow(below(previous), above(out))
    fig.suptitle(f"VAE ({model.config.arch}), latent size {z} · {n_enc + n_dec:,} parameters · "
                 f"{model.config.likelihood} likelihood")
    return _save_png(fig, run_dir / "architecture.png")


# -- everything ---------------------------------------------------------------------------------------


def chosen_projection(run_dir: Path, projection: str | None) -> str:
    """The projection asked for, else the one this run was last rendered with, else t-SNE."""
    record = Path(run_dir) / FRAMES_DIR / PROJECTION_FILE
    if projection is None:
        try:
            projection = json.loads(record.read_text())["projection"]
        except (OSError, ValueError, KeyError, TypeError):
            projection = "tsne"
    if projection not in PROJECTIONS:
        raise ArtifactError(f"unknown projection {projection!r}; choose one of {', '.join(PROJECTIONS)}.")
    return projection


def render_run_artifacts(run_dir: str | Path, projection: str | None = None) -> dict[str, Path]:
    """(Re)build every per-run figure from what the run directory holds; returns name -> path.

    Works while the run is training or after it was interrupted: it uses whatever frames and history
    exist, and skips what needs a checkpoint (samples, interpolations, manifold) until there is one.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_NAME).exists():
        raise ArtifactError(f"{run_dir}: no {CONFIG_NAME} here; is this a vaelab run directory?")
    config = RunConfig.load(run_dir / CONFIG_NAME)
    projection = chosen_projection(run_dir, projection)
    latent_dim = config.model.latent_dim
    written: dict[str, Path] = {}
    frames = load_frames(run_dir)
    history = read_history(run_dir) or []
    if frames:
        write_text_atomic(run_dir / FRAMES_DIR / PROJECTION_FILE, json.dumps({"projection": projection}) + "\n")
        written["latent_space.gif"], written["latent_space.png"] = render_latent_space(run_dir, frames, projection)
        written["reconstructions.gif"], written["reconstructions.png"] = render_reconstructions(run_dir, frames)
    if history:
        written["metrics.png"] = render_metrics(run_dir, history, latent_dim)
    if (run_dir / CHECKPOINT_NAME).exists():
        model, _ = load_model(run_dir)
        written["samples.png"] = render_samples(run_dir, model)
        if frames:
            written["interpolations.png"] = render_interpolations(run_dir, model, frames[-1])
        if model.latent_shape == (2,):  # not a spatial latent of 2 channels
            written["manifold.png"] = render_manifold(run_dir, model, frames[-1] if frames else None)
    else:
        model = VAE(config.model)  # untrained, but the same shapes: enough for the architecture
    written["architecture.png"] = render_architecture(run_dir, model)
    return written
