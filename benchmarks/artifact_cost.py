"""What the per-run artifacts cost: the recorder hook per evaluation point, and the rendering per run.

Trains the default model for each latent size for the default 10 epochs (so 15 evaluation points, as
in a default study) on a slice of the training set, to keep this benchmark short; the artifacts'
cost does not depend on the training set's size, only on the number of evaluation points, the test
subsample (2,000 images) and the latent size. Reports wall and CPU seconds: on a shared machine wall
time is noisy and CPU time is the better guide to what an idle machine would take.

    PYTHONPATH=src python benchmarks/artifact_cost.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vaelab.callbacks import Callback
from vaelab.config import ModelConfig, RunConfig, TrainConfig
from vaelab.data import Dataset, ImageSplit
from vaelab.datasets import load_dataset
from vaelab.run_store import fit
from vaelab.training import Trainer
from vaelab.visualisation import ArtifactRecorder, render_run_artifacts


class Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def measure(data: Dataset, latent_dim: int, epochs: int, run_dir: Path, projection: str) -> dict[str, float]:
    config = RunConfig(model=ModelConfig(latent_dim=latent_dim), train=TrainConfig(epochs=epochs, device="cpu"))
    trainer = Trainer(config, data, run_dir, progress=False)
    recorder = ArtifactRecorder(run_dir, trainer.test_x, trainer.test_labels)
    hook_wall, hook_cpu = [], []

    class TimedRecorder(Callback):
        def on_eval_point(self, point) -> None:
            clock = Clock()
            recorder.on_eval_point(point)
            wall, cpu = clock.read()
            hook_wall.append(wall)
            hook_cpu.append(cpu)

    trainer.callbacks.append(TimedRecorder())
    clock = Clock()
    history = fit(trainer)
    train_wall, train_cpu = clock.read()
    clock = Clock()
    written = render_run_artifacts(run_dir, projection)
    render_wall, render_cpu = clock.read()
    return {
        "points": len(history),
        "hook_wall_ms": 1000 * sum(hook_wall) / len(hook_wall),
        "hook_cpu_ms": 1000 * sum(hook_cpu) / len(hook_cpu),
        "train_wall_s": train_wall,
        "train_cpu_s": train_cpu,
        "render_wall_s": render_wall,
        "render_cpu_s": render_cpu,
        "latent_gif_mb": written["latent_space.gif"].stat().st_size / 2**20,
        "recon_gif_mb": written["reconstructions.gif"].stat().st_size / 2**20,
        "frames_mb": sum(p.stat().st_size for p in (run_dir / "frames").iterdir()) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--latent-dims", default="2,4,16")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=6000, help="training images used (the test set is whole)")
    parser.add_argument("--projection", default="tsne")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this directory")
    args = parser.parse_args()
    full = load_dataset("mnist", args.data_dir, download=False)
    data = Dataset(full.name, full.root, ImageSplit(full.train.images[: args.train_size],
                                                    full.train.labels[: args.train_size]), full.test)
    print("| latent | points | hook per point, wall / CPU (ms) | training wall / CPU (s) | rendering wall / CPU (s) "
          "| latent GIF (MB) | reconstruction GIF (MB) | frames/ (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for d in (int(x) for x in args.latent_dims.split(",")):
            r = measure(data, d, args.epochs, root / f"latent_{d}", args.projection)
            print(f"| {d} | {r['points']} | {r['hook_wall_ms']:.0f} / {r['hook_cpu_ms']:.0f} "
                  f"| {r['train_wall_s']:.0f} / {r['train_cpu_s']:.0f} "
                  f"| {r['render_wall_s']:.1f} / {r['render_cpu_s']:.1f} "
                  f"| {r['latent_gif_mb']:.2f} | {r['recon_gif_mb']:.2f} | {r['frames_mb']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
