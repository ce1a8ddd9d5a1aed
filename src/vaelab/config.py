"""Typed run configuration, saved as ``config.json`` in every run directory.

A run directory fully describes how it was made: the data, the model and the training settings
below, plus the vaelab version that wrote them. Loading refuses configs from a newer vaelab
(``CONFIG_VERSION``) instead of guessing what unknown fields mean.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_file
from .errors import CheckpointError, ConfigFileError, OutputDirError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

CONFIG_VERSION = 1
# conv-spatial: a latent map of latent_dim channels at H/4 x W/4; resnet-spatial: the published project's
# ResNet/attention autoencoder around the same latent map, with a linear output on the [-1, 1] scale.
ARCHITECTURES = ("mlp", "conv", "conv-spatial", "resnet-spatial")
# The widths each architecture uses when none are given: the stride-2 stages, or the stem and two down blocks.
DEFAULT_WIDTHS = {"conv": (32, 64), "conv-spatial": (32, 64), "resnet-spatial": (32, 64, 128)}
LR_SCHEDULES = ("constant", "onecycle", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian", "gaussian-learned")
PROJECTIONS = ("tsne", "pca")  # 2-D views of latent spaces larger than 2 in the figures


@dataclass
class DataConfig:
    dataset: str = "mnist"
    data_dir: str | None = None
    train_eval_size: int = 10_000  # fixed subset of the training set scored at each evaluation
    binarize: bool = False  # dynamic binarisation of training batches, fixed binarisation of eval sets
    channels: int | None = None  # folder: convert images to 1 (grey) or 3 (RGB); None: what most files are
    image_size: int | None = None  # folder: resize the shorter side and centre-crop to this; None: as found


@dataclass
class ModelConfig:
    arch: str = "mlp"
    latent_dim: int = 2
    hidden: tuple[int, ...] = (512, 256)  # mlp: widths of the hidden layers
    channels: tuple[int, ...] = (32, 64)  # conv: channels of the stride-2 stages; see DEFAULT_WIDTHS
    likelihood: str = "bernoulli"
    gaussian_std: float = 0.1  # decoder std of the gaussian likelihood (gaussian-learned: its initial value)
    image_shape: tuple[int, ...] = (1, 28, 28)  # (channels, height, width) of the data: set from it

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.channels = tuple(int(c) for c in self.channels)
        self.image_shape = tuple(int(d) for d in self.image_shape)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    warmup_epochs: float = 0.0  # KL weight rises linearly from 0 to beta over this many epochs
    seed: int = 0
    device: str = "auto"
    evals_in_first_epoch: int = 5  # the early curve moves fastest, so it is sampled densely
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's; the published project used (0.5, 0.999)
    lr_schedule: str = "constant"  # onecycle / cosine: a pure function of the step, so resume stays exact
    precision: str = "auto"  # training-step autocast: auto = bf16 where the hardware does it fast, else fp32
    adversarial: bool = False  # the published PatchGAN discriminator (least squares), trained from scratch
    lpips_weights: str | None = None  # VGG16 + LPIPS weights file: adds the LPIPS term to the loss

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

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
        sections[name] = kind(**{key: _typed_value(path, kind, f"{name}.{key}", value)
                                 for key, value in values.items()})
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


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    try:
        with atomic_file(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise OutputDirError(f"{path}: cannot be written ({exc.strerror or exc}); the previous one is kept.") from None
