"""Recording, on the training path: one frame of data per evaluation point, drawn from later.

``ArtifactRecorder`` is a trainer hook. At every evaluation point it saves, under ``RUN_DIR/frames/``,
only data: the posterior means of a fixed stratified subsample of the test set (200 images per digit,
2,000 on MNIST) and the reconstructions of one fixed test digit per class with their MSE / SSIM / PSNR.
It costs one 10-image forward pass and a ~0.1 MB file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import rundir
from ..atomic import atomic_file
from ..errors import ArtifactError
from ..quality import mse_per_image, psnr_per_image, ssim_per_image
from ..training import EvalPoint

SUBSAMPLE_PER_CLASS = 200  # 2,000 test images on MNIST: enough to see every cluster, cheap to embed
SUBSAMPLE_SEED = 0


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


def save_frame(run_dir: Path, frame: Frame) -> Path:
    """Atomically, so a reader never sees half a frame and a resumed run overwrites in place."""
    path = rundir.frame_path(run_dir, frame.index)
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
