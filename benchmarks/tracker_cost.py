"""What TensorBoard logging costs: the tracker hook per evaluation point, and its end-of-run summary.

Trains the default model (mlp, 512-256) for each latent size for the default 10 epochs on a slice of
the training set (15 evaluation points per run, as in a default study; the hook's cost does not depend
on the training set's size) with the TensorBoard tracker on, and times the hook at every evaluation
point, the whole evaluation point (scoring 10,000 training and 10,000 test images plus every hook), and
the end-of-run summary (hparams and the 2,000-point Embedding Projector with its sprite). Wall and CPU
seconds: on a shared machine wall time is noisy and CPU time is the better guide.

    PYTHONPATH=src python benchmarks/tracker_cost.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from artifact_cost import Clock  # the script's own folder is on the path

from vaelab.config import ModelConfig, RunConfig, TrainConfig
from vaelab.datasets import load_dataset
from vaelab.trackers import tracker_hook
from vaelab.training import Trainer


def measure(data, latent_dim: int, epochs: int, run_dir: Path) -> dict[str, float]:
    config = RunConfig(model=ModelConfig(latent_dim=latent_dim), train=TrainConfig(epochs=epochs, device="cpu"))
    trainer = Trainer(config, data, run_dir, progress=False)
    hook = tracker_hook(run_dir, config, trainer.test_x, trainer.test_labels, tensorboard=True, mlflow_uri=None)
    hook_times = []

    def timed_hook(point) -> None:
        clock = Clock()
        hook(point)
        hook_times.append(clock.read())

    trainer.hooks.append(timed_hook)
    evaluate = trainer._evaluate
    eval_times = []

    def timed_evaluate(*args) -> None:
        clock = Clock()
        evaluate(*args)
        eval_times.append(clock.read())

    trainer._evaluate = timed_evaluate
    history = trainer.run()
    clock = Clock()
    hook.finish({}, [])
    finish_wall, finish_cpu = clock.read()
    mean = lambda pairs, i: 1000 * sum(p[i] for p in pairs) / len(pairs)  # noqa: E731
    return {"points": len(history), "hook_wall_ms": mean(hook_times, 0), "hook_cpu_ms": mean(hook_times, 1),
            "eval_wall_ms": mean(eval_times, 0), "eval_cpu_ms": mean(eval_times, 1),
            "finish_wall_ms": 1000 * finish_wall, "finish_cpu_ms": 1000 * finish_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--latent-dims", default="2,4,16")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=6000)
    args = parser.parse_args()
    data = load_dataset("mnist", args.data_dir, download=False)
    data = data.head(args.train_size, len(data.test.images))
    print("| latent | points | TB hook per point, wall / CPU ms | whole evaluation point, wall / CPU ms "
          "| end-of-run summary, wall / CPU ms |")
    print("|---|---|---|---|---|")
    for d in (int(x) for x in args.latent_dims.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            r = measure(data, d, args.epochs, Path(tmp) / f"latent_{d}")
        print(f"| {d} | {r['points']} | {r['hook_wall_ms']:.1f} / {r['hook_cpu_ms']:.1f} | {r['eval_wall_ms']:.0f} / "
              f"{r['eval_cpu_ms']:.0f} | {r['finish_wall_ms']:.0f} / {r['finish_cpu_ms']:.0f} |")


if __name__ == "__main__":
    main()
