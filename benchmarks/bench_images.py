"""Image folders and colour images: load times, conv training throughput, and SSIM's two filters.

Prints a Markdown report of
- the first load (every file decoded, in parallel threads, and cached) and the cached load of a folder
  of generated 32x32 RGB PNGs (10 class folders, 60,000 files by default),
- the training throughput of the conv VAE on 32x32x3 images (vaelab's Trainer, one epoch),
- the time per image of SSIM's banded matrix product and of its 1-D convolutions, by image side.

    python benchmarks/bench_images.py                   # everything (~10 min on 2 busy cores)
    python benchmarks/bench_images.py --images 6000     # a smaller folder
    python benchmarks/bench_images.py --sections ssim   # one section
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab import quality
from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaelab.data import Dataset, ImageSplit
from vaelab.datasets import load_dataset
from vaelab.run_store import fit
from vaelab.training import Trainer

SECTIONS = ("load", "train", "ssim")


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {load:.1f} at the start")


def write_png_folder(root: Path, count: int, side: int = 32, classes: int = 10) -> None:
    """``count`` distinct noisy RGB PNGs, spread over ``classes`` folders."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(root / f"class_{i % classes}" / f"{i:06d}.png", compress_level=1)


def bench_load(count: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "images", Path(tmp) / "cache"
        start = time.perf_counter()
        write_png_folder(folder, count)
        written = time.perf_counter() - start
        os.environ["VAELAB_IMAGE_CACHE"] = str(cache)
        start = time.perf_counter()
        first = load_dataset("folder", folder, progress=False)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = load_dataset("folder", folder, progress=False)
        cached_s = time.perf_counter() - start
        assert torch.equal(first.train.images, second.train.images)
        n = len(first.train) + len(first.test)
        return ["## Loading a folder of 32x32 RGB PNGs", "",
                f"{n:,} files in 10 class folders (written in {written:.0f} s); {first.describe()}.", "",
                "| load | seconds | images / s |", "|---|---:|---:|",
                f"| first (decode in threads + write the cache) | {first_s:.1f} | {n / first_s:,.0f} |",
                f"| cached (file list and stats, then two arrays) | {cached_s:.2f} | {n / cached_s:,.0f} |", ""]


def bench_training(count: int) -> list[str]:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8))
    split = ImageSplit(images, torch.zeros(count, dtype=torch.int64))
    dataset = Dataset("folder", Path("."), split, split.head(1000), class_names=("all",))
    lines = ["## Training the conv VAE on 32x32x3 images", "",
             f"One epoch of {count:,} images, batch 128, latent 16, Adam, on the CPU; the epoch's time includes "
             "its evaluation points (5 in the first epoch, on 1,000 train and 1,000 test images).", "",
             "| arch | parameters | epoch s | training steps s | images / s (steps) |", "|---|---:|---:|---:|---:|"]
    for arch in ("conv", "mlp"):
        config = RunConfig(data=DataConfig(dataset="folder", train_eval_size=1000),
                           model=ModelConfig(arch=arch, latent_dim=16, image_shape=(3, 32, 32), likelihood="bernoulli"),
                           train=TrainConfig(epochs=1, device="cpu"))
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(config, dataset, run_dir, progress=False)
            start = time.perf_counter()
            history = fit(trainer)
            total = time.perf_counter() - start
        steps_s = float(history[-1]["train_s"])
        lines.append(f"| {arch} | {_parameters(config):,} | {total:.1f} | {steps_s:.1f} | {count / steps_s:,.0f} |")
    return [*lines, ""]


def _parameters(config: RunConfig) -> int:
    from vaelab.models import VAE

    return sum(p.numel() for p in VAE(config.model).parameters())


def bench_ssim() -> list[str]:
    lines = ["## SSIM: banded matrix product against 1-D convolutions", "",
             "Microseconds per image pair (one channel; the five moment maps filtered at once).", "",
             "| side | banded product | convolutions | convolutions / product |", "|---:|---:|---:|---:|"]
    for side in (28, 32, 64, 128, 256, 512, 1024, 1536, 2048):
        n = max(1, int(2000 * 28 * 28 / side / side))
        x, y = torch.rand(n, 1, side, side), torch.rand(n, 1, side, side)
        timings = []
        for limit in (10**6, 0):  # banded everywhere, then convolutions everywhere
            quality.SSIM_BANDED_MAX_SIDE = limit
            quality.ssim_per_image(x[:1], y[:1])
            reps = 3 if side <= 512 else 1
            start = time.perf_counter()
            for _ in range(reps):
                quality.ssim_per_image(x, y)
            timings.append((time.perf_counter() - start) / reps / n * 1e6)
        lines.append(f"| {side} | {timings[0]:,.0f} | {timings[1]:,.0f} | {timings[1] / timings[0]:.2f} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000, help="files in the generated folder")
    parser.add_argument("--train-images", type=int, default=10_000, help="images in the training epoch")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    lines = ["# vaelab image benchmarks", "", f"Machine: {machine()}.", ""]
    if "load" in sections:
        lines += bench_load(args.images)
    if "train" in sections:
        lines += bench_training(args.train_images)
    if "ssim" in sections:
        lines += bench_ssim()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
