"""vaelab against the classic PyTorch VAE loop, on this machine and data, in one run.

Prints a Markdown report: the machine, the fp32 matmul rate and each model's FLOP floor per epoch,
training throughput of the classic loop and of vaelab's step on the identical model, the cost of one
evaluation point next to one training epoch, and a quality race at latent sizes 2, 4 and 16 (test -ELBO
after 20 classic epochs, and the wall time vaelab's default configuration needs to beat it).

    python benchmarks/bench_training.py --data-dir ../shared/data/mnist          # everything (~13 min on 2 cores)
    python benchmarks/bench_training.py --data-dir ../shared/data/mnist --sections study   # one section
    python benchmarks/bench_training.py --data-dir ../shared/data/mnist --quick  # fewer repeats and epochs

The classic loop is written out plainly below, as the pytorch/examples VAE does it (784-400-z MLP,
sigmoid output with summed binary cross-entropy, Adam 1e-3, batch 128, a shuffling DataLoader), with a
TensorDataset in place of torchvision's MNIST class.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaelab.data import load_dataset
from vaelab.models import VAE
from vaelab.training import Trainer, as_float_images, select_device

CLASSIC_HIDDEN = 400


# -- the classic loop, as in pytorch/examples/vae ------------------------------------------------


class ClassicVAE(nn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(784, CLASSIC_HIDDEN)
        self.fc21 = nn.Linear(CLASSIC_HIDDEN, latent_dim)
        self.fc22 = nn.Linear(CLASSIC_HIDDEN, latent_dim)
        self.fc3 = nn.Linear(latent_dim, CLASSIC_HIDDEN)
        self.fc4 = nn.Linear(CLASSIC_HIDDEN, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def classic_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def classic_train_epoch(model, optimizer, loader, device):
    model.train()
    for (data,) in loader:
        data = data.to(device)
        optimizer.zero_grad()
        recon, mu, logvar = model(data)
        classic_loss(recon, data, mu, logvar).backward()
        optimizer.step()


@torch.no_grad()
def classic_test_loss(model, loader, device) -> float:
    model.eval()
    total = 0.0
    for (data,) in loader:
        data = data.to(device)
        recon, mu, logvar = model(data)
        total += classic_loss(recon, data, mu, logvar).item()
    return total / len(loader.dataset)


def classic_loaders(train_x, test_x, seed):
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(train_x), batch_size=128, shuffle=True, generator=generator)
    test = DataLoader(TensorDataset(test_x), batch_size=128)
    return train, test


# -- measurements ---------------------------------------------------------------------------------


def machine_description(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads){gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}, device {device}")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device, repeats: int, n: int = 1024) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        synchronize(device)
        times.append((time.perf_counter() - start) / 10)
    return 2 * n**3 / statistics.median(times) / 1e9


def linear_flops_per_image(model: nn.Module) -> int:
    """Training FLOPs per image of the linear/conv layers: forward 2*in*out, backward twice that."""
    forward = sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    return 3 * forward


def time_classic_epoch(train_x, latent_dim, device, seed) -> float:
    torch.manual_seed(seed)
    model = ClassicVAE(latent_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader, _ = classic_loaders(train_x, train_x[:128], seed)
    synchronize(device)
    start = time.perf_counter()
    classic_train_epoch(model, optimizer, loader, device)
    synchronize(device)
    return time.perf_counter() - start


def vaelab_config(model: ModelConfig, epochs: int, seed: int, device: str, **train) -> RunConfig:
    return RunConfig(data=DataConfig(), model=model,
                     train=TrainConfig(epochs=epochs, seed=seed, device=device, **train))


def run_vaelab(config: RunConfig, dataset, workdir: Path) -> list[dict]:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    return Trainer(config, dataset, run_dir, progress=False).run()


def time_vaelab_epoch(dataset, latent_dim, device, seed, workdir) -> tuple[float, float, int]:
    """(seconds of pure training for one epoch, seconds per evaluation point, points) of vaelab's loop."""
    classic_model = ModelConfig(arch="mlp", latent_dim=latent_dim, hidden=(CLASSIC_HIDDEN,))
    config = vaelab_config(classic_model, 1, seed, str(device), batch_size=128, lr=1e-3)
    history = run_vaelab(config, dataset, workdir)
    eval_time = (history[-1]["time_s"] - history[-1]["train_s"]) / len(history)
    return history[-1]["train_s"], eval_time, len(history)


def race(dataset, train_x, test_x, latent_dim, epochs, device, seed, workdir) -> dict:
    torch.manual_seed(seed)
    model = ClassicVAE(latent_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader, test_loader = classic_loaders(train_x, test_x, seed)
    start = time.perf_counter()
    for _ in range(epochs):
        classic_train_epoch(model, optimizer, train_loader, device)
    synchronize(device)
    classic_wall = time.perf_counter() - start
    classic_elbo = classic_test_loss(model, test_loader, device)

    defaults = RunConfig()
    config = vaelab_config(ModelConfig(latent_dim=latent_dim), defaults.train.epochs, seed, str(device))
    history = run_vaelab(config, dataset, workdir)
    beaten = next((r for r in history if r["test"]["loss"] < classic_elbo), None)
    return {
        "latent": latent_dim, "classic_elbo": classic_elbo, "classic_s": classic_wall,
        "vaelab_elbo": history[-1]["test"]["loss"], "vaelab_epochs": history[-1]["epoch"],
        "vaelab_train_s": history[-1]["train_s"], "vaelab_total_s": history[-1]["time_s"],
        "beaten_at_epoch": beaten["epoch"] if beaten else None,
        "beaten_train_s": beaten["train_s"] if beaten else None,
    }


def print_throughput(args, device, dataset, train_x, workdir) -> None:
    gflops = matmul_gflops(device, args.repeats)
    print(f"fp32 matmul (1024x1024): {gflops:.0f} GFLOP/s\n")
    print("## Training throughput on the classic model (784-400-20 MLP, batch 128, Adam 1e-3)\n")
    classic_s = statistics.median(time_classic_epoch(train_x, 20, device, args.seed) for _ in range(args.repeats))
    timings = [time_vaelab_epoch(dataset, 20, device, args.seed, workdir) for _ in range(args.repeats)]
    vaelab_s = statistics.median(t[0] for t in timings)
    eval_point_s = statistics.median(t[1] for t in timings)
    n = len(dataset.train)
    floor_s = linear_flops_per_image(ClassicVAE(20)) * n / (gflops * 1e9)
    default_model = RunConfig().model
    default_floor_s = linear_flops_per_image(VAE(default_model)) * n / (gflops * 1e9)
    print("| loop | s / epoch | images/s | vs classic | FLOP floor s / epoch |")
    print("|---|---|---|---|---|")
    print(f"| classic (DataLoader) | {classic_s:.2f} | {n / classic_s:,.0f} | 1.00x | {floor_s:.2f} |")
    print(f"| vaelab step, same model | {vaelab_s:.2f} | {n / vaelab_s:,.0f} | {classic_s / vaelab_s:.2f}x "
          f"| {floor_s:.2f} |")
    print(f"\nFLOP floor of vaelab's default model ({default_model.arch} {default_model.hidden}): "
          f"{default_floor_s:.2f} s / epoch\n")
    print("## One evaluation point next to one training epoch (classic model)\n")
    print("| what | seconds |")
    print("|---|---|")
    print(f"| one training epoch (vaelab) | {vaelab_s:.2f} |")
    print(f"| one evaluation point: -ELBO, NLL, KL, MSE, SSIM, PSNR on 10k train + 10k test, "
          f"with the hooks attached | {eval_point_s:.2f} |")
    print()


def print_race(args, device, dataset, train_x, test_x, workdir) -> None:
    dims = [int(d) for d in args.latent_dims.split(",")]
    print(f"## Quality race: classic loop for {args.race_epochs} epochs vs vaelab's default configuration\n")
    defaults = RunConfig()
    print(f"vaelab default: {defaults.model.arch} hidden {defaults.model.hidden}, batch {defaults.train.batch_size}, "
          f"lr {defaults.train.lr:g}, {defaults.train.epochs} epochs. Test -ELBO in nats per image "
          "(one posterior sample per image).\n")
    print("| latent | classic -ELBO | classic s | vaelab -ELBO | vaelab train s (all epochs) | "
          "vaelab beats classic at epoch | vaelab train s to get there |")
    print("|---|---|---|---|---|---|---|")
    for d in dims:
        r = race(dataset, train_x, test_x, d, args.race_epochs, device, args.seed, workdir)
        beaten = "never" if r["beaten_at_epoch"] is None else f"{r['beaten_at_epoch']:g}"
        beaten_s = "-" if r["beaten_train_s"] is None else f"{r['beaten_train_s']:.1f}"
        print(f"| {d} | {r['classic_elbo']:.2f} | {r['classic_s']:.1f} | {r['vaelab_elbo']:.2f} | "
              f"{r['vaelab_train_s']:.1f} | {beaten} | {beaten_s} |", flush=True)
    print()


def print_study(args, device, workdir) -> None:
    """Times the default `vaelab study` end to end, as a user runs it, against its pure training time."""
    study_dir = workdir / "study"
    command = [sys.executable, "-m", "vaelab", "study", "--study-dir", str(study_dir), "--no-progress",
               "--device", str(device)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    print("## The default study, end to end (`vaelab study`: training, evaluation, measures, figures, report)\n")
    print("| latent | evaluation points | training steps s | trainer s (with evaluation) | s per evaluation point |")
    print("|---|---|---|---|---|")
    train_total = 0.0
    for run in sorted(study_dir.glob("latent_*"), key=lambda p: int(p.name.split("_")[1])):
        history = json.loads((run / "metrics.json").read_text())["history"]
        last = history[-1]
        train_total += last["train_s"]
        per_point = (last["time_s"] - last["train_s"]) / len(history)
        print(f"| {run.name.split('_')[1]} | {len(history)} | {last['train_s']:.1f} | {last['time_s']:.1f} | "
              f"{per_point:.2f} |")
    print(f"\nWhole study: {wall:.0f} s wall ({wall / 60:.1f} min); training steps alone: {train_total:.0f} s; "
          f"ratio {wall / train_total:.2f}x (target: at most 1.5x and 10 min).\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--race-epochs", type=int, default=20)
    parser.add_argument("--latent-dims", default="2,4,16")
    parser.add_argument("--sections", default="throughput,race,study",
                        help="comma-separated subset of: throughput, race, study")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 3-epoch race: a smoke run, not a result")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.race_epochs = 1, 3
    sections = set(args.sections.split(","))
    device = select_device(args.device)
    dataset = load_dataset("mnist", args.data_dir)
    train_x = as_float_images(dataset.train.images, torch.device("cpu")).view(-1, 784)
    test_x = as_float_images(dataset.test.images, torch.device("cpu")).view(-1, 784)
    workdir = Path(tempfile.mkdtemp(prefix="vaelab-bench-"))

    print("# vaelab benchmark\n")
    print(f"Machine: {machine_description(device)}\n")
    if "throughput" in sections:
        print_throughput(args, device, dataset, train_x, workdir)
    if "race" in sections:
        print_race(args, device, dataset, train_x, test_x, workdir)
    if "study" in sections:
        print_study(args, device, workdir)


if __name__ == "__main__":
    main()
