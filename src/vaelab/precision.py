"""Which floating-point precision the training step runs in, the autocast context for it, and where float64 lives.

``auto`` picks bf16 autocast where the hardware does bf16 arithmetic fast (CPUs with AMX or AVX-512-BF16,
CUDA GPUs of compute capability 8 and up) and fp32 elsewhere; bf16 asked for where it is only emulated (far
slower than fp32: see docs/performance.md) trains in fp32 with a notice. Evaluation always runs in fp32.

Float64 (the sums behind every recorded mean, the IWAE's log-sum-exp) lives on the host: Apple's MPS has no
float64 at all, and on a GPU the sums are a few numbers per batch. ``to_host_float64`` is the one way values
leave the device for it. Fixed random draws (the binarised test set, the evaluation and IWAE noise, prior
samples) come from CPU generators and are then moved, so a run on any device is scored on the same draws.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from . import architectures
from .errors import VaelabError

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def to_host_float64(values: torch.Tensor) -> torch.Tensor:
    """``values`` as float64 on the CPU (one copy; the device never holds a float64 tensor)."""
    return values.to(device="cpu", dtype=torch.float64)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_is_fast(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)
    return False


def emulating(device: torch.device) -> str:
    """Why ``device`` has no native bf16, in words."""
    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)} has no native bf16 arithmetic (it arrived with compute "
                "capability 8, Ampere)")
    return f"this CPU has no bf16 instructions ({' or '.join(CPU_BF16_FLAGS)})"


def resolve(requested: str, device: torch.device, arch: str) -> str:
    """'auto' | 'fp32' | 'bf16' -> the precision used: 'fp32' or 'bf16'."""
    if requested == "fp32":
        return "fp32"
    if requested == "bf16":
        if device.type not in ("cpu", "cuda"):
            raise VaelabError(f"--precision bf16 is not supported on {device.type}; use fp32 or auto.")
        if not bf16_is_fast(device):
            warnings.warn(f"--precision bf16: {emulating(device)}, where bf16 is emulated and slower than fp32; "
                          "training in fp32 instead.", UserWarning, stacklevel=2)
            return "fp32"
        return "bf16"
    if requested != "auto":
        raise VaelabError(f"unknown precision {requested!r}; choose auto, fp32 or bf16.")
    # Each architecture says whether auto may pick bf16 (architectures/, ``fast_in_bf16``).
    return "bf16" if bf16_is_fast(device) and architectures.get(arch).fast_in_bf16 else "fp32"


CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS's documented setting for reproducible results


def backend_record(device: torch.device, deterministic: bool) -> dict[str, str]:
    """What ``backend_settings`` sets, for the run's environment record."""
    benchmark = device.type == "cuda" and not deterministic
    return {"tf32": "off", "deterministic": "on" if deterministic else "off",
            "cudnn_benchmark": "on" if benchmark else "off"}


@contextlib.contextmanager
def backend_settings(device: torch.device, deterministic: bool) -> Iterator[None]:
    """The numerical settings of a run, set for its duration and restored after.

    TF32 is off: CUDA GPUs from Ampere on use it for convolutions by default, which would make "fp32" (and
    "evaluation is always fp32") untrue there. cuDNN picks its fastest kernels (``benchmark``) unless the run
    asks to be deterministic, which also fixes the cuBLAS workspace and refuses nondeterministic kernels.
    """
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # read when cuBLAS first runs
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
         torch.backends.cudnn.deterministic) = before[:4]
        torch.use_deterministic_algorithms(before[4])


def autocast(resolved: str, device: torch.device) -> contextlib.AbstractContextManager:
    if resolved == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
