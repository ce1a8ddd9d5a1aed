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

The page has inline CSS and no script, and it links the figures by paths relative to itself, so it
opens from disk and keeps working when the study directory is moved or copied elsewhere.
"""

from __future__ import annotations

import csv
import datetime
import html
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
from PIL import Image, UnidentifiedImageError

from . import __version__
from .atomic import atomic_file
from .checkpoint import CONFIG_NAME
from .config import write_text_atomic
from .errors import ReportError, VaelabError
from .evaluation import CORE_METRICS, METRICS
from .training import METRICS_JSON

STUDY_FILE = "study.json"
COMPARISON_PNG = "comparison.png"
FINAL_CSV = "final_metrics.csv"
FINAL_MD = "final_metrics.md"
REPORT_HTML = "report.html"
RUN_DIR_PATTERN = re.compile(r"latent_(\d+)")
# Okabe-Ito: distinguishable with every common colour-vision deficiency, and in greyscale print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#882255", "#000000")
# Relative change per epoch of the test -ELBO under which a run counts as levelled off.
LEVELLED_OFF = 0.002


# -- reading the study ---------------------------------------------------------------------------


@dataclass
class Run:
    """One latent size: what its metrics.json says so far."""

    latent_dim: int
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]  # at least one evaluation point
    eval_sizes: dict[str, int]
    environment: dict[str, str]  # device, torch version, data dir of the latest session (newer runs only)
    final: dict[str, float]  # metrics.json "final": end-of-training measures, when training wrote them

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
    runs: list[Run]  # by latent size
    left_out: dict[str, str]  # run directory name -> why it is not in the report


def read_run(run_dir: Path) -> Run:
    """A run directory's results so far; a ReportError says why there are none to show."""
    metrics_path = run_dir / METRICS_JSON
    if not metrics_path.exists():
        raise ReportError(f"{run_dir.name}/ has no {METRICS_JSON} yet: training has not reached its first "
                          "evaluation point")
    try:
        payload = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{run_dir.name}/{METRICS_JSON} cannot be read ({exc})") from None
    history = payload.get("history") if isinstance(payload, dict) else None
    if not isinstance(history, list):
        raise ReportError(f"{run_dir.name}/{METRICS_JSON} is not a vaelab metrics file (no history list)")
    if not history:
        raise ReportError(f"{run_dir.name}/ has no evaluation point yet")
    if not all(_is_record(r) for r in history):
        raise ReportError(f"{run_dir.name}/{METRICS_JSON} has malformed evaluation records")
    config = payload.get("config") or _read_json(run_dir / CONFIG_NAME)
    try:
        latent_dim = int(config["model"]["latent_dim"])
        int(config["train"]["epochs"])
    except (KeyError, TypeError, ValueError):
        raise ReportError(f"{run_dir.name}/ has no readable run config (latent size, epochs)") from None
    final = payload.get("final") if isinstance(payload.get("final"), dict) else {}
    return Run(
        latent_dim=latent_dim,
        path=run_dir,
        config=config,
        history=history,
        eval_sizes=dict(payload.get("eval_sizes") or {}),
        environment=dict(payload.get("environment") or {}),
        final={k: float(v) for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
    )


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
    for run_dir in sorted((p for p in study_dir.iterdir() if p.is_dir() and RUN_DIR_PATTERN.fullmatch(p.name)),
                          key=lambda p: int(p.name.split("_")[1])):
        try:
            runs.append(read_run(run_dir))
        except ReportError as exc:
            left_out[run_dir.name] = str(exc)
    planned = _read_json(study_dir / STUDY_FILE)
    if isinstance(planned, dict) and isinstance(planned.get("latent_dims"), list):
        for dim in planned["latent_dims"]:
            name = f"latent_{dim}"
            if not (study_dir / name).exists():
                left_out[name] = f"{name}/ is planned in {STUDY_FILE} but not started yet"
    if not runs:
        why = "; ".join(left_out.values()) or "it holds no latent_<z>/ run directories"
        raise ReportError(f"{study_dir}: no run with results to report on ({why}). Train with 'vaelab study "
                          f"--study-dir {study_dir}' first, or give the directory that holds the latent_<z>/ runs.")
    runs.sort(key=lambda r: r.latent_dim)
    return Study(path=study_dir, runs=runs, left_out=left_out)


def run_colours(runs: Sequence[Run]) -> dict[int, str]:
    """The colour of each latent size, the same in every plot and table of the report."""
    return {run.latent_dim: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}


def run_label(run: Run) -> str:
    label = f"latent size {run.latent_dim}"
    return label if run.finished else f"{label} (epoch {epoch_text(run.epochs_done)} of {run.epochs_planned})"


# -- the comparison plot -------------------------------------------------------------------------

EPOCH_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
COMPARISON_PANELS = (
    ("loss", "Test −ELBO", "nats per image · lower is better"),
    ("mse", "Test MSE", "per pixel · lower is better"),
    ("ssim", "Test SSIM", "higher is better"),
    ("psnr", "Test PSNR", "dB · higher is better"),
)


def plot_comparison(runs: Sequence[Run], path: Path) -> None:
    colours = run_colours(runs)
    fig = Figure(figsize=(11, 7), dpi=130, layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    for ax, (metric, title, unit) in zip(axes.flat, COMPARISON_PANELS, strict=False):
        for run in runs:
            epochs = [r["epoch"] for r in run.history]
            values = [r["test"][metric] for r in run.history]
            ax.plot(epochs, values, color=colours[run.latent_dim], lw=2, marker="o", ms=3.5, label=run_label(run))
        ax.set_title(f"{title}  ", loc="left", fontsize=12, fontweight="bold")
        ax.set_title(unit, loc="right", fontsize=9, color="#5b6472")
        # Log epochs, as in each run's metrics.png: the first epoch, where the curves move most, gets room.
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(EPOCH_TICKS))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, color="#e3e6eb", lw=0.8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=9)
    for ax in axes[1]:
        ax.set_xlabel("epoch (log scale)", fontsize=10)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=min(len(runs), 4), frameon=False, fontsize=10.5)
    _save_figure(fig, path)


def _save_figure(fig: Figure, path: Path) -> None:
    """Write via a temporary file, so a page open meanwhile never shows half a PNG."""
    with atomic_file(path) as f:
        fig.savefig(f, format="png", facecolor="white")


# -- the final table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str  # field of final_rows() and of the CSV
    header: str
    fmt: str  # format spec in the Markdown and HTML tables
    better: str | None = None  # "low" or "high": the best value is marked in the HTML table


TABLE_COLUMNS = (
    Column("test_loss", "test −ELBO", ".2f", "low"),
    Column("test_nll", "test NLL", ".2f", "low"),
    Column("test_kl", "test KL", ".2f"),
    Column("test_mse", "test MSE", ".4f", "low"),
    Column("test_ssim", "test SSIM", ".3f", "high"),
    Column("test_psnr", "test PSNR (dB)", ".2f", "high"),
    # The published project's definitions (scikit-image defaults on [-1, 1]); empty for runs that predate them.
    Column("test_ssim_orig", "test SSIM (orig.)", ".3f", "high"),
    Column("test_psnr_orig", "test PSNR (orig., dB)", ".2f", "high"),
    Column("train_loss", "train −ELBO", ".2f", "low"),
    Column("train_mse", "train MSE", ".4f", "low"),
)


def final_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per latent size: its latest evaluation point and every "final" measure."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "latent_dim": run.latent_dim,
            "epochs_done": run.epochs_done,
            "epochs_planned": run.epochs_planned,
            "finished": run.finished,
            "wall_time_s": run.wall_time_s,
        }
        for split in ("test", "train"):
            row.update({f"{split}_{m}": float(run.latest[split][m]) for m in METRICS if m in run.latest[split]})
        for key, value in run.final.items():
            row[key if key not in row else f"final_{key}"] = value
        rows.append(row)
    return rows


# The end-of-training measures vaelab writes (measures.py); any other key of "final" gets a plain column.
MEASURE_COLUMNS = {c.key: c for c in (
    Column("iwae_log_likelihood", "IWAE log p(x)", ".2f", "high"),
    Column("iwae_k", "IWAE K", "g"),
    Column("active_units", "active units", "g"),
    Column("latent_units", "latent units", "g"),
    Column("probe_accuracy", "probe accuracy", ".3f", "high"),
    Column("fd_classifier", "FD (classifier)", ".2f", "low"),
    Column("recon_class_accuracy", "recon class acc.", ".3f", "high"),
    Column("sample_class_entropy", "sample class entropy", ".3f"),
    Column("classifier_test_accuracy", "classifier test acc.", ".4f"),
)}


def measure_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """A column for every "final" measure any run has, in the order they appear."""
    fixed = {"latent_dim", "epochs_done", "epochs_planned", "finished", "wall_time_s",
             *(f"{s}_{m}" for s in ("test", "train") for m in METRICS)}
    keys = dict.fromkeys(k for row in rows for k in row if k not in fixed)
    return [MEASURE_COLUMNS.get(k) or Column(k, k.replace("_", " "), ".4g") for k in keys]


def final_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """The table's columns: the fixed metrics, then every "final" measure any run has."""
    return [*TABLE_COLUMNS, *measure_columns(rows)]


def write_final_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def epochs_cell(row: dict[str, Any]) -> str:
    done, planned = row["epochs_done"], row["epochs_planned"]
    return epoch_text(done) if row["finished"] else f"{epoch_text(done)} of {planned}"


def format_cell(row: dict[str, Any], column: Column) -> str:
    value = row.get(column.key)
    return "" if value is None else format(value, column.fmt)


def final_markdown(rows: Sequence[dict[str, Any]]) -> str:
    columns = final_columns(rows)
    header = ["latent size", "epochs", *(c.header.replace("−", "-") for c in columns), "time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in rows:
        cells = [str(row["latent_dim"]), epochs_cell(row), *(format_cell(row, c) for c in columns),
                 duration(row["wall_time_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    note = ("Test and train metrics at each run's latest evaluation point; -ELBO, NLL and KL in nats per image. "
            "An epoch count 'x of y' marks a run still training or interrupted.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def duration(seconds: float) -> str:
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# -- the plain-language reading ------------------------------------------------------------------


def and_list(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def epoch_text(epoch: float) -> str:
    return f"{float(epoch):.2f}".rstrip("0").rstrip(".")


def signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def comparable_runs(study: Study) -> list[Run]:
    """The finished runs, when there are any: an unfinished run's numbers are from earlier in training."""
    return [run for run in study.runs if run.finished] or study.runs


def read_reconstruction(runs: Sequence[Run], others: bool) -> str:
    if len(runs) == 1:
        run = runs[0]
        only = ("Only latent size {} has finished" if others and run.finished else "Only latent size {} has results"
                ).format(run.latent_dim)
        return (f"{only} so far: at epoch {epoch_text(run.epochs_done)} it reconstructs the test digits with MSE "
                f"{run.test('mse'):.4f}, SSIM {run.test('ssim'):.3f} and PSNR {run.test('psnr'):.2f} dB.")
    by_mse = sorted(runs, key=lambda r: r.test("mse"))
    best, worst = by_mse[0], by_mse[-1]
    ratio = ""
    if best.test("mse") > 0:
        factor = worst.test("mse") / best.test("mse")
        ratio = f" ({factor:.1f}× lower)" if factor >= 1.5 else f" ({1 - 1 / factor:.1%} lower)"
    text = (f"Latent size {best.latent_dim} reconstructs the test digits best: MSE {best.test('mse'):.4f} against "
            f"{worst.test('mse'):.4f} for latent size {worst.latent_dim}{ratio}, SSIM {best.test('ssim'):.3f} "
            f"against {worst.test('ssim'):.3f}, PSNR {best.test('psnr'):.2f} dB against {worst.test('psnr'):.2f} dB.")
    order = [r.latent_dim for r in by_mse]
    if len(runs) > 2:
        if order == sorted(order, reverse=True):
            text += " The error falls with every step up in latent size."
        elif order == sorted(order):
            text += " The error rises with every step up in latent size."
        else:
            text += f" Ranked by MSE, best first: latent sizes {and_list(map(str, order))}."
    for metric, name in (("ssim", "SSIM"), ("psnr", "PSNR")):
        top = max(runs, key=lambda r: r.test(metric))
        if top is not best:
            text += f" {name} ranks latent size {top.latent_dim} first, though."
    return text


def read_elbo_and_kl(runs: Sequence[Run]) -> str:
    by_loss = sorted(runs, key=lambda r: r.test("loss"))
    best, worst = by_loss[0], by_loss[-1]
    text = (f"On the test −ELBO (a bound on the negative log-likelihood; lower is better) latent size "
            f"{best.latent_dim} is best with {best.test('loss'):.2f} nats per image")
    if len(runs) > 1:
        text += (f", {worst.test('loss') - best.test('loss'):.2f} nats below latent size {worst.latent_dim} "
                 f"({worst.test('loss'):.2f})")
    kls = [f"{r.test('kl'):.2f}{' nats' if i == 0 else ''} for latent size {r.latent_dim}" for i, r in enumerate(runs)]
    per_dim = [f"{r.test('kl') / r.latent_dim:.2f}" for r in runs]
    text += (f". The KL term, the information the code holds about each image, is {and_list(kls)}: "
             f"{and_list(per_dim)} nats per latent dimension.")
    if len(runs) > 1:
        small, large = runs[0], runs[-1]
        d_nll = large.test("nll") - small.test("nll")
        d_kl = large.test("kl") - small.test("kl")
        text += (f" From latent size {small.latent_dim} to {large.latent_dim} the reconstruction term (NLL) "
                 f"{'falls' if d_nll < 0 else 'rises'} by {abs(d_nll):.2f} nats and the KL "
                 f"{'rises' if d_kl > 0 else 'falls'} by {abs(d_kl):.2f}")
        if d_nll < 0 < d_kl:
            net = "a net gain" if -d_nll > d_kl else "a net loss"
            text += (f": the larger code spends {d_kl:.2f} nats more on KL to save {-d_nll:.2f} on reconstruction, "
                     f"{net} of {abs(d_nll + d_kl):.2f} nats.")
        else:
            text += f", a net change of {signed(d_nll + d_kl)} nats in the −ELBO."
    return text


def common_epochs(runs: Sequence[Run]) -> list[float]:
    sets = [{round(float(r["epoch"]), 4) for r in run.history} for run in runs]
    return sorted(set.intersection(*sets))


def loss_at(run: Run, epoch: float) -> float:
    return next(float(r["test"]["loss"]) for r in run.history if round(float(r["epoch"]), 4) == epoch)


def read_gap_over_training(runs: Sequence[Run]) -> str | None:
    """How the -ELBO spread between latent sizes moved from early to late in training."""
    if len(runs) < 2:
        return None
    epochs = common_epochs(runs)
    if len(epochs) < 2:
        return None
    whole = [e for e in epochs if e == int(e)]
    first, last = (whole[0] if len(whole) >= 2 else epochs[0]), epochs[-1]

    def spread(epoch: float) -> tuple[float, int]:
        losses = {run.latent_dim: loss_at(run, epoch) for run in runs}
        leader = min(losses, key=losses.get)
        return max(losses.values()) - losses[leader], leader

    gap_first, (gap_last, lead_last) = spread(first)[0], spread(last)
    leaders = [(epoch, spread(epoch)[1]) for epoch in epochs]
    if gap_last < 0.95 * gap_first:
        verb = "narrowed"
    elif gap_last > 1.05 * gap_first:
        verb = "widened"
    else:
        verb = "stayed about the same"
    text = (f"The test −ELBO gap between the best and the worst latent size {verb} during training: "
            f"{gap_first:.2f} nats at epoch {epoch_text(first)}, {gap_last:.2f} nats at epoch {epoch_text(last)}")
    if any(run.epochs_done > last for run in runs):
        text += " (the last point every run has reached)"
    text += "."
    if leaders[0][1] != lead_last:
        since = next(epoch for i, (epoch, _) in enumerate(leaders) if all(lead == lead_last for _, lead in leaders[i:]))
        text += (f" The ranking changed on the way: latent size {leaders[0][1]} led at the first evaluation point "
                 f"(epoch {epoch_text(leaders[0][0])}), and latent size {lead_last} has led since epoch "
                 f"{epoch_text(since)}.")
    return text


def read_generalisation(runs: Sequence[Run]) -> str:
    gaps = [(run.latent_dim, run.test("loss") - run.train("loss")) for run in runs]
    text = ("Test minus train −ELBO (positive when a model fits its training images better than unseen ones) is "
            + and_list(f"{signed(gap)} nats for latent size {dim}" for dim, gap in gaps) + ".")
    values = [gap for _, gap in gaps]
    if len(gaps) > 2 and values == sorted(values) and values[-1] > values[0] > 0:
        text += " The gap grows with the latent size."
    return text


def read_progress(runs: Sequence[Run]) -> str | None:
    """Whether each finished run was still improving over its last evaluation interval."""
    parts, still, rising = [], [], []
    for run in runs:
        if len(run.history) < 2 or not run.finished:
            continue
        before, after = run.history[-2], run.history[-1]
        span = float(after["epoch"]) - float(before["epoch"])
        drop = float(before["test"]["loss"]) - float(after["test"]["loss"])
        parts.append(f"{signed(-drop)} nats for latent size {run.latent_dim} (epoch {epoch_text(before['epoch'])} → "
                     f"{epoch_text(after['epoch'])})")
        if drop < 0:
            rising.append(str(run.latent_dim))
        elif span > 0 and drop / span > LEVELLED_OFF * float(after["test"]["loss"]):
            still.append(str(run.latent_dim))
    if not parts:
        return None
    text = "Over the last evaluation interval the test −ELBO changed by " + and_list(parts) + "."
    if still:
        text += (f" Latent size{'s' if len(still) > 1 else ''} {and_list(still)} still improved by more than "
                 f"{LEVELLED_OFF:.1%} per epoch, so more epochs would likely lower {'them' if len(still) > 1 else 'it'}"
                 " further.")
    if rising:
        text += (f" For latent size{'s' if len(rising) > 1 else ''} {and_list(rising)} it rose: a rising test −ELBO "
                 "is the first sign of overfitting.")
    if not still and not rising:
        text += f" Every run has levelled off (under {LEVELLED_OFF:.1%} per epoch)."
    return text


def read_final_measures(runs: Sequence[Run]) -> str | None:
    """The end-of-training measures every compared run has, when training wrote them."""
    def have(*keys: str) -> bool:
        return all(key in run.final for run in runs for key in keys)

    def each(value_of, fmt: str, unit: str = "") -> str:
        """ "v1 unit for latent size a, v2 for latent size b and v3 for latent size c", minus signs typeset."""
        return and_list(f"{format(value_of(r), fmt).replace('-', '−')}{unit if i == 0 else ''} for latent size "
                        f"{r.latent_dim}" for i, r in enumerate(runs))

    parts = []
    if have("iwae_log_likelihood"):
        k = runs[0].final.get("iwae_k")
        parts.append(f"The importance-weighted bound{f' (K = {k:g})' if k else ''} puts the test log-likelihood at "
                     f"{each(lambda r: r.final['iwae_log_likelihood'], '.2f', ' nats')} per image, tighter than the "
                     f"ELBO by {and_list(format(r.final['iwae_log_likelihood'] + r.test('loss'), '.2f') for r in runs)}"
                     " nats.")
    if have("active_units", "latent_units"):
        parts.append("Active latent units: " + and_list(
            f"{r.final['active_units']:g} of {r.final['latent_units']:g} for latent size {r.latent_dim}" for r in runs)
                     + ".")
        idle = [r for r in runs if r.final["active_units"] < r.final["latent_units"]]
        if idle:
            parts.append(and_list(f"Latent size {r.latent_dim} leaves "
                                  f"{r.final['latent_units'] - r.final['active_units']:g}" for r in idle)
                         + " of its units unused: their posterior stays at the prior whatever the image.")
    if len(runs) > 1 and have("probe_accuracy"):
        best = max(runs, key=lambda r: r.final["probe_accuracy"])
        parts.append(f"A nearest-neighbour digit probe on the posterior means is most accurate for latent size "
                     f"{best.latent_dim}: {each(lambda r: r.final['probe_accuracy'], '.1%')}.")
    if len(runs) > 1 and have("fd_classifier"):
        best = min(runs, key=lambda r: r.final["fd_classifier"])
        parts.append(f"Prior samples look most like test digits to a digit classifier for latent size "
                     f"{best.latent_dim} (Fréchet distance of its features, lower is better: "
                     f"{each(lambda r: r.final['fd_classifier'], '.2f')}).")
    return " ".join(parts) or None


def read_completeness(study: Study, compared: Sequence[Run]) -> str | None:
    notes = []
    for run in study.runs:
        if not run.finished:
            left = " and is left out of the comparisons above" if run not in compared else ""
            notes.append(f"Latent size {run.latent_dim} has reached epoch {epoch_text(run.epochs_done)} of "
                         f"{run.epochs_planned} only (still training, or interrupted: 'vaelab study --resume' "
                         f"continues it){left}.")
    notes += [f"Not in this report: {reason}." for reason in study.left_out.values()]
    return " ".join(notes) or None


def plain_reading(study: Study) -> list[tuple[str, str]]:
    """A few (topic, paragraph) pairs that say what the numbers say, written from the numbers."""
    runs = comparable_runs(study)
    paragraphs = [("Reconstruction", read_reconstruction(runs, others=len(runs) < len(study.runs))),
                  ("−ELBO and KL", read_elbo_and_kl(runs)),
                  ("Over training", read_gap_over_training(runs)),
                  ("Generalisation", read_generalisation(runs)),
                  ("Convergence", read_progress(runs)),
                  ("Beyond reconstruction", read_final_measures(runs)),
                  ("Not finished", read_completeness(study, runs))]
    return [(topic, text) for topic, text in paragraphs if text]


# -- the page ------------------------------------------------------------------------------------

# (file names in order of preference, caption); the first that exists is shown.
ANIMATIONS = (
    (("latent_space.gif", "latent_space.png"), "Test-set latent space during training"),
    (("reconstructions.gif", "reconstructions.png"), "Fixed test digits (top) and their reconstructions"),
)
TRAINING_FIGURE = (("metrics.png",), "Train and test metrics against epoch")
GENERATION_FIGURES = (
    (("samples.png",), "64 samples from the prior"),
    (("interpolations.png",), "Interpolations through latent space between test digits"),
)
MANIFOLD_FIGURE = (("manifold.png",), "Decoded latent manifold over the Gaussian's quantiles, beside the latent "
                                         "scatter")
ARCHITECTURE_FIGURE = (("architecture.png",), "Architecture of the trained model")

CSS = """
:root { --ink:#1d2330; --muted:#5b6472; --line:#e3e6eb; --bg:#f4f5f7; --card:#fff; --best:#e7f4ec; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.wrap { max-width: 1320px; margin: 0 auto; padding: 0 28px; }
header.top { background: linear-gradient(135deg, #14213d 0%, #1f4e79 100%); color: #fff; padding: 34px 0 26px; }
header.top h1 { margin: 0 0 6px; font-size: 28px; font-weight: 650; letter-spacing: -0.01em; }
header.top .sub { margin: 0; color: #c9d6ea; }
nav { margin-top: 18px; display: flex; flex-wrap: wrap; gap: 8px; }
nav a { color: #fff; text-decoration: none; background: rgba(255,255,255,.13); padding: 3px 12px;
  border-radius: 999px; font-size: 13px; }
nav a:hover { background: rgba(255,255,255,.25); }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 14px;
  padding: 22px 26px 24px; margin: 22px 0; box-shadow: 0 1px 3px rgba(16,24,40,.05); }
h2 { margin: 0 0 14px; font-size: 20px; font-weight: 650; display: flex; align-items: center; gap: 10px;
  flex-wrap: wrap; }
h3 { margin: 22px 0 10px; font-size: 15px; color: var(--muted); font-weight: 600; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px 24px; margin: 0; }
.facts div { min-width: 0; }
.facts dt { font-size: 11.5px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
.facts dd { margin: 1px 0 0; font-weight: 550; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 14px; }
th, td { padding: 7px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { color: var(--muted); font-size: 12.5px; font-weight: 600; vertical-align: bottom; }
#measures-table th { white-space: normal; }
th:first-child, td:first-child { text-align: left; }
tbody tr:last-child td { border-bottom: none; }
td.best { font-weight: 700; background: var(--best); }
td.muted { color: var(--muted); }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 8px;
  vertical-align: -1px; }
h2 .swatch { width: 16px; height: 16px; margin: 0; }
.caption { color: var(--muted); font-size: 13px; margin: 10px 0 0; }
.reading { border-left: 4px solid #1f4e79; }
.reading p { margin: 0 0 10px; max-width: 95ch; }
.reading p:last-child { margin-bottom: 0; }
.chips { display: inline-flex; flex-wrap: wrap; gap: 6px; font-size: 12.5px; font-weight: 500; }
.chips span { background: #eef1f5; color: #39414f; border-radius: 999px; padding: 2px 10px; }
.chips span.warn { background: #fff3d6; color: #7a5200; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 14px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 10px; padding: 10px; background: #fff;
  display: flex; flex-direction: column; flex: 1 1 0; min-width: min(100%, 300px); }
figure > a { margin: auto 0; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 8px; text-align: center; }
.note { color: var(--muted); font-size: 13.5px; border-left: 3px solid #d0d5dd; padding: 3px 10px; margin: 14px 0 0; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
  background: #f0f2f5; padding: 1px 5px; border-radius: 4px; }
.settings { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 10px 28px; }
@media (max-width: 820px) { .settings { grid-template-columns: minmax(0, 1fr); } }
.settings h4 { margin: 0 0 4px; font-size: 12px; text-transform: uppercase; letter-spacing: .05em;
  color: var(--muted); }
table.kv th, table.kv td { padding: 4px 0; font-size: 14px; }
table.kv tr:last-child th { border-bottom: none; }
table.kv th { text-align: left; color: var(--ink); font-weight: 400; }
table.kv td { font-weight: 600; overflow-wrap: anywhere; white-space: normal; }
table.runs th, table.runs td { text-align: left; }
header.top code { background: rgba(255,255,255,.15); color: #fff; }
footer { color: var(--muted); font-size: 13px; padding: 6px 0 40px; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def figure_html(study_dir: Path, run: Run, names: Sequence[str], caption: str) -> str | None:
    """A <figure> for the first of ``names`` that exists and is a readable image, else None."""
    for name in names:
        path = run.path / name
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, UnidentifiedImageError):
            continue
        src = quote(path.relative_to(study_dir).as_posix())
        alt = f"latent size {run.latent_dim}: {caption}"
        # Side by side, wider images get more of the row (less than in proportion, so a tall one stays
        # legible); clicking opens the image at full size.
        share = (width / height) ** 0.6
        return (f'<figure style="flex-grow:{share:.3f}"><a href="{src}"><img src="{src}" width="{width}" '
                f'height="{height}" alt="{esc(alt)}"></a><figcaption>{esc(caption)}</figcaption></figure>')
    return None


def figures_block(study_dir: Path, run: Run, specs: Sequence[tuple[tuple[str, ...], str]],
                  missing: list[str]) -> str:
    shown = []
    for names, caption in specs:
        block = figure_html(study_dir, run, names, caption)
        if block is None:
            missing.append(names[0])
        else:
            shown.append(block)
    if not shown:
        return ""
    return f'<div class="figs">{"".join(shown)}</div>'


def run_section(study_dir: Path, run: Run, colour: str) -> str:
    missing: list[str] = []
    # One row each; the manifold (latent size 2 only) needs the full width to show its digits.
    figure_specs = [ANIMATIONS, (TRAINING_FIGURE,), GENERATION_FIGURES,
                    *([(MANIFOLD_FIGURE,)] if run.latent_dim == 2 else []), (ARCHITECTURE_FIGURE,)]
    blocks = [figures_block(study_dir, run, specs, missing) for specs in figure_specs]
    chips = [f"epoch {epoch_text(run.epochs_done)} of {run.epochs_planned}" if not run.finished
             else f"{run.epochs_planned} epoch{'s' if run.epochs_planned != 1 else ''}",
             duration(run.wall_time_s), device_text(run) if run.environment else "",
             f"test −ELBO {run.test('loss'):.2f}", f"MSE {run.test('mse'):.4f}"]
    chip_html = "".join(f'<span{" class=warn" if i == 0 and not run.finished else ""}>{esc(c)}</span>'
                        for i, c in enumerate(chips) if c)
    parts = [f'<section class="card" id="latent-{run.latent_dim}">',
             f'<h2><span class="swatch" style="background:{colour}"></span>Latent size {run.latent_dim}'
             f'<span class="chips">{chip_html}</span></h2>', *blocks]
    if missing:
        parts.append(f'<p class="note">Not in {esc(run.path.name)}/ (yet): {esc(", ".join(missing))}.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def shown_settings(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each config group's settings as text, without those the chosen model does not use."""
    model = config.get("model") or {}
    unused = {"channels" if model.get("arch") == "mlp" else "hidden"}
    if model.get("likelihood") != "gaussian":
        unused.add("gaussian_std")
    groups = {}
    for group in ("data", "model", "train"):
        settings = {}
        for key, value in (config.get(group) or {}).items():
            if group == "model" and key in unused:
                continue
            if isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            settings[key] = "—" if value is None else str(value)
        groups[group] = settings
    return groups


def facts_html(facts: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts)
    return f'<dl class="facts">{items}</dl>'


def same_or_each(runs: Sequence[Run], value_of) -> str:
    values = [value_of(run) for run in runs]
    if len(set(values)) == 1:
        return values[0]
    return "; ".join(f"{v} (latent {run.latent_dim})" for run, v in zip(runs, values, strict=True))


SETTING_GROUPS = (("data", "Data"), ("model", "Model"), ("train", "Training"))


def settings_html(runs: Sequence[Run]) -> tuple[str, list[tuple[str, str]]]:
    """The settings every run shares, as three key/value lists; and the (group, key) that differ."""
    settings = [shown_settings(run.config) for run in runs]
    columns, differing = [], []
    for group, title in SETTING_GROUPS:
        keys = list(dict.fromkeys(k for s in settings for k in s[group]))
        rows = []
        for key in keys:
            if (group, key) in (("model", "latent_dim"), ("data", "data_dir")):
                continue
            values = {s[group].get(key) for s in settings}
            if len(values) == 1:
                label = "device asked for" if (group, key) == ("train", "device") else key.replace("_", " ")
                rows.append(f"<tr><th>{esc(label)}</th><td>{esc(values.pop())}</td></tr>")
            else:
                differing.append((group, key))
        columns.append(f'<div><h4>{esc(title)}</h4><table class="kv">{"".join(rows)}</table></div>')
    return f'<div class="settings">{"".join(columns)}</div>', differing


def device_text(run: Run) -> str:
    """The device a run trained on; "cuda:0 × 4 processes" for a data-parallel run."""
    device = run.environment.get("device")
    if device is None:
        return f"{run.config['train'].get('device', '?')} (not recorded)"
    processes = int(run.environment.get("processes", 1))
    return device if processes == 1 else f"{device} × {processes} processes"


ENVIRONMENT_FACTS = (("python", "Python"), ("numpy", "NumPy"), ("torch", "torch"), ("cuda", "CUDA"),
                     ("cudnn", "cuDNN"), ("gpu", "GPU"), ("cpu", "CPU"), ("threads", "CPU threads"),
                     ("platform", "platform"))


def code_text(environment: dict[str, str]) -> str:
    """The git commit of the code that trained, marked when its tracked files had been changed."""
    commit = environment.get("git_commit", "not recorded")
    dirty = environment.get("git_dirty")
    if dirty == "true":
        return f"{commit} with uncommitted changes"
    return commit if dirty == "false" or len(commit) != 40 else f"{commit} (changes not recorded)"


def software_facts(runs: Sequence[Run]) -> list[tuple[str, str]]:
    """Versions, processor, threads and the code's commit of each run's latest session (older runs
    recorded only torch)."""
    facts = [(title, same_or_each(runs, lambda r, key=key: r.environment.get(key, "not recorded")))
             for key, title in ENVIRONMENT_FACTS]
    return [*facts, ("code (git commit)", same_or_each(runs, lambda r: code_text(r.environment)))]


def setup_section(study: Study) -> str:
    runs = study.runs
    data = runs[0].config.get("data", {})
    facts = [
        ("dataset", str(data.get("dataset", "?"))),
        ("data directory", same_or_each(runs, lambda r: r.environment.get("data_dir")
                                        or r.config.get("data", {}).get("data_dir") or "default (not recorded)")),
        ("device", same_or_each(runs, device_text)),
        *software_facts(runs),
        ("vaelab", same_or_each(runs, lambda r: str(r.config.get("vaelab_version", "?")))),
        ("latent sizes", ", ".join(str(r.latent_dim) for r in runs)),
        ("images scored per evaluation", same_or_each(
            runs, lambda r: f"{r.eval_sizes.get('train', '?')} train, {r.eval_sizes.get('test', '?')} test")),
        ("total wall time", duration(sum(r.wall_time_s for r in runs))),
    ]
    settings, differing = settings_html(runs)
    headings = ["latent size", "status", "evaluation points", "wall time", "in training steps",
                *(key.replace("_", " ") for _, key in differing)]
    body = []
    for run in runs:
        status = ("finished" if run.finished
                  else f"stopped at epoch {epoch_text(run.epochs_done)} of {run.epochs_planned}")
        train_s = run.latest.get("train_s")
        shown = shown_settings(run.config)
        cells = [status, str(len(run.history)), duration(run.wall_time_s),
                 duration(float(train_s)) if isinstance(train_s, (int, float)) else "not recorded",
                 *(shown[group].get(key, "") for group, key in differing)]
        body.append(f"<tr><td>{run.latent_dim}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in headings)
    return (f'<section class="card" id="setup"><h2>What was run</h2>{facts_html(facts)}'
            f"<h3>Settings shared by every run</h3>{settings}"
            f'<h3>Runs</h3><div class="scroll"><table class="runs"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>"
            f'<p class="caption">Wall time counts training and its evaluation points (frames recorded '
            f'included), not the figures drawn after training; "in training steps" is the optimisation alone. '
            f"The machine's load shows in both.</p></section>")


def best_values(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> dict[str, float]:
    """The best value of each ranked column, among the finished runs when there are any (as in the reading)."""
    rows = [row for row in rows if row["finished"]] or rows
    best = {}
    for column in columns:
        values = [row[column.key] for row in rows if row.get(column.key) is not None]
        if column.better and len(values) > 1:
            best[column.key] = min(values) if column.better == "low" else max(values)
    return best


def table_html(rows: Sequence[dict[str, Any]], columns: Sequence[Column], colours: dict[int, str],
               table_id: str, progress: bool) -> str:
    """One row per run; ``progress`` adds the epochs reached and the wall time."""
    best = best_values(rows, columns)
    headings = ["latent size", *(["epochs"] if progress else []), *(c.header for c in columns),
                *(["time"] if progress else [])]
    body = []
    for row in rows:
        cells = [f'<td><span class="swatch" style="background:{colours[row["latent_dim"]]}"></span>'
                 f'{row["latent_dim"]}</td>']
        if progress:
            cells.append(f'<td{"" if row["finished"] else " class=muted"}>{esc(epochs_cell(row))}</td>')
        for column in columns:
            marked = column.key in best and row.get(column.key) == best[column.key]
            cells.append(f'<td{" class=best" if marked else ""}>{esc(format_cell(row, column))}</td>')
        if progress:
            cells.append(f"<td>{esc(duration(row['wall_time_s']))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in headings)
    return (f'<div class="scroll"><table id="{table_id}"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def table_section(rows: Sequence[dict[str, Any]], colours: dict[int, str]) -> str:
    measures = measure_columns(rows)
    parts = ['<section class="card" id="final"><h2>Final metrics</h2>',
             table_html(rows, TABLE_COLUMNS, colours, "final-table", progress=True),
             '<p class="caption">At each run\'s latest evaluation point. −ELBO, NLL and KL in nats per image; the '
             "best value of each column is highlighted (among finished runs).</p>"]
    if measures:
        parts += ["<h3>End-of-training measures</h3>",
                  table_html(rows, measures, colours, "measures-table", progress=False),
                  '<p class="caption">From metrics.json "final", written when a run finishes (empty for runs that '
                  "have not): IWAE log-likelihood bound in nats per image, active latent units, digit probe on the "
                  "posterior means, and a digit classifier's view of samples and reconstructions.</p>"]
    parts.append(f'<p class="caption">Also as <a href="{FINAL_CSV}">{FINAL_CSV}</a> and '
                 f'<a href="{FINAL_MD}">{FINAL_MD}</a>.</p></section>')
    return "".join(parts)


def render_html(study: Study, rows: Sequence[dict[str, Any]], reading: Sequence[tuple[str, str]]) -> str:
    runs = study.runs
    colours = run_colours(runs)
    dataset = str(runs[0].config.get("data", {}).get("dataset", "")).upper().replace("FASHION-MNIST", "Fashion-MNIST")
    title = f"vaelab study · {dataset} · latent sizes {and_list([str(r.latent_dim) for r in runs])}"
    built = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    nav = "".join(f'<a href="#{anchor}">{esc(label)}</a>' for anchor, label in
                  [("setup", "What was run"), ("final", "Final metrics"), ("reading", "Reading"),
                   ("comparison", "Comparison"),
                   *((f"latent-{r.latent_dim}", f"Latent size {r.latent_dim}") for r in runs)])
    comparison = (f'<section class="card" id="comparison"><h2>Comparison</h2><div class="figs"><figure>'
                  f'<a href="{COMPARISON_PNG}"><img src="{COMPARISON_PNG}" alt="test metrics of every latent size '
                  f'against epoch"></a>'
                  f"<figcaption>Test metrics of every latent size at each evaluation point (five inside the first "
                  f"epoch, then one per epoch)</figcaption></figure></div></section>")
    reading_html = "".join(f"<p><strong>{esc(topic)}.</strong> {esc(text)}</p>" for topic, text in reading)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header class="top"><div class="wrap">
<h1>{esc(title)}</h1>
<p class="sub">Variational autoencoders compared by latent size · study <code>{esc(study.path.name)}</code> ·
built {esc(built)} by vaelab {esc(__version__)}</p>
<nav>{nav}</nav>
</div></header>
<main class="wrap">
{setup_section(study)}
{table_section(rows, colours)}
<section class="card reading" id="reading"><h2>What the numbers say</h2>{reading_html}</section>
{comparison}
{"".join(run_section(study.path, run, colours[run.latent_dim]) for run in runs)}
</main>
<footer class="wrap">Rebuild this page from the runs on disk, without retraining:
<code>vaelab report {esc(study.path.name)}</code> (run from the study's parent directory).</footer>
</body>
</html>
"""


# -- everything ----------------------------------------------------------------------------------


def runs_with_stale_figures(study_dir: str | os.PathLike) -> list[Path]:
    """Run directories with recorded frames newer than their figures: runs interrupted or still training,
    whose figures are drawn only when training ends. Runs trained with --no-artifacts have no frames."""
    from .visualisation import FRAMES_DIR

    stale = []
    for run_dir in sorted(p for p in Path(study_dir).iterdir() if p.is_dir() and RUN_DIR_PATTERN.fullmatch(p.name)):
        frames = list((run_dir / FRAMES_DIR).glob("point_*.npz"))
        if not frames:
            continue
        gif = run_dir / "latent_space.gif"
        if not gif.exists() or max(f.stat().st_mtime_ns for f in frames) > gif.stat().st_mtime_ns:
            stale.append(run_dir)
    return stale


def redraw_stale_figures(study_dir: str | os.PathLike, projection: str | None = None) -> dict[Path, str]:
    """Draw the figures of every run whose frames are newer than them. Returns each such run directory with
    what happened: "redrawn", or the error that kept its figures from being drawn (the report goes on)."""
    from .visualisation import render_run_artifacts

    outcome = {}
    for run_dir in runs_with_stale_figures(study_dir):
        try:
            render_run_artifacts(run_dir, projection)
            outcome[run_dir] = "redrawn"
        except VaelabError as exc:
            outcome[run_dir] = f"not redrawn: {exc}"
    return outcome



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
