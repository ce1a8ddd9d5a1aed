"""The study report: one page comparing a study's latent sizes, rebuilt from what is on disk.

Reads STUDY_DIR/study.json (when there) and every run directory of the study (config.json,
metrics.json and whatever figures the run's artifact hooks wrote), and writes into STUDY_DIR:

    comparison.png      test -ELBO, MSE, SSIM and PSNR of every latent size against epoch
    final_metrics.csv   one row per latent size: its latest evaluation point, plus metrics.json "final"
    final_metrics.md    the same table, for reading
    report.html         all of the above, each run's figures and a reading of the numbers, on one page

``build_report`` needs only metrics.json, never a checkpoint or a model, so a study that is still
training or was interrupted can be reported on at any time; it shows each run's figures that exist and
names those that do not. Figures are drawn when a run finishes, so ``vaelab report`` first calls
``redraw_stale_figures`` for runs whose recorded frames are newer than their figures.

The parts: ``study`` reads the runs, ``reading`` writes the paragraphs (``describe_*``), ``tables`` the
final-metrics table, ``figures`` the comparison plot, ``page`` the HTML (from ``templates/``). A grid
study (``vaelab study --vary ...``) pools each cell's seeds (``cells``): its comparison plot has a band
per cell and it adds ``rate_distortion.png`` (``grid_figures``), a grid table and the seed spread's verdicts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..atomic import check_writable, write_text_atomic
from ..rundir import COMPARISON_PNG, FINAL_CSV, FINAL_MD, RATE_DISTORTION_PNG, REPORT_HTML
from .cells import cells_of, grid_reading
from .figures import plot_comparison, redraw_stale_figures, runs_with_stale_figures
from .grid_figures import plot_grid_curves, plot_rate_distortion
from .page import render_html
from .reading import plain_reading
from .study import ReportedRun, Study, read_run, read_study
from .tables import final_markdown, final_rows, write_final_csv

__all__ = ["Report", "ReportedRun", "Study", "build_report", "plain_reading", "read_run", "read_study",
           "redraw_stale_figures", "runs_with_stale_figures"]


@dataclass
class Report:
    html: Path
    comparison: Path
    csv: Path
    markdown: Path
    reading: list[tuple[str, str]]  # (topic, paragraph)


def build_report(study_dir: str | os.PathLike) -> Report:
    """(Re)write the study's comparison plot, final tables and report.html from its runs on disk."""
    study = read_study(study_dir)
    check_writable(study.path, "the report")
    rows = final_rows(study.runs)
    out = study.path
    cells = cells_of(study.runs) if study.grid is not None else []
    if study.grid is None:
        reading = plain_reading(study)
        plot_comparison(study.runs, out / COMPARISON_PNG)
    else:  # the runs' seeds pooled into cells: curves with bands, the rate-distortion plane, the spread's verdicts
        reading = grid_reading(cells, study.grid.axes, study.grid.seeds)
        plot_grid_curves(cells, study.grid.axes, out / COMPARISON_PNG)
        plot_rate_distortion(cells, study.grid.axes, out / RATE_DISTORTION_PNG)
    write_final_csv(rows, out / FINAL_CSV)
    write_text_atomic(out / FINAL_MD, final_markdown(rows))
    write_text_atomic(out / REPORT_HTML, render_html(study, rows, reading, cells))
    return Report(out / REPORT_HTML, out / COMPARISON_PNG, out / FINAL_CSV, out / FINAL_MD, reading)
