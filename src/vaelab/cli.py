"""The ``vaelab`` command line: ``train`` one latent size, ``study`` several side by side.

The CLI only turns arguments into a RunConfig and RunOptions, hands them to the pipeline
(``vaelab.pipeline``) and prints what comes back; user mistakes surface as one clear paragraph and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import functools
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__, grid, pipeline, rundir
from .config import (
    ALIASES,
    ARCHITECTURES,
    DEFAULT_WIDTHS,
    LIKELIHOODS,
    LR_SCHEDULES,
    OBJECTIVES,
    PRECISIONS,
    PROJECTIONS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    read_config_file,
    with_settings,
)
from .data import DATASETS
from .errors import Interrupted, ReportError, VaelabError
from .measures import DEFAULT_IWAE_K
from .metrics import summary_text
from .parallel import EXECUTORS
from .pipeline import DEFAULT_LATENT_DIMS, DEFAULT_STUDY_DIR, RunOptions
from .presets import PRESETS, STUDY_DESIGNS
from .report import build_report, redraw_stale_figures

# The options that set a RunConfig field, by its dotted name. The rest steer the command, not the model.
OPTION_FIELDS = {
    "dataset": "data.dataset", "data_dir": "data.data_dir", "train_eval_size": "data.train_eval_size",
    "binarize": "data.binarize", "channels": "data.channels", "image_size": "data.image_size",
    "arch": "model.arch", "hidden": "model.hidden", "widths": "model.channels", "likelihood": "model.likelihood",
    "gaussian_std": "model.gaussian_std", "objective": "model.objective",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr", "beta": "train.beta",
    "warmup_epochs": "train.warmup_epochs", "seed": "train.seed", "device": "train.device", "betas": "train.betas",
    "lr_schedule": "train.lr_schedule", "precision": "train.precision", "adversarial": "train.adversarial",
    "lpips_weights": "train.lpips_weights",
}
OPTION_OF_FIELD = {key: name for name, key in OPTION_FIELDS.items()}


class VaelabGroup(click.Group):
    """Prints VaelabErrors as a message and exits with their code; Ctrl-C exits 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VaelabError as exc:
            message = textwrap.fill(f"vaelab: {exc}", width=100, break_on_hyphens=False, break_long_words=False)
            click.echo(message, err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("vaelab: interrupted.", err=True)
            ctx.exit(130)


CONFIG_OPTION = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Start from the settings in this TOML or JSON file (laid out like a run's config.json, which is itself "
         "valid: it reproduces that run); options given here override it.")


def training_options(func: Callable) -> Callable:
    """Options shared by ``train`` and ``study``; defaults come from the config dataclasses."""
    options = [CONFIG_OPTION, *model_and_training_options(), *data_options(), *running_options()]
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


def model_and_training_options() -> list[Callable]:
    m, t = ModelConfig(), TrainConfig()
    return [
        click.option("--arch", type=click.Choice(ARCHITECTURES), default=m.arch, show_default=True,
                     help="Encoder/decoder architecture; they build from the data's shape. conv is the better "
                          "choice for images larger than 28 px or in colour (its depth follows the image size)."),
        click.option("--hidden", type=str, default=",".join(map(str, m.hidden)), show_default=True,
                     help="mlp: comma-separated hidden layer widths."),
        click.option("--widths", type=str, default=None,
                     help="conv, conv-spatial: comma-separated widths of the stride-2 stages [default: 32,64]; "
                          "resnet-spatial: of the stem and the two down blocks [default: 32,64,128]."),
        click.option("--likelihood", type=click.Choice(LIKELIHOODS), default=m.likelihood, show_default=True,
                     help="Decoder likelihood: bernoulli (BCE on logits), continuous-bernoulli (BCE plus its "
                          "normaliser), gaussian (squared error, fixed std) or gaussian-learned (one learned std)."),
        click.option("--objective", type=click.Choice(OBJECTIVES), default=m.objective, show_default=True,
                     help="vae: the ELBO (z sampled from q(z|x), KL term weighted by --beta). ae: a plain autoencoder "
                          "on the same networks (z = the encoder's mean, reconstruction term only), the baseline "
                          "of the AE-vs-VAE comparison."),
        click.option("--gaussian-std", type=click.FloatRange(min=0, min_open=True), default=m.gaussian_std,
                     show_default=True, help="Decoder std of the gaussian likelihood (gaussian-learned: initial)."),
        click.option("--epochs", type=click.IntRange(min=1), default=t.epochs, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=t.batch_size, show_default=True),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=t.lr, show_default=True,
                     help="Adam learning rate."),
        click.option("--betas", type=(click.FloatRange(0, 1, max_open=True), click.FloatRange(0, 1, max_open=True)),
                     default=t.betas, show_default=True, help="Adam's two moment decay rates."),
        click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=t.lr_schedule, show_default=True,
                     help="constant; onecycle (up from lr/25 over the first 30% of the steps, then down); "
                          "cosine (from lr down to 0)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=t.precision, show_default=True,
                     help="The training step's arithmetic: auto uses bf16 autocast where the hardware does bf16 fast "
                          "(CPUs with AMX or AVX-512-BF16, CUDA GPUs from Ampere on) for resnet-spatial, else fp32 "
                          "(the mlp and conv models ended outside 0.1 dB / 0.3 nats of fp32 or would change the "
                          "default study's numbers; ask for bf16 explicitly). Evaluation is always fp32."),
        click.option("--adversarial", is_flag=True,
                     help="Add the published PatchGAN discriminator (least squares, weight 0.5, from step 1000, its "
                          "own Adam), trained from scratch."),
        click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None,
                     help="Add the LPIPS perceptual term (weight 1, as published) using this weights file: "
                          "torchvision's VGG16 'features.*' and LPIPS's 'lin0'..'lin4' tensors in one state dict. "
                          "Nothing is downloaded."),
        click.option("--beta", type=click.FloatRange(min=0), default=t.beta, show_default=True,
                     help="Weight of the KL term (1 = the true ELBO)."),
        click.option("--warmup-epochs", type=click.FloatRange(min=0), default=t.warmup_epochs, show_default=True,
                     help="Ramp the KL weight linearly from 0 to beta over this many epochs."),
        click.option("--seed", type=int, default=t.seed, show_default=True),
        click.option("--device", type=str, default=t.device, show_default=True,
                     help="auto picks CUDA, then Apple MPS, then CPU; or name one (cpu, cuda, cuda:1, mps)."),
    ]


def data_options() -> list[Callable]:
    d = DataConfig()
    return [
        click.option("--dataset", type=click.Choice(DATASETS), default=d.dataset, show_default=True,
                     help="idx: any four 28x28 IDX files with the standard names. folder: your own images in "
                          "--data-dir (DIR/train/<class>/ + DIR/test/<class>/, DIR/<class>/, or all in DIR; any "
                          "format Pillow reads). cifar10: the CIFAR-10 python archive (downloaded when missing)."),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Where the data is (default: $VAELAB_DATA for MNIST, else a per-user cache dir; "
                          "missing MNIST / CIFAR-10 files are downloaded there). Required for folder."),
        click.option("--channels", type=click.Choice(("1", "3")), default=None,
                     help="folder: convert every image to grey (1) or RGB (3) [default: what most files are]."),
        click.option("--image-size", type=click.IntRange(min=11), default=None,
                     help="folder: resize each image's shorter side to N and centre-crop to NxN [default: the "
                          "images' own size when they are all square]."),
        click.option("--binarize", is_flag=True,
                     help="Dynamically binarise training images (fixed binarisation for evaluation), as in the "
                          "binary-MNIST literature."),
        click.option("--train-eval-size", type=click.IntRange(min=1), default=d.train_eval_size, show_default=True,
                     help="Training images scored at each evaluation (a fixed subset)."),
    ]


def running_options() -> list[Callable]:
    """How to run: the RunOptions of the pipeline."""
    return [
        click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint."),
        click.option("--progress/--no-progress", default=True, help="Show progress bars."),
        click.option("--detect-anomaly", is_flag=True,
                     help="Turn on autograd anomaly detection to find the operation that makes a NaN (slow)."),
        click.option("--artifacts/--no-artifacts", default=True, show_default=True,
                     help="Record latent frames during training and draw the run's figures and GIFs at the end."),
        click.option("--tensorboard/--no-tensorboard", default=True, show_default=True,
                     help="Write TensorBoard event files to RUN_DIR/tensorboard: every metric per evaluation point, "
                          "reconstructions, the latent means for the Embedding Projector, the config as hparams. "
                          "View a study with: tensorboard --logdir STUDY_DIR"),
        click.option("--mlflow", "mlflow_uri", is_flag=False, flag_value="", default=None, metavar="[URI]",
                     help="Also log to MLflow: to the tracking server at URI, or without one to "
                          "STUDY_DIR/mlflow.db (needs pip install 'vaelab[mlflow]')."),
        click.option("--projection", type=click.Choice(PROJECTIONS), default=None,
                     help="2-D view of latent spaces larger than 2 in the figures [default: tsne, or what the run "
                          "last used]."),
        click.option("--preset", type=click.Choice(tuple(PRESETS)), default=None,
                     help="original: the published project's training (its ResNet/attention autoencoder "
                          "'resnet-spatial' around a latent of c channels at 7x7, c = the latent size; squared error "
                          "on the [-1, 1] scale, no KL term, Adam 1e-4 with betas 0.5/0.999, batch 64, seed 1111, "
                          "20 epochs). original-vae: the same with its configured KL weight applied. "
                          "original-small: vaelab's earlier, much smaller conv-spatial stand-in. original-wide: "
                          "vaelab's best recipe on the published metric (conv-spatial at widths 128,256, no KL term, "
                          "one-cycle lr peaking at 3e-3, bf16, 20 epochs; docs/original.md). claims (vaelab study "
                          "only): a plain autoencoder against a VAE at latent sizes 2 and 16, 3 seeds, 3 epochs, "
                          "runs side by side; its report measures the published AE-vs-VAE claims "
                          "(docs/studies.md). Options given explicitly still win."),
        click.option("--measures/--no-measures", default=True, show_default=True,
                     help="After training, add the IWAE log-likelihood, active units, latent probe and "
                          "classifier-based generation score to metrics.json (the first run per dataset "
                          "trains a small digit classifier, cached per user)."),
        click.option("--iwae-k", type=click.IntRange(min=1), default=DEFAULT_IWAE_K, show_default=True,
                     help="Importance samples per test image for the IWAE log-likelihood."),
        click.option("--iwae-every-epoch", is_flag=True,
                     help="Also estimate the test IWAE log-likelihood after every epoch (metrics.json history)."),
    ]


def parse_widths(text: str, option: str = "--hidden") -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise click.BadParameter(f"expected positive comma-separated integers, got {text!r}", param_hint=option)
    return widths


def build_config(ctx: click.Context, latent_dim: int | None, opts: dict[str, Any]) -> RunConfig:
    """The run's config: the --config file if given, else the defaults, overridden by the options set on
    the command line or by --preset. ``latent_dim`` None keeps the file's (or the default) latent size.
    The config validates itself (ranges, choices, the architecture's rules): a ConfigError exits 2."""
    base = RunConfig()
    chosen = set(OPTION_FIELDS)
    if opts["config_file"] is not None:
        base = read_config_file(opts["config_file"])
        preset = {OPTION_OF_FIELD[key] for key in PRESETS.get(opts["preset"], {})}
        chosen = {name for name in OPTION_FIELDS if _given(ctx, name) or name in preset}
    settings = {OPTION_FIELDS[name]: option_to_field(name, opts[name], opts) for name in chosen}
    if latent_dim is not None:
        settings["model.latent_dim"] = latent_dim
    return with_settings(base, settings)


def option_to_field(name: str, value: Any, opts: dict[str, Any]) -> Any:
    """An option's value as its config field holds it."""
    if name == "hidden":
        return parse_widths(value)
    if name == "widths":  # none given: the architecture's own
        default = DEFAULT_WIDTHS.get(opts.get("arch"), ModelConfig().channels)
        return parse_widths(value, "--widths") if value else default
    if name == "betas":
        return tuple(value)
    if name == "channels":
        return int(value) if value else None
    if name == "lpips_weights" and value:
        return str(Path(value).expanduser().absolute())  # a resumed run finds it from anywhere
    if name == "data_dir" and value and opts.get("dataset") in ("folder", "cifar10"):
        return str(Path(value).expanduser().absolute())  # so `vaelab serve` finds it from anywhere
    return value


def field_to_option(name: str, value: Any) -> Any:
    """A config field's value as its option takes it (the inverse of option_to_field)."""
    if name in ("hidden", "widths"):
        return ",".join(map(str, value))
    return str(value) if name == "channels" else value


def apply_preset(ctx: click.Context, opts: dict[str, Any]) -> None:
    """The preset's values in place of the options not given on the command line."""
    for key, value in PRESETS.get(opts["preset"], {}).items():
        name = OPTION_OF_FIELD[key]
        if not _given(ctx, name):
            opts[name] = field_to_option(name, value)


def run_options(ctx: click.Context, opts: dict[str, Any]) -> RunOptions:
    """How to run, from the options; a resumed run keeps its epochs unless --epochs is given."""
    return RunOptions(resume=opts["resume"], resume_epochs=opts["epochs"] if _given(ctx, "epochs") else None,
                      progress=opts["progress"], detect_anomaly=opts["detect_anomaly"], artifacts=opts["artifacts"],
                      projection=opts["projection"], measures=opts["measures"], iwae_k=opts["iwae_k"],
                      iwae_every_epoch=opts["iwae_every_epoch"], tensorboard=opts["tensorboard"],
                      mlflow_uri=opts["mlflow_uri"])


def summary_line(name: int | str, history: list[dict[str, Any]]) -> str:
    label = f"latent {name:>3}" if isinstance(name, int) else name
    return f"{label}: test {summary_text(history[-1]['test'])}"


@click.group(cls=VaelabGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=lambda ctx, _, value:
              print_version(ctx) if value and not ctx.resilient_parsing else None,
              help="Show the versions of vaelab, torch and Python and the device training would use, and exit.")
def cli() -> None:
    """Train variational autoencoders on MNIST-style images and compare latent sizes.

    \b
    vaelab study            train latent sizes 2, 4 and 16 side by side (the main job)
    vaelab train -z 8       train one latent size
    vaelab serve runs/study explore the trained models in the browser
    Run 'vaelab COMMAND --help' for a command's options.
    """


@cli.command()
@click.option("-z", "--latent-dim", type=click.IntRange(min=1), default=2, show_default=True, help="Latent size.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: STUDY_DIR/latent_<z>).")
@click.option("--study-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STUDY_DIR,
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
    apply_preset(ctx, opts)
    config = build_config(ctx, latent_dim if _given(ctx, "latent_dim") or not opts["config_file"] else None, opts)
    run_dir = run_dir or rundir.run_dir_of(study_dir, config.model.latent_dim)
    with distributed.data_parallel(opts["device"]) as ddp:
        if ddp:
            click.echo(distributed.describe(ddp, run_dir), err=True)
        result = pipeline.train(config, run_dir, run_options(ctx, opts), ddp=ddp, notify=click.echo)
    if ddp is None or ddp.is_main:
        click.echo(summary_line(result.config.model.latent_dim, result.history))
        click.echo(f"run saved in {run_dir}")


@cli.command()
@click.option("-z", "--latent-dims", type=str, default=",".join(map(str, DEFAULT_LATENT_DIMS)), show_default=True,
              help="Comma-separated latent sizes to compare (the latent-size axis).")
@click.option("--vary", "vary", multiple=True, metavar="KEY=V1,V2,...",
              help="Also vary this setting (repeatable; several make a grid, their product). KEY is a short name "
                   f"({', '.join(ALIASES)}) or any field's dotted name (train.warmup_epochs, model.gaussian_std, "
                   "...); a list value goes in brackets: hidden=[512,256],[256]. Examples: --vary beta=0.5,1,4 "
                   "--vary objective=ae,vae.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Repeat every run with N seeds (from --seed on): the report shows means with their spread "
                   "and says which differences exceed it.")
@click.option("--seed-list", type=str, default=None, help="Repeat every run with these seeds, e.g. 0,1,2.")
@click.option("--jobs", type=str, default=None,
              help="Train this many runs at once, as separate processes sharing the cores (auto: one per core, one "
                   "thread each) [default: auto for a grid (--vary, --seeds), measured 1.25x faster than one run at a "
                   "time on 2 cores; 1 for latent sizes alone, so that their numbers stay those of earlier studies]. "
                   "At a given --threads, a run's numbers do not depend on it.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads per run [default: every core for --jobs 1, an equal share of the cores otherwise]. A "
                   "run's numbers depend on its thread count (the order of floating-point sums), not on --jobs.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="process", show_default=True,
              help="process: --jobs local processes. ray: each run as a Ray task (a local Ray instance, or the "
                   "cluster at --ray-address; the study directory must be shared). Needs pip install 'vaelab[ray]'.")
@click.option("--ray-address", type=str, default=None, help="The Ray cluster to run on (default: start a local one).")
@click.option("--run-index", type=click.IntRange(min=0), default=None,
              help="Train only this run of the grid (0-based, in study.json's order), e.g. $SLURM_ARRAY_TASK_ID in "
                   "a job array; use with --resume (docs/scaling.md).")
@click.option("--study-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STUDY_DIR,
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
        raise click.UsageError("vaelab study trains its latent sizes one after another and does not run under "
                               "torchrun; launch 'torchrun ... -m vaelab train -z Z --study-dir DIR' once per "
                               "latent size instead.")
    design = STUDY_DESIGNS.get(opts["preset"], {})
    dims = parse_latent_dims(latent_dims) if _given(ctx, "latent_dims") or not design else design["latent_dims"]
    axes = [grid.parse_axis(text) for text in vary] or [grid.axis_of(k, v) for k, v in design.get("axes", {}).items()]
    seeds = seeds if seeds is not None or seed_list is not None else design.get("seeds")
    grid_study = bool(vary or seeds or seed_list) or (opts["resume"] and recorded_grid(study_dir))
    jobs = jobs if _given(ctx, "jobs") else design.get("jobs", "auto" if grid_study else "1")
    if _given(ctx, "latent_dims") and any(axis.key == grid.LATENT_KEY for axis in axes):
        raise click.UsageError("give the latent sizes once: either -z or --vary z=..., not both.")
    replicates = parse_seed_list(seed_list, seeds)
    apply_preset(ctx, opts)
    config = build_config(ctx, dims[0], opts)
    given_dims = dims if _given(ctx, "latent_dims") or not opts["resume"] else None
    try:
        result = pipeline.study(given_dims, study_dir, config, run_options(ctx, opts), axes=axes, seeds=replicates,
                                jobs=parse_jobs(jobs), executor=executor, ray_address=ray_address,
                                threads=threads, run_index=run_index, notify=click.echo)
    except (Interrupted, KeyboardInterrupt):  # a Ctrl-C in training, or outside it (figures, measures)
        report_so_far(study_dir)
        raise
    summaries = [summary_line(name, run.history) for name, run in result.runs.items()]
    click.echo("\n".join(["", "final test metrics:", *summaries]))
    click.echo(f"study saved in {study_dir}")
    click.echo(f"report: {result.report.html}")


def recorded_grid(study_dir: Path) -> bool:
    """Whether the study being resumed is a grid (so that it resumes with the thread count it started with)."""
    try:
        return "axes" in (rundir.read_study_file(study_dir) or {})
    except rundir.StudyFileError:
        return False  # the study itself says what is wrong with the file


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

    Works on runs that are still training or were interrupted: each shows its latest evaluation point.
    """
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


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def main() -> None:
    cli(prog_name="vaelab")


if __name__ == "__main__":
    sys.exit(main())
