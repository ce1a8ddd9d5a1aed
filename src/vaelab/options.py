"""The command line's options for what to train and how: one option per config field, made from the field's own
metadata (its help, choices and type; ``config.setting``), so that a new field needs no edit here or in the CLI;
the options that steer a run (``RunOptions``); and the ``RunConfig`` they add up to.

A setting's value reaches the config only through ``config.parse_setting`` and is checked by the config's own
rules (``check_setting``), so the command line, config files and the Python API refuse the same values with the
same words.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import architectures
from .config import (
    ALIASES,
    DERIVED_KEYS,
    PROJECTIONS,
    SECTIONS,
    ConfigError,
    RunConfig,
    check_setting,
    parse_setting,
    read_config_file,
    setting_keys,
    with_settings,
)
from .data import DATASETS
from .images import IMAGE_DATASETS
from .measures import DEFAULT_IWAE_K
from .parallel import EXECUTORS
from .pipeline import RunOptions
from .presets import PRESET_NOTES, PRESETS

# Each command takes the latent size its own way (-z); the rest are set from the data.
NOT_OPTIONS = ("model.latent_dim", *DERIVED_KEYS)
# What a resumed run takes from the command line: --epochs may extend it, --device moves it (a GPU node, a CPU one).
CHANGE_ON_RESUME = ("train.epochs", "train.device")
# Choices the config leaves to the data readers, which own the list.
READER_CHOICES = {"data.dataset": DATASETS}
# Paths recorded absolute, so that a resumed run or `vaelab serve` finds them from anywhere (MNIST's directory
# stays as given: it is looked up again by name).
ABSOLUTE_PATHS = ("train.lpips_weights", "data.data_dir")
LOCAL_DATASETS = ("folder", "cifar10")


def field_of(key: str) -> dataclasses.Field:
    section, name = key.split(".", 1)
    return next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)


def option_name(key: str) -> str:
    """``model.hidden`` -> ``--hidden``; a field may name its option (``model.channels`` is ``--widths``)."""
    return field_of(key).metadata.get("option") or "--" + key.split(".", 1)[1].replace("_", "-")


def param_name(key: str) -> str:
    return option_name(key)[2:].replace("-", "_")


OPTION_FIELDS = {param_name(key): key for key in setting_keys() if key not in NOT_OPTIONS}
OPTION_PARAMS = {key: name for name, key in OPTION_FIELDS.items()}


def setting_option(key: str) -> Callable:
    """The click option of config field ``key``, from its metadata; its value arrives parsed and checked."""
    spec, name = field_of(key), option_name(key)
    section, field_name = key.split(".", 1)
    annotation = typing.get_type_hints(SECTIONS[section])[field_name]
    default = spec.default
    if annotation is bool:
        return click.option(name, is_flag=True, default=False, help=spec.metadata.get("help"))
    choices = READER_CHOICES.get(key) or spec.metadata.get("rules", {}).get("choices")
    args = typing.get_args(annotation)
    pair = typing.get_origin(annotation) is tuple and args[-1] is not Ellipsis
    kind = click.Choice([str(c) for c in choices]) if choices else str
    shown = None if default is None else (",".join(map(str, default)) if isinstance(default, tuple) else str(default))
    if key == "model.channels":
        shown = None  # the architecture's own
    if pair:
        shown = tuple(map(str, default))
    return click.option(name, param_name(key), type=(kind,) * len(args) if pair else kind, default=shown,
                        show_default=shown is not None, metavar=_metavar(annotation, choices, pair),
                        callback=functools.partial(_to_field, key), help=spec.metadata.get("help"))


def _metavar(annotation: Any, choices: Any, pair: bool) -> str | None:
    if choices:
        return None
    text = str(annotation)
    if pair:
        return "X Y"
    if "tuple" in text:
        return "N,N,..."
    return "INTEGER" if "int" in text else "NUMBER" if "float" in text else "PATH" if "None" in text else "TEXT"


def _to_field(key: str, ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An option's text as the value its field holds, checked against the field's rules."""
    if value is None:
        return None
    text = " ".join(value) if isinstance(value, tuple) else value
    try:
        parsed = parse_setting(key, text)
        check_setting(key, parsed)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    return parsed


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
        click.option("--wandb", "wandb_project", is_flag=False, flag_value="", default=None, metavar="[PROJECT]",
                     help="Also log to Weights & Biases, in project PROJECT (default: the study directory's name), "
                          "offline: no account or network needed; the run is kept in RUN_DIR/wandb and 'wandb sync' "
                          "uploads it later (WANDB_MODE=online logs live). Needs pip install 'vaelab[wandb]'."),
        click.option("--projection", type=click.Choice(PROJECTIONS), default=None,
                     help="2-D view of latent spaces larger than 2 in the figures [default: tsne, or what the run "
                          "last used]."),
        click.option("--preset", type=click.Choice(tuple(PRESETS)), default=None,
                     help=". ".join(f"{name}: {note}" for name, note in PRESET_NOTES.items())
                     + ". Options given explicitly still win."),
        click.option("--measures/--no-measures", default=True, show_default=True,
                     help="After training, add the IWAE log-likelihood, active units, latent probe and "
                          "classifier-based generation score to metrics.json (the first run per labelled data set "
                          "trains a small classifier, cached per user)."),
        click.option("--iwae-k", type=click.IntRange(min=1), default=DEFAULT_IWAE_K, show_default=True,
                     help="Importance samples per test image for the IWAE log-likelihood."),
        click.option("--iwae-every-epoch", is_flag=True,
                     help="Also estimate the test IWAE log-likelihood after every epoch (metrics.json history)."),
    ]


CONFIG_OPTION = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Start from the settings in this TOML or JSON file (laid out like a run's config.json, which is itself "
         "valid: it reproduces that run); options given here override it.")


def training_options(func: Callable) -> Callable:
    """Options shared by ``train`` and ``study``: the config file, every config field, how to run."""
    options = [CONFIG_OPTION, *map(setting_option, OPTION_FIELDS.values()), *running_options()]
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


def study_options(func: Callable) -> Callable:
    """A study's grid and how its runs share the machine."""
    options = [
        click.option("--vary", "vary", multiple=True, metavar="KEY=V1,V2,...",
                     help="Also vary this setting (repeatable; several make a grid, their product). KEY is a short "
                          f"name ({', '.join(ALIASES)}) or any field's dotted name (train.warmup_epochs, "
                          "model.gaussian_std, ...); a list value goes in brackets: hidden=[512,256],[256]. Examples: "
                          "--vary beta=0.5,1,4 --vary objective=ae,vae."),
        click.option("--seeds", type=click.IntRange(min=1), default=None,
                     help="Repeat every run with N seeds (from --seed on): the report shows means with their spread "
                          "and says which differences exceed it."),
        click.option("--seed-list", type=str, default=None, help="Repeat every run with these seeds, e.g. 0,1,2."),
        click.option("--jobs", type=str, default=None,
                     help="Train this many runs at once, as separate processes sharing the cores [default: auto: "
                          "every run at once while there are fewer than two per core, else one per core, which "
                          "measured fastest, with the same numbers (docs/performance.md)]. In a terminal each process "
                          "shows its run's progress bar on a line of its own. At a given --threads, a run's numbers "
                          "do not depend on it."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="Threads per run [default: every core for --jobs 1, an equal share of the cores otherwise; "
                          "a resumed study keeps the count it started with]. A run's numbers depend on its thread "
                          "count (the order of floating-point sums), not on --jobs."),
        click.option("--executor", type=click.Choice(EXECUTORS), default="process", show_default=True,
                     help="process: --jobs local processes. ray: each run as a Ray task (a local Ray instance, or the "
                          "cluster at --ray-address; the study directory must be shared). Needs pip install "
                          "'vaelab[ray]'."),
        click.option("--ray-address", type=str, default=None,
                     help="The Ray cluster to run on (default: start a local one)."),
        click.option("--run-index", type=click.IntRange(min=0), default=None,
                     help="Train only this run of the grid (0-based, in study.json's order), e.g. "
                          "$SLURM_ARRAY_TASK_ID in a job array; use with --resume (docs/scaling.md)."),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), func)


def given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def given_keys(ctx: click.Context) -> list[str]:
    """The config fields set by an option on this command line."""
    return [key for name, key in OPTION_FIELDS.items() if given(ctx, name)]


def build_config(ctx: click.Context, latent_dim: int | None, opts: dict[str, Any],
                 varied: tuple[str, ...] = ()) -> RunConfig:
    """The run's config: the --config file if given, else the defaults, then the --preset's settings, then the
    options given on the command line. ``latent_dim`` None keeps the file's (or the default) latent size. The
    config validates itself as a whole (the architecture's rules): a ConfigError exits 2. An option this run
    cannot use is warned of and not recorded, so that config.json says what was used (unless a study's axis
    ``varied`` decides whether it is used: a conv run of a grid over --arch uses --widths)."""
    base = read_config_file(opts["config_file"]) if opts["config_file"] is not None else RunConfig()
    settings = dict(PRESETS.get(opts["preset"], {}))
    settings.update({key: opts[OPTION_PARAMS[key]] for key in given_keys(ctx)})
    if latent_dim is not None:
        settings["model.latent_dim"] = latent_dim
    local_data = settings.get("data.dataset", base.data.dataset) in LOCAL_DATASETS
    for key in ABSOLUTE_PATHS:
        if settings.get(key) and (key != "data.data_dir" or local_data):
            settings[key] = str(Path(settings[key]).expanduser().absolute())
    config = with_settings(base, settings)
    unused = unused_settings(config, given_keys(ctx), varied)
    for key, why in unused.items():
        warnings.warn(f"{option_name(key)} is not used: {why}; it is not recorded in the run's config.", UserWarning,
                      stacklevel=2)
    return with_settings(base, {k: v for k, v in settings.items() if k not in unused}) if unused else config


def unused_settings(config: RunConfig, keys: list[str], varied: tuple[str, ...] = ()) -> dict[str, str]:
    """Of the settings ``keys``, those ``config``'s run has no use for, each with why."""
    unused = {}
    if config.data.dataset not in IMAGE_DATASETS and "data.dataset" not in varied:
        for key in ("data.channels", "data.image_size"):
            if key in keys:
                unused[key] = (f"{config.data.dataset} images are read as they are (only --dataset "
                               f"{' and '.join(IMAGE_DATASETS)} convert them)")
    widths = f"model.{architectures.get(config.model.arch).widths_field}"
    for key in ("model.hidden", "model.channels"):
        if key in keys and key != widths and "model.arch" not in varied:
            unused[key] = f"--arch {config.model.arch} takes its widths from {option_name(widths)}"
    return unused


def warn_ignored_on_resume(ctx: click.Context, asked: RunConfig, saved: RunConfig, also: tuple[str, ...] = ()) -> None:
    """A resumed run keeps the settings it was started with: each option given now that differs from them is
    named as ignored (``CHANGE_ON_RESUME`` excepted)."""
    keys = [*also, *given_keys(ctx)] if ctx.params.get("config_file") is None and ctx.params.get("preset") is None \
        else setting_keys()
    ignored = [f"{option_label(key)} {value_text(setting_value(asked, key))} "
               f"(kept: {value_text(setting_value(saved, key))})"
               for key in dict.fromkeys(keys) if key not in (*CHANGE_ON_RESUME, *NOT_OPTIONS) or key in also
               if setting_value(asked, key) != setting_value(saved, key)]
    if ignored:
        warnings.warn("--resume continues with the settings the run was started with, so these are ignored: "
                      f"{'; '.join(ignored)}. Only --epochs and --device can change on resume; train other settings "
                      "in a new directory.", UserWarning, stacklevel=2)


def option_label(key: str) -> str:
    """How the command line names a field: its option, ``-z`` for the latent size, else its dotted name."""
    return "-z" if key == "model.latent_dim" else option_name(key) if key in OPTION_PARAMS else key


def setting_value(config: RunConfig, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(config, section), name)


def value_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def run_options(ctx: click.Context, opts: dict[str, Any]) -> RunOptions:
    """How to run, from the options; a resumed run keeps its epochs and device unless --epochs or --device
    is given."""
    return RunOptions(resume=opts["resume"], resume_epochs=opts["epochs"] if given(ctx, "epochs") else None,
                      resume_device=opts["device"] if given(ctx, "device") else None,
                      progress=opts["progress"], detect_anomaly=opts["detect_anomaly"], artifacts=opts["artifacts"],
                      projection=opts["projection"], measures=opts["measures"], iwae_k=opts["iwae_k"],
                      iwae_every_epoch=opts["iwae_every_epoch"], tensorboard=opts["tensorboard"],
                      mlflow_uri=opts["mlflow_uri"], wandb_project=opts["wandb_project"])
