"""Saving and loading runs: atomic checkpoints that carry their own config.

A checkpoint holds everything needed to continue a run exactly: model and optimizer state, the
position in training (epoch and step within it), the noise generator's state and the metric history
so far. It is written to a temporary file and renamed, so a kill at any moment leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_file
from .config import RunConfig
from .errors import CheckpointError, OutputDirError
from .models import VAE
from .rundir import CHECKPOINT

CHECKPOINT_FORMAT = "vaelab-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    try:
        # Through a Python file, so that a full disk is an OSError rather than torch's opaque RuntimeError.
        with atomic_file(path) as f:
            torch.save({"format": CHECKPOINT_FORMAT, "checkpoint_version": CHECKPOINT_VERSION, **state}, f)
    except OSError as exc:
        raise OutputDirError(
            f"{path}: cannot be written ({exc.strerror or exc}); the previous checkpoint is unchanged. "
            "Free some space (or fix the directory) and continue with --resume."
        ) from None


def remove_stale_temp_files(run_dir: Path) -> None:
    """Delete the ``.NAME.tmpPID`` files that writers killed mid-write left behind; only the lock holder may."""
    for stale in Path(run_dir).glob(".*.tmp[0-9]*"):
        stale.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint; anything foreign, corrupt or too new is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a torn or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc}).") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a vaelab checkpoint.")
    if state.get("checkpoint_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer vaelab (checkpoint version {state['checkpoint_version']}); "
            "upgrade vaelab to use it."
        )
    missing = {"config", "model", "optimizer", "epoch", "step", "history"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {sorted(missing)}.")
    return state


def find_checkpoint(run: Path) -> Path:
    run = Path(run)
    return run / CHECKPOINT if run.is_dir() else run


def load_model(run: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[VAE, RunConfig]:
    """The trained model of a run directory (or checkpoint file) and the config it was made with."""
    path = find_checkpoint(Path(run))
    state = load_checkpoint(path)
    config = RunConfig.from_dict(state["config"], source=str(path))
    model = VAE(config.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes ({exc}).") from None
    return model.to(device).eval(), config
