"""The moments of a run's life, and the code that acts on them: ``vaelab.train(..., callbacks=[...])``.

The trainer emits each moment to its callbacks: the start (after a resume has restored the run), every
evaluation point, every checkpoint, and (from ``vaelab.train``) the end and an error. vaelab's own work is
callbacks too: the run directory (``RunDirectory``: lock, checkpoint, metrics.json), the frames the figures are
drawn from and the experiment trackers. Each callback gets its own copy of the record and of the latent means,
so nothing one does to what it is given reaches the run's files or the other callbacks.

    class PrintPSNR(vaelab.Callback):
        def on_eval_point(self, point):
            print(point.index, point.record["epoch"], point.record["test"]["psnr"])

    vaelab.train(config, "runs/z8", callbacks=[PrintPSNR()])

They are called on the process that writes the run (rank 0 under torchrun). Runs a study trains side by side
(``jobs`` > 1) call their callbacks in the worker processes, so those callbacks must be picklable and print
rather than keep state in the calling process.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig
from .models import VAE


@dataclasses.dataclass(frozen=True)
class RunStart:
    run_dir: Path
    config: RunConfig  # a copy of the run's config
    resume: bool  # continuing a checkpoint (when there is one), not starting afresh
    history: tuple[dict[str, Any], ...] = ()  # the evaluation points a resumed run already holds
    eval_sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # images scored per split
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)  # where and with what it runs


@dataclasses.dataclass
class EvalPoint:
    """One evaluation point. Callbacks must not change the model."""

    index: int  # position in the history, stable across resumes
    record: dict[str, Any]  # epoch, step, times and the train and test metrics
    model: VAE
    test_mu: torch.Tensor  # posterior means of the whole test set, CPU
    test_labels: torch.Tensor
    run_dir: Path


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The run's state at the end of an epoch, or where Ctrl-C stopped it: what ``checkpoint.pt`` holds."""

    step: int
    state: dict[str, Any]  # weights, optimizer, noise and position (tensors are the live ones: do not change them)
    history: tuple[dict[str, Any], ...]


class Callback:
    """Override the moments you need; each default does nothing."""

    def on_fit_start(self, start: RunStart) -> None:
        """Before the first step (or the first step after a resume)."""

    def on_eval_point(self, point: EvalPoint) -> None:
        """At each evaluation point: ``point.record`` holds its train and test metrics. Do not change
        ``point.model`` (it is the model being trained)."""

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        """At the end of each epoch, and where Ctrl-C stopped training."""

    def on_fit_end(self, result: Any) -> None:
        """After training, the final measures and the figures: ``result`` is the ``vaelab.RunResult``."""

    def on_exception(self, error: BaseException) -> None:
        """The run stopped with ``error`` (Ctrl-C, a diverged loss, a full disk, ...); it is raised again after."""


class CallbackList:
    """Callbacks called in order, each with its own copy of what it is given."""

    def __init__(self, callbacks: Sequence[Callback] = ()):
        self.callbacks = list(callbacks)

    def on_fit_start(self, start: RunStart) -> None:
        for callback in self.callbacks:
            callback.on_fit_start(copy.deepcopy(start))

    def on_eval_point(self, point: EvalPoint) -> None:
        for callback in self.callbacks:
            callback.on_eval_point(dataclasses.replace(point, record=copy.deepcopy(point.record),
                                                       test_mu=point.test_mu.clone()))

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        for callback in self.callbacks:
            callback.on_checkpoint(dataclasses.replace(checkpoint, history=copy.deepcopy(checkpoint.history)))

    def on_fit_end(self, result: Any) -> None:
        for callback in self.callbacks:
            callback.on_fit_end(result)

    def on_exception(self, error: BaseException) -> None:
        for callback in self.callbacks:
            callback.on_exception(error)
