"""Shared test fixtures and helpers: the real MNIST beside the checkout, small configs, IDX files.

The helpers are plain functions; test modules import them with ``from conftest import ...`` (pytest
puts this directory on ``sys.path``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaelab.data import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS

REPO = Path(__file__).resolve().parents[1]
IDX_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def small_config(latent_dim: int = 2, epochs: int = 1, *, hidden: tuple[int, ...] = (64,), train_eval_size: int = 256,
                 lr: float = 2e-3, **train) -> RunConfig:
    """A model and schedule small enough for a unit test on a CPU (batch 64)."""
    return RunConfig(
        data=DataConfig(train_eval_size=train_eval_size),
        model=ModelConfig(latent_dim=latent_dim, hidden=hidden),
        train=TrainConfig(epochs=epochs, batch_size=64, lr=lr, device="cpu", **train),
    )


def write_idx(path: Path, array) -> None:
    """One uint8 IDX file (magic 0x0008, then the dimensions, then the bytes)."""
    array = np.ascontiguousarray(np.asarray(array), dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


def write_idx_dataset(directory: Path, data) -> Path:
    """The four standard IDX files of ``data`` (a vaelab Dataset), for the CLI's ``--dataset idx``."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = (data.train.images, data.train.labels, data.test.images, data.test.labels)
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(directory / name, array.numpy())
    return directory


# Fixtures that train something for tens of seconds: a test using one is ``slow`` (``make test`` still runs it).
SLOW_FIXTURES = {"tiny_classifier", "trained_small_model", "study", "ddp_run", "tracked_study"}


def pytest_collection_modifyitems(items) -> None:
    """Every test that drives Chromium is a ``browser`` test, and every test using a training fixture is
    ``slow``, whichever file it is in; ``pytest -m "not slow and not browser"`` is the quick subset."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if {"browser", "page"} & fixtures:
            item.add_marker(pytest.mark.browser)
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)


def shared_mnist_dir() -> Path:
    return Path(os.environ.get("VAELAB_TEST_DATA", REPO.parent / "shared" / "data" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = shared_mnist_dir()
    if not (path / "t10k-images-idx3-ubyte.gz").exists() and not (path / "t10k-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST not found in {path} (set VAELAB_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from vaelab.data import load_dataset

    return load_dataset("mnist", mnist_dir, download=False)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright. Skips where there is none, unless
    VAELAB_REQUIRE_BROWSER=1 (as in CI), where a missing browser is a failure."""
    required = os.environ.get("VAELAB_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed")
    executable = os.environ.get("VAELAB_CHROMIUM", str(CHROMIUM))
    if not Path(executable).exists():
        if required:
            pytest.fail(f"no Chromium at {executable} (install Debian's chromium package)")
        pytest.skip(f"no Chromium at {executable}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh page that records console errors and uncaught page errors in ``page.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    new_page = context.new_page()
    new_page.errors = []
    new_page.on("console", lambda msg: new_page.errors.append(msg.text) if msg.type == "error" else None)
    new_page.on("pageerror", lambda exc: new_page.errors.append(str(exc)))
    yield new_page
    context.close()


@pytest.fixture(scope="session")
def serve_study(mnist, mnist_dir, tmp_path_factory) -> Path:
    """A tiny study for `vaelab serve`: latent sizes 2 and 10 (more than the sliders shown at first),
    one epoch each on a slice of MNIST."""
    import json

    from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from vaelab.data import Dataset, ImageSplit
    from vaelab.training import Trainer

    root = tmp_path_factory.mktemp("serve_study")
    data = Dataset(name=mnist.name, root=mnist.root,
                   train=ImageSplit(mnist.train.images[:1024], mnist.train.labels[:1024]),
                   test=ImageSplit(mnist.test.images[:256], mnist.test.labels[:256]))
    for latent_dim in (2, 10):
        config = RunConfig(data=DataConfig(data_dir=str(mnist_dir), train_eval_size=128),
                           model=ModelConfig(latent_dim=latent_dim, hidden=(64,)),
                           train=TrainConfig(epochs=1, batch_size=64, lr=3e-3, device="cpu", evals_in_first_epoch=1))
        Trainer(config, data, root / f"latent_{latent_dim}", progress=False).run()
    (root / "study.json").write_text(json.dumps({"latent_dims": [2, 10]}))
    return root


@pytest.fixture(autouse=True)
def private_classifier_cache(tmp_path_factory, monkeypatch):
    """Tests never write the user's classifier cache (~/.cache/vaelab/classifiers)."""
    monkeypatch.setenv("VAELAB_CLASSIFIER_DIR", str(tmp_path_factory.getbasetemp() / "classifier-cache"))


@pytest.fixture(scope="session")
def tiny_classifier(mnist, tmp_path_factory):
    """A digit classifier from a tiny recipe (2 epochs on 4,096 images, ~90% accurate), cached in a
    session temp dir: the real one takes a minute or more to train and never runs in the unit tests."""
    from vaelab.classifier import ClassifierRecipe, load_or_train_classifier

    recipe = ClassifierRecipe(epochs=2, batch_size=64, train_size=4096, channels=(8, 16), features=32, min_steps=0)
    return load_or_train_classifier(mnist, "cpu", recipe, tmp_path_factory.mktemp("classifiers"))


def write_image(path: Path, image) -> Path:
    """Save a Pillow image, making its folder; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_image_folder(root: Path, counts: dict[str, int], size: int, mode: str, start: int = 0) -> Path:
    """PNG files ``root/<subdir>/<i>.png`` for ``i`` in ``start .. start + n``, per ``counts`` entry.

    Pixel (0, 0) says the entry (40 for the first, 200 for the others), pixels (1, 1) and (2, 2) the
    file's number (low and high byte); the rest is noise, so no two images are alike."""
    import numpy as np
    from PIL import Image

    for k, (subdir, n) in enumerate(counts.items()):
        folder = root / subdir if subdir else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n):
            pixels = np.random.default_rng(i).integers(0, 256, (size, size), dtype=np.uint8)
            pixels[0, 0], pixels[1, 1], pixels[2, 2] = (40 if k == 0 else 200), i % 256, i // 256
            image = Image.fromarray(pixels)
            write_image(folder / f"{i:05d}.png", image.convert(mode) if mode != "L" else image)
    return root
