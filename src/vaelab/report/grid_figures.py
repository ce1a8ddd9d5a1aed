"""A grid study's figures: the test curves of every cell with a band for the seed spread, and the
rate-distortion plane (one point per cell, seed means with error bars, lines of equal -ELBO behind).

Colour stands for the first axis, line style for the second, marker for the third; a legend names each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..grid import Axis, coords_text, short_name, value_text
from .cells import GridCell, axis_values
from .figures import COMPARISON_PANELS, PALETTE, save_figure, style_epoch_axis

LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
AE_KEY = "model.objective"


class Encoding:
    """How a cell is drawn: colour by the first varied axis, line style by the second, marker by the third
    (axes with one value are left out; further axes share the last style)."""

    def __init__(self, cells: Sequence[GridCell], axes: Sequence[Axis]):
        self.keys = [a.key for a in axes if len(axis_values(cells, a.key)) > 1] or [axes[0].key]
        self.values = {key: axis_values(cells, key) for key in self.keys}

    def _index(self, cell: GridCell, position: int) -> int:
        if position >= len(self.keys):
            return 0
        key = self.keys[position]
        return self.values[key].index(cell.value(key))

    def colour(self, cell: GridCell) -> str:
        return PALETTE[self._index(cell, 0) % len(PALETTE)]

    def line_style(self, cell: GridCell) -> str:
        return LINE_STYLES[self._index(cell, 1) % len(LINE_STYLES)]

    def marker(self, cell: GridCell) -> str:
        return MARKERS[self._index(cell, 2) % len(MARKERS)]

    def legend(self) -> list[tuple[Line2D, str]]:
        """One entry per value of each encoded axis."""
        entries = []
        for position, key in enumerate(self.keys[:3]):
            for i, value in enumerate(self.values[key]):
                style = {"color": PALETTE[i % len(PALETTE)] if position == 0 else "#444",
                         "ls": LINE_STYLES[i % len(LINE_STYLES)] if position == 1 else "-",
                         "marker": MARKERS[i % len(MARKERS)] if position == 2 else None}
                entries.append((Line2D([], [], lw=2, ms=6, **style), f"{short_name(key)} {value_text(value)}"))
        return entries


def plot_grid_curves(cells: Sequence[GridCell], axes: Sequence[Axis], path: Path) -> None:
    """Test -ELBO, MSE, SSIM and PSNR against epoch: a line per cell (the seed mean) and a band of ± one sd."""
    encoding = Encoding(cells, axes)
    fig = Figure(figsize=(11, 7.5), dpi=130, layout="constrained")
    panels = fig.subplots(2, 2, sharex=True)
    for ax, (metric, title, unit) in zip(panels.flat, COMPARISON_PANELS, strict=False):
        for cell in cells:
            epochs, stats = cell.curve(metric)
            mean = np.array([s.mean for s in stats])
            sd = np.array([s.sd for s in stats])
            colour = encoding.colour(cell)
            ax.plot(epochs, mean, color=colour, ls=encoding.line_style(cell), marker=encoding.marker(cell), lw=1.8,
                    ms=3)
            if max(s.n for s in stats) > 1:
                ax.fill_between(epochs, mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)
        ax.set_title(f"{title}  ", loc="left", fontsize=12, fontweight="bold")
        ax.set_title(unit, loc="right", fontsize=9, color="#5b6472")
        style_epoch_axis(ax)
    for ax in panels[1]:
        ax.set_xlabel("epoch (log scale)", fontsize=10)
    handles, labels = zip(*encoding.legend(), strict=True)
    fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 6), frameon=False, fontsize=10)
    save_figure(fig, path)


def plot_rate_distortion(cells: Sequence[GridCell], axes: Sequence[Axis], path: Path) -> None:
    """Rate (test KL) against distortion (test reconstruction NLL), in nats per image, at the last evaluation
    point: one point per cell with ± one sd over seeds, a line through the values of the first numeric axis
    at each value of the others, and diagonals of equal -ELBO (D + R) behind. A plain autoencoder has no rate
    (no posterior noise, no KL term): it is a vertical line at its distortion."""
    encoding = Encoding(cells, axes)
    fig = Figure(figsize=(10, 6.5), dpi=130, layout="constrained")
    ax = fig.subplots()
    vaes = [c for c in cells if c.value(AE_KEY) != "ae" and c.test("nll") is not None]
    aes = [c for c in cells if c.value(AE_KEY) == "ae" and c.test("nll") is not None]
    for cell in vaes:
        d, r = cell.test("nll"), cell.test("kl")
        ax.errorbar(d.mean, r.mean, xerr=d.sd or None, yerr=r.sd or None, color=encoding.colour(cell),
                    marker=encoding.marker(cell), ms=7, capsize=3, lw=1.2, zorder=3)
        # Each point names its other coordinates: line style cannot mark a lone point.
        ax.annotate(_rest_text(cell, encoding.keys[0]), (d.mean, r.mean), xytext=(6, 5), textcoords="offset points",
                    fontsize=8, color=encoding.colour(cell))
    for group in _lines(vaes, axes):
        ax.plot([c.test("nll").mean for c in group], [c.test("kl").mean for c in group], color="#8a93a3",
                ls=encoding.line_style(group[0]), lw=1.2, zorder=2)
    for i, cell in enumerate(aes):
        d = cell.test("nll")
        ax.axvline(d.mean, color=encoding.colour(cell), ls=(0, (4, 3)), lw=1.5, zorder=2)
        # Staggered down the line, so that autoencoders of nearly equal distortion keep legible labels.
        ax.annotate(f"AE · {_rest_text(cell)}", (d.mean, 0.98 - 0.3 * (i % 3)), xycoords=("data", "axes fraction"),
                    rotation=90,
                    va="top", ha="right", fontsize=8.5, color=encoding.colour(cell))
    _equal_elbo_lines(ax)
    ax.set_xlabel("distortion: test reconstruction NLL (nats per image)", fontsize=10)
    ax.set_ylabel("rate: test KL(q(z|x) ‖ p(z)) (nats per image)", fontsize=10)
    ax.set_title("Rate–distortion plane  ", loc="left", fontsize=12, fontweight="bold")
    ax.set_title("dotted: equal −ELBO = D + R", loc="right", fontsize=9, color="#5b6472")
    ax.grid(True, color="#e3e6eb", lw=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    handles, labels = zip(*encoding.legend(), strict=True)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=9.5)
    save_figure(fig, path)


def _rest_text(cell: GridCell, left_out: str = AE_KEY) -> str:
    """The cell's coordinates but one (the objective of an AE line, the colour's axis of a point)."""
    return coords_text(tuple((k, v) for k, v in cell.coords if k != left_out)) or "plain autoencoder"


def _lines(cells: Sequence[GridCell], axes: Sequence[Axis]) -> list[list[GridCell]]:
    """Cells joined along the first axis with numeric values (e.g. beta), one line per value of the others."""
    numeric = [a.key for a in axes if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a.values)
               and len(axis_values(cells, a.key)) > 1]
    if not numeric:
        return []
    key = numeric[0]
    groups: dict[tuple, list[GridCell]] = {}
    for cell in cells:
        groups.setdefault(tuple((k, v) for k, v in cell.coords if k != key), []).append(cell)
    return [sorted(g, key=lambda c: c.value(key)) for g in groups.values() if len(g) > 1]


def _equal_elbo_lines(ax: Any) -> None:
    """Diagonals D + R = const behind the points, at round values across the visible range."""
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    y0 = min(y0, 0.0)
    ax.set_ylim(y0, y1)
    low, high = x0 + y0, x1 + y1
    step = _round_step((high - low) / 6)
    for level in np.arange(np.ceil(low / step) * step, high, step):
        ax.plot([x0, x1], [level - x0, level - x1], color="#c5cad3", ls=":", lw=1, zorder=1)
        if x0 <= level - y1 <= x1:  # the line's -ELBO where it leaves the top of the plot
            ax.annotate(f"{level:g}", (level - y1, y1), xytext=(2, -2), textcoords="offset points", fontsize=7.5,
                        color="#8a93a3", va="top")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _round_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    power = 10 ** np.floor(np.log10(raw))
    return float(min((s * power for s in (1, 2, 5, 10)), key=lambda s: abs(s - raw)))
