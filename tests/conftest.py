"""Shared test fixtures: the real MNIST beside the checkout, and a small slice of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
