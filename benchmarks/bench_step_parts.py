"""What each of vaelab's differences from the plain loop costs in its training step, one at a time.

    python benchmarks/bench_step_parts.py --data-dir ../shared/data/mnist

Times bench_training's plain loop (784-400-20 MLP, batch 128, fused Adam) in four variants, alternately,
``--repeats`` times each, and prints the medians against the plain loop: its own summed cross-entropy on a float
copy of the data; the per-image loss vaelab's evaluation uses (``losses.negative_elbo``, per pixel, then per
image, then the mean); the images kept as uint8 and converted per batch (as vaelab's trainer does); both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from bench_training import PlainVAE, load_text

from vaelab.datasets import load_dataset
from vaelab.losses import negative_elbo
from vaelab.prepare import as_float_images

BATCH = 128


def summed_loss(model, x):
    x = x.flatten(1)
    logits, mu, logvar = model(x)
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + kld) / len(x)


def per_image_loss(model, x):
    x = x.flatten(1)
    logits, mu, logvar = model(x)
    return negative_elbo(logits, x, mu, logvar, "bernoulli", 1.0)[0].mean()


def images_per_second(loss_fn, batches, steps: int) -> float:
    torch.manual_seed(0)
    model = PlainVAE(20)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    started = time.perf_counter()
    for i in range(steps):
        loss = loss_fn(model, batches(i))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * BATCH / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    images = torch.as_tensor(load_dataset("mnist", args.data_dir, progress=False).train.images)
    floats = as_float_images(images)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))

    def float_batch(i):
        return floats[order[i * BATCH:(i + 1) * BATCH]]

    def uint8_batch(i):
        return as_float_images(images[order[i * BATCH:(i + 1) * BATCH]])

    variants = {"plain loop (summed loss, float data)": (summed_loss, float_batch),
                "per-image loss": (per_image_loss, float_batch),
                "uint8 data converted per batch": (summed_loss, uint8_batch),
                "both": (per_image_loss, uint8_batch)}
    print(f"Load average before: {load_text()}; torch threads {torch.get_num_threads()}\n")
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (loss_fn, batches) in variants.items():
            rates[name].append(images_per_second(loss_fn, batches, args.steps))
    base = statistics.median(rates["plain loop (summed loss, float data)"])
    print("| variant | images/s | vs plain loop |\n|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {statistics.median(values) / base:.3f}x |")
    print(f"\nLoad average after: {load_text()}")


if __name__ == "__main__":
    main()
