"""Showing a study in Jupyter or Colab: ``StudyView(study_dir)`` renders its figures inline.

The figures are the files vaelab already wrote (the comparison plot, each run's metric curves and
the GIFs of its latent space and reconstructions), embedded as data URIs so the notebook keeps them.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from pathlib import Path

import jinja2

from . import rundir

RUN_FIGURES = ((rundir.METRICS_PNG, "metric curves"), (rundir.LATENT_SPACE_GIF, "latent space during training"),
               (rundir.RECONSTRUCTIONS_GIF, "test digits and reconstructions"))
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
    return f"test -ELBO {test['loss']:.2f} nats, SSIM {test['ssim']:.3f}"


class StudyView:
    """A study directory (or one run directory) that Jupyter displays as its figures."""

    def __init__(self, directory: str | os.PathLike, width: int = 320):
        self.directory = Path(directory)
        self.width = width

    def run_dirs(self) -> list[Path]:
        if (self.directory / rundir.CONFIG).exists():
            return [self.directory]
        return [p for p in rundir.study_run_dirs(self.directory) if (p / rundir.CONFIG).exists()]

    def _repr_html_(self) -> str:
        runs = [{"name": run.name, "summary": run_summary(run),
                 "images": [data_uri(run / name) for name, _ in RUN_FIGURES]} for run in self.run_dirs()]
        return _TEMPLATES.get_template("study_view.html").render(
            title=str(self.directory), comparison=data_uri(self.directory / COMPARISON),
            rate_distortion=data_uri(self.directory / rundir.RATE_DISTORTION_PNG), runs=runs,
            captions=[caption for _, caption in RUN_FIGURES], width=self.width)

    def show(self) -> None:
        from IPython.display import display

        display(self)
