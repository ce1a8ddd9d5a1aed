"""Shared test fixtures: the real MNIST beside the checkout, a browser, a trained study, a classifier. The plain
helper functions are in helpers.py (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import shared_mnist_dir

# Fixtures that train something for tens of seconds (a test using one is ``slow``), or drive Chromium (``browser``).
SLOW_FIXTURES = {"tiny_classifier", "trained_small_model", "study", "ddp_run", "tracked_study"}
BROWSER_FIXTURES = {"browser", "page"}


def pytest_collection_modifyitems(items) -> None:
    """Marks are set where each test is defined; this only refuses a test that uses a training or browser fixture
    without saying so, so that ``pytest -m "not slow and not browser"`` stays the quick subset."""
    unmarked = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixtures_of_kind, mark in ((SLOW_FIXTURES, "slow"), (BROWSER_FIXTURES, "browser")):
            if fixtures_of_kind & fixtures and item.get_closest_marker(mark) is None:
                unmarked.append(f"{item.nodeid} (mark it {mark})")
    if unmarked:
        raise pytest.UsageError("tests that use a training or browser fixture must be marked where they are "
                                "defined: " + "; ".join(unmarked))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = shared_mnist_dir()
    if not (path / "t10k-images-idx3-ubyte.gz").exists() and not (path / "t10k-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST not found in {path} (set VAELAB_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from vaelab.datasets import load_dataset

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
    from vaelab.run_store import fit
    from vaelab.training import Trainer

    root = tmp_path_factory.mktemp("serve_study")
    data = Dataset(name=mnist.name, root=mnist.root,
                   train=ImageSplit(mnist.train.images[:1024], mnist.train.labels[:1024]),
                   test=ImageSplit(mnist.test.images[:256], mnist.test.labels[:256]))
    for latent_dim in (2, 10):
        config = RunConfig(data=DataConfig(data_dir=str(mnist_dir), train_eval_size=128),
                           model=ModelConfig(latent_dim=latent_dim, hidden=(64,)),
                           train=TrainConfig(epochs=1, batch_size=64, lr=3e-3, device="cpu", evals_in_first_epoch=1))
        fit(Trainer(config, data, root / f"latent_{latent_dim}", progress=False))
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


