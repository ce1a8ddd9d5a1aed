"""The GPU check: what vaelab must get right on a GPU, with timings, in one command and one Markdown report.

    python benchmarks/gpu_check.py --data-dir ../shared/data/mnist            # on a CUDA (or MPS) machine, < 10 min
    python benchmarks/gpu_check.py --data-dir ../shared/data/mnist --device cpu --dry-run   # every step, tiny

It runs, in order, each step recorded as passed, failed (with its error) or skipped, the rest going on:

  tests          the GPU-gated tests (tests/test_gpu.py: exact resume, no host sync in the step, final measures,
                 figures and the explorer from a GPU run, NCCL on two GPUs, MPS), and the float64 guard
  throughput     training images/s of the default model and of --preset original-wide, their FLOPs per image
                 (torch's FLOP counter), the device's measured matmul peak and the fraction of it achieved
  study          the default study (latent sizes 2, 4, 16; 10 epochs), wall time
  wide           --preset original-wide -z 2 --epochs 2 in bf16 (the preset's) and fp32: time and test loss
  deterministic  the same --deterministic run twice: the checkpoints must be bitwise equal
  faithful       --preset original (the published network at full width) for as many epochs as the time
                 left allows (--budget-min, all steps together)

--dry-run cuts the data to a few hundred images, the runs to one epoch and the wide model's widths, so that CI
runs every step on a CPU and the script cannot rot before a GPU is lent; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from bench_training import load_text, machine_description, matmul_peak, synchronize
from torch.utils.flop_counter import FlopCounterMode

from vaelab import precision
from vaelab.checkpoint import load_checkpoint
from vaelab.config import RunConfig
from vaelab.datasets import load_dataset
from vaelab.pipeline import RunOptions, study, train
from vaelab.training import Trainer, select_device

REPO = Path(__file__).resolve().parents[1]
QUIET = RunOptions(progress=False, tensorboard=False, measures=False, artifacts=False)
TIMED_STEPS = 30  # per throughput figure, after WARMUP_STEPS (3 and 1 in a dry run)
WARMUP_STEPS = 5


@dataclasses.dataclass
class Step:
    name: str
    outcome: str = "skipped"
    seconds: float = 0.0
    lines: list[str] = dataclasses.field(default_factory=list)


class Check:
    """The steps' shared settings and the report they fill."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args, self.workdir = args, workdir
        self.device = select_device(args.device)
        self.dry = args.dry_run
        full = load_dataset("mnist", args.data_dir, progress=False)
        self.data = full.head(512, 128) if self.dry else full
        self.deadline = time.monotonic() + 60 * args.budget_min
        self.steps: list[Step] = []

    def config(self, preset: str | None = None, **settings) -> RunConfig:
        config = RunConfig.from_preset(preset) if preset else RunConfig()
        base = {"train.device": str(self.device), "train.epochs": 1 if self.dry else config.train.epochs}
        if self.dry:  # one evaluation point, on few images: the steps' code runs, their cost does not matter
            base.update({"train.evals_in_first_epoch": 0, "data.train_eval_size": 128})
        return config.with_settings({**base, **settings})

    def run(self, name: str, body: Callable[[], list[str]]) -> None:
        step = Step(name)
        started = time.perf_counter()
        try:
            step.lines = body()
            step.outcome = "passed"
        except Exception as exc:  # the report records it and the next step runs
            step.outcome = "failed"
            step.lines = [f"{type(exc).__name__}: {exc}", *traceback.format_exc().splitlines()[-6:]]
        step.seconds = time.perf_counter() - started
        self.steps.append(step)
        print(f"{name}: {step.outcome} in {step.seconds:.1f} s", flush=True)

    def report(self) -> str:
        head = [f"# vaelab GPU check{' (dry run: tiny data, numbers mean nothing)' if self.dry else ''}", "",
                f"Machine: {machine_description(self.device)}", f"Load average at the end: {load_text()}",
                f"Command: `{' '.join(sys.argv)}`", "", "| step | outcome | seconds |", "|---|---|---|",
                *(f"| {s.name} | {s.outcome} | {s.seconds:.1f} |" for s in self.steps)]
        body = [line for s in self.steps for line in ("", f"## {s.name}", "", *s.lines)]
        return "\n".join([*head, *body]) + "\n"


# -- the steps -----------------------------------------------------------------------------------


def gated_tests(check: Check) -> list[str]:
    tests = ["tests/test_gpu.py"] if check.dry else ["tests/test_gpu.py", "tests/test_precision.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests],
                          cwd=REPO, capture_output=True, text=True, timeout=max(60, check.args.budget_min * 60))
    lines = [line for line in done.stdout.splitlines() if line.startswith(("SKIPPED", "FAILED", "ERROR"))
             or " passed" in line or " skipped" in line or " failed" in line]
    if done.returncode not in (0, 5):  # 5: nothing collected
        raise AssertionError("\n".join(lines[-20:]) or done.stderr[-2000:])
    return [f"    {line}" for line in lines]


def step_rate(check: Check, config: RunConfig) -> tuple[float, float, str]:
    """(images/s, FLOPs per image, precision) of vaelab's training step on ``config``."""
    trainer = Trainer(config, check.data, check.workdir / "throughput", progress=False)
    state = trainer._fresh_state()
    epoch = trainer._start_epoch(state)
    model = state.model.train()
    warmup, timed = (1, 3) if check.dry else (WARMUP_STEPS, TIMED_STEPS)
    full_batches = max(1, len(check.data.train) // config.train.batch_size)  # the steps of whole batches

    def steps(count: int) -> None:
        for _ in range(count):
            trainer._step(state, model, epoch, state.step % full_batches)

    with FlopCounterMode(display=False) as flops:
        steps(1)
    steps(warmup)
    synchronize(check.device)
    started = time.perf_counter()
    steps(timed)
    synchronize(check.device)
    epoch.bar.close()
    rate = timed * config.train.batch_size / (time.perf_counter() - started)
    return rate, flops.get_total_flops() / config.train.batch_size, trainer.precision


def throughput(check: Check) -> list[str]:
    peaks = {"fp32": matmul_peak(check.device, torch.float32)}
    # Emulated bf16 (a CPU without AVX-512-BF16 or AMX, a GPU before Ampere) has no peak worth comparing with.
    if precision.bf16_is_fast(check.device):
        peaks["bf16"] = matmul_peak(check.device, torch.bfloat16)
    wide = {"model.channels": (16, 32)} if check.dry else {}
    lines = ["| model | precision | images/s | MFLOP per image | achieved GFLOP/s | peak GFLOP/s | of peak |",
             "|---|---|---|---|---|---|---|"]
    for label, config in (("default MLP", check.config()), ("original-wide", check.config("original-wide", **wide))):
        rate, flops, used = step_rate(check, config)
        peak = peaks.get(used)
        ceiling = (f"{peak / 1e9:,.0f} | {rate * flops / peak:.1%}" if peak
                   else f"— | — ({used} is emulated on this {check.device.type})")
        lines.append(f"| {label} | {used} | {rate:,.0f} | {flops / 1e6:.2f} | {rate * flops / 1e9:,.1f} | {ceiling} |")
    return [*lines, "", "The peak is a large square matrix product's at that precision; the convolutional model "
            "does part of its work outside matrix products, so its fraction is a rough guide."]


def default_study(check: Check) -> list[str]:
    dims = (2,) if check.dry else (2, 4, 16)
    started = time.perf_counter()
    options = RunOptions(progress=False, tensorboard=False, measures=not check.dry)
    result = study(dims, check.workdir / "study", check.config(), options, dataset=check.data, notify=lambda t: None)
    seconds = time.perf_counter() - started
    losses = ", ".join(f"z={d}: {r.test['loss']:.2f}" for d, r in result.runs.items())
    measured = "measures, " if options.measures else ""
    return [f"Latent sizes {', '.join(map(str, dims))}, {check.config().train.epochs} epoch(s), {measured}figures and "
            f"report: **{seconds:.1f} s**. Test -ELBO: {losses}."]


def wide_precisions(check: Check) -> list[str]:
    wide = {"model.channels": (16, 32)} if check.dry else {}
    lines = ["| precision asked | used | seconds | test loss | test SSIM |", "|---|---|---|---|---|"]
    for asked in ("bf16", "fp32"):
        config = check.config("original-wide", **{"model.latent_dim": 2, "train.epochs": 1 if check.dry else 2,
                                                  "train.precision": asked, **wide})
        started = time.perf_counter()
        result = train(config, check.workdir / f"wide_{asked}", QUIET, dataset=check.data, notify=lambda t: None)
        test = result.test
        seconds = time.perf_counter() - started
        used = json.loads((check.workdir / f"wide_{asked}" / "metrics.json").read_text())["environment"]["precision"]
        lines.append(f"| {asked} | {used} | {seconds:.1f} | {test['loss']:.2f} | {test['ssim']:.4f} |")
    return lines


def deterministic_twice(check: Check) -> list[str]:
    config = check.config(**{"model.latent_dim": 2, "train.epochs": 1, "train.deterministic": True})
    for name in ("first", "second"):
        train(config, check.workdir / f"deterministic_{name}", QUIET, dataset=check.data, notify=lambda t: None)
    a, b = (load_checkpoint(check.workdir / f"deterministic_{n}" / "checkpoint.pt") for n in ("first", "second"))
    differing = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    if differing or _without_times(a) != _without_times(b):
        raise AssertionError(f"two --deterministic runs differ: weights {differing[:5]}, or their metrics")
    return [f"Two 1-epoch runs of the default model at latent size 2 with --deterministic: the {len(a['model'])} "
            "weight tensors and every recorded metric bitwise equal."]


def _without_times(checkpoint: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time_s", "train_s")} for r in checkpoint["history"]]


def faithful(check: Check) -> list[str]:
    run_dir = check.workdir / "faithful"
    # A dry run cuts the widths as the wide step does: the step's code runs, the published model's cost does not.
    dry = {"train.precision": "fp32", "model.channels": (8, 16, 32)} if check.dry else {}
    config = check.config("original", **{"train.epochs": 1, **dry})
    started = time.perf_counter()
    train(config, run_dir, QUIET, dataset=check.data, notify=lambda t: None)
    per_epoch = time.perf_counter() - started
    epochs = 1 if check.dry else max(1, min(20, int((check.deadline - time.monotonic()) / per_epoch)))
    if epochs > 1:
        train(config, run_dir, dataclasses.replace(QUIET, resume=True, resume_epochs=epochs), dataset=check.data,
              notify=lambda t: None)
    test = load_checkpoint(run_dir / "checkpoint.pt")["history"][-1]["test"]
    return [f"--preset original (resnet-spatial, widths 32/64/128): {per_epoch:.1f} s for the first epoch, "
            f"{epochs} epoch(s) in {time.perf_counter() - started:.1f} s; test SSIM {test['ssim']:.4f}, "
            f"published SSIM {test['ssim_orig']:.4f}, published PSNR {test['psnr_orig']:.2f} dB."]


STEPS: dict[str, Callable[[Check], list[str]]] = {
    "tests": gated_tests, "throughput": throughput, "study": default_study, "wide": wide_precisions,
    "deterministic": deterministic_twice, "faithful": faithful,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="where MNIST is (default: vaelab's usual places)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dry-run", action="store_true", help="every step on tiny data: a smoke run, not a result")
    parser.add_argument("--budget-min", type=float, default=9.0, help="minutes for all steps (the faithful run fills "
                                                                      "what is left)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"some of {','.join(STEPS)}")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check" / "report.md")
    args = parser.parse_args(argv)
    unknown = set(args.steps.split(",")) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {', '.join(sorted(unknown))}; choose from {', '.join(STEPS)}")
    with tempfile.TemporaryDirectory(prefix="vaelab-gpu-check-") as work:
        check = Check(args, Path(work))
        for name in args.steps.split(","):
            check.run(name, lambda name=name: STEPS[name](check))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = check.report()
    args.out.write_text(text)
    print(text)
    print(f"report written to {args.out}")
    return 1 if any(step.outcome == "failed" for step in check.steps) else 0


if __name__ == "__main__":
    sys.exit(main())
