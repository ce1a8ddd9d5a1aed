"""vaelab against the strongest plain PyTorch training loop, on this machine and data, in one run.

Prints a Markdown report with the ratios of issue 21, each against its target, and PASS / FAIL:

  (a) vaelab's training images per second / the plain loop's, on the 784-400-20 MLP, at every precision
      vaelab runs it in                                                                    (target >= 1.0x)
  (b) the same on the published project's model (--preset original)                       (target >= 1.0x)
  (c) the default study's (`vaelab study`) wall time, evaluation, measures, figures and report included,
      / the plain loop's time to train the same 30 epochs (3 latent sizes x 10)            (target <= 1.0x)
  (d) a 27-run grid at 10 epochs (3 beta x 3 latent sizes x 3 seeds), wall time     (target < 15 min; not
      run by default: --sections grid)

    python benchmarks/bench_training.py --data-dir ../shared/data/mnist            # a, b, c (~15 min on 2 cores)
    python benchmarks/bench_training.py --data-dir ../shared/data/mnist --sections mlp     # one part
    python benchmarks/bench_training.py --data-dir ../shared/data/mnist --sections grid    # the 27-run grid
    python benchmarks/bench_training.py --data-dir ../shared/data/mnist --sections race    # the quality race
    python benchmarks/bench_training.py --data-dir ../shared/data/mnist --quick    # 1 repeat: a smoke run

The plain loop is what a careful engineer writes without vaelab: the whole training set as one float
tensor in memory, batches taken by indexing a fresh random permutation each epoch (no DataLoader), the
network's output straight into a loss summed in its own kernel (BCE-with-logits), Adam with its fused kernel,
and no host sync inside the epoch. On the MLP it is written out below (pytorch/examples' 784-400-z VAE with
its two heads merged into one layer); on the preset and in (c) it trains vaelab's own network (the
architecture is the thing compared, not re-typed here) with the same objective. In (a) and (b) the two loops
are timed alternately, ``--repeats`` times each, and the medians compared, so load from other work on the
machine falls on both alike; the load average is printed beside every section.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vaelab import parallel, precision, rundir
from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaelab.datasets import load_dataset
from vaelab.losses import summed_negative_elbo
from vaelab.models import VAE
from vaelab.prepare import as_float_images
from vaelab.run_store import fit
from vaelab.training import Trainer, select_device

SECTIONS = ("mlp", "preset", "study", "grid", "race")
DEFAULT_SECTIONS = "mlp,preset,study"
PLAIN_HIDDEN = 400
PLAIN_LATENT = 20
PRESET_STEPS = 10  # the preset's step costs ~100 of the MLP's: a fixed number of steps, not an epoch
TARGETS = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 15.0}
GRID = ["--vary", "beta=0.5,1,4", "-z", "2,4,16", "--seeds", "3", "--epochs", "10"]
QUICK_GRID = ["--vary", "beta=0.5,4", "-z", "2", "--epochs", "1"]


# -- the plain loop ------------------------------------------------------------------------------------


class PlainVAE(nn.Module):
    """784-400-z: pytorch/examples' VAE, its mu and log-variance heads merged into one 400 -> 2z layer."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(784, PLAIN_HIDDEN)
        self.heads = nn.Linear(PLAIN_HIDDEN, 2 * latent_dim)
        self.fc3 = nn.Linear(latent_dim, PLAIN_HIDDEN)
        self.fc4 = nn.Linear(PLAIN_HIDDEN, 784)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.heads(F.relu(self.fc1(x))).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


def plain_mlp_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Summed BCE + KL per image, averaged over the batch (vaelab's objective, so the two learn alike)."""
    x = x.flatten(1)  # a view
    logits, mu, logvar = model(x)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kld) / len(x)


def plain_vaelab_model_loss(model: VAE, config: RunConfig, x: torch.Tensor) -> torch.Tensor:
    """A vaelab network trained by hand, fp32, default layout: its output straight into its likelihood, the
    batch's loss summed in the likelihood's own kernel."""
    logits, mu, logvar = model(x)
    return summed_negative_elbo(logits, x, mu, logvar, config.model.likelihood, config.train.beta,
                                model.decoder_std(), model.linear_output) / len(x)


def plain_epoch(model: nn.Module, loss_fn, optimizer, x: torch.Tensor, batch_size: int, steps: int,
                generator: torch.Generator) -> None:
    """``steps`` optimizer steps over one random permutation of ``x``: no DataLoader, no host sync."""
    order = torch.randperm(len(x), generator=generator).to(x.device)
    for i in range(steps):
        batch = x[order[i * batch_size : (i + 1) * batch_size]]
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def adam(model: nn.Module, train: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=train.lr, betas=train.betas, fused=device.type in ("cpu", "cuda"))


def time_plain(model: nn.Module, loss_fn, config: RunConfig, x: torch.Tensor, steps: int, device) -> float:
    """Images per second of the plain loop over ``steps`` steps from a fresh optimizer."""
    model = model.to(device)
    optimizer = adam(model, config.train, device)
    generator = torch.Generator().manual_seed(config.train.seed)
    synchronize(device)
    start = time.perf_counter()
    plain_epoch(model, loss_fn, optimizer, x, config.train.batch_size, steps, generator)
    synchronize(device)
    return min(steps * config.train.batch_size, len(x)) / (time.perf_counter() - start)


# -- vaelab's loop -------------------------------------------------------------------------------------


def time_vaelab(config: RunConfig, dataset, workdir: Path) -> tuple[float, str]:
    """(images per second of vaelab's training steps over one epoch of ``dataset``, the precision used).
    One evaluation at the epoch's end only, and it is not counted (the trainer's own train_s)."""
    trainer = Trainer(config, dataset, Path(tempfile.mkdtemp(dir=workdir)), progress=False)
    history = fit(trainer)
    return len(dataset.train) / history[-1]["train_s"], trainer.precision


def vaelab_precisions(device: torch.device, arch: str) -> list[str]:
    """auto, plus bf16 where auto resolves to fp32 on hardware that does bf16 fast."""
    if precision.resolve("auto", device, arch) == "fp32" and precision.bf16_is_fast(device):
        return ["auto", "bf16"]
    return ["auto"]


@dataclasses.dataclass
class Measured:
    """One loop's median throughput, the FLOPs of its step per image (torch's counter: matrix products and
    convolutions, forward and backward) and the precision it ran in."""

    rate: float
    flops: float
    used: str


def compare_loops(args, device, dataset, config: RunConfig, plain_model, plain_loss, steps: int,
                  workdir: Path) -> dict[str, Measured]:
    """Median images/s of the plain loop and of vaelab at each precision, timed alternately."""
    subset = dataset.head(steps * config.train.batch_size, 256)
    x = as_float_images(subset.train.images, device)
    results: dict[str, list[float]] = {}
    flops = {"plain loop (fp32)": (plain_flops_per_image(plain_model().to(device), plain_loss,
                                                         x[:config.train.batch_size]), "fp32")}
    precisions = vaelab_precisions(device, config.model.arch)
    for _ in range(args.repeats):
        torch.manual_seed(config.train.seed)
        plain = time_plain(plain_model(), plain_loss, config, x, steps, device)
        results.setdefault("plain loop (fp32)", []).append(plain)
        for p in precisions:
            variant = dataclasses.replace(config, train=dataclasses.replace(config.train, precision=p))
            rate, used = time_vaelab(variant, subset, workdir)
            name = f"vaelab --precision {p} (ran {used})"
            results.setdefault(name, []).append(rate)
            flops.setdefault(name, (vaelab_flops_per_image(variant, subset, workdir), used))
    return {name: Measured(statistics.median(rates), *flops[name]) for name, rates in results.items()}


def plain_flops_per_image(model: nn.Module, loss_fn, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        loss_fn(model, x).backward()
    return counter.get_total_flops() / len(x)


def vaelab_flops_per_image(config: RunConfig, dataset, workdir: Path) -> float:
    """FLOPs per image of one of vaelab's training steps (its first batch), counted as it runs."""
    trainer = Trainer(config, dataset, Path(tempfile.mkdtemp(dir=workdir)), progress=False)
    state = trainer._fresh_state()
    epoch = trainer._start_epoch(state)
    with FlopCounterMode(display=False) as counter:
        trainer._step(state, state.model.train(), epoch, 0)
    epoch.bar.close()
    return counter.get_total_flops() / config.train.batch_size


@functools.cache
def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square product on ``device`` (best of three): the ceiling a training step is read
    against. Emulated bf16 (no AVX-512-BF16 or AMX, a GPU before Ampere) is measured too, and is far below fp32."""
    n = 1024 if device.type == "cpu" else 8192
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    best = 0.0
    for _ in range(3):
        synchronize(device)
        started = time.perf_counter()
        a @ b
        synchronize(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - started))
    return best


PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def print_comparison(title: str, rates: dict[str, Measured], device: torch.device) -> float:
    """Prints the table, each loop against the plain loop and against the machine's matmul peak at the
    precision it ran in; returns the slowest vaelab rate over the plain loop's (every precision must keep up)."""
    plain = rates["plain loop (fp32)"].rate
    print(f"| {title} | images/s | vs plain loop | MFLOP per image | GFLOP/s | matmul peak GFLOP/s | of peak |")
    print("|---|---|---|---|---|---|---|")
    for name, m in rates.items():
        peak = matmul_peak(device, PEAK_DTYPES[m.used])
        achieved = m.rate * m.flops
        print(f"| {name} | {m.rate:,.0f} | {m.rate / plain:.2f}x | {m.flops / 1e6:.2f} | {achieved / 1e9:,.1f} | "
              f"{peak / 1e9:,.0f} ({m.used}) | {achieved / peak:.0%} |")
    worst = min(m.rate for name, m in rates.items() if name.startswith("vaelab"))
    side = 1024 if device.type == "cpu" else 8192
    print(f"\nLoad average after: {load_text()}. The peak is a {side}-square matrix product's, timed here at the "
          "precision each loop ran in.\n")
    return worst / plain


def section_mlp(args, device, dataset, workdir) -> float:
    print(f"## (a) Training throughput on the {PLAIN_HIDDEN}-hidden MLP (784-{PLAIN_HIDDEN}-{PLAIN_LATENT}, "
          "batch 128, Adam 1e-3)\n")
    print(f"Load average before: {load_text()}. One epoch of 60,000 images each, {args.repeats} alternating "
          "repeats, medians.\n")
    model = ModelConfig(arch="mlp", latent_dim=PLAIN_LATENT, hidden=(PLAIN_HIDDEN,))
    config = RunConfig(data=DataConfig(train_eval_size=256), model=model,
                       train=TrainConfig(epochs=1, seed=args.seed, device=str(device), evals_in_first_epoch=0))
    steps = -(-len(dataset.train) // config.train.batch_size)
    rates = compare_loops(args, device, dataset, config, lambda: PlainVAE(PLAIN_LATENT), plain_mlp_loss, steps,
                          workdir)
    return print_comparison("loop (784-400-20 MLP)", rates, device)


def preset_config(device, seed: int) -> RunConfig:
    """The config `vaelab train --preset original` builds."""
    return RunConfig.from_preset("original", **{"train.device": str(device), "train.seed": seed})


def section_preset(args, device, dataset, workdir) -> float:
    config = preset_config(device, args.seed)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, train_eval_size=256),
                                 train=dataclasses.replace(config.train, epochs=1, evals_in_first_epoch=0))
    m = config.model
    print(f"## (b) Training throughput on `--preset original` ({m.arch}, channels {m.channels}, latent {m.latent_dim}, "
          f"{m.likelihood}, batch {config.train.batch_size})\n")
    print(f"Load average before: {load_text()}. {PRESET_STEPS} steps each, {args.repeats} alternating repeats, "
          "medians. The plain loop trains the same network in fp32 and the default memory layout.\n")

    def plain_model() -> VAE:
        torch.manual_seed(config.train.seed)
        return VAE(config.model)

    rates = compare_loops(args, device, dataset, config, plain_model,
                          lambda model, x: plain_vaelab_model_loss(model, config, x), PRESET_STEPS, workdir)
    return print_comparison(f"loop ({m.arch})", rates, device)


# -- (c) the default study end to end ------------------------------------------------------------------


# The default study's final test -ELBO per latent size at main 5a6c889 (--precision fp32, recorded in
# docs/performance.md): the numbers a faster study must keep bitwise.
REFERENCE_TEST_LOSS = {2: 143.03601833839417, 4: 124.73958281936646, 16: 102.9090921535492}


def children_cpu_seconds() -> float:
    """User and system CPU seconds of every finished child process of this one (and their waited-for children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_study(args, device, study_dir: Path, extra: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `vaelab study` run as a user runs it (its own process, its default --jobs);
    the CPU seconds count its worker processes too."""
    command = [sys.executable, "-m", "vaelab", "study", "--study-dir", str(study_dir), "--no-progress",
               "--device", str(device), *extra]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    cpu, start = children_cpu_seconds(), time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, children_cpu_seconds() - cpu


def time_plain_training(args, device, dataset, latent_dims: list[int], epochs: int) -> float:
    """Seconds the plain loop takes to train the default model for ``epochs`` epochs at each latent size."""
    x = as_float_images(dataset.train.images, device)
    total = 0.0
    for z in latent_dims:
        config = RunConfig(model=ModelConfig(latent_dim=z), train=TrainConfig(seed=args.seed, device=str(device)))
        torch.manual_seed(config.train.seed)
        model = VAE(config.model).to(device)
        optimizer = adam(model, config.train, device)
        generator = torch.Generator().manual_seed(config.train.seed)
        steps = -(-len(x) // config.train.batch_size)
        synchronize(device)
        start = time.perf_counter()
        def loss(m: nn.Module, batch: torch.Tensor, config: RunConfig = config) -> torch.Tensor:
            return plain_vaelab_model_loss(m, config, batch)

        for _ in range(epochs):
            plain_epoch(model, loss, optimizer, x, config.train.batch_size, steps, generator)
        synchronize(device)
        total += time.perf_counter() - start
    return total


def section_study(args, device, dataset, workdir) -> float:
    """The default `vaelab study` as a user runs it, against the plain loop's training of the same epochs; then
    each ``--study-variant`` (the same study with some options added) against the same plain-loop time."""
    defaults = RunConfig()
    dims, epochs = [2, 4, 16], defaults.train.epochs
    print(f"## (c) The default study, end to end, against the plain loop's {len(dims) * epochs} epochs\n")
    print(f"Load average before: {load_text()}. `vaelab study` (latent sizes 2, 4, 16; {epochs} epochs; evaluation "
          "points, final measures, figures, GIFs and report; its default --jobs), in its own process. The "
          "classifier of the generation score is already cached (it is trained once per user and machine).\n")
    times = {"": timed_study(args, device, workdir / "study", [])}
    for i, variant in enumerate(args.study_variant or []):
        print(f"### The same study with `{variant}`\n\nLoad average before: {load_text()}.\n")
        times[variant] = timed_study(args, device, workdir / f"variant_{i}", shlex.split(variant))
    print(f"Load average before the plain loop: {load_text()}.")
    plain = time_plain_training(args, device, dataset, dims, epochs)
    print(f"The plain loop ({torch.get_num_threads()} threads, fp32) trained the default model "
          f"(784-512-256-z and its mirror, batch {defaults.train.batch_size}) for {epochs} epochs at each of the "
          f"{len(dims)} latent sizes in {plain:.0f} s. Load average after: {load_text()}.\n")
    cores = parallel.cores()
    print(f"| | wall time s | over the plain loop | CPU s (all its processes) | over {cores} cores x the plain loop's "
          "time |\n|---|---|---|---|---|")
    for variant, (wall, cpu) in times.items():
        print(f"| `vaelab study{' ' + variant if variant else ''}` (everything) | {wall:.0f} | {wall / plain:.2f}x | "
              f"{cpu:.0f} | {cpu / (cores * plain):.2f}x |")
    print(f"| plain loop, training only | {plain:.0f} | 1.00x | | |\n")
    print(f"(A study can finish within the plain loop's time only if the CPU seconds it needs fit in {cores} cores x "
          f"that time, {cores * plain:.0f} CPU-s, with every core busy throughout: the last column must be at most "
          "1.00x before the wall time can be.)\n")
    if len(times) > 1:
        print("(The target counts the default study alone: a variant changes what the study records or draws.)\n")
    return times[""][0] / plain


def timed_study(args, device, study_dir: Path, extra: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of `vaelab study` with ``extra`` options, and a table of its runs' final test -ELBO
    against 5a6c889's."""
    wall, cpu = run_study(args, device, study_dir, extra)
    print(f"Load average after the study: {load_text()}; {wall:.0f} s, {cpu:.0f} CPU-s.\n")
    print("| latent | evaluation points | training steps s | evaluation points s | final test -ELBO | "
          "equal to 5a6c889's |")
    print("|---|---|---|---|---|---|")
    for run in rundir.study_run_dirs(study_dir):
        history = json.loads((run / rundir.METRICS_JSON).read_text())["history"]
        last, z = history[-1], rundir.latent_dim_of(run)
        loss = last["test"]["loss"]
        same = {True: "yes, bitwise", False: "NO"}[loss == REFERENCE_TEST_LOSS.get(z)] if z in REFERENCE_TEST_LOSS \
            else "-"
        print(f"| {z} | {len(history)} | {last['train_s']:.1f} | {last['time_s'] - last['train_s']:.1f} | "
              f"{loss!r} | {same} |")
    print("\n(Each run's own clock: runs side by side share the cores, so these overlap.)\n")
    return wall, cpu


def section_grid(args, device, workdir) -> float | None:
    """Minutes a 27-run grid at 10 epochs takes (--quick: 2 runs of 1 epoch, a smoke run)."""
    grid = QUICK_GRID if args.quick else GRID
    print(f"## (d) A grid study: `vaelab study {' '.join(grid)}`\n")
    print(f"Load average before: {load_text()}. Its default --jobs, evaluation, final measures, figures and report "
          "included.\n")
    wall, cpu = run_study(args, device, workdir / "grid", grid)
    runs = len(list((workdir / "grid").glob("*=*")))
    print(f"{runs} runs in {wall / 60:.1f} min, {cpu / 60:.1f} CPU-min. Load average after: {load_text()}.\n")
    if args.quick:
        print("(--quick: a smoke run of the section, not the target's grid.)\n")
        return None
    return wall / 60


# -- the quality race (not part of the targets) --------------------------------------------------------


def section_race(args, device, dataset, workdir) -> None:
    dims = [int(d) for d in args.latent_dims.split(",")]
    defaults = RunConfig()
    print(f"## Quality race: the plain loop for {args.race_epochs} epochs vs vaelab's default configuration\n")
    print(f"Plain loop: 784-400-z, batch 128, Adam 1e-3. vaelab default: {defaults.model.arch} hidden "
          f"{defaults.model.hidden}, {defaults.train.epochs} epochs. Test -ELBO in nats per image (one posterior "
          f"sample per image). Load average before: {load_text()}.\n")
    print("| latent | plain -ELBO | plain s | vaelab -ELBO | vaelab train s | vaelab beats plain at epoch | "
          "vaelab train s to get there |")
    print("|---|---|---|---|---|---|---|")
    train_x = as_float_images(dataset.train.images, device).view(len(dataset.train), -1)
    test_x = as_float_images(dataset.test.images, device).view(len(dataset.test), -1)
    for d in dims:
        torch.manual_seed(args.seed)
        model = PlainVAE(d).to(device)
        config = RunConfig(train=TrainConfig(seed=args.seed))
        optimizer = adam(model, config.train, device)
        generator = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        for _ in range(args.race_epochs):
            plain_epoch(model, plain_mlp_loss, optimizer, train_x, 128, -(-len(train_x) // 128), generator)
        synchronize(device)
        plain_s = time.perf_counter() - start
        with torch.no_grad():
            plain_elbo = sum(plain_mlp_loss(model, test_x[i : i + 2000]).item() * len(test_x[i : i + 2000])
                             for i in range(0, len(test_x), 2000)) / len(test_x)
        vaelab_config = RunConfig(model=ModelConfig(latent_dim=d),
                                  train=TrainConfig(seed=args.seed, device=str(device)))
        history = Trainer(vaelab_config, dataset, Path(tempfile.mkdtemp(dir=workdir)), progress=False).run()
        beaten = next((r for r in history if r["test"]["loss"] < plain_elbo), None)
        at_epoch = "never" if beaten is None else f"{beaten['epoch']:g}"
        at_s = "-" if beaten is None else f"{beaten['train_s']:.1f}"
        print(f"| {d} | {plain_elbo:.2f} | {plain_s:.1f} | {history[-1]['test']['loss']:.2f} | "
              f"{history[-1]['train_s']:.1f} | {at_epoch} | {at_s} |", flush=True)
    print()


# -- the machine ---------------------------------------------------------------------------------------


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def machine_description(device: torch.device) -> str:
    cpu, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    bf16 = ", ".join(sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})) or "none"
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), bf16 instructions: {bf16}"
            f"{gpu}; torch {torch.__version__}, Python {platform.python_version()}, device {device}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def print_targets(ratios: dict[str, float | None]) -> None:
    rows = (("a", "vaelab (slowest precision) / plain loop, images/s, 784-400-20 MLP", ">=", "x"),
            ("b", "vaelab (slowest precision) / plain loop (fp32), images/s, --preset original", ">=", "x"),
            ("c", "default study's wall time / the plain loop's 30 epochs of training", "<=", "x"),
            ("d", "27-run grid at 10 epochs, wall time", "<", " min"))
    print("## Targets\n")
    print("| ratio | measured | target | result |")
    print("|---|---|---|---|")
    for key, what, sense, unit in rows:
        value = ratios.get(key)
        if value is None:
            print(f"| ({key}) {what} | not run | {sense} {TARGETS[key]}{unit} | - |")
            continue
        met = {">=": value >= TARGETS[key], "<=": value <= TARGETS[key], "<": value < TARGETS[key]}[sense]
        print(f"| ({key}) {what} | **{value:.2f}{unit}** | {sense} {TARGETS[key]}{unit} | "
              f"{'PASS' if met else 'FAIL'} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--race-epochs", type=int, default=20)
    parser.add_argument("--latent-dims", default="2,4,16", help="the race's latent sizes")
    parser.add_argument("--sections", default=DEFAULT_SECTIONS,
                        help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: {DEFAULT_SECTIONS})")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 3-epoch race: a smoke run, not a result")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--study-variant", action="append", metavar="OPTIONS",
                        help="also time the study with these `vaelab study` options added (repeatable), against the "
                             "same plain-loop time, e.g. \"--projection pca\"")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads here and in the study's process (default: torch's choice). On a machine "
                             "other work keeps busy, 1 thread measures the code; 2 threads mostly measure how long "
                             "each waits for the other to be scheduled")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.quick:
        args.repeats, args.race_epochs = 1, 3
    sections = set(args.sections.split(","))
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    device = select_device(args.device)
    dataset = load_dataset("mnist", args.data_dir)
    workdir = Path(tempfile.mkdtemp(prefix="vaelab-bench-"))

    print("# vaelab benchmark\n")
    print(f"Command: `python benchmarks/bench_training.py {shlex.join(sys.argv[1:])}`\n")
    print(f"Machine: {machine_description(device)}. Started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")
    ratios: dict[str, float | None] = {}
    if "mlp" in sections:
        ratios["a"] = section_mlp(args, device, dataset, workdir)
    if "preset" in sections:
        ratios["b"] = section_preset(args, device, dataset, workdir)
    if "study" in sections:
        ratios["c"] = section_study(args, device, dataset, workdir)
    if "grid" in sections:
        ratios["d"] = section_grid(args, device, workdir)
    if "race" in sections:
        section_race(args, device, dataset, workdir)
    if ratios:
        print_targets(ratios)


if __name__ == "__main__":
    main()
