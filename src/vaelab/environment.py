"""What a training session ran on and with, recorded in metrics.json so a result can be traced later:
the software versions, the processor and threads, the device, and the code's git commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

NOT_RECORDED = "not recorded"
GIT_TIMEOUT_S = 5.0
PACKAGE_DIR = Path(__file__).resolve().parent


def describe_environment(device: torch.device, processes: int, data_dir: str | Path) -> dict[str, str]:
    """Everything as strings, so the record reads the same in JSON, the CSV and the report."""
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
        "processes": str(processes),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "cpu": cpu_model(),
        "threads": str(torch.get_num_threads()),
        "platform": platform.platform(),
        **code_version(),
        "data_dir": str(data_dir),
    }


def cpu_model() -> str:
    """The processor's marketing name where the OS says it (Linux /proc/cpuinfo, macOS sysctl), else the
    architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        name = _run(["sysctl", "-n", "machdep.cpu.brand_string"], Path("/"))
        if name:
            return name
    return platform.processor() or platform.machine() or NOT_RECORDED


def code_version(source: Path = PACKAGE_DIR) -> dict[str, str]:
    """The git commit vaelab's own source was checked out at and whether its tracked files differ from it;
    "not a git checkout" for an installed package, "not recorded" where git is missing."""
    # The source must be tracked by the repository git finds: a package installed into a virtual environment
    # that happens to sit inside some other checkout is not that checkout's code.
    tracked = _run(["git", "ls-files", "--error-unmatch", "__init__.py"], source)
    if tracked is None:
        return {"git_commit": NOT_RECORDED, "git_dirty": NOT_RECORDED}
    commit = _run(["git", "rev-parse", "HEAD"], source) if tracked else ""
    if not commit:
        return {"git_commit": "not a git checkout", "git_dirty": NOT_RECORDED}
    changed = _run(["git", "status", "--porcelain", "--untracked-files=no"], source)
    return {"git_commit": commit, "git_dirty": NOT_RECORDED if changed is None else str(bool(changed)).lower()}


def _run(command: list[str], cwd: Path) -> str | None:
    """The command's stripped output; "" when it fails; None when it cannot run at all (not installed)."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else ""
