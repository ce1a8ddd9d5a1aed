"""The study report: one page comparing a study's latent sizes, rebuilt from what is on disk.

Reads STUDY_DIR/study.json (when there) and every STUDY_DIR/latent_<z>/ run directory (config.json,
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
final-metrics table, ``figures`` the comparison plot, ``page`` the HTML (from ``templates/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import write_text_atomic
from ..rundir import COMPARISON_PNG, FINAL_CSV, FINAL_MD, REPORT_HTML
from .figures import plot_comparison, redraw_stale_figures, runs_with_stale_figures
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
    rows = final_rows(study.runs)
    reading = plain_reading(study)
    out = study.path
    plot_comparison(study.runs, out / COMPARISON_PNG)
    write_final_csv(rows, out / FINAL_CSV)
    write_text_atomic(out / FINAL_MD, final_markdown(rows))
    write_text_atomic(out / REPORT_HTML, render_html(study, rows, reading))
    return Report(out / REPORT_HTML, out / COMPARISON_PNG, out / FINAL_CSV, out / FINAL_MD, reading)
