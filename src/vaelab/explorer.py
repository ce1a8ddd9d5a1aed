"""The model side of ``vaelab serve``: the runs of a run or study directory, loaded once at start-up,
and the decodes, encodes and interpolations the page asks for, every input checked first.

Everything is read from disk once, in ``load_explorer``: the checkpoints of the runs found under the
directory and the test split of their data set. Requests name a run by the name it was given at
start-up and never carry a path, so no request can make the server read a file.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage
import torch
from PIL import Image, UnidentifiedImageError

from . import rundir
from .checkpoint import find_checkpoint, load_checkpoint, load_model
from .config import RunConfig
from .data import default_data_dirs
from .datasets import load_first_found
from .errors import CheckpointError, VaelabError
from .models import VAE
from .prepare import as_float_images, posterior_means

Z_LIMIT = 10.0  # 10 prior standard deviations: a coordinate beyond this is a mistake, not a question...
LIMIT_MARGIN = 1.25  # ...unless the run's own test posterior means reach further (a beta=0 or young run)
SCATTER_POINTS = 2000
SCATTER_SEED = 0
GALLERY_PER_CLASS = 3
GALLERY_CLASSES = 10  # the gallery shows the first few test images of at most this many classes
GALLERY_UNLABELLED = 30  # ...or, without labels, this many of the first test images
MAX_INTERPOLATION_STEPS = 32
MAX_IMAGE_SIDE = 2048
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
INK_THRESHOLD = 0.1  # grey levels below this are paper, not ink, when finding the digit's box
DIGIT_BOX = 20  # MNIST: the digit is scaled to fit a 20x20 box...
CANVAS_SIDE = 28  # ...and placed in a 28x28 field
MNIST_CENTRE = (14.0, 14.0)  # ...with its centre of mass here (measured on the MNIST test set)


class BadInput(ValueError):
    """A request the server refuses; the message says what was wrong and what is expected."""


@dataclass
class ServedRun:
    name: str
    model: VAE
    config: RunConfig
    epochs_trained: int
    test_loss: float | None  # -ELBO on the test set at the last evaluation, nats per image
    test_mu: torch.Tensor  # posterior means of the whole test split, (N, latent_dim)

    @property
    def latent_dim(self) -> int:
        return self.config.model.latent_dim

    @property
    def mean_extent(self) -> float:
        """The largest coordinate magnitude of a test posterior mean."""
        return float(self.test_mu.abs().max())

    @property
    def z_limit(self) -> float:
        """Requests may ask for coordinates in [-z_limit, z_limit]: wherever the test digits lie, and the
        prior's range."""
        return max(Z_LIMIT, float(math.ceil(LIMIT_MARGIN * self.mean_extent)))

    def summary(self) -> dict[str, Any]:
        m = self.config.model
        # A grid's runs are told apart by their coordinates (beta=0.5,z=2,seed=1), a latent-size study's by size.
        label = self.name if rundir.is_grid_run_name(self.name) else f"latent {m.latent_dim}"
        return {"name": self.name, "label": label, "latent_dim": m.latent_dim, "arch": m.arch,
                "likelihood": m.likelihood,
                "epochs": self.epochs_trained, "test_loss": self.test_loss, "z_limit": self.z_limit,
                "mean_extent": round(self.mean_extent, 3)}


@dataclass
class Explorer:
    runs: dict[str, ServedRun]
    dataset: str
    test_images: torch.Tensor  # uint8 (N, H, W) grey or (N, C, H, W) colour, as the data set holds them
    test_labels: torch.Tensor  # int64 (N,), -1 without labels
    scatter_indices: torch.Tensor  # the test digits drawn on the 2-D plane
    gallery_indices: torch.Tensor  # the test digits offered as thumbnails
    class_names: tuple[str, ...] | None = None  # names of labels 0, 1, ...; None: the labels are digits
    training: tuple[str, ...] = ()  # runs of the study not served: no checkpoint yet (training, or stopped early)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        shape = tuple(int(d) for d in self.test_images.shape[1:])
        return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]

    @property
    def drawable(self) -> bool:
        """Grey 28x28 images: a drawing, made MNIST-style, is an input like the training images. Other
        data gets an image upload instead of the drawing canvas."""
        return self.image_shape == (1, CANVAS_SIDE, CANVAS_SIDE)

    @property
    def labelled(self) -> bool:
        return bool((self.test_labels >= 0).any())

    def display_image(self, index: int) -> np.ndarray:
        """Test image ``index`` as (H, W) grey or (H, W, C) colour uint8: the pixel order the page draws."""
        image = self.test_images[index].numpy()
        return image if image.ndim == 2 else image.transpose(1, 2, 0)

    def run(self, name: str) -> ServedRun:
        if name not in self.runs:
            raise KeyError(name)
        return self.runs[name]


# --- start-up ---------------------------------------------------------------------------------


def discover_runs(root: Path) -> dict[str, Path]:
    """Name -> directory of every run under ``root``: ``root`` itself if it is a run, else the
    ``latent_<z>`` runs its study.json lists (or, without one, every ``latent_<z>`` with a checkpoint)."""
    root = Path(root)
    if not root.is_dir():
        raise VaelabError(f"{root}: no such directory; give a run directory or a study directory.")
    if rundir.is_run_dir(root):
        return {root.resolve().name: root}
    planned = (rundir.read_study_file(root) or {}).get("runs")
    dims = rundir.read_study_dims(root) if not planned else None
    if dims is not None:
        return {rundir.run_dir_name(d): rundir.run_dir_of(root, d) for d in dims}
    found = [p for p in rundir.study_run_dirs(root) if rundir.has_checkpoint(p)]  # a grid: its trained runs
    if not found:
        raise VaelabError(
            f"{root}: neither a run directory (with {rundir.CONFIG} and {rundir.CHECKPOINT}) nor a study directory "
            f"(with {rundir.STUDY_FILE} and trained runs). Train one with 'vaelab study' or "
            "'vaelab train'."
        )
    return {p.name: p for p in found}


def load_explorer(root: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Explorer:
    """Load every run under ``root`` and the test split of their data set: from ``data_dir`` if given,
    else from where the runs were trained, else from the usual places (``$VAELAB_DATA``, the cache)."""
    found = discover_runs(Path(root))
    training = tuple(name for name, path in found.items() if path.is_dir() and not rundir.has_checkpoint(path))
    paths = {name: path for name, path in found.items() if name not in training}
    if not paths:
        raise VaelabError(f"{root}: no run has a checkpoint yet ({', '.join(training)}: still training, or stopped "
                          "before the end of its first epoch); serve it once a run has finished an epoch.")
    loaded = {name: load_run_files(name, path) for name, path in paths.items()}
    datasets = {config.data.dataset for _, config, _ in loaded.values()}
    if len(datasets) > 1:
        raise VaelabError(f"{root}: its runs were trained on different data sets ({sorted(datasets)}); "
                          "serve one at a time.")
    name = datasets.pop()
    recorded = [d for path, (_, config, _) in zip(paths.values(), loaded.values(), strict=True)
                for d in (config.data.data_dir, recorded_data_dir(path))]
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise VaelabError(f"--data-dir {data_dir}: no such directory.")
    # A directory the user names is the only one tried: falling back elsewhere would show other images silently.
    dataset = load_first_found(name, [data_dir] if data_dir is not None else [*recorded, *default_data_dirs(name)])
    images, labels = dataset.test.images, dataset.test.labels
    runs = {}
    for name, (model, config, state) in loaded.items():
        history = state["history"]
        runs[name] = ServedRun(name=name, model=model, config=config, epochs_trained=int(state["epoch"]),
                         test_loss=history[-1]["test"]["loss"] if history else None,
                         test_mu=posterior_means(model, as_float_images(images)))
        decode(runs[name], torch.zeros(1, config.model.latent_dim))  # pay one-time set-up costs now, not on a click
    return Explorer(runs=runs, dataset=dataset.name, test_images=images, test_labels=labels,
                    scatter_indices=scatter_subset(len(labels)), gallery_indices=gallery_subset(labels),
                    class_names=dataset.class_names, training=training)


def recorded_data_dir(run_dir: Path) -> str | None:
    """The data directory the run's latest training session read (metrics.json), if it says."""
    try:
        metrics = rundir.read_metrics(run_dir)
    except rundir.MetricsFileError:
        return None
    value = metrics.environment.get("data_dir") if metrics is not None else None
    return value if isinstance(value, str) else None


def load_run_files(name: str, path: Path) -> tuple[VAE, RunConfig, dict[str, Any]]:
    if not path.is_dir():
        raise CheckpointError(f"{path}: run {name} is listed but its directory is missing.")
    model, config = load_model(path)
    if len(model.latent_shape) != 1:
        shape = "x".join(map(str, model.latent_shape))
        raise VaelabError(f"{path}: run {name} has a spatial latent ({shape}, arch {config.model.arch}); the "
                          "explorer's sliders need a latent vector, so serve cannot show it.")
    state = load_checkpoint(find_checkpoint(path))  # for how far it trained and its last test loss
    return model, config, state


def scatter_subset(n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(SCATTER_SEED))[: min(n, SCATTER_POINTS)]


def gallery_subset(labels: torch.Tensor) -> torch.Tensor:
    """The first few test digits of each class (of the first ten), class by class; without labels, the
    first test images."""
    if not bool((labels >= 0).any()):
        return torch.arange(min(len(labels), GALLERY_UNLABELLED))
    classes = min(int(labels.max()) + 1, GALLERY_CLASSES)
    picks = [torch.nonzero(labels == c).flatten()[:GALLERY_PER_CLASS] for c in range(classes)]
    return torch.cat(picks)


# --- checking what a request sends -----------------------------------------------------------------


def latent_vector(value: Any, latent_dim: int, limit: float = Z_LIMIT, field: str = "z") -> torch.Tensor:
    """A request's latent point as a (1, latent_dim) tensor, or BadInput saying what is wrong with it."""
    if not isinstance(value, list):
        raise BadInput(f"'{field}' must be a list of {latent_dim} numbers, got {type(value).__name__}.")
    if len(value) != latent_dim:
        raise BadInput(f"'{field}' must have {latent_dim} numbers (the run's latent size), got {len(value)}.")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise BadInput(f"'{field}' must hold only numbers.")
    try:
        z = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer of hundreds of digits: beyond any float, so beyond the limit too
        raise BadInput(f"'{field}' has a coordinate too large for a number; coordinates must lie in "
                       f"[-{limit:g}, {limit:g}].") from None
    if not np.isfinite(z).all():
        raise BadInput(f"'{field}' holds NaN or infinite values.")
    if np.abs(z).max() > limit:
        raise BadInput(f"'{field}' has a coordinate of magnitude {np.abs(z).max():.3g}; coordinates must lie in "
                       f"[-{limit:g}, {limit:g}] (the prior is a standard normal).")
    return torch.from_numpy(z).float().unsqueeze(0)


def bounded_int(value: Any, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput(f"'{field}' must be an integer, got {type(value).__name__}.")
    if not low <= value <= high:
        raise BadInput(f"'{field}' must be between {low} and {high}, got {value}.")
    return value


def decode_image_data(data: Any) -> Image.Image:
    """A base64 image (a data: URL as canvas.toDataURL gives, or bare base64) as a loaded Pillow image."""
    if not isinstance(data, str):
        raise BadInput("'image' must be a base64 string (a data:image/png;base64,... URL).")
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not header.endswith(";base64"):
            raise BadInput("'image' is a data URL without base64 content.")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("'image' is not valid base64.") from None
    try:
        image = Image.open(io.BytesIO(raw))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise BadInput("'image' is not a readable image.") from None
    if image.format not in IMAGE_FORMATS:
        raise BadInput(f"'image' is a {image.format} image; send {', '.join(IMAGE_FORMATS)}.")
    if max(image.size) > MAX_IMAGE_SIDE or min(image.size) < 8:
        raise BadInput(f"'image' is {image.size[0]}x{image.size[1]} pixels; each side must be 8 to {MAX_IMAGE_SIDE}.")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's ways of saying truncated or corrupt
        raise BadInput(f"'image' is a damaged {image.format} file ({exc}).") from None
    return image


# --- MNIST-style preprocessing of a drawn digit --------------------------------------------------


def ink_levels(image: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1] with ink bright and paper dark, as in MNIST. Transparent pixels are paper;
    a light page with dark ink (the usual look of a photo or scan) is inverted."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(paper, rgba)
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return 1.0 - grey if np.median(border) > 0.5 else grey


def mnist_style(image: Image.Image) -> np.ndarray:
    """A drawing as MNIST presents digits: cropped to its ink, scaled (aspect kept, anti-aliased) to fit
    a 20x20 box, placed in a 28x28 field with its centre of mass at the centre. uint8 (28, 28)."""
    ink = ink_levels(image)
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    if rows.size == 0:
        raise BadInput("'image' is blank: there is no ink to encode.")
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # BOX averages every source pixel a target pixel covers: the anti-aliasing a downscale needs.
    small = Image.fromarray(np.uint8(np.clip(crop * 255.0 + 0.5, 0, 255))).resize(size, Image.Resampling.BOX)
    field = np.zeros((CANVAS_SIDE, CANVAS_SIDE), dtype=np.float32)
    top, left = (CANVAS_SIDE - size[1]) // 2, (CANVAS_SIDE - size[0]) // 2
    field[top : top + size[1], left : left + size[0]] = np.asarray(small, dtype=np.float32)
    centre = scipy.ndimage.center_of_mass(field)
    shift = np.round(np.subtract(MNIST_CENTRE, centre))
    centred = scipy.ndimage.shift(field, shift, order=0, mode="constant", cval=0.0)
    return np.uint8(np.clip(centred, 0, 255))


# --- what the page asks of a model ----------------------------------------------------------------


def fitted_upload(image: Image.Image, image_shape: tuple[int, int, int]) -> np.ndarray:
    """An uploaded image converted as the training folder's images were (colour mode, transparency
    flattened, shorter side resized, centre-cropped): uint8 (H, W) grey or (H, W, 3) colour."""
    from .images import fit_image

    channels, height, width = image_shape
    array = fit_image(image, channels, (width, height))
    return array[0] if channels == 1 else array.transpose(1, 2, 0)


def as_pixels(images: torch.Tensor) -> np.ndarray:
    """Decoder means in [0, 1], (N, C, H, W) -> uint8 (N, H, W) grey or (N, H, W, C) colour."""
    pixels = (images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    return (pixels[:, 0] if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 1)).numpy()


@torch.no_grad()
def decode(run: ServedRun, z: torch.Tensor) -> np.ndarray:
    """Decoder means of latent points (N, latent_dim) as uint8 images (N, H, W) or (N, H, W, C)."""
    return as_pixels(run.model.decoder_mean(run.model.decode(z)))


@torch.no_grad()
def encode_digit(run: ServedRun, digit: np.ndarray) -> dict[str, np.ndarray]:
    """Posterior mean and standard deviation of a uint8 (H, W) grey or (H, W, C) colour image (a drawn
    28x28 digit, or an upload), and its reconstruction at the mean."""
    chw = digit[None] if digit.ndim == 2 else np.ascontiguousarray(digit.transpose(2, 0, 1))
    mu, logvar = run.model.encode(as_float_images(chw[None]))
    return {"mu": mu[0].numpy(), "std": torch.exp(0.5 * logvar)[0].numpy(), "reconstruction": decode(run, mu)[0]}


def interpolation_path(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` evenly spaced points on the straight segment from ``start`` to ``end``, both included."""
    t = torch.linspace(0.0, 1.0, steps).unsqueeze(1)
    return (1.0 - t) * start + t * end


def prior_sample(latent_dim: int, seed: int | None) -> torch.Tensor:
    """One z ~ N(0, I), clipped to the accepted range (which a draw leaves with probability < 1e-22)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return torch.randn((1, latent_dim), generator=generator).clamp(-Z_LIMIT, Z_LIMIT)


def scatter_bounds(points: torch.Tensor, limit: float = Z_LIMIT) -> list[float]:
    """[xmin, xmax, ymin, ymax] of the plane: the points' range padded by 8%, covering at least +-3 (the
    prior's bulk) and at most the accepted range."""
    low, high = points.min(0).values, points.max(0).values
    pad = 0.08 * (high - low)
    low = torch.clamp(torch.minimum(low - pad, torch.tensor(-3.0)), min=-limit)
    high = torch.clamp(torch.maximum(high + pad, torch.tensor(3.0)), max=limit)
    return [float(low[0]), float(high[0]), float(low[1]), float(high[1])]


def rounded(values: Sequence[float] | np.ndarray | torch.Tensor, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in np.asarray(values).ravel()]
