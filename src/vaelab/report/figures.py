"""The report's figures: the comparison plot it draws, and the runs' own figures it shows (redrawn first
where a run's recorded frames are newer than them)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from .. import rundir
from ..atomic import atomic_file
from ..errors import VaelabError
from ..metrics import metric_of
from .reading import epoch_text
from .study import ReportedRun

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#882255", "#000000")


def run_colours(runs: Sequence[ReportedRun]) -> dict[str, str]:
    """The colour of each run (by directory name), the same in every plot and table of the report."""
    return {run.name: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}


def run_label(run: ReportedRun) -> str:
    label = run.label
    return label if run.finished else f"{label} (epoch {epoch_text(run.epochs_done)} of {run.epochs_planned})"


EPOCH_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


COMPARISON_PANELS = tuple((m.key, f"Test {m.short}", " · ".join(t for t in (m.unit, m.better_text) if t))
                          for m in map(metric_of, ("loss", "mse", "ssim", "psnr")))


def plot_comparison(runs: Sequence[ReportedRun], path: Path) -> None:
    colours = run_colours(runs)
    fig = Figure(figsize=(11, 7), dpi=130, layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    for ax, (metric, title, unit) in zip(axes.flat, COMPARISON_PANELS, strict=False):
        for run in runs:
            epochs = [r["epoch"] for r in run.history]
            values = [r["test"][metric] for r in run.history]
            ax.plot(epochs, values, color=colours[run.name], lw=2, marker="o", ms=3.5, label=run_label(run))
        ax.set_title(f"{title}  ", loc="left", fontsize=12, fontweight="bold")
        ax.set_title(unit, loc="right", fontsize=9, color="#5b6472")
        style_epoch_axis(ax)
    for ax in axes[1]:
        ax.set_xlabel("epoch (log scale)", fontsize=10)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=min(len(runs), 4), frameon=False, fontsize=10.5)
    save_figure(fig, path)


def style_epoch_axis(ax: Any) -> None:
    """Log epochs, as in each run's metrics.png: the first epoch, where the curves move most, gets room."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(EPOCH_TICKS))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, color="#e3e6eb", lw=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=9)


def save_figure(fig: Figure, path: Path) -> None:
    """Write via a temporary file, so a page open meanwhile never shows half a PNG."""
    with atomic_file(path) as f:
        fig.savefig(f, format="png", facecolor="white")


ANIMATIONS = (
    ((rundir.LATENT_SPACE_GIF, rundir.LATENT_SPACE_PNG), "Test-set latent space during training"),
    ((rundir.RECONSTRUCTIONS_GIF, rundir.RECONSTRUCTIONS_PNG), "Fixed test {items} (top) and their reconstructions"),
)


TRAINING_FIGURE = ((rundir.METRICS_PNG,), "Train and test metrics against epoch")


GENERATION_FIGURES = (
    ((rundir.SAMPLES_PNG,), "64 samples from the prior"),
    ((rundir.INTERPOLATIONS_PNG,), "Interpolations through latent space between test {items}"),
)


MANIFOLD_FIGURE = ((rundir.MANIFOLD_PNG,), "Decoded latent manifold over the Gaussian's quantiles, beside the latent "
                                         "scatter")


ARCHITECTURE_FIGURE = ((rundir.ARCHITECTURE_PNG,), "Architecture of the trained model")


def runs_with_stale_figures(study_dir: str | os.PathLike) -> list[Path]:
    """Run directories whose figures are missing or older than their frames or checkpoint: runs interrupted,
    still training, or killed while their figures were drawn. Runs trained with --no-artifacts have no frames."""
    from ..visualisation import figures_outdated

    return [run_dir for run_dir in rundir.study_run_dirs(study_dir) if figures_outdated(run_dir)]


def redraw_stale_figures(study_dir: str | os.PathLike, projection: str | None = None) -> dict[Path, str]:
    """Draw the figures of every run whose frames are newer than them. Returns each such run directory with
    what happened: "redrawn", or the error that kept its figures from being drawn (the report goes on)."""
    from ..visualisation import render_run_artifacts

    outcome = {}
    for run_dir in runs_with_stale_figures(study_dir):
        try:
            render_run_artifacts(run_dir, projection)
            outcome[run_dir] = "redrawn"
        except VaelabError as exc:
            outcome[run_dir] = f"not redrawn: {exc}"
    return outcome
