"""The final-metrics table: one row per latent size, as CSV, Markdown and the data of the page's tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..grid import SHORT_NAMES, short_name, value_text
from ..metrics import BY_KEY, FINAL_MEASURES, POINT_KEYS, POINT_METRICS, Metric, metric_of, reference_text
from .reading import duration, epoch_text
from .study import ReportedRun


@dataclass(frozen=True)
class Column:
    key: str  # field of final_rows() and of the CSV
    header: str
    fmt: str  # format spec in the Markdown and HTML tables
    better: str | None = None  # "low" or "high": the best value is marked in the HTML table
    metric: Metric | None = None  # the declared metric it shows (its meaning and yardstick); None: undeclared


def split_column(split: str, key: str) -> Column:
    m = metric_of(key)
    return Column(f"{split}_{key}", f"{split} {m.header}", m.fmt, m.better, m)


# Every test metric (the published definitions are empty for runs that predate them), then the train fit.
TABLE_COLUMNS = (*(split_column("test", m.key) for m in POINT_METRICS), split_column("train", "loss"),
                 split_column("train", "mse"))


def final_rows(runs: Sequence[ReportedRun]) -> list[dict[str, Any]]:
    """One row per latent size: its latest evaluation point and every "final" measure."""
    rows = []
    for run in runs:
        # A grid's runs start with their name and coordinates (a latent-size study's rows are as they were).
        coords = {"run": run.name, **{short_name(k): value_text(v) for k, v in run.coords}} if run.coords else {}
        row: dict[str, Any] = {
            **coords,
            "latent_dim": run.latent_dim,
            "epochs_done": run.epochs_done,
            "epochs_planned": run.epochs_planned,
            "finished": run.finished,
            "wall_time_s": run.wall_time_s,
        }
        for split in ("test", "train"):
            row.update({f"{split}_{m}": float(run.latest[split][m]) for m in POINT_KEYS if m in run.latest[split]})
        for key, value in run.final.items():
            row[key if key not in row else f"final_{key}"] = value
        rows.append(row)
    return rows


MEASURE_COLUMNS = {m.key: Column(m.key, m.header, m.fmt, m.better, m) for m in FINAL_MEASURES}


def measure_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """A column for every "final" measure any run has, in the order they appear."""
    fixed = {"run", "latent_dim", "epochs_done", "epochs_planned", "finished", "wall_time_s",
             *(f"{s}_{m}" for s in ("test", "train") for m in POINT_KEYS), *SHORT_NAMES.values()}
    keys = dict.fromkeys(k for row in rows for k in row if k not in fixed and "." not in k
                         and (k not in BY_KEY or BY_KEY[k].column))
    return [MEASURE_COLUMNS.get(k) or Column(k, k.replace("_", " "), ".4g") for k in keys]


def column_notes(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(header, what it means; its yardstick) for each column, the yardstick computed from the runs' data where
    it depends on it (chance accuracy, ln K)."""
    notes = []
    for column in columns:
        metric = column.metric
        if metric is None or not metric.meaning:
            continue
        yardstick = reference_text(metric, list(rows))
        notes.append((column.header, metric.meaning + (f"; {yardstick}" if yardstick else "")))
    return notes


def above_yardstick(row: dict[str, Any], column: Column) -> bool:
    """False for a score at or below what chance gets on the run's data: never marked as best."""
    metric = column.metric
    if metric is None or metric.reference != "chance_accuracy" or "chance_accuracy" not in row:
        return True
    return row[column.key] > row["chance_accuracy"]


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
    grid = any("run" in row for row in rows)
    header = ["run" if grid else "latent size", "epochs", *(c.header.replace("−", "-") for c in columns), "time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in rows:
        cells = [str(row["run"] if grid else row["latent_dim"]), epochs_cell(row),
                 *(format_cell(row, c) for c in columns), duration(row["wall_time_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    note = ("Test and train metrics at each run's latest evaluation point; -ELBO, NLL and KL in nats per image. "
            "An epoch count 'x of y' marks a run still training or interrupted.")
    meanings = [f"- **{header.replace('−', '-')}**: {text.replace('−', '-')}" for header, text in
                column_notes(columns, rows)]
    return "\n".join(lines) + "\n\n" + note + "\n\n" + "\n".join(meanings) + "\n"


def best_values(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> dict[str, float]:
    """The best value of each ranked column, among the finished runs when there are any (as in the reading)."""
    rows = [row for row in rows if row["finished"]] or rows
    best = {}
    for column in columns:
        scored = [row for row in rows if row.get(column.key) is not None]
        values = [row[column.key] for row in scored if above_yardstick(row, column)]
        if column.better and len(scored) > 1 and values:
            best[column.key] = min(values) if column.better == "low" else max(values)
    return best
