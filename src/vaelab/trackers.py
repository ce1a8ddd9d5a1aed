"""Experiment trackers (TensorBoard, MLflow, Weights & Biases), fed through one callback.

``TrackerHook`` is a callback like the frame recorder: at every evaluation point it hands each
tracker every train/test metric under stable names (``train/loss``, ``test/ssim``, ...) and a grid of
fixed test images over their reconstructions. ``finish`` then adds what exists only at the end: the
final measures, the run's config as hyperparameters, the latent means of the fixed test subsample
(TensorBoard's Embedding Projector, a W&B table) and the figure files (MLflow and W&B artifacts).

TensorBoard stores scalars in single precision (its fast loader shows no other kind), so the values
read back equal those in metrics.json rounded to float32.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .callbacks import Callback
from .config import RunConfig
from .errors import VaelabError
from .rundir import MLFLOW_DB, TENSORBOARD_DIR
from .visualisation import first_index_per_class, stratified_subsample

MLFLOW_ARTIFACTS = "mlartifacts"
MLFLOW_EXTRA = "pip install 'vaelab[mlflow]'"
WANDB_EXTRA = "pip install 'vaelab[wandb]'"
RECORD_SCALARS = ("epoch", "time_s", "train_s")  # besides the metrics, per evaluation point
EMBEDDING_TAG = "latent_means"
RECONSTRUCTIONS_TAG = "reconstructions"


class Tracker(Protocol):
    def log_point(self, step: int, scalars: dict[str, float], grid: np.ndarray) -> None: ...

    def finish(self, ending: RunEnding) -> None: ...

    def abandon(self) -> None: ...


@dataclasses.dataclass
class RunEnding:
    """What a tracker gets once training (and the final measures and figures) are done."""

    step: int
    params: dict[str, Any]  # the run's config, flattened: "model.arch", "train.lr", ...
    final: dict[str, float]  # the last evaluation point's metrics and the end-of-training measures
    latent_means: torch.Tensor  # (n, units) posterior means of the fixed test subsample
    labels: np.ndarray  # (n,)
    images: torch.Tensor  # (n, C, H, W) in [0, 1], the sprite of the Embedding Projector
    files: list[Path]  # figures, GIFs and metrics files


def point_scalars(record: dict[str, Any]) -> dict[str, float]:
    """Every number of one history record under its tag: ``train/loss``, ``test/iwae_log_likelihood``, ``epoch``."""
    scalars = {f"{split}/{name}": float(value) for split in ("train", "test") for name, value in record[split].items()}
    for key, value in record.items():
        if key in ("train", "test", "step") or not isinstance(value, (int, float)):
            continue
        split, _, name = key.partition("_")  # extra measures such as test_iwae_log_likelihood
        known = key not in RECORD_SCALARS and split in ("train", "test") and name
        scalars[f"{split}/{name}" if known else key] = float(value)
    return scalars


def flat_params(config: RunConfig) -> dict[str, Any]:
    """The config as ``section.key`` -> int/float/str/bool (tuples and None as text), as trackers accept."""
    flat = {}
    for section, values in dataclasses.asdict(config).items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


class TrackerHook(Callback):
    """The callback feeding trackers; called on rank 0 only. Call ``finish`` once after training, or
    ``abandon`` if it failed.

    ``open_trackers`` is called at the first evaluation point, so that a run refused before training (a
    run directory already in use, say) leaves no tracker files or runs behind.
    """

    def __init__(self, open_trackers: Callable[[], list[Tracker]], config: RunConfig, test_images: torch.Tensor,
                 test_labels: torch.Tensor):
        self.open_trackers = open_trackers
        self.trackers: list[Tracker] | None = None
        self.config = config
        labels = test_labels.cpu().numpy()
        subsample = stratified_subsample(labels)
        self.subsample = torch.from_numpy(subsample)
        self.subsample_labels = labels[subsample]
        self.subsample_images = test_images[self.subsample.to(test_images.device)].cpu()
        self.digits = test_images[torch.from_numpy(first_index_per_class(labels)).to(test_images.device)]
        self.last: tuple[int, dict[str, float], torch.Tensor] | None = None

    @torch.no_grad()
    def on_eval_point(self, point: Any) -> None:
        if self.trackers is None:
            self.trackers = self.open_trackers()
        step = int(point.record["step"])
        scalars = point_scalars(point.record)
        grid = reconstruction_grid(point.model, self.digits)
        for tracker in self.trackers:
            tracker.log_point(step, scalars, grid)
        self.last = (step, scalars, point.test_mu[self.subsample])

    def abandon(self) -> None:
        for tracker in self.trackers or []:
            tracker.abandon()

    def finish(self, final_measures: dict[str, float] | None, files: list[Path]) -> None:
        if self.trackers is None or self.last is None:  # nothing was evaluated in this session
            return
        step, scalars, latent_means = self.last
        final = {k: v for k, v in scalars.items() if "/" in k}
        final.update({f"final/{k}": float(v) for k, v in (final_measures or {}).items()
                      if isinstance(v, (int, float))})
        ending = RunEnding(step, flat_params(self.config), final, latent_means, self.subsample_labels,
                           self.subsample_images, sorted(files))
        for tracker in self.trackers:
            tracker.finish(ending)


def reconstruction_grid(model: Any, digits: torch.Tensor) -> np.ndarray:
    """(C, 2H, nW) in [0, 1]: the fixed test images in the top row, their reconstructions below."""
    was_training = model.training
    model.eval()
    recon = model.reconstruct(digits.to(next(model.parameters()).device))
    model.train(was_training)
    rows = [torch.cat(list(images.cpu()), dim=-1) for images in (digits, recon)]  # each (C, H, nW)
    return torch.cat(rows, dim=-2).clamp(0, 1).numpy()


class TensorBoardTracker:
    """Event files in RUN_DIR/tensorboard; a study's runs appear side by side under `--logdir STUDY_DIR`."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))

    def log_point(self, step: int, scalars: dict[str, float], grid: np.ndarray) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.add_image(RECONSTRUCTIONS_TAG, grid, step, dataformats="CHW")
        self.writer.flush()

    def finish(self, ending: RunEnding) -> None:
        from torch.utils.tensorboard.summary import hparams

        for tag, value in ending.final.items():
            if tag.startswith("final/"):
                self.writer.add_scalar(tag, value, ending.step)
        # The hparams summaries go into this run's own event file (add_hparams would make a sub-run).
        for summary in hparams(ending.params, {tag: value for tag, value in ending.final.items()}):
            self.writer.file_writer.add_summary(summary, ending.step)
        self.writer.add_embedding(ending.latent_means, metadata=[str(label) for label in ending.labels],
                                  label_img=ending.images, global_step=ending.step, tag=EMBEDDING_TAG)
        self.writer.close()

    def abandon(self) -> None:
        self.writer.close()  # what was logged stays readable


class MlflowTracker:
    """One MLflow run per vaelab run, in an experiment named after the study directory.

    ``uri`` None: a SQLite store STUDY_DIR/mlflow.db with artifacts in STUDY_DIR/mlartifacts, no server.
    """

    def __init__(self, run_dir: Path, uri: str | None, params: dict[str, Any]):
        from mlflow.entities import Param

        run_dir = Path(run_dir).resolve()
        self.client, experiment_id, self.uri = open_experiment(run_dir.parent, uri)
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name,
                                             tags={"vaelab.run_dir": str(run_dir)}).info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_point(self, step: int, scalars: dict[str, float], grid: np.ndarray) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(tag, value, now, step) for tag, value in scalars.items()])

    def finish(self, ending: RunEnding) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, ending.step) for k, v in ending.final.items()
                                       if k.startswith("final/")])
        for path in ending.files:
            self.client.log_artifact(self.run_id, str(path), artifact_path="figures" if path.suffix in (
                ".png", ".gif") else None)
        self.client.set_terminated(self.run_id)

    def abandon(self) -> None:
        self.client.set_terminated(self.run_id, status="KILLED")


class WandbTracker:
    """One Weights & Biases run per vaelab run, named after its directory, grouped by its study, in ``project``
    (default: the study directory's name). Offline unless ``WANDB_MODE`` says otherwise: no account or network is
    needed, the run is kept in RUN_DIR/wandb/, and ``wandb sync RUN_DIR/wandb/offline-run-*`` uploads it later."""

    def __init__(self, run_dir: Path, project: str | None, params: dict[str, Any]):
        import wandb

        run_dir = Path(run_dir).resolve()
        study = run_dir.parent.name or "vaelab"
        self.wandb = wandb
        self.run = wandb.init(project=project or study, name=run_dir.name, group=study, dir=str(run_dir),
                              config=params, mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"))

    def log_point(self, step: int, scalars: dict[str, float], grid: np.ndarray) -> None:
        self.run.log({**scalars, RECONSTRUCTIONS_TAG: self.wandb.Image(as_uint8_image(grid))}, step=step)

    def finish(self, ending: RunEnding) -> None:
        final = {k: v for k, v in ending.final.items() if k.startswith("final/")}
        units = ending.latent_means.reshape(len(ending.labels), -1).tolist()
        table = self.wandb.Table(columns=["label", *(f"z{i}" for i in range(len(units[0]) if units else 0))],
                                 data=[[int(label), *row] for label, row in zip(ending.labels, units, strict=True)])
        figures = {f"figures/{path.name}": self.wandb.Image(str(path)) for path in ending.files
                   if path.suffix == ".png"}
        self.run.log({**final, EMBEDDING_TAG: table, **figures}, step=ending.step)
        self.run.summary.update(final)
        files = self.wandb.Artifact(f"{self.run.name}-files", type="vaelab-run")
        for path in ending.files:
            files.add_file(str(path), name=path.name)
        self.run.log_artifact(files)
        self.run.finish()

    def abandon(self) -> None:
        self.run.finish(exit_code=1)


def as_uint8_image(grid: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] as (H, W) or (H, W, C) bytes, the forms image loggers take without guessing a scale."""
    image = np.rint(np.moveaxis(grid, 0, -1) * 255).astype(np.uint8)
    return image[..., 0] if image.shape[-1] == 1 else image


def open_experiment(study_dir: Path, uri: str | None) -> tuple[Any, str, str]:
    """(client, experiment id, tracking URI) of the study's experiment, created where it does not exist yet.
    ``uri`` None: the SQLite store STUDY_DIR/mlflow.db, artifacts in STUDY_DIR/mlartifacts. A study that trains
    runs side by side calls this once before they start: two processes creating one SQLite store at once race
    in its schema migration."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise VaelabError(f"--mlflow needs MLflow, which is not installed: {MLFLOW_EXTRA}") from None
    study_dir = Path(study_dir).resolve()
    artifacts = None
    if uri is None:
        uri = f"sqlite:///{study_dir / MLFLOW_DB}"
        artifacts = (study_dir / MLFLOW_ARTIFACTS).as_uri()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its schema migrations on every new store
    client = MlflowClient(tracking_uri=uri)
    name = study_dir.name or "vaelab"
    experiment = client.get_experiment_by_name(name)
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment(name, artifact_location=artifacts))
    return client, experiment_id, uri


def tracker_hook(run_dir: Path, config: RunConfig, test_images: torch.Tensor, test_labels: torch.Tensor,
                 tensorboard: bool, mlflow_uri: str | None, wandb_project: str | None = None) -> TrackerHook | None:
    """The hook for the trackers asked for (``mlflow_uri`` "" is the default local store, ``wandb_project`` ""
    the study's name), or None."""
    if not tensorboard and mlflow_uri is None and wandb_project is None:
        return None
    require_trackers(mlflow_uri, wandb_project)

    def open_trackers() -> list[Tracker]:
        trackers: list[Tracker] = [TensorBoardTracker(run_dir)] if tensorboard else []
        if mlflow_uri is not None:
            trackers.append(MlflowTracker(run_dir, mlflow_uri or None, flat_params(config)))
        if wandb_project is not None:
            trackers.append(WandbTracker(run_dir, wandb_project or None, flat_params(config)))
        return trackers

    return TrackerHook(open_trackers, config, test_images, test_labels)


def require_mlflow() -> None:
    """Call before loading data and training: a missing extra is a one-line message, not a late failure."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise VaelabError(f"--mlflow needs MLflow, which is not installed: {MLFLOW_EXTRA}")


def require_wandb() -> None:
    """As ``require_mlflow``, for --wandb."""
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise VaelabError(f"--wandb needs Weights & Biases, which is not installed: {WANDB_EXTRA}")


def require_trackers(mlflow_uri: str | None, wandb_project: str | None) -> None:
    """The extras of the trackers asked for (None: not asked for) are installed, or a one-line error."""
    if mlflow_uri is not None:
        require_mlflow()
    if wandb_project is not None:
        require_wandb()


def log_study_figures(study_dir: Path, figures: dict[str, Path]) -> Path:
    """A grid study's own figures (the rate-distortion plane, the banded curves) as images in the study's
    TensorBoard log, ``STUDY_DIR/tensorboard``, where ``tensorboard --logdir STUDY_DIR`` shows them beside the
    runs. Returns the log directory."""
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(study_dir) / TENSORBOARD_DIR
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, path in figures.items():
            with Image.open(path) as image:
                writer.add_image(tag, np.asarray(image.convert("RGB")), 0, dataformats="HWC")
    finally:
        writer.close()
    return log_dir
