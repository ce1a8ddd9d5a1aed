"""Reading a study from disk: every run's metrics.json so far, and the runs planned but not started."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import grid, rundir
from ..errors import ReportError
from ..evaluation import CORE_METRICS
from ..grid import Grid
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
    coords: tuple[tuple[str, Any], ...] = ()  # a grid study's run: (dotted key, value) per axis, then the seed

    @property
    def dataset(self) -> str:
        """The data set's name (a config without one is the default's, MNIST)."""
        return str((self.config.get("data") or {}).get("dataset", "mnist"))

    @property
    def name(self) -> str:
        """The run's directory name: what tells runs apart in a grid, where latent sizes repeat."""
        return self.path.name

    @property
    def label(self) -> str:
        """How the report names the run: "latent size 4", or its grid coordinates ("beta 0.5, z 2, seed 1")."""
        return grid.coords_text(self.coords) if self.coords else f"latent size {self.latent_dim}"

    @property
    def short_label(self) -> str:
        return grid.coords_text(self.coords) if self.coords else f"latent {self.latent_dim}"

    @property
    def cell(self) -> tuple[tuple[str, Any], ...]:
        """The coordinates without the seed: runs of one cell differ only in their seed."""
        return tuple((k, v) for k, v in self.coords if k != grid.SEED_KEY)

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
    runs: list[ReportedRun]  # by latent size; a grid's in the order study.json plans them
    left_out: dict[str, str]  # run directory name -> why it is not in the report
    grid: Grid | None = None  # the axes and seeds of a grid study (None: a study of latent sizes alone)

    @property
    def is_grid(self) -> bool:
        return self.grid is not None


def read_run(run_dir: Path) -> ReportedRun:
    """A run directory's results so far; a ReportError says why there are none to show."""
    try:
        metrics = rundir.read_metrics(run_dir)
    except rundir.MetricsFileError as exc:
        raise ReportError(str(exc).rstrip(".")) from None
    if metrics is None:
        raise ReportError(f"{run_dir.name}/ has no {METRICS_JSON} yet: its history is written with each "
                          "checkpoint, and training has not reached its first (the end of epoch 1)")
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
    """An evaluation point with its epoch and every core metric of both splits as a number."""
    return (isinstance(record, dict) and _is_number(record.get("epoch"))
            and all(isinstance(record.get(split), dict) and all(_is_number(record[split].get(m)) for m in CORE_METRICS)
                    for split in ("train", "test")))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    plan = _study_plan(study_dir)
    the_grid, coords = _grid_of(plan)
    for run_dir in rundir.study_run_dirs(study_dir):
        try:
            run = read_run(run_dir)
        except ReportError as exc:
            left_out[run_dir.name] = str(exc)
            continue
        if the_grid is not None:
            run.coords = coords.get(run_dir.name) or _coords_from_config(run.config, the_grid)
        runs.append(run)
    planned = [run["dir"] for run in plan.get("runs", [])] or [rundir.run_dir_name(d) for d in _planned_dims(plan)]
    for name in planned:
        if not (study_dir / name).exists():
            left_out[name] = f"{name}/ is planned in {STUDY_FILE} but not started yet"
    if not runs:
        why = "; ".join(left_out.values()) or "it holds no latent_<z>/ run directories"
        raise ReportError(f"{study_dir}: no run with results to report on ({why}). Train with 'vaelab study "
                          f"--study-dir {study_dir}' first, or give the directory that holds the latent_<z>/ runs.")
    if the_grid is None:
        runs.sort(key=lambda r: r.latent_dim)
    return Study(path=study_dir, runs=runs, left_out=left_out, grid=the_grid)


def _study_plan(study_dir: Path) -> dict[str, Any]:
    """study.json, or {} where it is absent or damaged: the runs on disk are the report's subject; a damaged
    plan only loses the "not started" notes (and a grid's coordinates, which the runs' configs restore)."""
    try:
        return rundir.read_study_file(study_dir) or {}
    except rundir.StudyFileError:
        return {}


def _planned_dims(plan: dict[str, Any]) -> list[int]:
    dims = plan.get("latent_dims")
    return [d for d in dims if isinstance(d, int) and d >= 1] if isinstance(dims, list) else []


def _grid_of(plan: dict[str, Any]) -> tuple[Grid | None, dict[str, tuple[tuple[str, Any], ...]]]:
    """The grid study.json records, and each planned run's coordinates by directory name."""
    if "axes" not in plan:
        return None, {}
    try:
        the_grid = grid.grid_from_dict(plan)
    except (KeyError, TypeError, ValueError):
        return None, {}
    order = [a.key for a in the_grid.axes] + [grid.SEED_KEY]
    coords = {}
    for run in plan.get("runs", []):
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in run.get("coords", {}).items()}
        coords[run["dir"]] = tuple((k, values[k]) for k in order if k in values)
    return the_grid, coords


def _coords_from_config(config: dict[str, Any], the_grid: Grid) -> tuple[tuple[str, Any], ...]:
    """A run's coordinates read from its own config, for a run study.json does not list."""
    keys = [a.key for a in the_grid.axes] + ([grid.SEED_KEY] if the_grid.seeds is not None else [])
    coords = []
    for key in keys:
        section, name = key.split(".", 1)
        value = config.get(section, {}).get(name)
        coords.append((key, tuple(value) if isinstance(value, list) else value))
    return tuple(coords)


def comparable_runs(study: Study) -> list[ReportedRun]:
    """The finished runs, when there are any: an unfinished run's numbers are from earlier in training."""
    return [run for run in study.runs if run.finished] or study.runs
