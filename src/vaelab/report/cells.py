"""A grid study's cells: the runs that differ only in their seed, with the mean, spread and count of every
number they share, and the rule that says whether two cells differ by more than the seed spread.

The rule (docs/studies.md): two cells differ *beyond the seed spread* in a metric when both have at least
two seeds and their means are further apart than twice the standard error of the difference,
|m_a - m_b| > 2 sqrt(s_a^2 / n_a + s_b^2 / n_b), with s the sample standard deviation over seeds (about a
95 % interval for normal seed noise). With one seed a cell has no spread, and no verdict is given.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..grid import coords_text, short_name, value_text
from ..metrics import metric_of
from .study import ReportedRun

SPREAD_FACTOR = 2.0


@dataclass(frozen=True)
class Stat:
    mean: float
    sd: float  # sample standard deviation over the seeds; 0 with one seed
    n: int

    def text(self, fmt: str) -> str:
        return format(self.mean, fmt) if self.n < 2 else f"{self.mean:{fmt}} ± {self.sd:{fmt}}"


def stat_of(values: Sequence[float]) -> Stat | None:
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stat(statistics.fmean(values), sd, len(values))


def beyond_spread(a: Stat, b: Stat) -> bool | None:
    """Whether the means differ by more than the seed spread allows; None without two seeds on each side."""
    if a.n < 2 or b.n < 2:
        return None
    return abs(a.mean - b.mean) > SPREAD_FACTOR * math.sqrt(a.sd**2 / a.n + b.sd**2 / b.n)


@dataclass
class GridCell:
    coords: tuple[tuple[str, Any], ...]  # the axes' values, no seed
    runs: list[ReportedRun]

    @property
    def label(self) -> str:
        return coords_text(self.coords)

    def value(self, key: str) -> Any:
        return dict(self.coords).get(key)

    def stat(self, read: Callable[[ReportedRun], float | None]) -> Stat | None:
        values = []
        for run in self.runs:
            try:
                values.append(read(run))
            except (KeyError, TypeError, ValueError):
                continue
        return stat_of(values)

    def test(self, metric: str) -> Stat | None:
        return self.stat(lambda run: run.latest["test"].get(metric))

    def final(self, key: str) -> Stat | None:
        return self.stat(lambda run: run.final.get(key))

    def curve(self, metric: str) -> tuple[list[float], list[Stat]]:
        """The test metric at each evaluation point that every seed of the cell has reached."""
        points = min(len(run.history) for run in self.runs)
        epochs = [float(self.runs[0].history[i]["epoch"]) for i in range(points)]
        return epochs, [stat_of([run.history[i]["test"][metric] for run in self.runs]) for i in range(points)]


def cells_of(runs: Sequence[ReportedRun]) -> list[GridCell]:
    """The runs grouped by their coordinates without the seed, in the order the cells first appear."""
    cells: dict[tuple, GridCell] = {}
    for run in runs:
        cells.setdefault(run.cell, GridCell(run.cell, [])).runs.append(run)
    return list(cells.values())


def axis_values(cells: Sequence[GridCell], key: str) -> list[Any]:
    return list(dict.fromkeys(cell.value(key) for cell in cells))


def comparisons(cells: Sequence[GridCell], key: str) -> list[tuple[GridCell, GridCell]]:
    """Pairs of cells that differ only along the axis ``key``, between consecutive values of it."""
    values = axis_values(cells, key)
    by_rest: dict[tuple, dict[Any, GridCell]] = {}
    for cell in cells:
        rest = tuple((k, v) for k, v in cell.coords if k != key)
        by_rest.setdefault(rest, {})[cell.value(key)] = cell
    pairs = []
    for group in by_rest.values():
        present = [v for v in values if v in group]
        pairs += [(group[a], group[b]) for a, b in zip(present, present[1:], strict=False)]
    return pairs


def change_text(a: GridCell, b: GridCell, key: str, metric: str, unit: str, fmt: str) -> tuple[str, bool | None] | None:
    """"beta 0.5 → 1 (z 2): test −ELBO +3.10 nats (beyond the seed spread)" and the verdict."""
    sa, sb = a.test(metric), b.test(metric)
    if sa is None or sb is None:
        return None
    verdict = beyond_spread(sa, sb)
    rest = coords_text(tuple((k, v) for k, v in a.coords if k != key))
    delta = f"{sb.mean - sa.mean:+{fmt}}".replace("-", "−")
    judged = {True: "beyond the seed spread", False: "within the seed spread", None: "one seed: no spread"}[verdict]
    where = f" ({rest})" if rest else ""
    return (f"{short_name(key)} {value_text(a.value(key))} → {value_text(b.value(key))}{where}: {delta}{unit} "
            f"({judged})", verdict)


VERDICT_METRICS = tuple((m.key, f"test {m.short}", " nats" if m.key == "loss" else f" {m.unit}", m.fmt)
                        for m in map(metric_of, ("loss", "psnr")))
MAX_LISTED = 12  # comparisons listed per axis; the grid table has the rest


def grid_reading(cells: Sequence[GridCell], axes: Sequence[Any], seeds: Sequence[int] | None) -> list[tuple[str, str]]:
    """The paragraphs of a grid study: its design, then per axis how each step along it moved the test -ELBO
    and PSNR, and whether each move exceeds the seed spread (the rule in this module's docstring)."""
    n_runs = sum(len(c.runs) for c in cells)
    design = (f"{n_runs} runs in {len(cells)} cells: " + "; ".join(
        f"{a.name} = {', '.join(value_text(v) for v in a.values)}" for a in axes))
    design += (f"; each cell with seeds {', '.join(map(str, seeds))}. Means are given ± the standard deviation over "
               "seeds; a difference counts as beyond the seed spread when the means lie more than twice its "
               "standard error apart." if seeds else "; one seed per cell, so no seed spread to judge "
               "differences by (--seeds N repeats each cell).")
    paragraphs = [("Design", design)]
    for axis in axes:
        if len(axis_values(cells, axis.key)) < 2:
            continue
        lines, beyond, judged = [], 0, 0
        for a, b in comparisons(cells, axis.key):
            for metric, label, unit, fmt in VERDICT_METRICS:
                change = change_text(a, b, axis.key, metric, unit, fmt)
                if change is None:
                    continue
                text, verdict = change
                judged += verdict is not None
                beyond += verdict is True
                lines.append(f"{label} {text}")
        if not lines:
            continue
        shown = "; ".join(lines[:MAX_LISTED]) + ("; …" if len(lines) > MAX_LISTED else "")
        tally = f" {beyond} of {judged} changes exceed the seed spread." if judged else ""
        paragraphs.append((f"Along {axis.name}", f"{shown}.{tally}"))
    return paragraphs
