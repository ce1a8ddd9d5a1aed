"""Runs survive kill -9 and Ctrl-C, resume exactly, never keep a diverged model, reject bad input clearly.

The kill and Ctrl-C tests run the real CLI in subprocesses on a small IDX set cut from MNIST (1024
training and 256 test images, 8 steps an epoch, 3 epochs) and interrupt them at chosen moments with
tests/fault_driver.py. Every interrupted run is resumed until it finishes, and its result is compared
with an uninterrupted run of the same settings: weights, optimizer and noise-generator state bitwise,
metrics exactly (all but the wall-clock ``time_s`` and ``train_s``).
"""

from __future__ import annotations

import builtins
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import vaelab
import vaelab.atomic
import vaelab.training
from fault_driver import moment_patch, send
from helpers import OnPoint, one_line, read_only_copy, write_idx, write_idx_dataset
from vaelab.checkpoint import load_checkpoint, load_model
from vaelab.cli import cli, summary_line
from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaelab.data import TEST_IMAGES, TRAIN_IMAGES, TRAIN_LABELS, read_idx
from vaelab.datasets import load_dataset
from vaelab.prepare import as_float_images
from vaelab.run_store import fit
from vaelab.training import EvalPoint, Trainer

pytestmark = pytest.mark.slow  # real CLI runs in subprocesses, killed and resumed

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("fault_driver.py")
# One thread: the same arithmetic in every subprocess, and less contention on a small machine.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]), "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}
SETTINGS = ["--hidden", "64", "--batch-size", "128", "--train-eval-size", "500", "--epochs", "3",
            "--device", "cpu", "--no-progress", "--no-measures"]  # the final measures: test_measures.py
# The studies here run their sizes one after another in the study's own process, where the faults are injected.
ONE_AT_A_TIME = ["--jobs", "1"]
N_TRAIN, N_TEST = 1024, 256  # 8 steps an epoch: evaluation points at steps 1, 3, 4, 5, 7, then 8, 16, 24


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Runs in this process use one thread too, as the subprocesses do (see ENV)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_idx(mnist, tmp_path_factory) -> Path:
    """The first images of MNIST as a custom ``--dataset idx`` set."""
    return write_idx_dataset(tmp_path_factory.mktemp("small_idx"), mnist.head(N_TRAIN, N_TEST))


@pytest.fixture(scope="module")
def tiny(small_idx) -> list[str]:
    return ["--dataset", "idx", "--data-dir", str(small_idx), *SETTINGS]


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> Path:
    """An uninterrupted study of latent sizes 2, 3 and 4; its latent_2 is also the uninterrupted `train`. It
    draws no figures: they never feed back into training, and what the tests compare is the trained state."""
    study = tmp_path_factory.mktemp("reference")
    done = run_vaelab("study", "--study-dir", str(study), "--latent-dims", "2,3,4", *tiny, "--no-artifacts",
                      *ONE_AT_A_TIME)
    assert done.returncode == 0, done.stderr
    return study


def run_vaelab(*args: str, fault: tuple[str, int, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m vaelab ARGS``, or the same CLI under fault_driver.py (MOMENT, N, SIGNAL)."""
    driver = [str(DRIVER), fault[0], str(fault[1]), fault[2]] if fault else ["-m", "vaelab"]
    return subprocess.run([sys.executable, *driver, *args], env=ENV, capture_output=True, text=True, timeout=300)


def invoke(*args: str):
    """The CLI in this process; an exception that is not a clean exit fails the test with its traceback."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def strict_json(path: Path) -> dict:
    def reject(constant: str):
        pytest.fail(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


WALL_CLOCK = ("time_s", "train_s")  # the only fields in which a resumed run differs from an uninterrupted one


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in WALL_CLOCK} for record in history]


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in csv.DictReader(f)]


def stale_temp_files(run: Path) -> list[Path]:
    return sorted(run.glob(".*.tmp*"))


def check_consistent(run: Path, ref: Path) -> tuple[dict | None, list[dict]]:
    """What a kill left: a loadable checkpoint (or none) and metrics files, each a prefix of the reference
    history with no record duplicated or missing, metrics.json never ahead of the checkpoint."""
    ref_history = without_time(strict_json(ref / "metrics.json")["history"])
    history = strict_json(run / "metrics.json")["history"] if (run / "metrics.json").exists() else []
    assert without_time(history) == ref_history[: len(history)]
    if (run / "metrics.csv").exists():
        rows = csv_rows(run / "metrics.csv")
        assert rows == csv_rows(ref / "metrics.csv")[: len(rows)] and len(rows) <= len(history)
    checkpoint = load_checkpoint(run / "checkpoint.pt") if (run / "checkpoint.pt").exists() else None
    held = checkpoint["history"] if checkpoint is not None else []
    assert without_time(held) == ref_history[: len(held)]
    assert history == held[: len(history)]
    return checkpoint, history


def assert_same_run(run: Path, ref: Path) -> None:
    """Bitwise the same final state as the reference run, and the same metrics but for wall-clock times."""
    a, b = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(ref / "checkpoint.pt")
    for name, tensor in b["model"].items():
        assert torch.equal(a["model"][name], tensor), name
    for index, moments in b["optimizer"]["state"].items():
        for key, tensor in moments.items():
            assert torch.equal(a["optimizer"]["state"][index][key], tensor), (index, key)
    assert torch.equal(a["noise"], b["noise"])
    assert (a["epoch"], a["step"], a["step_in_epoch"]) == (b["epoch"], b["step"], b["step_in_epoch"])
    ours, theirs = strict_json(run / "metrics.json"), strict_json(ref / "metrics.json")
    assert without_time(ours["history"]) == without_time(theirs["history"])
    assert ours["config"] == theirs["config"] and ours["eval_sizes"] == theirs["eval_sizes"]
    assert csv_rows(run / "metrics.csv") == csv_rows(ref / "metrics.csv")
    assert stale_temp_files(run) == []


def snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())
            if p.is_file() and p.name != ".lock"}


# --- kill -9 ------------------------------------------------------------------------------------


def test_kill_9_at_any_moment_then_resume_gives_the_uninterrupted_run(tiny, reference, tmp_path):
    ref, run = reference / "latent_2", tmp_path / "run"
    resume = ["train", "--run-dir", str(run), "--resume", "--no-measures", "--no-progress", "--no-artifacts"]

    # During the 3rd evaluation point of epoch 1 (step 4): no checkpoint yet, so no history on disk either.
    killed = run_vaelab("train", "-z", "2", "--run-dir", str(run), *tiny, fault=("eval", 3, "KILL"))
    assert killed.returncode == -signal.SIGKILL
    checkpoint, history = check_consistent(run, ref)
    assert checkpoint is None and history == []

    # While writing the first checkpoint: its temporary file is complete but never renamed into place.
    killed = run_vaelab(*resume, fault=("write:checkpoint.pt", 1, "KILL"))
    assert killed.returncode == -signal.SIGKILL
    checkpoint, history = check_consistent(run, ref)
    assert checkpoint is None and history == []
    assert [p.name.split(".tmp")[0] for p in stale_temp_files(run)] == [".checkpoint.pt"]

    # Between metrics.json and metrics.csv at the end of epoch 2, both written after its checkpoint; the
    # leftover temporary file was cleared.
    killed = run_vaelab(*resume, fault=("write:metrics.csv", 2, "KILL"))
    assert killed.returncode == -signal.SIGKILL
    checkpoint, history = check_consistent(run, ref)
    assert checkpoint["epoch"] == 2 and len(history) == 7 and len(csv_rows(run / "metrics.csv")) == 6
    assert [p.name.split(".tmp")[0] for p in stale_temp_files(run)] == [".metrics.csv"]
    epoch_2 = checkpoint["history"]
    saved = snapshot(run)["checkpoint.pt"]

    # In the middle of step 21 (the 5th of this process), after the backward pass, before the update.
    killed = run_vaelab(*resume, fault=("step", 5, "KILL"))
    assert killed.returncode == -signal.SIGKILL
    checkpoint, history = check_consistent(run, ref)
    assert snapshot(run)["checkpoint.pt"] == saved and len(history) == 7

    finished = run_vaelab(*resume)
    assert finished.returncode == 0, finished.stderr
    assert_same_run(run, ref)
    # Resumed, not restarted: epoch 2's records are the ones the checkpoint carried, wall-clock times included.
    assert strict_json(run / "metrics.json")["history"][:7] == epoch_2


def frames_hook(calls: list[int], kill_at: int | None = None):
    """Saves each evaluation point's record and test-set posterior means to frames/NNN.pt, not atomically,
    as artifact hooks keep per-point data; with ``kill_at`` the process is killed half-way through that file."""

    def hook(point: EvalPoint) -> None:
        calls.append(point.index)
        buffer = io.BytesIO()
        torch.save({"record": point.record, "test_mu": point.test_mu}, buffer)
        data = buffer.getvalue()
        (point.run_dir / "frames").mkdir(exist_ok=True)
        with open(point.run_dir / "frames" / f"{point.index:03d}.pt", "wb") as f:
            f.write(data[: len(data) // 2])
            if point.index == kill_at:
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            f.write(data[len(data) // 2 :])

    return hook


def train_with_frames(run_dir: str, data_dir: str, resume: bool = False, kill_at: int | None = None) -> list[int]:
    """The reference run's settings, through the Python API with an artifact hook; the indices it was given."""
    config = RunConfig(DataConfig(dataset="idx", data_dir=data_dir, train_eval_size=500),
                       ModelConfig(latent_dim=2, hidden=(64,)), TrainConfig(epochs=3, batch_size=128, device="cpu"))
    calls: list[int] = []
    callbacks = [OnPoint(frames_hook(calls, kill_at))]
    fit(Trainer(config, load_dataset("idx", data_dir), run_dir, callbacks=callbacks, progress=False), resume=resume)
    return calls


def test_kill_9_while_a_hook_writes_artifacts_then_resume_rewrites_them(small_idx, reference, tmp_path):
    run = tmp_path / "run"
    # Killed half-way through the artifact of point 6, the end of epoch 2; epoch 1 is checkpointed.
    script = f"import test_reliability as t; t.train_with_frames({str(run)!r}, {str(small_idx)!r}, kill_at=6)"
    killed = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with pytest.raises(Exception):  # noqa: B017 - the torn artifact: torch raises one of several types
        torch.load(run / "frames" / "006.pt", weights_only=True)

    calls = train_with_frames(str(run), str(small_idx), resume=True)
    assert calls == [6, 7]  # every point after the checkpoint, once, under its own index
    ref_history = without_time(strict_json(reference / "latent_2" / "metrics.json")["history"])
    frames = [torch.load(run / "frames" / f"{i:03d}.pt", weights_only=True) for i in range(8)]
    assert without_time([frame["record"] for frame in frames]) == ref_history
    model, _ = load_model(run)
    with torch.no_grad():
        final_mu, _ = model.encode(as_float_images(load_dataset("idx", small_idx).test.images, torch.device("cpu")))
    assert torch.equal(frames[-1]["test_mu"], final_mu)


# --- Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_finishes_the_step_checkpoints_and_resumes_exactly(tiny, reference, tmp_path, monkeypatch):
    # In this process: a real SIGINT that the process sends itself at the chosen moment.
    ref, run = reference / "latent_2", tmp_path / "run"
    resume = ["train", "--run-dir", run, "--resume", "--no-measures", "--no-progress"]
    hint = f"Continue with: vaelab train --run-dir {run} --resume"
    ref_history = without_time(strict_json(ref / "metrics.json")["history"])

    for command, (moment, n), step, records in [
        (["train", "-z", "2", "--run-dir", run, *tiny], ("eval", 3), 4, 3),  # during an evaluation in epoch 1
        (resume, ("step", 7), 11, 6),  # during step 11, the 7th of the resumed run
        (resume, ("write:checkpoint.pt", 1), 16, 7),  # while the end of epoch 2 is being saved
    ]:
        with monkeypatch.context() as patch:
            patch.setattr(*moment_patch(moment, n, send(signal.SIGINT)))
            stopped = invoke(*command)
        message = one_line(stopped.output)
        assert stopped.exit_code == 130, stopped.output
        assert f"interrupted at step {step} " in message and hint in message
        checkpoint, history = check_consistent(run, ref)
        assert checkpoint["step"] == step  # the step under way was finished, no other was started
        assert without_time(checkpoint["history"]) == ref_history[:records] and len(history) == records
        assert stale_temp_files(run) == []

    assert invoke(*resume).exit_code == 0
    assert_same_run(run, ref)


def test_a_second_ctrl_c_aborts_at_once_and_keeps_the_last_checkpoint(tiny, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert invoke("train", "--run-dir", run, *tiny, "--epochs", "1").exit_code == 0
    before = snapshot(run)

    def ctrl_c_twice() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(*moment_patch("step", 3, ctrl_c_twice))
    result = invoke("train", "--run-dir", run, "--resume", "--no-measures", "--epochs", "2", "--no-progress")
    assert result.exit_code == 130 and "vaelab: interrupted." in result.output
    after = snapshot(run)
    assert all(after[name] == before[name] for name in ("checkpoint.pt", "metrics.json", "metrics.csv"))
    assert stale_temp_files(run) == []


# --- numerical faults ---------------------------------------------------------------------------


def test_an_absurd_learning_rate_stops_with_the_step_and_the_cause(tiny, tmp_path):
    run = tmp_path / "run"
    result = invoke("train", "--run-dir", run, *tiny, "--lr", "1e6")
    message = one_line(result.output)
    assert result.exit_code == 3, result.output
    step = int(re.search(r"(?:at|after|by) step (\d+)", message).group(1))
    assert "--lr, now 1e+06" in message and "No checkpoint had been saved yet" in message
    assert step <= 8  # in epoch 1: no checkpoint, so no history on disk to run ahead of it
    assert not (run / "checkpoint.pt").exists() and not (run / "metrics.json").exists()


def poison_the_training_loss(monkeypatch, at_call: int, make_bad) -> None:
    real = vaelab.training.summed_negative_elbo
    calls = 0

    def poisoned(*args, **kwargs):
        nonlocal calls
        calls += 1
        loss = real(*args, **kwargs)
        return make_bad(loss) if calls == at_call else loss

    monkeypatch.setattr(vaelab.training, "summed_negative_elbo", poisoned)


def test_a_nan_loss_keeps_the_last_good_checkpoint_untouched(tiny, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert invoke("train", "--run-dir", run, *tiny, "--epochs", "1").exit_code == 0
    before = snapshot(run)
    poison_the_training_loss(monkeypatch, at_call=3, make_bad=lambda loss: loss * float("nan"))
    result = invoke("train", "--run-dir", run, "--resume", "--no-measures", "--epochs", "2", "--no-progress")
    message = one_line(result.output)
    assert result.exit_code == 3
    assert "the loss became nan at step 11 (epoch 2)" in message and "--lr" in message
    assert f"The last good checkpoint, {run / 'checkpoint.pt'}, is kept unchanged" in message
    after = snapshot(run)
    assert after["checkpoint.pt"] == before["checkpoint.pt"] and after["metrics.json"] == before["metrics.json"]


def test_detect_anomaly_names_the_operation_that_made_the_nan(tiny, tmp_path, monkeypatch):
    poison_the_training_loss(monkeypatch, at_call=3, make_bad=lambda loss: torch.sqrt(-loss))
    result = invoke("train", "--run-dir", tmp_path / "run", *tiny, "--detect-anomaly")
    message = one_line(result.output)
    assert result.exit_code == 3
    assert "anomaly detection stopped step 3" in message and "SqrtBackward0" in message


# --- bad input ----------------------------------------------------------------------------------


def rewrite_idx(path: Path, change) -> None:
    write_idx(path, change(read_idx(path)))


IDX_DEFECTS = {
    "wrong magic number": (TRAIN_IMAGES, lambda p: p.write_bytes(b"\x12\x34" + p.read_bytes()[2:]),
                           "not an IDX file: magic number 0x12340803"),
    "truncated data": (TEST_IMAGES, lambda p: p.write_bytes(p.read_bytes()[:-100]), "IDX data is truncated"),
    "wrong dimensions": (TRAIN_IMAGES, lambda p: rewrite_idx(p, lambda a: a.reshape(len(a), -1)),
                         "expected 28x28 grayscale images, shape (N, 28, 28); got shape (1024, 784)"),
    "count mismatch": (TRAIN_LABELS, lambda p: rewrite_idx(p, lambda a: a[:1000]), "has 1000 labels"),
    "non-28x28 images": (TEST_IMAGES, lambda p: rewrite_idx(p, lambda a: np.pad(a, ((0, 0), (2, 2), (2, 2)))),
                         "got shape (256, 32, 32)"),
}


@pytest.mark.parametrize("defect", IDX_DEFECTS)
def test_bad_idx_files_are_named_with_their_problem(defect, small_idx, tmp_path):
    name, damage, problem = IDX_DEFECTS[defect]
    data = tmp_path / "data"
    shutil.copytree(small_idx, data)
    damage(data / name)
    result = invoke("train", "--dataset", "idx", "--data-dir", data, "--run-dir", tmp_path / "run", *SETTINGS)
    message = one_line(result.output)
    assert result.exit_code == 1
    assert str(data / name) in message and problem in message and "Traceback" not in message


def bump_checkpoint_version(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    torch.save({**state, "checkpoint_version": state["checkpoint_version"] + 1}, path)


def bump_config_version(path: Path) -> None:
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "config_version": raw["config_version"] + 1, "vaelab_version": "9.0"}))


RUN_DEFECTS = {
    "torn checkpoint": ("checkpoint.pt", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                        "not a readable checkpoint"),
    "foreign checkpoint": ("checkpoint.pt", lambda p: torch.save({"weights": torch.zeros(3)}, p),
                           "not a vaelab checkpoint"),
    "checkpoint from a newer vaelab": ("checkpoint.pt", bump_checkpoint_version,
                                       "written by a newer vaelab (checkpoint version 2)"),
    "checkpoint of another run": ("checkpoint.pt", lambda p: shutil.copy(p.parents[1] / "latent_3" / p.name, p),
                                  "was made with a different model or data config"),
    "config from a newer vaelab": ("config.json", bump_config_version,
                                   "written by a newer vaelab (9.0, config version 2)"),
    "unreadable config": ("config.json", lambda p: p.write_text("{not json"), "cannot read config"),
}


@pytest.mark.parametrize("defect", RUN_DEFECTS)
def test_a_bad_checkpoint_or_config_is_refused_on_resume_and_left_alone(defect, reference, tmp_path):
    name, damage, problem = RUN_DEFECTS[defect]
    study = tmp_path / "study"
    shutil.copytree(reference, study)
    run = study / "latent_2"
    damage(run / name)
    before = snapshot(run)
    result = invoke("train", "--run-dir", run, "--resume", "--no-measures", "--epochs", "4", "--no-progress")
    message = one_line(result.output)
    assert result.exit_code == 1
    assert str(run / name) in message and problem in message and "Traceback" not in message
    assert snapshot(run) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory_is_refused_before_training(tiny, tmp_path):
    parent = tmp_path / "read_only"
    parent.mkdir(mode=0o500)
    result = invoke("train", "--run-dir", parent / "run", *tiny)
    assert result.exit_code == 1 and "cannot write to the output directory" in result.output
    assert str(parent / "run") in one_line(result.output)


def test_a_read_only_study_is_read_served_and_exported_from_but_never_written(tiny, reference, tmp_path):
    with read_only_copy(reference, tmp_path) as study:
        refused = {
            "report": (["report", study], f"cannot write the report to {study}"),
            "export into it": (["export", study / "latent_2", "--pretrained", study / "model"],
                               f"cannot write the exported model to {study / 'model'}"),
            "a study in it": (["study", "--study-dir", study / "more", *tiny], f"cannot write the study to {study}"),
            "resume a run": (["train", "--run-dir", study / "latent_2", "--resume", "--epochs", "4"],
                             f"cannot write to the output directory {study / 'latent_2'}"),
        }
        for case, (args, expected) in refused.items():
            result = invoke(*args)
            message = one_line(result.output)
            assert result.exit_code == 1 and expected in message and "Traceback" not in message, (case, message)
            assert "not writable (a read-only file system)" in message or "Read-only" in message, (case, message)
        exported = invoke("export", study / "latent_2", "--pretrained", tmp_path / "model")
        assert exported.exit_code == 0, exported.output
    # What it read is what was trained: the exported weights are the run's.
    model, _ = load_model(reference / "latent_2")
    loaded = vaelab.VAE.from_pretrained(tmp_path / "model")
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_full_disk_is_refused_before_training(tiny, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 10 * 2**20, 10 * 2**20))
    run = tmp_path / "run"
    result = invoke("train", "--run-dir", run, *tiny)
    message = one_line(result.output)
    assert result.exit_code == 1
    assert f"the output directory {run} has only 10 MiB free" in message and "Traceback" not in message
    assert sorted(p.name for p in run.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("victim", ["metrics.json", "checkpoint.pt"])
def test_a_disk_that_fills_during_training_loses_nothing(victim, tiny, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert invoke("train", "--run-dir", run, *tiny, "--epochs", "1").exit_code == 0
    before = snapshot(run)

    def full_disk_open(file, mode="r", *args, **kwargs):  # the victim's writes land on a device that is full
        full = Path(file).name.startswith(f".{victim}.tmp")
        return builtins.open("/dev/full" if full else file, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(vaelab.atomic, "open", full_disk_open, raising=False)  # every atomic write opens here
        result = invoke("train", "--run-dir", run, "--resume", "--no-measures", "--epochs", "2", "--no-progress")
    message = one_line(result.output)
    assert result.exit_code == 1
    assert f"{run / victim}: cannot be written (No space left on device)" in message and "Traceback" not in message
    assert snapshot(run)[victim] == before[victim] and stale_temp_files(run) == []
    # The checkpoint is written first, so the history on disk never runs ahead of it.
    kept = load_checkpoint(run / "checkpoint.pt")["history"]
    assert strict_json(run / "metrics.json")["history"] == kept[: len(strict_json(run / "metrics.json")["history"])]

    assert invoke("train", "--run-dir", run, "--resume", "--no-measures", "--epochs", "2",
                  "--no-progress").exit_code == 0
    history = strict_json(run / "metrics.json")["history"]
    steps = [r["step"] for r in history]
    assert steps == sorted(set(steps)) and [r["epoch"] for r in history if r["epoch"] % 1 == 0] == [1.0, 2.0]


# --- one writer per run -------------------------------------------------------------------------


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_stale_lock(tiny, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "vaelab", "train", "--run-dir", str(run), *tiny, "--epochs", "1000"]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run / ".lock").exists() and (run / ".lock").read_text() == str(first.pid)):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.02)
        second = invoke("train", "--run-dir", run, *tiny)
        message = one_line(second.output)
        assert second.exit_code == 1
        assert f"{run} is in use by another vaelab run (pid {first.pid})" in message and "Traceback" not in message
    finally:
        first.kill()
        first.wait()
        first.stderr.close()
    after_kill = invoke("train", "--run-dir", run, *tiny, "--resume", "--epochs", "1")
    assert after_kill.exit_code == 0, after_kill.output


# --- study resume -------------------------------------------------------------------------------


def test_a_killed_study_resumes_skipping_finished_sizes_and_equals_an_uninterrupted_one(tiny, reference, tmp_path):
    study = tmp_path / "study"
    # Killed in the middle of step 12 of latent size 3: 24 steps of size 2, then 12 of size 3.
    killed = run_vaelab("study", "--study-dir", str(study), "--latent-dims", "2,3,4", *tiny, "--no-artifacts",
                        *ONE_AT_A_TIME, fault=("step", 36, "KILL"))
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(study / "latent_2" / "checkpoint.pt")["epoch"] == 3
    assert load_checkpoint(study / "latent_3" / "checkpoint.pt")["epoch"] == 1
    assert not (study / "latent_4").exists()
    finished_before = snapshot(study / "latent_2")
    epoch_1 = load_checkpoint(study / "latent_3" / "checkpoint.pt")["history"]

    # Resumed without repeating the training options: the study keeps the settings it was started with.
    resumed = run_vaelab("study", "--study-dir", str(study), "--latent-dims", "2,3,4", "--resume", "--no-measures",
                         "--no-progress", "--no-artifacts", *ONE_AT_A_TIME)
    assert resumed.returncode == 0, resumed.stderr
    assert "latent 2: already finished, skipped" in resumed.stdout and "== latent size 2" not in resumed.stdout
    assert snapshot(study / "latent_2") == finished_before
    assert strict_json(study / "latent_3" / "metrics.json")["history"][:6] == epoch_1  # resumed, not restarted
    for d in (2, 3, 4):
        assert_same_run(study / f"latent_{d}", reference / f"latent_{d}")
        ours, theirs = study / f"latent_{d}" / "config.json", reference / f"latent_{d}" / "config.json"
        assert ours.read_text() == theirs.read_text()
    assert (study / "study.json").read_text() == (reference / "study.json").read_text()
    for d in (2, 3, 4):
        assert summary_line(d, strict_json(reference / f"latent_{d}" / "metrics.json")["history"]) in resumed.stdout


@pytest.mark.browser
def test_ctrl_c_of_a_real_study_writes_the_report_of_what_it_has_and_exits_130(tiny, tmp_path, page):
    study = tmp_path / "study"
    # Size 2 has 5 + 3 evaluation points in its 3 epochs; the 9th point is the first of size 3: a Ctrl-C there
    # finds size 2 finished (figures drawn) and size 3 in its first epoch.
    process = run_vaelab("study", "--study-dir", str(study), "--latent-dims", "2,3", *tiny, *ONE_AT_A_TIME,
                         fault=("eval", 9, "INT"))
    stderr = process.stderr
    assert process.returncode == 130, stderr
    report = study / "report.html"
    assert f"report of what the study has so far: {report}" in one_line(stderr)
    text = report.read_text()
    assert "stopped at epoch" in text and "finished" in text

    page.goto(report.as_uri(), wait_until="load")
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])")
    sources = [src for src, _ in images]
    assert "comparison.png" in sources and "latent_2/latent_space.gif" in sources, sources
    assert all(width > 0 for _, width in images) and all((study / src).is_file() for src in sources), images
    assert page.errors == []


def test_ctrl_c_in_a_study_says_how_to_resume_the_whole_study(tiny, tmp_path, monkeypatch):
    study = tmp_path / "study"
    # Size 2 has 5 + 1 evaluation points in its one epoch; the 7th point is the first of size 3.
    monkeypatch.setattr(*moment_patch("eval", 7, send(signal.SIGINT)))
    result = invoke("study", "--study-dir", study, "--latent-dims", "2,3", *tiny, "--epochs", "1", *ONE_AT_A_TIME)
    message = one_line(result.output)
    assert result.exit_code == 130
    assert f"Continue with: vaelab train --run-dir {study / 'latent_3'} --resume" in message
    assert f"or the whole study with: vaelab study --study-dir {study} --latent-dims 2,3 --resume" in message
    assert load_checkpoint(study / "latent_3" / "checkpoint.pt")["step"] == 1
