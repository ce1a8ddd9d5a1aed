"""report.html: what the page shows, gathered into plain values and rendered by templates/report.html.j2.

The template autoescapes everything it is given; the stylesheet (templates/report.css) is read and
inlined into the page at render time, so the page stays one self-contained file with no script. Figures
are linked by paths relative to the study directory, so the page keeps working when it is moved.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from PIL import Image, UnidentifiedImageError

from .. import __version__, architectures
from ..config import has_latent_plane
from ..data import item_word
from ..grid import coords_text, value_text
from ..metrics import POINT_METRICS, metric_of
from ..rundir import COMPARISON_PNG, FINAL_CSV, FINAL_MD, RATE_DISTORTION_PNG
from .cells import GridCell, axis_values
from .claims import NOT_SUPPORTED, SUPPORTED, claim_rows
from .figures import (
    ANIMATIONS,
    ARCHITECTURE_FIGURE,
    GENERATION_FIGURES,
    MANIFOLD_FIGURE,
    TRAINING_FIGURE,
    run_colours,
)
from .reading import and_list, duration, epoch_text, probe_word
from .study import ReportedRun, Study
from .tables import TABLE_COLUMNS, Column, best_values, column_notes, epochs_cell, format_cell, measure_columns

TEMPLATES = Path(__file__).with_name("templates")
SETTING_GROUPS = (("data", "Data"), ("model", "Model"), ("train", "Training"))
ENVIRONMENT_FACTS = (("python", "Python"), ("numpy", "NumPy"), ("torch", "torch"), ("cuda", "CUDA"),
                     ("cudnn", "cuDNN"), ("gpu", "GPU"), ("cpu", "CPU"), ("threads", "CPU threads"),
                     ("platform", "platform"))


@dataclass
class FigureView:
    src: str  # relative to the study directory, URL-quoted
    width: int
    height: int
    alt: str
    caption: str
    # Side by side, wider images get more of the row (less than in proportion, so a tall one stays legible).
    grow: str


@dataclass
class Cell:
    text: str
    css_class: str | None = None
    swatch: str | None = None  # the run's colour, shown before the text


@dataclass
class TableView:
    table_id: str
    headings: list[str]
    rows: list[list[Cell]]


@dataclass
class RunSectionView:
    anchor: str  # latent-<z>, or run-<n> in a grid
    title: str
    colour: str
    dir_name: str
    chips: list[Cell]
    figure_rows: list[list[FigureView]]
    missing: list[str] = field(default_factory=list)
    folded: bool = False  # a grid's runs start folded, so the page stays readable


# -- the runs' figures -------------------------------------------------------------------------------


def figure_view(study_dir: Path, run: ReportedRun, names: Sequence[str], caption: str) -> FigureView | None:
    """The first of ``names`` that exists and is a readable image, else None."""
    for name in names:
        path = run.path / name
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, UnidentifiedImageError):
            continue
        src = quote(path.relative_to(study_dir).as_posix())
        return FigureView(src, width, height, f"{run.label}: {caption}", caption,
                          f"{(width / height) ** 0.6:.3f}")
    return None


def run_chips(run: ReportedRun) -> list[Cell]:
    epochs = (f"epoch {epoch_text(run.epochs_done)} of {run.epochs_planned}" if not run.finished
              else f"{run.epochs_planned} epoch{'s' if run.epochs_planned != 1 else ''}")
    chips = [Cell(epochs, None if run.finished else "warn"), Cell(duration(run.wall_time_s))]
    if run.environment:
        chips.append(Cell(device_text(run)))
    return [*chips, Cell(f"test −ELBO {run.test('loss'):.2f}"), Cell(f"MSE {run.test('mse'):.4f}")]


def run_section(study_dir: Path, run: ReportedRun, colour: str, anchor: str, animated: bool = True) -> RunSectionView:
    """A run's figures; ``animated`` False shows the last frame of each animation instead of the GIF (a grid's
    further seeds, to keep the page's weight down)."""
    title = run.label[0].upper() + run.label[1:]
    section = RunSectionView(anchor, title, colour, run.path.name, run_chips(run), [], folded=bool(run.coords))
    arch = str(run.config.get("model", {}).get("arch", "mlp"))
    animations = ANIMATIONS if animated else tuple((names[1:], caption) for names, caption in ANIMATIONS)
    # One row each; the manifold (a plane latent only) needs the full width to show its images.
    figure_specs = [animations, (TRAINING_FIGURE,), GENERATION_FIGURES,
                    *([(MANIFOLD_FIGURE,)] if has_latent_plane(arch, run.latent_dim) else []), (ARCHITECTURE_FIGURE,)]
    for specs in figure_specs:
        row = []
        for names, caption in specs:
            view = figure_view(study_dir, run, names, caption.format(items=item_word(run.dataset)))
            if view is None:
                section.missing.append(names[0])
            else:
                row.append(view)
        if row:
            section.figure_rows.append(row)
    return section


# -- what was run ------------------------------------------------------------------------------------


def shown_settings(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each config group's settings as text, without those the chosen model does not use."""
    model = config.get("model") or {}
    arch = architectures.REGISTRY.get(str(model.get("arch", "mlp")))
    unused = {"hidden", "channels"} - {arch.widths_field if arch else "hidden"}
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


def same_or_each(runs: Sequence[ReportedRun], value_of: Callable[[ReportedRun], str]) -> str:
    values = [value_of(run) for run in runs]
    if len(set(values)) == 1:
        return values[0]
    return "; ".join(f"{v} ({run.short_label})" for run, v in zip(runs, values, strict=True))


SettingsColumn = tuple[str, list[tuple[str, str]]]  # a group's title, its (label, value) rows


def shared_settings(runs: Sequence[ReportedRun]) -> tuple[list[SettingsColumn], list[tuple[str, str]]]:
    """The settings every run shares, as (group title, [(label, value)]); and the (group, key) that differ."""
    settings = [shown_settings(run.config) for run in runs]
    columns, differing = [], []
    for group, title in SETTING_GROUPS:
        rows = []
        for key in dict.fromkeys(k for s in settings for k in s[group]):
            if (group, key) in (("model", "latent_dim"), ("data", "data_dir")):
                continue
            values = {s[group].get(key) for s in settings}
            if len(values) == 1:
                rows.append(("device asked for" if (group, key) == ("train", "device") else key.replace("_", " "),
                             values.pop()))
            else:
                differing.append((group, key))
        columns.append((title, rows))
    return columns, differing


def device_text(run: ReportedRun) -> str:
    """The device a run trained on; "cuda:0 × 4 processes" for a data-parallel run."""
    device = run.environment.get("device")
    if device is None:
        return f"{run.config['train'].get('device', '?')} (not recorded)"
    processes = int(run.environment.get("processes", 1))
    return device if processes == 1 else f"{device} × {processes} processes"


def code_text(environment: dict[str, str]) -> str:
    """The git commit of the code that trained, marked when its tracked files had been changed."""
    commit = environment.get("git_commit", "not recorded")
    dirty = environment.get("git_dirty")
    if dirty == "true":
        return f"{commit} with uncommitted changes"
    return commit if dirty == "false" or len(commit) != 40 else f"{commit} (changes not recorded)"


def software_facts(runs: Sequence[ReportedRun]) -> list[tuple[str, str]]:
    """Versions, processor, threads and the code's commit of each run's latest session (older runs
    recorded only torch)."""
    facts = [(title, same_or_each(runs, lambda r, key=key: r.environment.get(key, "not recorded")))
             for key, title in ENVIRONMENT_FACTS]
    return [*facts, ("code (git commit)", same_or_each(runs, lambda r: code_text(r.environment)))]


def setup_facts(runs: Sequence[ReportedRun]) -> list[tuple[str, str]]:
    data = runs[0].config.get("data", {})
    return [
        ("dataset", str(data.get("dataset", "?"))),
        ("images", same_or_each(runs, lambda r: r.environment.get("images") or image_shape_text(r.config))),
        ("data directory", same_or_each(runs, lambda r: r.environment.get("data_dir")
                                        or r.config.get("data", {}).get("data_dir") or "default (not recorded)")),
        ("device", same_or_each(runs, device_text)),
        *software_facts(runs),
        ("vaelab", same_or_each(runs, lambda r: str(r.config.get("vaelab_version", "?")))),
        ("latent sizes", ", ".join(dict.fromkeys(str(r.latent_dim) for r in runs))),
        ("images scored per evaluation", same_or_each(
            runs, lambda r: f"{r.eval_sizes.get('train', '?')} train, {r.eval_sizes.get('test', '?')} test")),
        ("total wall time", duration(sum(r.wall_time_s for r in runs))),
    ]


def runs_table(runs: Sequence[ReportedRun], differing: Sequence[tuple[str, str]]) -> TableView:
    grid = any(run.coords for run in runs)
    headings = ["run" if grid else "latent size", "status", "evaluation points", "wall time", "in training steps",
                *(key.replace("_", " ") for _, key in differing)]
    rows = []
    for run in runs:
        status = ("finished" if run.finished
                  else f"stopped at epoch {epoch_text(run.epochs_done)} of {run.epochs_planned}")
        train_s = run.latest.get("train_s")
        shown = shown_settings(run.config)
        texts = [run.short_label if grid else str(run.latent_dim), status, str(len(run.history)),
                 duration(run.wall_time_s),
                 duration(float(train_s)) if isinstance(train_s, (int, float)) else "not recorded",
                 *(shown[group].get(key, "") for group, key in differing)]
        rows.append([Cell(text) for text in texts])
    return TableView("runs", headings, rows)


# -- the final tables --------------------------------------------------------------------------------


def metrics_table(runs: Sequence[ReportedRun], rows: Sequence[dict[str, Any]], columns: Sequence[Column],
                  colours: dict[str, str], table_id: str, progress: bool) -> TableView:
    """One row per run (``rows[i]`` is ``runs[i]``'s); ``progress`` adds the epochs reached and the wall time."""
    best = best_values(rows, columns)
    grid = any(run.coords for run in runs)
    headings = ["run" if grid else "latent size", *(["epochs"] if progress else []), *(c.header for c in columns),
                *(["time"] if progress else [])]
    body = []
    for run, row in zip(runs, rows, strict=True):
        cells = [Cell(run.short_label if grid else str(row["latent_dim"]), swatch=colours[run.name])]
        if progress:
            cells.append(Cell(epochs_cell(row), None if row["finished"] else "muted"))
        for column in columns:
            marked = column.key in best and row.get(column.key) == best[column.key]
            cells.append(Cell(format_cell(row, column), "best" if marked else None))
        if progress:
            cells.append(Cell(duration(row["wall_time_s"])))
        body.append(cells)
    return TableView(table_id, headings, body)


# -- the page ----------------------------------------------------------------------------------------


def dataset_title(data: dict[str, Any]) -> str:
    """MNIST, Fashion-MNIST, CIFAR-10, or an image folder by its directory's name."""
    name = str(data.get("dataset", ""))
    if name == "folder":
        return f"images in {Path(str(data.get('data_dir') or '.')).name}/"
    return {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}.get(name, name.upper())


def image_shape_text(config: dict[str, Any]) -> str:
    shape = config.get("model", {}).get("image_shape") or (1, 28, 28)
    return "×".join(str(d) for d in shape)


def absent_text(runs: Sequence[ReportedRun]) -> str:
    """Which measures no run has, and why (the reasons the runs recorded)."""
    reasons: dict[str, list[str]] = {}
    for run in runs:
        for key, why in run.absent.items():
            if key.replace("_", " ") not in reasons.setdefault(why, []):
                reasons[why].append(key.replace("_", " "))
    return "; ".join(f"{and_list(keys)}: {why}" for why, keys in reasons.items())


def page_title(study: Study) -> str:
    runs = study.runs
    dataset = dataset_title(runs[0].config.get("data", {}))
    if study.grid is None:
        return f"vaelab study · {dataset} · latent sizes {and_list([str(r.latent_dim) for r in runs])}"
    axes = " × ".join(f"{a.name} ({len(a.values)})" for a in study.grid.axes)
    seeds = f" × {len(study.grid.seeds)} seeds" if study.grid.seeds else ""
    return f"vaelab study · {dataset} · {axes}{seeds}"


# -- a grid study --------------------------------------------------------------------------------------

GRID_METRICS = tuple((m.key, f"test {m.header}", m.fmt) for m in POINT_METRICS if m.core)
# Means of counts get a decimal: 14.7 active units is three seeds' 14, 15 and 15.
GRID_MEASURES = tuple((m.key, m.header, ".1f" if m.fmt == "g" else m.fmt) for m in map(metric_of, (
    "iwae_log_likelihood", "active_units", "probe_accuracy", "fd_classifier", "sample_class_entropy",
    "aggregate_kl", "interpolation_jump")))


@dataclass
class GridView:
    table: TableView  # one row per cell: its coordinates, seeds, and mean ± sd of each metric
    pivots: list[tuple[str, TableView]]  # the headline metrics with one axis down and the others across
    rate_distortion: str
    notes: list[str]
    claims: TableView | None = None  # the published AE-vs-VAE claims, where the study varies the objective


def grid_table(study: Study, cells: Sequence[GridCell]) -> TableView:
    axes = list(study.grid.axes)
    measures = [m for m in GRID_MEASURES if any(c.final(m[0]) is not None for c in cells)]
    headings = [a.name for a in axes] + ["seeds"] + [h for _, h, _ in GRID_METRICS] + [h for _, h, _ in measures]
    rows = []
    for cell in cells:
        texts = [value_text(cell.value(a.key)) for a in axes] + [str(len(cell.runs))]
        texts += [_stat_text(cell.test(m), fmt) for m, _, fmt in GRID_METRICS]
        texts += [_stat_text(cell.final(m), fmt) for m, _, fmt in measures]
        rows.append([Cell(t) for t in texts])
    return TableView("grid-table", headings, rows)


def _stat_text(stat: Any, fmt: str) -> str:
    return "" if stat is None else stat.text(fmt)


def pivot_tables(study: Study, cells: Sequence[GridCell]) -> list[tuple[str, TableView]]:
    """Test -ELBO and PSNR, mean ± sd: the first varied axis down, the other axes' combinations across."""
    varied = [a for a in study.grid.axes if len(axis_values(cells, a.key)) > 1]
    if len(varied) < 2:
        return []
    down, across = varied[0], varied[1:]
    columns = list(dict.fromkeys(tuple((a.key, c.value(a.key)) for a in across) for c in cells))
    tables = []
    for metric, title, fmt in (GRID_METRICS[0], GRID_METRICS[5]):
        rows = []
        for value in axis_values(cells, down.key):
            row = [Cell(value_text(value))]
            for column in columns:
                match = [c for c in cells if c.value(down.key) == value and all(c.value(k) == v for k, v in column)]
                row.append(Cell(_stat_text(match[0].test(metric), fmt) if match else "—"))
            rows.append(row)
        headings = [down.name] + [coords_text(column) for column in columns]
        tables.append((title, TableView(f"pivot-{metric}", headings, rows)))
    return tables


def grid_view(study: Study, cells: Sequence[GridCell]) -> GridView | None:
    if study.grid is None:
        return None
    notes = []
    if any(c.value("model.objective") == "ae" for c in cells):
        notes.append("A plain autoencoder has no posterior noise and no KL term: its KL is recorded as 0, its −ELBO "
                     "column holds its reconstruction NLL at z = μ, and the rate–distortion plane draws it as a "
                     "vertical line at its distortion.")
    return GridView(grid_table(study, cells), pivot_tables(study, cells), RATE_DISTORTION_PNG, notes,
                    claims_table(cells))


VERDICT_CLASSES = {SUPPORTED: "yes", NOT_SUPPORTED: "no"}


def claims_table(cells: Sequence[GridCell]) -> TableView | None:
    """One row per claim and pair of cells, grouped by claim: the claim's words only on its first row."""
    rows = claim_rows(cells)
    if not rows:
        return None
    order = list(dict.fromkeys(row.topic for row in rows))
    rows = sorted(rows, key=lambda row: order.index(row.topic))
    where = any(row.where for row in rows)
    headings = ["claim", "as tested", "measure", *(["where"] if where else []), "AE", "VAE", "verdict"]
    body, previous = [], None
    for row in rows:
        first = row.topic != previous
        previous = row.topic
        body.append([Cell(row.topic if first else ""), Cell(row.claim if first else "", "claim"),
                     Cell(row.measure if first else "", "measure"), *([Cell(row.where)] if where else []),
                     Cell(row.ae, "num"), Cell(row.vae, "num"),
                     Cell(row.verdict, VERDICT_CLASSES.get(row.verdict, "muted"))])
    return TableView("claims-table", headings, body)


def run_anchors(study: Study) -> list[str]:
    return [f"run-{i + 1}" if study.is_grid else f"latent-{run.latent_dim}" for i, run in enumerate(study.runs)]


def animated_runs(study: Study, cells: Sequence[GridCell]) -> set[str]:
    """The runs whose sections show animations: every run, or in a grid the first seed of each cell."""
    if not study.is_grid:
        return {run.name for run in study.runs}
    return {cell.runs[0].name for cell in cells}


def evaluation_schedule(runs: Sequence[ReportedRun]) -> str:
    """When the runs were evaluated, as their histories say (not as the default settings would)."""
    counts = sorted({sum(float(r["epoch"]) < 1 for r in run.history) for run in runs})
    if counts == [0]:
        return "once per epoch"
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
    inside = " or ".join(words.get(n, str(n)) for n in counts)
    return f"{inside} inside the first epoch, then one per epoch"


def render_html(study: Study, rows: Sequence[dict[str, Any]], reading: Sequence[tuple[str, str]],
                cells: Sequence[GridCell] = ()) -> str:
    """The page; ``cells``: a grid study's runs pooled by cell (``cells.cells_of``)."""
    runs = study.runs
    colours = run_colours(runs)
    settings, differing = shared_settings(runs)
    measures = measure_columns(rows)
    anchors, animated, grid = run_anchors(study), animated_runs(study, cells), grid_view(study, cells)
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)
    return environment.get_template("report.html.j2").render(
        css=Markup((TEMPLATES / "report.css").read_text()),  # vaelab's own stylesheet, inlined as it is
        title=page_title(study),
        study_name=study.path.name,
        built=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        version=__version__,
        nav=[("setup", "What was run"), *([("grid", "Grid")] if grid else []),
             *([("claims", "Claims")] if grid and grid.claims else []), ("final", "Final metrics"),
             ("reading", "Reading"), ("comparison", "Comparison"),
             *(((anchor, run.label[0].upper() + run.label[1:]) for anchor, run in zip(anchors, runs, strict=True))
               if not study.is_grid else [("runs-detail", "Runs")])],
        grid=grid,
        facts=setup_facts(runs),
        settings=settings,
        runs_table=runs_table(runs, differing),
        final_table=metrics_table(runs, rows, TABLE_COLUMNS, colours, "final-table", progress=True),
        measures_table=(metrics_table(runs, rows, measures, colours, "measures-table", progress=False)
                        if measures else None),
        final_notes=column_notes(TABLE_COLUMNS, rows),
        measures_notes=column_notes(measures, rows),
        absent=absent_text(runs),
        final_csv=FINAL_CSV,
        final_md=FINAL_MD,
        reading=reading,
        comparison_png=COMPARISON_PNG,
        probe_word=probe_word(runs[0].dataset) if runs else "class",
        labelled=any("probe_accuracy" in run.final for run in runs),
        schedule=evaluation_schedule(runs),
        sections=[run_section(study.path, run, colours[run.name], anchor, run.name in animated)
                  for anchor, run in zip(anchors, runs, strict=True)],
    )
