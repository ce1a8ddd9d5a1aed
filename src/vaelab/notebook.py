"""Showing a study in Jupyter or Colab: ``StudyView(result)`` (what ``vaelab.study`` returned) or
``StudyView(study_dir)`` renders its figures inline.

The figures are the files vaelab already wrote (the comparison plot, each run's metric curves and
the GIFs of its latent space and reconstructions), embedded as data URIs so the notebook keeps them.
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

import jinja2

from . import rundir
from .metrics import SUMMARY_KEYS, metric_of, reference_text, summary_text

RUN_FIGURES = ((rundir.METRICS_PNG, "metric curves"), (rundir.LATENT_SPACE_GIF, "latent space during training"),
               (rundir.RECONSTRUCTIONS_GIF, "test images and their reconstructions"))
COMPARISON = rundir.COMPARISON_PNG
_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("vaelab", "templates"), autoescape=True)


def data_uri(path: Path) -> str | None:
    """The file as a data URI an <img> can show, or None if it is not there (yet)."""
    if not path.is_file():
        return None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def run_summary(run_dir: Path) -> str:
    try:
        metrics = rundir.read_metrics(run_dir)
        test = metrics.history[-1]["test"]
    except (rundir.MetricsFileError, AttributeError, KeyError, IndexError):
        return "no evaluation yet"
    return "test " + summary_text(test)


def summary_meanings() -> list[tuple[str, str]]:
    """What each number of the runs' summary line means, with its yardstick, as the report's notes say it."""
    notes = []
    for metric in map(metric_of, SUMMARY_KEYS):
        yardstick = reference_text(metric, [])
        notes.append((metric.short, metric.meaning + (f"; {yardstick}" if yardstick else "")))
    return notes


class StudyView:
    """What ``vaelab.study(...)`` returned (a ``StudyResult``), or a study or run directory on disk, that Jupyter
    displays as its figures."""

    def __init__(self, source: Any, width: int = 320):
        self.result = source if hasattr(source, "runs") and hasattr(source, "study_dir") else None
        self.directory = Path(self.result.study_dir if self.result is not None else source)
        self.width = width

    def run_dirs(self) -> list[Path]:
        if self.result is not None:
            return [run.run_dir for run in self.result.runs.values()]
        if (self.directory / rundir.CONFIG).exists():
            return [self.directory]
        return [p for p in rundir.study_run_dirs(self.directory) if (p / rundir.CONFIG).exists()]

    def _runs(self) -> list[dict[str, Any]]:
        if self.result is None:
            return [{"name": run.name, "summary": run_summary(run),
                     "images": [data_uri(run / name) for name, _ in RUN_FIGURES]} for run in self.run_dirs()]
        return [{"name": run.run_dir.name, "summary": "test " + summary_text(run.test),
                 "images": [data_uri(Path(run.figures[name])) if name in run.figures else None
                            for name, _ in RUN_FIGURES]} for run in self.result.runs.values()]

    def _repr_html_(self) -> str:
        comparison = self.result.report.comparison if self.result is not None else self.directory / COMPARISON
        return _TEMPLATES.get_template("study_view.html").render(
            title=str(self.directory), comparison=data_uri(comparison),
            rate_distortion=data_uri(self.directory / rundir.RATE_DISTORTION_PNG), runs=self._runs(),
            captions=[caption for _, caption in RUN_FIGURES], meanings=summary_meanings(), width=self.width)

    def show(self) -> None:
        from IPython.display import display

        display(self)
