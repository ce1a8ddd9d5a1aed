"""Helpers the tests share (plain functions, no fixtures): small configs, IDX files and image folders made on the
fly, and where the real MNIST is. Test modules import them with ``from helpers import ...``; the fixtures are in
conftest.py."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import stat
import struct
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vaelab.callbacks import Callback, EvalPoint
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


def one_line(text: str) -> str:
    """``text`` with its whitespace runs as single spaces: the CLI wraps messages at 100 columns, where a long
    path moves the breaks."""
    return " ".join(text.split())


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


def shared_mnist_dir() -> Path:
    return Path(os.environ.get("VAELAB_TEST_DATA", REPO.parent / "shared" / "data" / "mnist"))


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


class OnPoint(Callback):
    """A callback that calls ``action(point)`` at each evaluation point."""

    def __init__(self, action: Callable[[EvalPoint], None]):
        self.action = action

    def on_eval_point(self, point: EvalPoint) -> None:
        self.action(point)


@contextlib.contextmanager
def read_only_copy(source: Path, where: Path) -> Iterator[Path]:
    """A copy of ``source`` that cannot be written: on a read-only file system where this process can mount one
    (root: a tmpfs remounted read-only, which root's rights do not get past), else in directories without write
    permission. Skips the test where neither holds."""
    mount_point = where / "read_only"
    mount_point.mkdir()
    copy = mount_point / source.name
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount_point)],
                          capture_output=True).returncode != 0:
            import pytest

            pytest.skip("running as root where a read-only file system cannot be mounted")
        try:
            shutil.copytree(source, copy)
            subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
            yield copy
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)
        return
    shutil.copytree(source, copy)
    directories = [mount_point, copy, *(p for p in copy.rglob("*") if p.is_dir())]
    for d in directories:
        d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        yield copy
    finally:
        for d in directories:
            d.chmod(stat.S_IRWXU)


def wandb_offline_records(run_dir: Path) -> list:
    """The records of the one offline W&B run under ``run_dir/wandb``, read straight from its .wandb file (W&B's
    LevelDB-style log: a 7-byte header, 32 KiB blocks, chunks of checksum, length and type) as W&B's own
    protobuf ``Record`` messages; independent of vaelab and of W&B's (Go) reader."""
    from wandb.proto import wandb_internal_pb2

    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # full / first, else middle / last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


class DeviceFloat64Guard(TorchDispatchMode):
    """Records every float64 value computed on what a run put on its device (Apple's MPS has no float64).

    On a CPU-only machine the device is the CPU, so "on the device" is followed by hand: tensors ``mark``ed (the
    model's weights, the images the run moved to its device) and everything an operation computes from them
    are device values; a copy to the host with an explicit ``device="cpu"`` (``precision.to_host_float64``,
    ``Tensor.cpu()``) leaves the device. A float64 device value is what MPS would refuse. Not seen: a float64
    tensor created on the device from nothing (a factory with ``device=``), which a CPU run cannot tell apart.
    """

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._marked: dict[int, weakref.ref] = {}
        self._cpu = torch.Tensor.cpu

    def mark(self, *tensors: torch.Tensor) -> None:
        for tensor in tensors:
            self._marked[id(tensor)] = weakref.ref(tensor)

    def on_device(self, tensor: torch.Tensor) -> bool:
        ref = self._marked.get(id(tensor))
        return ref is not None and ref() is tensor

    def __enter__(self):
        cpu = self._cpu
        # On the CPU, .cpu() returns the tensor itself; on a GPU it is a host copy: make it one here too.
        torch.Tensor.cpu = lambda t, *a, **k: (t.to(device="cpu", copy=True) if t.device.type == "cpu"
                                               else cpu(t, *a, **k))
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.cpu = self._cpu
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        to_host = func is torch.ops.aten._to_copy.default and kwargs.get("device") == torch.device("cpu")
        inputs = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if not to_host and any(self.on_device(t) for t in inputs):
            for tensor in torch.utils._pytree.tree_leaves(out):
                if isinstance(tensor, torch.Tensor):
                    self.mark(tensor)
                    if tensor.dtype == torch.float64:
                        self.found.append(f"{func} at {vaelab_caller()}")
        return out


def vaelab_caller() -> str:
    """The innermost vaelab source line on the Python stack: where a guarded operation came from."""
    frame = sys._getframe()
    while frame is not None:
        if f"{os.sep}vaelab{os.sep}" in frame.f_code.co_filename:
            return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        frame = frame.f_back
    return "outside vaelab"


@dataclasses.dataclass
class PlacedTask:
    """What ``train_where_placed`` returns: the terminal line its worker drew on, and when it ran."""

    line: int | None
    started: float
    ended: float
    model: None = None


def train_where_placed(config, run_dir, options, *, dataset=None, callbacks=(), notify=None) -> PlacedTask:
    """A stand-in for the pipeline's train in a study's worker: it trains nothing and says where it was placed."""
    import time

    from vaelab import progress

    started = time.monotonic()
    time.sleep(0.3)
    return PlacedTask(progress._line, started, time.monotonic())
