"""What the end-of-training measures cost, per run, and what the digit classifier costs to train once.

For each run directory given, times the IWAE log-likelihood at several K over the 10,000 test images,
and each part of ``final_measures`` (IWAE at the default K, active units, the latent probe, the
classifier-based generation score). With --classifier, also trains the digit classifier from its
default recipe (without touching the cache) and reports its time and test accuracy. Reports wall
and CPU seconds: on a shared machine wall time is noisy and CPU time is the better guide.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/measures_cost.py runs/study/latent_2 runs/study/latent_16 \\
        --data-dir ../shared/data/mnist --ks 8,32,200 --classifier
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vaelab.checkpoint import load_model
from vaelab.classifier import DEFAULT_RECIPE, accuracy, load_or_train_classifier, train_classifier
from vaelab.datasets import load_dataset
from vaelab.measures import DEFAULT_IWAE_K, final_measures, iwae_log_likelihood
from vaelab.prepare import as_float_images, evaluation_images


class Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> str:
        return f"wall {time.perf_counter() - self.wall:6.1f} s  cpu {time.process_time() - self.cpu:6.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--ks", default=f"{DEFAULT_IWAE_K}", help="comma-separated K for the IWAE timings")
    parser.add_argument("--classifier", action="store_true", help="also time the digit classifier's training")
    args = parser.parse_args()
    dataset = load_dataset("mnist", args.data_dir, download=False)
    print(f"torch threads: {torch.get_num_threads()}")
    if args.classifier:
        clock = Clock()
        model = train_classifier(DEFAULT_RECIPE, dataset, torch.device("cpu"))
        test_accuracy = accuracy(model, as_float_images(dataset.test.images, torch.device("cpu")), dataset.test.labels)
        print(f"digit classifier {DEFAULT_RECIPE}: {clock.read()}  test accuracy {test_accuracy:.4f}")
    classifier = load_or_train_classifier(dataset, "cpu")
    for run in args.runs:
        model, config = load_model(run)
        print(f"== {run}: {config.model.arch}, latent {config.model.latent_dim}, {config.model.likelihood}")
        test_x = as_float_images(dataset.test.images, torch.device("cpu"))
        if config.data.binarize:
            test_x = evaluation_images(test_x, True, "test")
        for k in (int(k) for k in args.ks.split(",")):
            clock = Clock()
            value = iwae_log_likelihood(model, test_x, k).mean().item()
            print(f"  IWAE K={k:<5} {value:9.2f} nats   {clock.read()}")
        clock = Clock()
        measures, seconds = final_measures(model, config, dataset, classifier)
        print(f"  final_measures (K={DEFAULT_IWAE_K}): {clock.read()}; "
              + ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items()))
        print("  " + ", ".join(f"{name} {value:.4g}" for name, value in measures.items()))


if __name__ == "__main__":
    main()
