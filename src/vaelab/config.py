"""Typed run configuration, saved as ``config.json`` in every run directory.

A run directory fully describes how it was made: the data, the model and the training settings
below, plus the vaelab version that wrote them. Loading refuses configs from a newer vaelab
(``CONFIG_VERSION``) instead of guessing what unknown fields mean.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_file
from .errors import CheckpointError, OutputDirError

CONFIG_VERSION = 1
ARCHITECTURES = ("mlp", "conv", "conv-spatial")  # conv-spatial: a latent map of latent_dim channels at H/4 x W/4
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
    channels: tuple[int, ...] = (32, 64)  # conv: channels of the two stride-2 stages
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
            return cls(
                data=_build(DataConfig, raw["data"]),
                model=_build(ModelConfig, raw["model"]),
                train=_build(TrainConfig, raw["train"]),
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
