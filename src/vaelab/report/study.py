"""Reading a study from disk: every run's metrics.json so far, and the runs planned but not started."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import rundir
from ..errors import ReportError
from ..evaluation import CORE_METRICS
from ..rundir import CONFIG, METRICS_JSON, STUDY_FILE


@dataclass
class ReportedRun:
    """One latent size: what its metrics.json says so far."""

    latent_dim: int
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]  # at least one evaluation point
    eval_sizes: dict[str, int]
    environment: dict[str, str]  # device, torch version, data dir of the latest session (newer runs only)
    final: dict[str, float]  # metrics.json "final": end-of-training measures, when training wrote them
    absent: dict[str, str] = field(default_factory=dict)  # measure -> why it was not taken (e.g. no labels)

    @property
    def latest(self) -> dict[str, Any]:
        return self.history[-1]

    @property
    def epochs_done(self) -> float:
        return float(self.latest["epoch"])

    @property
    def epochs_planned(self) -> int:
        return int(self.config["train"]["epochs"])

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.epochs_planned

    @property
    def wall_time_s(self) -> float:
        return float(self.latest.get("time_s", 0.0))

    def test(self, metric: str) -> float:
        return float(self.latest["test"][metric])

    def train(self, metric: str) -> float:
        return float(self.latest["train"][metric])


@dataclass
class Study:
    path: Path
    runs: list[ReportedRun]  # by latent size
    left_out: dict[str, str]  # run directory name -> why it is not in the report


def read_run(run_dir: Path) -> ReportedRun:
    """A run directory's results so far; a ReportError says why there are none to show."""
    try:
        metrics = rundir.read_metrics(run_dir)
    except rundir.MetricsFileError as exc:
        raise ReportError(str(exc).rstrip(".")) from None
    if metrics is None:
        raise ReportError(f"{run_dir.name}/ has no {METRICS_JSON} yet: training has not reached its first "
                          "evaluation point")
    history = metrics.history
    if not history:
        raise ReportError(f"{run_dir.name}/ has no evaluation point yet")
    if not all(_is_record(r) for r in history):
        raise ReportError(f"{run_dir.name}/{METRICS_JSON} has malformed evaluation records")
    config = metrics.config or _read_json(run_dir / CONFIG)
    try:
        latent_dim = int(config["model"]["latent_dim"])
        int(config["train"]["epochs"])
    except (KeyError, TypeError, ValueError):
        raise ReportError(f"{run_dir.name}/ has no readable run config (latent size, epochs)") from None
    return ReportedRun(latent_dim=latent_dim, path=run_dir, config=config, history=history,
                       eval_sizes=metrics.eval_sizes, environment=metrics.environment, final=metrics.final,
                       absent=metrics.absent)


def _is_record(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("epoch"), (int, float))
            and all(isinstance(record.get(split), dict) and set(CORE_METRICS) <= set(record[split])
                    for split in ("train", "test")))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_study(study_dir: str | os.PathLike) -> Study:
    """Every run of the study that has results; the others are listed with the reason."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise ReportError(f"{study_dir}: no such study directory. Give the directory that holds the "
                          "latent_<z>/ run directories (the --study-dir of 'vaelab study').")
    runs, left_out = [], {}
    for run_dir in rundir.study_run_dirs(study_dir):
        try:
            runs.append(read_run(run_dir))
        except ReportError as exc:
            left_out[run_dir.name] = str(exc)
    try:
        planned = rundir.read_study_dims(study_dir) or []
    except rundir.StudyFileError:
        planned = []  # the runs on disk are the report's subject; a damaged plan only loses the "not started" notes
    for dim in planned:
        name = rundir.run_dir_name(dim)
        if not (study_dir / name).exists():
            left_out[name] = f"{name}/ is planned in {STUDY_FILE} but not started yet"
    if not runs:
        why = "; ".join(left_out.values()) or "it holds no latent_<z>/ run directories"
        raise ReportError(f"{study_dir}: no run with results to report on ({why}). Train with 'vaelab study "
                          f"--study-dir {study_dir}' first, or give the directory that holds the latent_<z>/ runs.")
    runs.sort(key=lambda r: r.latent_dim)
    return Study(path=study_dir, runs=runs, left_out=left_out)


def comparable_runs(study: Study) -> list[ReportedRun]:
    """The finished runs, when there are any: an unfinished run's numbers are from earlier in training."""
    return [run for run in study.runs if run.finished] or study.runs
