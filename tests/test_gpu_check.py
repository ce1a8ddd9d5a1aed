"""benchmarks/gpu_check.py: every step runs (on a CPU, on tiny data, with --dry-run), so that the GPU check
cannot rot between the sessions that have a GPU to run it on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = ("tests", "throughput", "study", "wide", "deterministic", "faithful")


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_and_writes_its_report(mnist_dir, tmp_path):
    report = tmp_path / "report.md"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--data-dir", str(mnist_dir), "--device", "cpu",
                           "--dry-run", "--out", str(report)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    outcomes = dict(re.findall(r"^\| (\w+) \| (passed|failed|skipped) \| [\d.]+ \|$", text, flags=re.M))
    assert outcomes == dict.fromkeys(STEPS, "passed")
    assert "dry run" in text.splitlines()[0] and "Load average at the end:" in text
    # the GPU-gated tests are named as skipped here, each with its reason
    assert len(re.findall(r"SKIPPED \[\d+\] tests/test_gpu.py:\d+: needs", text)) >= 5
    # two --deterministic runs compared, and a fraction of the measured peak reported for the fp32 model
    assert "bitwise equal" in text
    assert re.search(r"\| default MLP \| fp32 \| [\d,]+ \| [\d.]+ \| [\d,.]+ \| [\d,]+ \| [\d.]+% \|", text)
