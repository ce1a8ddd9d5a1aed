"""Typed run configuration, saved as ``config.json`` in every run directory.

A run directory fully describes how it was made: the data, the model and the training settings
below, plus the vaelab version that wrote them. Loading refuses configs from a newer vaelab
(``CONFIG_VERSION``) instead of guessing what unknown fields mean.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import architectures
from .atomic import write_text_atomic
from .errors import CheckpointError, ConfigError, ConfigFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

CONFIG_VERSION = 1
# What each architecture is, needs and allows is declared in its own module under architectures/.
ARCHITECTURES = architectures.names()
# Architectures whose latent is a map of latent_dim channels, not a vector of latent_dim numbers.
SPATIAL_ARCHITECTURES = tuple(name for name in ARCHITECTURES if architectures.get(name).spatial)
# The --widths each architecture uses when none are given (mlp's widths are --hidden).
DEFAULT_WIDTHS = {name: architectures.get(name).default_widths for name in ARCHITECTURES
                  if architectures.get(name).widths_field == "channels"}
LR_SCHEDULES = ("constant", "onecycle", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian", "gaussian-learned")
PROJECTIONS = ("tsne", "pca")  # 2-D views of latent spaces larger than 2 in the figures
# vae: the ELBO; ae: a plain autoencoder on the same networks, the baseline the published project's claims are about
OBJECTIVES = ("vae", "ae")
MIN_IMAGE_SIDE = 8  # the smallest images the models take (the image metrics fit their windows to them)


def setting(default: Any, label: str, *, choices: tuple[Any, ...] | None = None, low: float | None = None,
            low_open: bool = False, high: float | None = None, high_open: bool = False, help: str = "",
            option: str | None = None) -> Any:
    """A config field with what it means in words (``label``, for messages; ``help``, for ``--help``) and its
    rules as metadata: allowed ``choices``, or a range ``low``..``high`` (``*_open`` excludes the bound). Tuples
    apply the rule to each item. ``validate_fields`` enforces them; the command line makes an option of each field
    (``--field-name``, or ``option``) from the same metadata."""
    rules = {"choices": choices, "low": low, "low_open": low_open, "high": high, "high_open": high_open}
    return field(default=default, metadata={"rules": rules, "label": label, "help": help, "option": option})


def _architectures_help() -> str:
    return "; ".join(f"{name}: {architectures.get(name).summary}" for name in ARCHITECTURES)


def _widths_help() -> str:
    return "; ".join(f"{name}: {architectures.get(name).widths_meaning} [default: {','.join(map(str, widths))}]"
                     for name, widths in DEFAULT_WIDTHS.items())


@dataclass
class DataConfig:
    dataset: str = setting("mnist", "the data set", help=(
        "idx: any four 28x28 IDX files with the standard names. folder: your own images in --data-dir "
        "(DIR/train/<class>/ + DIR/test/<class>/, DIR/<class>/, or all in DIR; any format Pillow reads). cifar10: "
        "the CIFAR-10 python archive (downloaded when missing)."))
    data_dir: str | None = setting(None, "the data directory", help=(
        "Where the data is (default: $VAELAB_DATA for MNIST, else a per-user cache dir; missing MNIST / CIFAR-10 "
        "files are downloaded there). Required for folder."))
    # a fixed subset of the training set, scored at each evaluation
    train_eval_size: int = setting(10_000, "training images scored per evaluation", low=1,
                                   help="Training images scored at each evaluation (a fixed subset).")
    binarize: bool = setting(False, "binarisation", help=(
        "Dynamically binarise training images (fixed binarisation for evaluation), as in the binary-MNIST "
        "literature."))
    # folder: convert images to 1 (grey) or 3 (RGB); None: what most files are
    channels: int | None = setting(None, "colour channels", choices=(1, 3), help=(
        "folder: convert every image to grey (1) or RGB (3) [default: what most files are]."))
    # folder: resize the shorter side and centre-crop to this; None: as found
    image_size: int | None = setting(None, "image size", low=MIN_IMAGE_SIDE, help=(
        "folder: resize each image's shorter side to N and centre-crop to NxN [default: the images' own size when "
        "they are all square]."))

    def __post_init__(self) -> None:
        validate_fields(self, "data")


@dataclass
class ModelConfig:
    arch: str = setting("mlp", "the architecture", choices=ARCHITECTURES, help=(
        "Encoder/decoder architecture; they build from the data's shape. " + _architectures_help() + "."))
    latent_dim: int = setting(2, "the latent size", low=1, help="Latent size.")
    hidden: tuple[int, ...] = setting((512, 256), "mlp hidden widths", low=1,
                                      help="mlp: comma-separated hidden layer widths.")
    # the convolutional architectures' widths; see DEFAULT_WIDTHS
    channels: tuple[int, ...] = setting((32, 64), "conv widths, --widths", low=1, option="--widths", help=(
        "Comma-separated widths of the convolutional architectures [default: the architecture's own]: "
        + _widths_help() + "."))
    likelihood: str = setting("bernoulli", "the decoder likelihood", choices=LIKELIHOODS, help=(
        "Decoder likelihood: bernoulli (BCE on logits), continuous-bernoulli (BCE plus its normaliser), gaussian "
        "(squared error, fixed std) or gaussian-learned (one learned std)."))
    # A floor, not 0: the NLL divides by std^2, which float32 cannot hold below about 1e-19.
    gaussian_std: float = setting(0.1, "the decoder std", low=1e-6,
                                  help="Decoder std of the gaussian likelihood (gaussian-learned: initial).")
    # (channels, height, width) of the data: set from it
    image_shape: tuple[int, ...] = setting((1, 28, 28), "the image shape", low=1)
    objective: str = setting("vae", "the training objective", choices=OBJECTIVES, help=(
        "vae: the ELBO (z sampled from q(z|x), KL term weighted by --beta). ae: a plain autoencoder on the same "
        "networks (z = the encoder's mean, reconstruction term only), the baseline of the AE-vs-VAE comparison."))

    def __post_init__(self) -> None:
        self.hidden = _as_tuple(self.hidden, int)
        self.channels = _as_tuple(self.channels, int)
        self.image_shape = _as_tuple(self.image_shape, int)
        validate_fields(self, "model")
        check_architecture(self)


@dataclass
class TrainConfig:
    epochs: int = setting(10, "epochs", low=1, help="Epochs to train.")
    batch_size: int = setting(128, "batch size", low=1, help="Images per step (under torchrun: the global batch).")
    lr: float = setting(1e-3, "learning rate", low=0, low_open=True, help="Adam learning rate.")
    beta: float = setting(1.0, "KL weight", low=0, help="Weight of the KL term (1 = the true ELBO).")
    warmup_epochs: float = setting(0.0, "KL warm-up epochs", low=0,
                                   help="Ramp the KL weight linearly from 0 to beta over this many epochs.")
    # 32 bits: the seeds derived from it (per epoch, per rank) stay within the generators' 64-bit range.
    seed: int = setting(0, "the random seed", low=0, high=2**32 - 1,
                        help="Seeds the weights, the noise and the batch order.")
    device: str = setting("auto", "the device", help=(
        "auto picks CUDA, then Apple MPS, then CPU; or name one (cpu, cuda, cuda:1, mps)."))
    # the early curve moves fastest, so it is sampled densely
    evals_in_first_epoch: int = setting(5, "evaluations in the first epoch", low=0,
                                        help="Evaluation points within the first epoch, where the curves move fastest.")
    # the published project used (0.5, 0.999)
    betas: tuple[float, float] = setting((0.9, 0.999), "Adam's betas", low=0, high=1, high_open=True,
                                         help="Adam's two moment decay rates.")
    # onecycle / cosine: a pure function of the step, so resume stays exact
    lr_schedule: str = setting("constant", "learning-rate schedule", choices=LR_SCHEDULES, help=(
        "constant; onecycle (up from lr/25 over the first 30% of the steps, then down); cosine (from lr down to 0)."))
    precision: str = setting("auto", "training precision", choices=PRECISIONS, help=(
        "The training step's arithmetic: auto uses bf16 autocast where the hardware does bf16 fast (CPUs with AMX "
        "or AVX-512-BF16, CUDA GPUs from Ampere on) for the architectures that allow it (resnet-spatial), else fp32 "
        "(the mlp and conv models ended outside 0.1 dB / 0.3 nats of fp32 or would change the default study's "
        "numbers; ask for bf16 explicitly). bf16 where the hardware only emulates it trains in fp32 with a notice. "
        "Evaluation is always fp32."))
    deterministic: bool = setting(False, "deterministic algorithms", help=(
        "Use only deterministic kernels (torch.use_deterministic_algorithms, cuDNN's deterministic mode, a fixed "
        "cuBLAS workspace), so two GPU runs of the same settings are bitwise equal; slower on a GPU, and an "
        "operation without a deterministic kernel stops the run with an error naming it. CPU runs are "
        "deterministic either way."))
    adversarial: bool = setting(False, "the adversarial term", help=(
        "Add the published PatchGAN discriminator (least squares, weight 0.5, from step 1000, its own Adam), "
        "trained from scratch."))
    lpips_weights: str | None = setting(None, "the LPIPS weights file", help=(
        "Add the LPIPS perceptual term (weight 1, as published) using this weights file: torchvision's VGG16 "
        "'features.*' and LPIPS's 'lin0'..'lin4' tensors in one state dict. Nothing is downloaded."))

    def __post_init__(self) -> None:
        self.betas = _as_tuple(self.betas, float)
        validate_fields(self, "train")


def has_latent_plane(arch: str, latent_dim: int) -> bool:
    """Whether a manifold of decodes is drawn over a plane of the latent space (the architecture says which)."""
    return arch in ARCHITECTURES and architectures.get(arch).has_latent_plane(latent_dim)


def _as_tuple(values: Any, kind: type) -> Any:
    """Lists (from JSON, the API) as the tuples the fields hold, numbers as ``kind``; anything else is left as it
    is for ``validate_fields`` to refuse with the field's name."""
    if not isinstance(values, (list, tuple)):
        return values
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
           for v in values):
        return tuple(kind(v) for v in values)
    return tuple(values)


def check_architecture(model: ModelConfig) -> None:
    """The rules that tie a model's fields to its architecture's declaration (each field alone may be fine)."""
    if model.arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch: unknown architecture {model.arch!r}; choose from {', '.join(ARCHITECTURES)}.",
                          key="model.arch")
    arch = architectures.get(model.arch)
    if arch.likelihoods is not None and model.likelihood not in arch.likelihoods:
        wanted = " or ".join(arch.likelihoods)
        raise ConfigError(f"model.likelihood: {arch.name} {arch.likelihood_reason} and needs --likelihood {wanted}, "
                          f"not {model.likelihood!r}.", key="model.likelihood")
    widths = getattr(model, arch.widths_field)
    if arch.widths_count is not None and len(widths) != arch.widths_count:
        option = "--widths" if arch.widths_field == "channels" else "--hidden"
        key = f"model.{arch.widths_field}"
        raise ConfigError(f"{key} ({option}): {arch.name} takes {arch.widths_count} widths ({arch.widths_meaning}), "
                          f"got {','.join(map(str, widths))}.", key=key)


def validate_fields(section: Any, name: str) -> None:
    """Every field of a config section against its type and its ``setting`` rules; a ConfigError names the
    first field that breaks one. The API, config files and the command line all pass through here."""
    hints = typing.get_type_hints(type(section))
    for spec in dataclasses.fields(section):
        _check_field(f"{name}.{spec.name}", spec, getattr(section, spec.name), hints[spec.name])


def check_setting(key: str, value: Any) -> None:
    """One setting's value (``key`` dotted) against its field's type and rules alone: the command line checks
    each option so; the rules that tie fields together need the whole config."""
    section, name = key.split(".", 1)
    spec = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
    _check_field(key, spec, value, typing.get_type_hints(SECTIONS[section])[name])


def _check_field(key: str, spec: dataclasses.Field, value: Any, expected: Any) -> None:
    if value is None and _allows_none(expected):
        return
    base = _without_none(expected)
    items = value if typing.get_origin(base) is tuple else (value,)
    item_type = typing.get_args(base)[0] if typing.get_origin(base) is tuple else base
    if typing.get_origin(base) is tuple and not isinstance(value, tuple):
        raise ConfigError(f"{key} must be a list of {_type_words(item_type, plural=True)}, got {value!r}.", key=key)
    if typing.get_origin(base) is tuple and typing.get_args(base)[-1] is not Ellipsis \
            and len(value) != len(typing.get_args(base)):
        raise ConfigError(f"{key} must have {len(typing.get_args(base))} values, got {value!r}.", key=key)
    named = f"{key} ({spec.metadata['label']})" if "label" in spec.metadata else key
    for item in items:
        if not _has_type(item, item_type):
            raise ConfigError(f"{named} must be {_type_words(item_type)}, got {item!r}.", key=key)
        _check_rules(named, key, item, spec.metadata.get("rules", {}))


def _check_rules(named: str, key: str, value: Any, rules: dict[str, Any]) -> None:
    choices = rules.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{named} must be one of {', '.join(map(str, choices))}; got {value!r}.", key=key)
    low, high = rules.get("low"), rules.get("high")
    too_low = low is not None and (value <= low if rules.get("low_open") else value < low)
    too_high = high is not None and (value >= high if rules.get("high_open") else value > high)
    if too_low or too_high or (isinstance(value, float) and not math.isfinite(value)):
        lower = "" if low is None else f"{'>' if rules.get('low_open') else '>='} {_bound_text(low)}"
        upper = "" if high is None else f"{'<' if rules.get('high_open') else '<='} {_bound_text(high)}"
        raise ConfigError(f"{named} must be {' and '.join(b for b in (lower, upper) if b) or 'finite'}; "
                          f"got {value!r}.", key=key)


def _bound_text(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _has_type(value: Any, kind: Any) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return _is_int(value)
    return isinstance(value, kind)


def _type_words(kind: Any, plural: bool = False) -> str:
    if plural:
        return {int: "integers", float: "numbers", str: "strings"}.get(kind, str(kind))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(kind, str(kind))


def _without_none(annotation: Any) -> Any:
    if _allows_none(annotation):
        return next(t for t in typing.get_args(annotation) if t is not type(None))
    return annotation


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name, kind in SECTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, kind):  # a dict here would fail later, far from the mistake
                raise ConfigError(f"RunConfig.{name} must be a {kind.__name__}, got {type(value).__name__} "
                                  f"{value!r}; write {name}={kind.__name__}(...), or build the whole config with "
                                  "RunConfig.from_dict or RunConfig.from_preset.", key=name)

    def to_dict(self) -> dict[str, Any]:
        from . import __version__

        return {"config_version": CONFIG_VERSION, "vaelab_version": __version__, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        version = raw.get("config_version")
        if not isinstance(version, int):
            raise CheckpointError(f"{source}: not a vaelab config (no config_version field).")
        if version > CONFIG_VERSION:
            raise CheckpointError(
                f"{source}: written by a newer vaelab ({raw.get('vaelab_version', '?')}, config "
                f"version {version}); this vaelab reads up to config version {CONFIG_VERSION}. "
                "Upgrade vaelab to use this run."
            )
        try:
            train = dict(raw["train"])
            # Runs written before --precision trained in fp32; resuming them must not switch to bf16.
            train.setdefault("precision", "fp32")
            return cls(
                data=_build(DataConfig, raw["data"]),
                model=_build(ModelConfig, raw["model"]),
                train=_build(TrainConfig, train),
            )
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{source}: malformed vaelab config ({exc}).") from None
        except ConfigError as exc:
            raise CheckpointError(f"{source}: {exc}") from None

    @classmethod
    def from_preset(cls, name: str, **settings: Any) -> RunConfig:
        """A preset (``vaelab.presets.PRESETS``) over the defaults, then ``settings`` by dotted name or alias
        (``RunConfig.from_preset("original", z=4)``)."""
        from .presets import PRESETS

        if name not in PRESETS:
            raise ConfigError(f"no preset {name!r}; the presets are {', '.join(PRESETS)}.", key="preset")
        return with_settings(with_settings(cls(), PRESETS[name]), settings)

    def with_settings(self, settings: dict[str, Any]) -> RunConfig:
        """This config with ``settings`` changed, each by dotted name or alias (``{"model.hidden": [64], "beta":
        4}``), checked as a whole: a ConfigError names the first setting that breaks a rule."""
        return with_settings(self, settings)

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no config file here; is this a vaelab run directory?") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot read config ({exc}).") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path}: not a vaelab config.")
        return cls.from_dict(raw, source=str(path))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
# Short names for the settings people vary most (``--vary beta=0.5,1``); any field's dotted name works too.
ALIASES = {"beta": "train.beta", "lr": "train.lr", "epochs": "train.epochs", "batch_size": "train.batch_size",
           "warmup": "train.warmup_epochs", "schedule": "train.lr_schedule",
           "arch": "model.arch", "likelihood": "model.likelihood", "objective": "model.objective",
           "z": "model.latent_dim", "latent_dim": "model.latent_dim", "hidden": "model.hidden",
           "widths": "model.channels", "dataset": "data.dataset", "binarize": "data.binarize"}
# Set from the data, never by hand.
DERIVED_KEYS = ("model.image_shape",)


def setting_keys() -> list[str]:
    """Every settable field's dotted name, section by section."""
    return [f"{name}.{f.name}" for name, kind in SECTIONS.items() for f in dataclasses.fields(kind)
            if f"{name}.{f.name}" not in DERIVED_KEYS]


def resolve_key(key: str) -> str:
    """A dotted field name from a dotted name or an alias; a ConfigError lists what is allowed."""
    key = ALIASES.get(key.strip(), key.strip())
    if key not in setting_keys():
        raise ConfigError(f"{key!r} is not a setting. Use a short name ({', '.join(ALIASES)}) or a dotted field "
                          f"name: {', '.join(setting_keys())}.", key=key)
    return key


def parse_setting(key: str, text: str) -> Any:
    """``text`` as the value the field ``key`` (dotted) holds: numbers, true/false, none for an optional
    field, and ``[a,b]`` (or ``a b``) for a list. Range and choice rules are checked when it is applied."""
    section, name = key.split(".", 1)
    annotation = typing.get_type_hints(SECTIONS[section])[name]
    text = text.strip()
    if _allows_none(annotation) and text.lower() in ("none", "null"):
        return None
    base = _without_none(annotation)
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        parts = text.strip("[]()").replace(",", " ").split()
        return tuple(_parse_scalar(key, part, item) for part in parts)
    return _parse_scalar(key, text, base)


def _parse_scalar(key: str, text: str, kind: Any) -> Any:
    try:
        if kind is bool:
            return {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}[text.lower()]
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except (KeyError, ValueError):
        raise ConfigError(f"{key} must be {_type_words(kind)}, got {text!r}.", key=key) from None
    return text


def with_settings(config: RunConfig, values: dict[str, Any]) -> RunConfig:
    """``config`` with fields replaced by dotted name, validated as a whole. Changing the architecture
    without giving widths moves the widths to the new architecture's defaults, as the command line does."""
    sections = {name: dataclasses.asdict(getattr(config, name)) for name in SECTIONS}
    for key, value in values.items():
        section, name = resolve_key(key).split(".", 1)
        sections[section][name] = value
    arch_changed = sections["model"]["arch"] != config.model.arch
    if arch_changed and "model.channels" not in map(resolve_key, values):
        if tuple(config.model.channels) == DEFAULT_WIDTHS.get(config.model.arch, ModelConfig().channels):
            sections["model"]["channels"] = DEFAULT_WIDTHS.get(sections["model"]["arch"], ModelConfig().channels)
    return RunConfig(**{name: SECTIONS[name](**fields) for name, fields in sections.items()})


STAMP_KEYS = ("config_version", "vaelab_version")  # written into every config.json; accepted and checked on input


def read_config_file(path: str | Path) -> RunConfig:
    """A RunConfig from a TOML (``.toml``) or JSON file laid out like a run's ``config.json``.

    Sections and keys may be left out (they keep their defaults), so a run's own ``config.json`` and a
    three-line TOML file are both valid. Unknown keys, values of the wrong type and malformed files
    are ConfigFileErrors that name the file and the key.
    """
    path = Path(path)
    raw = _parse_config_text(path)
    unknown = sorted(set(raw) - set(SECTIONS) - set(STAMP_KEYS))
    if unknown:
        raise ConfigFileError(f"{path}: unknown key {unknown[0]!r}; a vaelab config has the sections "
                              f"{', '.join(SECTIONS)} (see any run's config.json).")
    version = raw.get("config_version", CONFIG_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > CONFIG_VERSION:
        raise ConfigFileError(f"{path}: config_version {version!r} is not one this vaelab reads "
                              f"(up to {CONFIG_VERSION}); upgrade vaelab to use this file.")
    sections = {}
    for name, kind in SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigFileError(f"{path}: {name!r} must be a section of keys, got {type(values).__name__}.")
        try:
            sections[name] = kind(**{key: _typed_value(path, kind, f"{name}.{key}", value)
                                     for key, value in values.items()})
        except ConfigFileError:
            raise
        except ConfigError as exc:
            raise ConfigFileError(f"{path}: {exc}", key=exc.key) from None
    return RunConfig(**sections)


def _parse_config_text(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: no such config file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot read the config file ({exc}).") from None
    as_toml = path.suffix.lower() == ".toml"
    try:
        raw = tomllib.loads(text) if as_toml else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        kind = "TOML" if as_toml else "JSON (name the file *.toml for TOML)"
        raise ConfigFileError(f"{path}: not valid {kind}: {exc}.") from None
    except RecursionError:  # both parsers recurse into nested arrays and tables
        raise ConfigFileError(f"{path}: nested too deeply to be a vaelab config (a config holds sections of "
                              "plain values and short lists).") from None
    if not isinstance(raw, dict):
        raise ConfigFileError(f"{path}: a config file holds sections of keys, not a {type(raw).__name__}.")
    return raw


def _typed_value(path: Path, kind: type, key: str, value: Any) -> Any:
    """``value`` checked against the dataclass field's annotation; lists stand for tuples, ints for floats."""
    hints = typing.get_type_hints(kind)
    field_name = key.split(".", 1)[1]
    if field_name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(kind))
        raise ConfigFileError(f"{path}: unknown key {key!r} (the keys of [{key.split('.')[0]}] are: {known}).")
    expected = hints[field_name]
    if value is None and _allows_none(expected):
        return None
    base = next(t for t in typing.get_args(expected) if t is not type(None)) if _allows_none(expected) else expected
    origin = typing.get_origin(base)
    if origin is tuple and isinstance(value, (list, tuple)):
        item = typing.get_args(base)[0]
        if all(_is_int(v) for v in value):
            return tuple(float(v) for v in value) if item is float else tuple(value)
        if item is float and all(isinstance(v, float) for v in value):
            return tuple(value)
        raise ConfigFileError(f"{path}: {key} must be a list of {'numbers' if item is float else 'integers'}, "
                              f"got {value!r}.")
    if base is float and (_is_int(value) or isinstance(value, float)):
        return float(value)
    if (base is int and _is_int(value)) or (base in (str, bool) and type(value) is base):
        return value
    wanted = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        base, "a list of integers")
    raise ConfigFileError(f"{path}: {key} must be {wanted}, got {value!r}.")


def _allows_none(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) and type(None) in typing.get_args(annotation)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _build(kind: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise TypeError(f"unknown {kind.__name__} fields {sorted(unknown)}")
    return kind(**values)
