"""A small convolutional classifier of the data set's classes that scores generated images, trained once per dataset.

Its penultimate features (``FEATURES`` numbers after a ReLU) give a Fréchet distance between
generated and real images, in the spirit of FID but in vaelab's own feature space (not Inception's,
so the figures are comparable only between vaelab runs with the same classifier). Its predictions
score reconstructions (do they keep the digit?) and samples (are all digits generated?).

The trained weights are cached per user in ``$VAELAB_CLASSIFIER_DIR``, else
``$XDG_CACHE_HOME/vaelab/classifiers`` (``~/.cache/vaelab/classifiers``), in a file named by the
dataset and a hash of the training recipe and the training data, so a changed recipe or different
IDX files never reuse a stale classifier. Training holds an exclusive lock on the cache entry and
the file appears by atomic rename: studies started side by side train it once and never read a
torn file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_file
from .data import NUM_CLASSES, Dataset, user_cache_dir
from .errors import CheckpointError
from .locks import exclusive
from .prepare import as_float_images
from .progress import progress_bar

CLASSIFIER_FORMAT = "vaelab-classifier"
CLASSIFIER_VERSION = 1


@dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that decides the trained weights; its hash names the cache file."""

    epochs: int = 3  # two reach 99.03-99.21% depending on the seed; three 99.26-99.32% (README)
    batch_size: int = 128
    lr: float = 4e-3  # peak of the one-cycle schedule
    channels: tuple[int, int] = (16, 32)
    features: int = 128  # width of the penultimate layer, the feature space of the Fréchet distance
    seed: int = 0
    train_size: int | None = None  # None: the whole training split; tests use a slice
    # Small data sets get more epochs, to at least this many steps: 3 epochs of 160 LFW faces are 6 steps,
    # after which the classifier still called every test image one class (test accuracy 0.43, entropy 0).
    min_steps: int = 400

    def key(self) -> str:
        text = json.dumps({"version": CLASSIFIER_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


DEFAULT_RECIPE = ClassifierRecipe()


class ImageClassifier(nn.Module):
    """Two 3x3 conv + max-pool stages (28 -> 14 -> 7 on MNIST), a ReLU feature layer and a linear head;
    built for the data's image shape and number of classes."""

    def __init__(self, recipe: ClassifierRecipe = DEFAULT_RECIPE, num_classes: int = NUM_CLASSES,
                 image_shape: tuple[int, ...] = (1, 28, 28)):
        super().__init__()
        c1, c2 = recipe.channels
        channels, height, width = image_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * (height // 4) * (width // 4), recipe.features), nn.ReLU(),
        )
        self.head = nn.Linear(recipe.features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class TrainedClassifier:
    model: ImageClassifier
    test_accuracy: float  # on the dataset's test split
    train_time_s: float  # wall time of the training that made it (on the machine that trained it)
    path: Path | None  # the cache file, or None when not cached
    trained_now: bool = False  # trained by this call rather than read from the cache


# Batches of 512 in channels-last layout: on the 2-core CPU 4x faster than batches of 2,000 in NCHW (whose
# activations spill out of the cache), with features equal to 1e-7 (docs/performance.md).
FEATURE_BATCH = 512


@torch.no_grad()
def features_and_logits(model: ImageClassifier, images: torch.Tensor, batch_size: int = FEATURE_BATCH):
    """Penultimate features (N, FEATURES) and logits (N, classes) of float images in [0, 1]."""
    model.eval()
    model.to(memory_format=torch.channels_last)  # in place and value-preserving; a no-op after the first call
    device = next(model.parameters()).device
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        h = model.body(images[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last))
        features.append(h)
        logits.append(model.head(h))
    return torch.cat(features), torch.cat(logits)


def accuracy(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    _, logits = features_and_logits(model, images)
    return (logits.argmax(1).cpu() == labels.cpu()).double().mean().item()


def num_classes(dataset: Dataset) -> int:
    """The classifier's outputs: one per class folder; for numbered labels ten (digits), or as many as the
    highest label calls for (a custom IDX set may number its classes beyond 9)."""
    if dataset.class_names:
        return len(dataset.class_names)
    highest = max(int(dataset.train.labels.max()), int(dataset.test.labels.max()))
    return max(NUM_CLASSES, highest + 1)


def _new_classifier(recipe: ClassifierRecipe, dataset: Dataset) -> ImageClassifier:
    return ImageClassifier(recipe, num_classes(dataset), dataset.image_shape)


def train_classifier(recipe: ClassifierRecipe, dataset: Dataset, device: torch.device,
                     progress: bool = False) -> ImageClassifier:
    """Adam with a one-cycle learning rate: >= 99% test accuracy on MNIST after three epochs (README)."""
    x = as_float_images(dataset.train.images, device)
    y = dataset.train.labels.to(device)
    if recipe.train_size is not None:
        x, y = x[: recipe.train_size], y[: recipe.train_size]
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
        torch.manual_seed(recipe.seed)
        model = _new_classifier(recipe, dataset).to(device)
    steps_per_epoch = -(-len(x) // recipe.batch_size)
    epochs = max(recipe.epochs, -(-recipe.min_steps // steps_per_epoch))
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=epochs * steps_per_epoch)
    order_rng = torch.Generator().manual_seed(recipe.seed)
    model.train()
    with progress_bar(total=epochs * len(x), unit="img", unit_scale=True, desc="classifier",
                      disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=order_rng).to(device)
            for i in range(steps_per_epoch):
                batch = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
                loss = F.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(len(batch))
    return model.eval()


# -- the per-user cache ------------------------------------------------------------------------


def classifier_cache_dir() -> Path:
    from_env = os.environ.get("VAELAB_CLASSIFIER_DIR", "")
    if from_env:
        return Path(from_env).expanduser().absolute()
    return user_cache_dir() / "classifiers"


def data_fingerprint(dataset: Dataset) -> str:
    """Hash of the pixels and labels, so two different IDX directories never share a classifier."""
    digest = hashlib.sha256()
    for split in (dataset.train, dataset.test):
        digest.update(split.images.contiguous().numpy().tobytes())
        digest.update(split.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_path(dataset: Dataset, recipe: ClassifierRecipe, directory: Path) -> Path:
    key = hashlib.sha256(f"{recipe.key()}:{data_fingerprint(dataset)}".encode()).hexdigest()[:16]
    return directory / f"{dataset.name}-{key}.pt"


def _load(path: Path, recipe: ClassifierRecipe, dataset: Dataset, device: torch.device) -> TrainedClassifier:
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("format") != CLASSIFIER_FORMAT:
            raise ValueError("not a vaelab classifier")
        model = _new_classifier(recipe, dataset)
        model.load_state_dict(saved["model"])
    except Exception as exc:  # torch raises many types for a foreign or corrupt file
        raise CheckpointError(
            f"{path}: the cached digit classifier is unreadable ({type(exc).__name__}: {exc}). Delete the file "
            "and vaelab will train it again."
        ) from None
    return TrainedClassifier(model.to(device).eval(), saved["test_accuracy"], saved["train_time_s"], path)


def load_or_train_classifier(dataset: Dataset, device: torch.device | str = "cpu",
                             recipe: ClassifierRecipe = DEFAULT_RECIPE, directory: Path | None = None,
                             progress: bool = False) -> TrainedClassifier:
    """The cached classifier for ``dataset`` and ``recipe``, training and caching it the first time."""
    device = torch.device(device)
    directory = Path(directory) if directory is not None else classifier_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = cache_path(dataset, recipe, directory)
    if path.exists():
        return _load(path, recipe, dataset, device)
    with exclusive(path):
        if path.exists():  # another process trained it while this one waited for the lock
            return _load(path, recipe, dataset, device)
        start = time.perf_counter()
        model = train_classifier(recipe, dataset, device, progress)
        train_time_s = time.perf_counter() - start
        test_accuracy = accuracy(model, as_float_images(dataset.test.images, device), dataset.test.labels)
        with atomic_file(path) as f:
            torch.save({"format": CLASSIFIER_FORMAT, "recipe": dataclasses.asdict(recipe), "dataset": dataset.name,
                        "model": model.state_dict(), "test_accuracy": test_accuracy, "train_time_s": train_time_s}, f)
    return TrainedClassifier(model, test_accuracy, train_time_s, path, trained_now=True)
