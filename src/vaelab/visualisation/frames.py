"""Recording, on the training path: one frame of data per evaluation point, drawn from later.

``ArtifactRecorder`` is a trainer hook. At every evaluation point it saves, under ``RUN_DIR/frames/``,
only data: the posterior means of a fixed stratified subsample of the test set (2,000 images shared out
among the classes, 200 per digit on MNIST) and the reconstructions of one fixed test image per class (the
first ten without labels) with their MSE / SSIM / PSNR.
It costs one 10-image forward pass and a ~0.1 MB file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import rundir
from ..atomic import atomic_file
from ..callbacks import Callback, EvalPoint
from ..errors import ArtifactError
from ..quality import mse_per_image, psnr_per_image, ssim_per_image

SUBSAMPLE_TOTAL = 2000  # test images in the latent scatters: enough to see every cluster, cheap to embed
SUBSAMPLE_SEED = 0
FIXED_EXAMPLES = 10  # reconstructed in every frame: one per class (the first ten classes), else the first ten


def stratified_subsample(labels: np.ndarray, per_class: int | None = None,
                         seed: int = SUBSAMPLE_SEED) -> np.ndarray:
    """Sorted indices of up to ``per_class`` images of every label (default: ``SUBSAMPLE_TOTAL`` shared
    out among the labels, 200 per digit on MNIST), the same for every run on the same data."""
    rng = np.random.default_rng(seed)
    if per_class is None:
        per_class = max(1, SUBSAMPLE_TOTAL // len(np.unique(labels)))
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def first_index_per_class(labels: np.ndarray) -> np.ndarray:
    """The fixed test images shown reconstructed and interpolated: the first of every label, in label order (on
    MNIST its ten digits); with fewer than ten classes the first few of each, so that there are about ten (a
    one-class folder still has pairs to interpolate). Without labels (all -1), the first ten test images; with
    more than ten classes, the first ten classes'."""
    if (labels < 0).all():
        return np.arange(min(FIXED_EXAMPLES, len(labels)))
    classes = np.unique(labels)
    per_class = max(1, FIXED_EXAMPLES // len(classes))
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])[:FIXED_EXAMPLES]


def display_images(images: torch.Tensor) -> np.ndarray:
    """Model-side (N, C, H, W) in [0, 1] -> what imshow draws: (N, H, W) grey or (N, H, W, 3) colour."""
    array = images.detach().cpu().float().numpy()
    return array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)


def model_images(images: np.ndarray) -> torch.Tensor:
    """The inverse of ``display_images``."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).float()
    return tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)


@dataclass
class Frame:
    """What one evaluation point left on disk."""

    index: int
    epoch: float
    step: int
    mu: np.ndarray  # (n, latent) posterior means of the subsample
    labels: np.ndarray  # (n,), -1 without labels
    digits: np.ndarray  # (10, H, W) or (10, H, W, 3) the fixed originals, in [0, 1]
    digit_labels: np.ndarray  # (10,)
    reconstructions: np.ndarray  # like digits: decoder means at z = mu
    mse: np.ndarray  # (10,) per image
    ssim: np.ndarray
    psnr: np.ndarray
    brightness: np.ndarray | None = None  # (n,) mean pixel of each subsampled image: the colour without labels
    class_names: np.ndarray | None = None  # names of labels 0, 1, ... where they are not the digits themselves

    @property
    def labelled(self) -> bool:
        return bool((self.labels >= 0).any())

    @property
    def digits_shown(self) -> bool:
        """Labelled by the digits themselves (MNIST-like), not by named classes."""
        return self.labelled and (self.class_names is None or not len(self.class_names))

    @property
    def what(self) -> str:
        return "digits" if self.digits_shown else "images"

    def class_name(self, label: int) -> str:
        if self.class_names is not None and len(self.class_names) and 0 <= label < len(self.class_names):
            return str(self.class_names[label])
        return str(label)

    def example_title(self, k: int) -> str:
        """What the k-th fixed example is called in the figures."""
        label = int(self.digit_labels[k])
        if label < 0:
            return f"test image {k}"
        return f"digit {label}" if self.digits_shown else self.class_name(label)


def save_frame(run_dir: Path, frame: Frame) -> Path:
    """Atomically, so a reader never sees half a frame and a resumed run overwrites in place."""
    path = rundir.frame_path(run_dir, frame.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        np.savez(f, **{k: np.asarray(v) for k, v in vars(frame).items() if v is not None})
    return path


class ArtifactRecorder(Callback):
    """The callback saving one frame per evaluation point; all drawing happens later.

    ``test_images`` are the images the trainer scores (float (N, C, H, W) in [0, 1], binarised
    if the run binarises), so the per-image metrics in the figures are those the trainer measures.
    ``class_names``: the names of labels 0, 1, ... (folder names), None for digits.
    """

    def __init__(self, run_dir: str | Path, test_images: torch.Tensor, test_labels: torch.Tensor,
                 per_class: int | None = None, class_names: Sequence[str] | None = None):
        self.run_dir = Path(run_dir)
        labels = test_labels.cpu().numpy()
        self.subsample = torch.from_numpy(stratified_subsample(labels, per_class))
        self.subsample_labels = labels[self.subsample.numpy()]
        self.brightness = test_images[self.subsample.to(test_images.device)].flatten(1).mean(1).cpu().numpy()
        self.class_names = None if class_names is None else np.array(class_names, dtype=str)
        digit_index = first_index_per_class(labels)
        self.digit_labels = labels[digit_index]
        self.digits = test_images[torch.from_numpy(digit_index).to(test_images.device)]

    @torch.no_grad()
    def on_eval_point(self, point: EvalPoint) -> None:
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
            digits=display_images(digits),
            digit_labels=self.digit_labels,
            reconstructions=display_images(recon),
            mse=mse_per_image(digits, recon).cpu().numpy(),
            ssim=ssim_per_image(digits, recon).cpu().numpy(),
            psnr=psnr_per_image(digits, recon).cpu().numpy(),
            brightness=self.brightness.astype(np.float32),
            class_names=self.class_names,
        ))


def load_frames(run_dir: str | Path) -> list[Frame]:
    """The run's frames in order. Frames a crash left beyond the recorded history, or that no longer
    match it, are left out: the history in metrics.json is the truth about where the run is."""
    run_dir = Path(run_dir)
    paths = rundir.frame_paths(run_dir)
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
    try:
        metrics = rundir.read_metrics(run_dir)
    except rundir.MetricsFileError as exc:
        raise ArtifactError(f"cannot read the metric history: {exc}") from None
    return None if metrics is None else metrics.history
