"""The ``vaelab`` command line: ``train`` one latent size, ``study`` several side by side.

The CLI only turns arguments into a RunConfig and RunOptions, hands them to the pipeline
(``vaelab.pipeline``) and prints what comes back; user mistakes surface as one clear paragraph and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import click

from . import __version__, grid, pipeline, rundir
from .atomic import check_writable
from .config import RunConfig
from .errors import Interrupted, ReportError, VaelabError
from .metrics import summary_text
from .options import build_config, given, run_options, study_options, training_options, warn_ignored_on_resume
from .pipeline import DEFAULT_LATENT_DIMS, DEFAULT_STUDY_DIR
from .presets import STUDY_DESIGNS
from .report import build_report, redraw_stale_figures


class VaelabGroup(click.Group):
    """Prints VaelabErrors as a message and exits with their code; Ctrl-C exits 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VaelabError as exc:
            click.echo(paragraph(f"vaelab: {exc}"), err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("vaelab: interrupted.", err=True)
            ctx.exit(130)
        except OSError as exc:  # the last net: a file that could not be read or written is named, not traced
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(paragraph(f"vaelab: {where}{exc.strerror or exc}. Check the path, its permissions and "
                                 "free space, then run the command again."), err=True)
            ctx.exit(1)


class OutputDir(click.Path):
    """A directory to write into; an empty name is refused (click would read it as the current directory)."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("the directory name is empty; give the directory to write to, or leave the option out for "
                      "the default.", param, ctx)
        return super().convert(value, param, ctx)


def summary_line(name: int | str, history: list[dict[str, Any]]) -> str:
    label = f"latent {name:>3}" if isinstance(name, int) else name
    return f"{label}: test {summary_text(history[-1]['test'])}"


@click.group(cls=VaelabGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=lambda ctx, _, value:
              print_version(ctx) if value and not ctx.resilient_parsing else None,
              help="Show the versions of vaelab, torch and Python and the device training would use, and exit.")
def cli() -> None:
    """Train variational autoencoders on images (MNIST, Fashion-MNIST, CIFAR-10, your own folders) and compare
    what each setting does.

    \b
    vaelab study            train latent sizes 2, 4 and 16 side by side (the main job)
    vaelab train -z 8       train one latent size
    vaelab serve runs/study explore the trained models in the browser
    Run 'vaelab COMMAND --help' for a command's options.
    """


@cli.command()
@click.option("-z", "--latent-dim", type=click.IntRange(min=1), default=2, show_default=True, help="Latent size.")
@click.option("--run-dir", type=OutputDir(), default=None,
              help="Run directory (default: STUDY_DIR/latent_<z>).")
@click.option("--study-dir", type=OutputDir(), default=DEFAULT_STUDY_DIR,
              show_default=True, help="Study this run belongs to; the run goes to STUDY_DIR/latent_<z>.")
@training_options
@click.pass_context
def train(ctx: click.Context, latent_dim: int, run_dir: Path | None, study_dir: Path, **opts: Any) -> None:
    """Train one VAE and write its config, checkpoint and metrics to its run directory.

    Launched by torchrun (torchrun --nproc_per_node=N -m vaelab train ...), it trains data-parallel:
    --batch-size is then the global batch, shared out among the N processes.
    """
    from . import distributed

    if opts["preset"] in STUDY_DESIGNS:
        raise click.UsageError(f"--preset {opts['preset']} is a whole study: run it with 'vaelab study --preset "
                               f"{opts['preset']}'.")
    config = build_config(ctx, latent_dim if given(ctx, "latent_dim") or not opts["config_file"] else None, opts)
    run_dir = run_dir or rundir.run_dir_of(study_dir, config.model.latent_dim)
    if opts["resume"] and (run_dir / rundir.CONFIG).exists():
        warn_ignored_on_resume(ctx, config, RunConfig.load(run_dir / rundir.CONFIG),
                               also=("model.latent_dim",) if given(ctx, "latent_dim") else ())
    with distributed.data_parallel(config.train.device) as ddp:
        if ddp:
            click.echo(distributed.describe(ddp, run_dir), err=True)
        result = pipeline.train(config, run_dir, run_options(ctx, opts), ddp=ddp, notify=click.echo)
    if ddp is None or ddp.is_main:
        click.echo(summary_line(result.config.model.latent_dim, result.history))
        click.echo(f"run saved in {run_dir}")


@cli.command()
@click.option("-z", "--latent-dims", type=str, default=",".join(map(str, DEFAULT_LATENT_DIMS)), show_default=True,
              help="Comma-separated latent sizes to compare (the latent-size axis).")
@study_options
@click.option("--study-dir", type=OutputDir(), default=DEFAULT_STUDY_DIR,
              show_default=True, help="Where the study's runs and report go.")
@training_options
@click.pass_context
def study(ctx: click.Context, latent_dims: str, vary: tuple[str, ...], seeds: int | None, seed_list: str | None,
          jobs: str, threads: int | None, executor: str, ray_address: str | None, run_index: int | None,
          study_dir: Path, **opts: Any) -> None:
    """Train one VAE per latent size (and per value of every --vary, times --seeds) and compare them.

    With --resume, finished runs are skipped, an interrupted one continues, and values added to an axis
    train only their new runs.
    """
    from .distributed import launched_by_torchrun

    if launched_by_torchrun():
        raise click.UsageError("vaelab study trains its runs in processes of its own and does not run under "
                               "torchrun; launch 'torchrun ... -m vaelab train -z Z --study-dir DIR' once per "
                               "latent size instead.")
    design = STUDY_DESIGNS.get(opts["preset"], {})
    dims = parse_latent_dims(latent_dims) if given(ctx, "latent_dims") or not design else design["latent_dims"]
    axes = [grid.parse_axis(text) for text in vary] or [grid.axis_of(k, v) for k, v in design.get("axes", {}).items()]
    seeds = seeds if seeds is not None or seed_list is not None else design.get("seeds")
    jobs = jobs if given(ctx, "jobs") else design.get("jobs", "auto")
    if given(ctx, "latent_dims") and any(axis.key == grid.LATENT_KEY for axis in axes):
        raise click.UsageError("give the latent sizes once: either -z or --vary z=..., not both.")
    replicates = parse_seed_list(seed_list, seeds)
    config = build_config(ctx, dims[0], opts, varied=tuple(axis.key for axis in axes))
    given_dims = dims if given(ctx, "latent_dims") or not opts["resume"] else None
    options = run_options(ctx, opts)
    if opts["resume"]:
        recorded = rundir.read_study_file(study_dir)
        saved = pipeline.resumed_base(study_dir, recorded, (recorded or {}).get("latent_dims") or dims, config,
                                      options.resume_device)
        if saved is not config:
            warn_ignored_on_resume(ctx, config, saved)
    try:
        result = pipeline.study(given_dims, study_dir, config, options, axes=axes, seeds=replicates,
                                jobs=parse_jobs(jobs), executor=executor, ray_address=ray_address,
                                threads=threads, run_index=run_index, notify=click.echo)
    except (Interrupted, KeyboardInterrupt):  # a Ctrl-C in training, or outside it (figures, measures)
        report_so_far(study_dir)
        raise
    summaries = [summary_line(name, run.history) for name, run in result.runs.items()]
    click.echo("\n".join(["", "final test metrics:", *summaries]))
    click.echo(f"study saved in {study_dir}")
    click.echo(f"report: {result.report.html}")


def parse_seed_list(text: str | None, count: int | None) -> int | list[int] | None:
    if text is None:
        return count
    if count is not None:
        raise click.UsageError("give either --seeds N or --seed-list, not both.")
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise click.BadParameter(f"expected comma-separated integer seeds, got {text!r}", param_hint="--seed-list")
    return seeds


def parse_jobs(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise click.BadParameter(f"expected a number of runs at once (at least 1) or auto, got {text!r}",
                                 param_hint="--jobs")
    return int(text)


def report_so_far(study_dir: Path) -> None:
    """The report of an interrupted study: what its runs have recorded so far. Figures not drawn yet are
    left to 'vaelab report', which draws them (a user who pressed Ctrl-C wants the prompt back soon)."""
    try:
        built = build_report(study_dir)
    except ReportError:
        click.echo("vaelab: no evaluation point was recorded yet, so there is no report to write.", err=True)
        return
    click.echo(f"vaelab: report of what the study has so far: {built.html} ('vaelab report {study_dir}' also "
               "draws the interrupted run's figures)", err=True)


@cli.command()
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--figures/--no-figures", default=True, show_default=True,
              help="First redraw the figures of runs whose recorded frames are newer than them (runs interrupted "
                   "or still training).")
def report(study_dir: Path, figures: bool) -> None:
    """Rebuild STUDY_DIR's comparison plot, final tables and report.html from its runs, without retraining.

    Works on runs that are still training or were interrupted: each shows the latest evaluation point its
    checkpoint holds (a run still in its first epoch is named, not shown).
    """
    check_writable(study_dir, "the report")  # before any figure is redrawn
    if figures:
        for run_dir, outcome in redraw_stale_figures(study_dir).items():
            click.echo(f"figures of {run_dir}: {outcome}")
    built = build_report(study_dir)
    click.echo("\n".join(f"{topic}: {text}" for topic, text in built.reading))
    click.echo(f"\nwrote {built.comparison}, {built.csv.name}, {built.markdown.name}")
    click.echo(f"report: {built.html}")


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default lets only this machine connect.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where the test images are (default: where the runs were trained from, else $VAELAB_DATA, "
                   "else the per-user cache).")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME[:PORT]",
              help="Also answer requests addressed to this name (repeatable), e.g. behind a proxy. By default only "
                   "127.0.0.1, localhost, [::1] and the --host address, with the port, are answered: a page on "
                   "another site that re-points its name at this machine is refused.")
def serve(directory: Path, host: str, port: int, data_dir: str | None, allow_hosts: tuple[str, ...]) -> None:
    """Explore a trained run or a study in the browser.

    DIRECTORY is a run directory (config.json + checkpoint.pt) or a study directory (latent_<z>/ runs).
    The page decodes any latent point live, samples the prior, interpolates between test digits and
    encodes digits you draw.
    """
    from .serve import serve_forever

    serve_forever(directory, host, port, data_dir, echo=click.echo, allow_hosts=allow_hosts)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pretrained", "pretrained_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the model here as model.safetensors + config.json, for VAE.from_pretrained (no pickle).")
@click.option("--onnx", "onnx_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write encoder.onnx (images -> mu, logvar) and decoder.onnx (z -> mean image) here; needs "
                   "pip install 'vaelab[export]'.")
def export(run_dir: Path, pretrained_dir: Path | None, onnx_dir: Path | None) -> None:
    """Write RUN_DIR's trained model as files other programs can load: safetensors + JSON, or ONNX."""
    from .checkpoint import load_model
    from .export import ONNX_FILES, PRETRAINED_FILES, check_export_target

    if pretrained_dir is None and onnx_dir is None:
        raise click.UsageError("say what to write: --pretrained DIR, --onnx DIR, or both.")
    for directory, files in ((pretrained_dir, PRETRAINED_FILES), (onnx_dir, ONNX_FILES)):
        if directory is not None:
            check_export_target(directory, files)  # before anything is written
    model, _ = load_model(run_dir)
    if pretrained_dir is not None:
        model.save_pretrained(pretrained_dir)
        click.echo(f"wrote {pretrained_dir} (load with vaelab.VAE.from_pretrained)")
    if onnx_dir is not None:
        from .export import export_onnx

        encoder, decoder = export_onnx(model, onnx_dir)
        click.echo(f"wrote {encoder} and {decoder}")


def print_version(ctx: click.Context) -> None:
    import platform

    import torch

    from .training import select_device

    click.echo(f"vaelab {__version__}\ntorch {torch.__version__}\nPython {platform.python_version()}\n"
               f"device {select_device('auto')} (what --device auto picks here)")
    ctx.exit()


def parse_latent_dims(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise click.BadParameter(f"expected comma-separated latent sizes >= 1, got {text!r}",
                                 param_hint="--latent-dims")
    return list(dict.fromkeys(dims))


def paragraph(text: str) -> str:
    """A message wrapped at 100 columns, words and paths kept whole."""
    return textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as vaelab's own message, without the source line Python prints by default."""
    click.echo(paragraph(f"vaelab: warning: {message}"), err=True)


def main() -> None:
    warnings.showwarning = show_warning
    cli(prog_name="vaelab")


if __name__ == "__main__":
    sys.exit(main())
