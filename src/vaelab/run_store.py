"""The one writer of a run directory: it checks and locks the directory for as long as the run lasts, finds the
checkpoint a resume continues from, and is the only code that writes the run's ``checkpoint.pt``,
``config.json`` and ``metrics.json`` (history, sizes, environment and the final measures).

It is a callback: the trainer tells it of the start, each evaluation point and each checkpoint, and
``vaelab.train`` hands it the final measures. ``RunStore(path).held(config, resume)`` is the claim.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import distributed
from .callbacks import Callback, Checkpoint, EvalPoint, RunStart
from .checkpoint import load_checkpoint, remove_stale_temp_files, save_checkpoint
from .config import RunConfig
from .errors import CheckpointError, OutputDirError
from .locks import RunLock
from .rundir import CHECKPOINT, CONFIG, MetricsFileError, read_metrics, write_metrics
from .training import RESUMED_STATE, Trainer

MIN_FREE_BYTES = 64 * 2**20


def check_output_dir(run_dir: Path) -> None:
    """Fail before training, not after an hour, if results could not be saved."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{id(run_dir)}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputDirError(f"cannot write to the output directory {run_dir} ({exc.strerror or exc}).") from None
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise OutputDirError(
            f"the output directory {run_dir} has only {free / 2**20:.0f} MiB free; vaelab needs at least "
            f"{MIN_FREE_BYTES // 2**20} MiB for checkpoints and artifacts."
        )


class RunStore(Callback):
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.config: RunConfig | None = None
        self.history: list[dict[str, Any]] = []
        self.eval_sizes: dict[str, int] = {}
        self.environment: dict[str, Any] | None = None
        self.written: list[dict[str, Any]] | None = None  # the history this store last wrote to metrics.json

    @contextlib.contextmanager
    def held(self, config: RunConfig, resume: bool,
             ddp: distributed.DdpContext | None = None) -> Iterator[dict[str, Any] | None]:
        """Checks and locks the directory while the block runs; yields the checkpoint to resume from, if any.
        Under torchrun rank 0 alone checks, locks and reads, and every rank gets the checkpoint or the error."""
        with contextlib.ExitStack() as claim:
            yield distributed.from_main(ddp, lambda: self._claim(claim, config, resume))

    def _claim(self, claim: contextlib.ExitStack, config: RunConfig, resume: bool) -> dict[str, Any] | None:
        check_output_dir(self.run_dir)
        claim.enter_context(RunLock(self.run_dir))
        remove_stale_temp_files(self.run_dir)  # left by a writer that was killed; we hold the lock
        checkpoint = self.run_dir / CHECKPOINT
        if checkpoint.exists() and not resume:
            raise OutputDirError(
                f"{self.run_dir} already holds a run. Pass --resume to continue it, or choose another directory."
            )
        return read_checkpoint(checkpoint, config) if resume and checkpoint.exists() else None

    # -- the trainer's moments ---------------------------------------------------------------------

    def on_fit_start(self, start: RunStart) -> None:
        self.config, self.history = start.config, list(start.history)
        self.eval_sizes, self.environment = dict(start.eval_sizes), dict(start.environment)
        start.config.save(self.run_dir / CONFIG)
        if start.history and self._history_on_disk() != self.history:  # a failed write left it behind the checkpoint
            self._write_metrics()

    def on_eval_point(self, point: EvalPoint) -> None:
        # Kept, not yet written: metrics.json follows the checkpoint, so that the history on disk never holds
        # a point the checkpoint does not (a kill or a full disk between the two would leave it ahead).
        self.history.append(point.record)

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT, checkpoint.state)
        self.history = list(checkpoint.history)
        if self.history != self.written:
            self._write_metrics()

    def record_final(self, measures: dict[str, Any]) -> None:
        """The end-of-training measures, added to metrics.json under "final"."""
        self._write_metrics(final=measures)

    def _history_on_disk(self) -> list[dict[str, Any]] | None:
        try:
            on_disk = read_metrics(self.run_dir)
        except MetricsFileError:
            return None
        return on_disk.history if on_disk is not None else None

    def _write_metrics(self, final: dict[str, Any] | None = None) -> None:
        """metrics.json (and .csv) from what the run has reached."""
        write_metrics(self.run_dir, self.config, self.history, self.eval_sizes, self.environment, final=final)
        self.written = list(self.history)


def read_checkpoint(path: Path, config: RunConfig) -> dict[str, Any]:
    """The checkpoint a resume of ``config``'s run continues from, checked to belong to it."""
    saved = load_checkpoint(path)
    saved_config = RunConfig.from_dict(saved["config"], source=str(path))
    if saved_config.model != config.model or saved_config.data != config.data:
        raise CheckpointError(f"{path}: was made with a different model or data config than this run's.")
    missing = set(RESUMED_STATE) - set(saved)
    if missing:
        raise CheckpointError(f"{path}: cannot resume from this checkpoint: it lacks {sorted(missing)}.")
    return saved


def fit(trainer: Trainer, resume: bool = False) -> list[dict[str, Any]]:
    """``trainer`` run in its run directory: claimed while it trains, continued from the directory's checkpoint when
    ``resume``, and written by a ``RunStore`` added as its last callback. Returns the metric history."""
    store = RunStore(trainer.run_dir)
    if trainer.is_main:
        trainer.callbacks.append(store)
    with store.held(trainer.config, resume, trainer.ddp) as saved:
        return trainer.run(saved)
