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

from .. import __version__
from ..rundir import COMPARISON_PNG, FINAL_CSV, FINAL_MD
from .figures import (
    ANIMATIONS,
    ARCHITECTURE_FIGURE,
    GENERATION_FIGURES,
    MANIFOLD_FIGURE,
    TRAINING_FIGURE,
    run_colours,
)
from .reading import and_list, duration, epoch_text
from .study import ReportedRun, Study
from .tables import TABLE_COLUMNS, Column, best_values, epochs_cell, format_cell, measure_columns

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
    latent_dim: int
    colour: str
    dir_name: str
    chips: list[Cell]
    figure_rows: list[list[FigureView]]
    missing: list[str] = field(default_factory=list)


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
        return FigureView(src, width, height, f"latent size {run.latent_dim}: {caption}", caption,
                          f"{(width / height) ** 0.6:.3f}")
    return None


def run_chips(run: ReportedRun) -> list[Cell]:
    epochs = (f"epoch {epoch_text(run.epochs_done)} of {run.epochs_planned}" if not run.finished
              else f"{run.epochs_planned} epoch{'s' if run.epochs_planned != 1 else ''}")
    chips = [Cell(epochs, None if run.finished else "warn"), Cell(duration(run.wall_time_s))]
    if run.environment:
        chips.append(Cell(device_text(run)))
    return [*chips, Cell(f"test −ELBO {run.test('loss'):.2f}"), Cell(f"MSE {run.test('mse'):.4f}")]


def run_section(study_dir: Path, run: ReportedRun, colour: str) -> RunSectionView:
    section = RunSectionView(run.latent_dim, colour, run.path.name, run_chips(run), [])
    # One row each; the manifold (latent size 2 only) needs the full width to show its digits.
    figure_specs = [ANIMATIONS, (TRAINING_FIGURE,), GENERATION_FIGURES,
                    *([(MANIFOLD_FIGURE,)] if run.latent_dim == 2 else []), (ARCHITECTURE_FIGURE,)]
    for specs in figure_specs:
        row = []
        for names, caption in specs:
            view = figure_view(study_dir, run, names, caption)
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


def same_or_each(runs: Sequence[ReportedRun], value_of: Callable[[ReportedRun], str]) -> str:
    values = [value_of(run) for run in runs]
    if len(set(values)) == 1:
        return values[0]
    return "; ".join(f"{v} (latent {run.latent_dim})" for run, v in zip(runs, values, strict=True))


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
        ("latent sizes", ", ".join(str(r.latent_dim) for r in runs)),
        ("images scored per evaluation", same_or_each(
            runs, lambda r: f"{r.eval_sizes.get('train', '?')} train, {r.eval_sizes.get('test', '?')} test")),
        ("total wall time", duration(sum(r.wall_time_s for r in runs))),
    ]


def runs_table(runs: Sequence[ReportedRun], differing: Sequence[tuple[str, str]]) -> TableView:
    headings = ["latent size", "status", "evaluation points", "wall time", "in training steps",
                *(key.replace("_", " ") for _, key in differing)]
    rows = []
    for run in runs:
        status = ("finished" if run.finished
                  else f"stopped at epoch {epoch_text(run.epochs_done)} of {run.epochs_planned}")
        train_s = run.latest.get("train_s")
        shown = shown_settings(run.config)
        texts = [str(run.latent_dim), status, str(len(run.history)), duration(run.wall_time_s),
                 duration(float(train_s)) if isinstance(train_s, (int, float)) else "not recorded",
                 *(shown[group].get(key, "") for group, key in differing)]
        rows.append([Cell(text) for text in texts])
    return TableView("runs", headings, rows)


# -- the final tables --------------------------------------------------------------------------------


def metrics_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], colours: dict[int, str],
                  table_id: str, progress: bool) -> TableView:
    """One row per run; ``progress`` adds the epochs reached and the wall time."""
    best = best_values(rows, columns)
    headings = ["latent size", *(["epochs"] if progress else []), *(c.header for c in columns),
                *(["time"] if progress else [])]
    body = []
    for row in rows:
        cells = [Cell(str(row["latent_dim"]), swatch=colours[row["latent_dim"]])]
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


def page_title(runs: Sequence[ReportedRun]) -> str:
    dataset = dataset_title(runs[0].config.get("data", {}))
    return f"vaelab study · {dataset} · latent sizes {and_list([str(r.latent_dim) for r in runs])}"


def render_html(study: Study, rows: Sequence[dict[str, Any]], reading: Sequence[tuple[str, str]]) -> str:
    runs = study.runs
    colours = run_colours(runs)
    settings, differing = shared_settings(runs)
    measures = measure_columns(rows)
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)
    return environment.get_template("report.html.j2").render(
        css=Markup((TEMPLATES / "report.css").read_text()),  # vaelab's own stylesheet, inlined as it is
        title=page_title(runs),
        study_name=study.path.name,
        built=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        version=__version__,
        nav=[("setup", "What was run"), ("final", "Final metrics"), ("reading", "Reading"),
             ("comparison", "Comparison"),
             *((f"latent-{r.latent_dim}", f"Latent size {r.latent_dim}") for r in runs)],
        facts=setup_facts(runs),
        settings=settings,
        runs_table=runs_table(runs, differing),
        final_table=metrics_table(rows, TABLE_COLUMNS, colours, "final-table", progress=True),
        measures_table=metrics_table(rows, measures, colours, "measures-table", progress=False) if measures else None,
        absent=absent_text(runs),
        final_csv=FINAL_CSV,
        final_md=FINAL_MD,
        reading=reading,
        comparison_png=COMPARISON_PNG,
        sections=[run_section(study.path, run, colours[run.latent_dim]) for run in runs],
    )
