"""Your own code at the moments of a run's life: ``vaelab.train(..., callbacks=[...])``.

A callback overrides any of four methods. They are called on the process that writes the run (rank 0 under
torchrun), after vaelab's own hooks, with copies: nothing a callback does to what it is given reaches the
run's files or the other callbacks.

    class PrintPSNR(vaelab.Callback):
        def on_eval_point(self, point):
            print(point.index, point.record["epoch"], point.record["test"]["psnr"])

    vaelab.train(config, "runs/z8", callbacks=[PrintPSNR()])

Runs a study trains side by side (``jobs`` > 1) call their callbacks in the worker processes, so those
callbacks must be picklable and print rather than keep state in the calling process.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from .config import RunConfig
from .training import EvalPoint


@dataclasses.dataclass(frozen=True)
class RunStart:
    run_dir: Path
    config: RunConfig  # a copy of the run's config
    resume: bool  # continuing a checkpoint (when there is one), not starting afresh


class Callback:
    """Override the moments you need; each default does nothing."""

    def on_fit_start(self, start: RunStart) -> None:
        """Before the first step (or the first step after a resume)."""

    def on_eval_point(self, point: EvalPoint) -> None:
        """At each evaluation point: ``point.record`` holds its train and test metrics. Do not change
        ``point.model`` (it is the model being trained)."""

    def on_fit_end(self, result: Any) -> None:
        """After training, the final measures and the figures: ``result`` is the ``vaelab.RunResult``."""

    def on_exception(self, error: BaseException) -> None:
        """The run stopped with ``error`` (Ctrl-C, a diverged loss, a full disk, ...); it is raised again after."""


def eval_point_hook(callbacks: list[Callback]) -> Any:
    """A trainer hook that hands each callback its own copy of the evaluation point."""

    def hook(point: EvalPoint) -> None:
        for callback in callbacks:
            callback.on_eval_point(dataclasses.replace(point, record=copy.deepcopy(point.record),
                                                       test_mu=point.test_mu.clone()))

    return hook


def start_of(run_dir: Path, config: RunConfig, resume: bool) -> RunStart:
    return RunStart(run_dir, copy.deepcopy(config), resume)
