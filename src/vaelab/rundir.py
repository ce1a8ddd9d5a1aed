"""The on-disk layout of runs and studies: the one place that knows every file and folder name.

A *run directory* holds one trained VAE::

    config.json          the RunConfig it was made with
    checkpoint.pt        weights, optimizer and position in training (what --resume continues)
    metrics.json         config, evaluation sizes, environment, the metric history and the final measures
    metrics.csv          the history as a flat table
    frames/              one point_NNNN.npz per evaluation point, plus projection caches
    *.png, *.gif         the run's figures (``FIGURES``)
    .lock                held by the process that writes the run

A *study directory* holds ``latent_<z>/`` run directories (a study of latent sizes alone) or run
directories named by their coordinates (``beta=0.5,z=2,seed=1/``, a grid study), ``study.json`` (the
latent sizes planned; for a grid also its axes, seeds, base config and runs) and the report files
(``comparison.png``, ``final_metrics.csv``/``.md``, ``report.html``).

Besides the names, this module finds the runs of a study and reads and writes metrics.json, so no
other module spells a file name or parses that file. It imports nothing heavier than the config.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .config import RunConfig
from .errors import VaelabError

# -- a run directory ------------------------------------------------------------------------------

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
LOCK = ".lock"
FRAMES_DIR = "frames"
PROJECTION_CHOICE = "projection.json"  # in FRAMES_DIR: which projection the run was last rendered with

LATENT_SPACE_GIF = "latent_space.gif"
LATENT_SPACE_PNG = "latent_space.png"
RECONSTRUCTIONS_GIF = "reconstructions.gif"
RECONSTRUCTIONS_PNG = "reconstructions.png"
METRICS_PNG = "metrics.png"
SAMPLES_PNG = "samples.png"
INTERPOLATIONS_PNG = "interpolations.png"
MANIFOLD_PNG = "manifold.png"
ARCHITECTURE_PNG = "architecture.png"
TENSORBOARD_DIR = "tensorboard"  # `tensorboard --logdir STUDY_DIR` shows every run
FIGURES = (LATENT_SPACE_GIF, LATENT_SPACE_PNG, RECONSTRUCTIONS_GIF, RECONSTRUCTIONS_PNG, METRICS_PNG, SAMPLES_PNG,
           INTERPOLATIONS_PNG, MANIFOLD_PNG, ARCHITECTURE_PNG)

# -- an exported model (vaelab export, VAE.save_pretrained) -------------------------------------------

PRETRAINED_WEIGHTS = "model.safetensors"
PRETRAINED_CONFIG = CONFIG  # the model's config and the format's name and version
ENCODER_ONNX = "encoder.onnx"
DECODER_ONNX = "decoder.onnx"

# -- a study directory ----------------------------------------------------------------------------

STUDY_FILE = "study.json"
COMPARISON_PNG = "comparison.png"
RATE_DISTORTION_PNG = "rate_distortion.png"  # a grid study's: rate against distortion, one point per cell
FINAL_CSV = "final_metrics.csv"
FINAL_MD = "final_metrics.md"
REPORT_HTML = "report.html"
MLFLOW_DB = "mlflow.db"  # the default MLflow store, beside the study's runs
RUN_DIR_PREFIX = "latent_"
RUN_DIR_PATTERN = re.compile(r"latent_(\d+)")
GRID_RUN_PATTERN = re.compile(r"[^=,/]+=[^=,/]+(,[^=,/]+=[^=,/]+)*")  # beta=0.5,z=2,seed=1


def run_dir_name(latent_dim: int) -> str:
    return f"{RUN_DIR_PREFIX}{latent_dim}"


def run_dir_of(study_dir: str | os.PathLike, latent_dim: int) -> Path:
    """Where a study keeps the run of this latent size."""
    return Path(study_dir) / run_dir_name(latent_dim)


def latent_dim_of(run_dir: str | os.PathLike) -> int | None:
    """The latent size a study run directory's name says, or None for any other name."""
    match = RUN_DIR_PATTERN.fullmatch(Path(run_dir).name)
    return int(match.group(1)) if match else None


def is_grid_run_name(name: str) -> bool:
    return GRID_RUN_PATTERN.fullmatch(name) is not None


def study_run_dirs(study_dir: str | os.PathLike) -> list[Path]:
    """Every run directory of a study: the ``latent_<z>/`` ones by latent size, then those named by grid
    coordinates in the order study.json plans them (by name where it does not list them)."""
    children = [p for p in Path(study_dir).iterdir() if p.is_dir()]
    latent = sorted((p for p in children if latent_dim_of(p) is not None), key=latent_dim_of)
    grid = [p for p in children if is_grid_run_name(p.name)]
    try:
        planned = [run["dir"] for run in (read_study_file(study_dir) or {}).get("runs", [])]
    except StudyFileError:
        planned = []
    order = {name: i for i, name in enumerate(planned)}
    return latent + sorted(grid, key=lambda p: (order.get(p.name, len(order)), p.name))


def frame_path(run_dir: str | os.PathLike, index: int) -> Path:
    return Path(run_dir) / FRAMES_DIR / f"point_{index:04d}.npz"


def frame_paths(run_dir: str | os.PathLike) -> list[Path]:
    return sorted((Path(run_dir) / FRAMES_DIR).glob("point_*.npz"))


def projection_cache(run_dir: str | os.PathLike, method: str) -> Path:
    return Path(run_dir) / FRAMES_DIR / f"projection_{method}.npz"


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CHECKPOINT).exists() or (Path(path) / CONFIG).exists()


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / CHECKPOINT).exists()


# -- study.json -----------------------------------------------------------------------------------


class StudyFileError(VaelabError):
    """study.json cannot be read or does not list latent sizes."""


def write_study_file(study_dir: str | os.PathLike, latent_dims: list[int], grid: dict[str, Any] | None = None) -> None:
    """study.json: the latent sizes planned and, for a grid study, ``grid`` (axes, seeds, base config, runs)."""
    payload = {"latent_dims": list(latent_dims), **(grid or {})}
    write_text_atomic(Path(study_dir) / STUDY_FILE, json.dumps(payload, indent=2) + "\n")


def record_study_threads(study_dir: str | os.PathLike, threads: int) -> None:
    """Add to study.json the thread count its runs train with, for a resume to use again."""
    payload = read_study_file(study_dir) or {}
    if payload.get("threads") != threads:
        write_text_atomic(Path(study_dir) / STUDY_FILE, json.dumps({**payload, "threads": threads}, indent=2) + "\n")


def read_study_file(study_dir: str | os.PathLike) -> dict[str, Any] | None:
    """study.json as a dict, or None where there is none; StudyFileError where it is unreadable."""
    path = Path(study_dir) / STUDY_FILE
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StudyFileError(f"{path}: not a readable study file ({type(exc).__name__}: {exc}).") from None
    if not isinstance(payload, dict):
        raise StudyFileError(f"{path}: not a study file (a {type(payload).__name__}, not an object).")
    runs = payload.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("dir"), str)
                                             and isinstance(r.get("coords", {}), dict) for r in runs):
        raise StudyFileError(f"{path}: 'runs' must be a list of {{dir, coords}} entries.")
    return payload


def read_study_dims(study_dir: str | os.PathLike) -> list[int] | None:
    """The latent sizes study.json plans, or None where there is no study.json; StudyFileError if it is unusable."""
    payload = read_study_file(study_dir)
    if payload is None:
        return None
    path = Path(study_dir) / STUDY_FILE
    dims = payload.get("latent_dims")
    if not isinstance(dims, list) or not dims or not all(isinstance(d, int) and d >= 1 for d in dims):
        raise StudyFileError(f"{path}: 'latent_dims' must be a non-empty list of positive integers, got {dims!r}.")
    return dims


# -- metrics.json ---------------------------------------------------------------------------------


class MetricsFileError(VaelabError):
    """A run's metrics.json is missing, unreadable or not a vaelab metrics file."""


@dataclass
class RunMetrics:
    """What a run's metrics.json holds. ``config`` is the saved config as a plain dict."""

    config: dict[str, Any]
    history: list[dict[str, Any]]  # one record per evaluation point: epoch, step, time_s, train_s, train, test
    eval_sizes: dict[str, int] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # device, processes, torch, data_dir
    final: dict[str, float] = field(default_factory=dict)  # end-of-training measures, once written
    absent: dict[str, str] = field(default_factory=dict)  # final["absent"]: measure -> why it was not taken


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: every value of the record, a nested split's metrics as ``<split>_<metric>``."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            row.update({f"{key}_{name}": inner for name, inner in value.items()})
        else:
            row[key] = value
    return row


def csv_text(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV with every column any row has, in first-seen order; a row's missing value is empty
    (hooks add some values only at some points, e.g. the per-epoch IWAE)."""
    columns = list(dict.fromkeys(name for row in rows for name in row))
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_metrics(run_dir: str | os.PathLike, config: RunConfig, history: list[dict[str, Any]],
                  sizes: dict[str, int], environment: dict[str, str] | None = None,
                  final: dict[str, Any] | None = None) -> None:
    """metrics.json and metrics.csv, each replaced atomically. ``final``: the end-of-training measures."""
    run_dir = Path(run_dir)
    payload: dict[str, Any] = {"config": config.to_dict(), "eval_sizes": sizes, "history": history}
    if environment is not None:
        payload["environment"] = environment
    if final is not None:
        payload["final"] = final
    write_text_atomic(run_dir / METRICS_JSON, json.dumps(payload, indent=1) + "\n")
    write_text_atomic(run_dir / METRICS_CSV, csv_text([flat_record(r) for r in history]))


def read_metrics(run_dir: str | os.PathLike) -> RunMetrics | None:
    """The run's metrics.json, or None where there is none yet; MetricsFileError where it is unreadable.

    Only the shape every reader relies on is checked: a dict with a ``history`` list. ``final`` keeps
    its numeric entries only, and ``absent`` its ``"absent"`` entry (measure -> why it was not taken).
    """
    path = Path(run_dir) / METRICS_JSON
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MetricsFileError(f"{path}: cannot be read ({exc}).") from None
    history = payload.get("history") if isinstance(payload, dict) else None
    if not isinstance(history, list):
        raise MetricsFileError(f"{path}: not a vaelab metrics file (no history list).")
    final = payload.get("final") if isinstance(payload.get("final"), dict) else {}
    for key in ("eval_sizes", "environment"):
        if not isinstance(payload.get(key) or {}, dict):
            raise MetricsFileError(f"{path}: '{key}' should map names to values, got "
                                   f"{type(payload[key]).__name__}; the file was changed by hand or damaged.")
    return RunMetrics(
        config=payload.get("config") if isinstance(payload.get("config"), dict) else {},
        history=history,
        eval_sizes=dict(payload.get("eval_sizes") or {}),
        environment=dict(payload.get("environment") or {}),
        final={k: float(v) for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        absent={str(k): str(v) for k, v in final["absent"].items()} if isinstance(final.get("absent"), dict) else {},
    )


def has_final_measures(run_dir: str | os.PathLike) -> bool:
    try:
        metrics = read_metrics(run_dir)
    except MetricsFileError:
        return False
    return metrics is not None and bool(metrics.final)
