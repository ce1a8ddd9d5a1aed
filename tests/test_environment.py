"""vaelab.environment: the record of what a training session ran on, checked against the interpreter's
own answers and against git run independently; and its place in metrics.json and the report."""

import json
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.environment import PACKAGE_DIR, code_version, describe_environment


def test_the_record_holds_the_versions_processor_threads_and_device():
    record = describe_environment(torch.device("cpu"), 1, "/data/mnist")
    assert record["python"] == platform.python_version() and record["numpy"] == np.__version__
    assert record["torch"] == torch.__version__ and record["threads"] == str(torch.get_num_threads())
    assert record["cuda"] == (torch.version.cuda or "none") and record["device"] == "cpu"
    assert record["processes"] == "1" and record["data_dir"] == "/data/mnist"
    assert record["cpu"] and record["cpu"] != "not recorded"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert f": {record['cpu']}" in cpuinfo.read_text()
    assert all(isinstance(v, str) for v in record.values())


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, check=True).stdout.strip()


def test_the_commit_and_dirtiness_are_those_git_reports_for_the_source():
    if shutil.which("git") is None or subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"],
                                                     cwd=PACKAGE_DIR, capture_output=True).returncode != 0:
        pytest.skip("vaelab is not running from a git checkout here")
    version = code_version()
    assert version["git_commit"] == git("rev-parse", "HEAD")
    assert version["git_dirty"] == ("true" if git("status", "--porcelain", "--untracked-files=no") else "false")


def test_without_git_or_outside_a_checkout_the_record_says_so(tmp_path, monkeypatch):
    (tmp_path / "__init__.py").write_text("")
    assert code_version(tmp_path)["git_commit"] == "not a git checkout"
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    assert code_version() == {"git_commit": "not recorded", "git_dirty": "not recorded"}


def test_training_records_it_in_metrics_json(serve_study):
    environment = json.loads((serve_study / "latent_2" / "metrics.json").read_text())["environment"]
    assert environment["python"] == platform.python_version() and environment["numpy"] == np.__version__
    assert {"cuda", "cudnn", "cpu", "threads", "git_commit", "git_dirty", "device", "data_dir"} <= set(environment)
