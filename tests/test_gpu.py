"""On a GPU: a run, its exact resume, its final measures, its figures, the explorer on it, no host sync in the
training step, and data-parallel training over NCCL. Each test is skipped (and named in the skip report)
where no GPU is present; ``python benchmarks/gpu_check.py`` runs them with the timings on a GPU machine.

Where the cause can be reproduced on a CPU it is tested there too: float64 never on the device
(tests/test_precision.py), fixed draws from CPU generators and the loss's scalars (tests/test_models.py,
tests/test_losses.py), resuming across device types and the numerical settings (tests/test_training.py).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vaelab
from helpers import small_config
from vaelab.checkpoint import load_checkpoint, load_model
from vaelab.data import Dataset, ImageSplit
from vaelab.explorer import load_explorer
from vaelab.measures import final_measures
from vaelab.pipeline import RunOptions, train
from vaelab.serve import create_app
from vaelab.training import Trainer
from vaelab.visualisation import render_run_artifacts

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
needs_two_gpus = pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
needs_mps = pytest.mark.skipif(not torch.backends.mps.is_available(), reason="needs Apple MPS")
QUIET = RunOptions(progress=False, tensorboard=False, measures=False, artifacts=False)


def slice_of(mnist, n_train: int = 1024, n_test: int = 256) -> Dataset:
    return Dataset(mnist.name, mnist.root, ImageSplit(mnist.train.images[:n_train], mnist.train.labels[:n_train]),
                   ImageSplit(mnist.test.images[:n_test], mnist.test.labels[:n_test]))


def gpu_config(epochs: int, device: str = "cuda", **settings):
    return small_config(latent_dim=2, epochs=epochs).with_settings({"train.device": device,
                                                                    "train.deterministic": True, **settings})


def same_state(a: Path, b: Path) -> bool:
    x, y = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    return all(torch.equal(x["model"][k], y["model"][k]) for k in y["model"]) and torch.equal(x["noise"], y["noise"])


@needs_cuda
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_a_deterministic_cuda_run_resumes_exactly(mnist, tmp_path, likelihood):
    data = slice_of(mnist)
    straight = train(gpu_config(2, **{"model.likelihood": likelihood}), tmp_path / "a", QUIET, dataset=data)
    train(gpu_config(1, **{"model.likelihood": likelihood}), tmp_path / "b", QUIET, dataset=data)
    resumed = train(gpu_config(2, **{"model.likelihood": likelihood}), tmp_path / "b",
                    dataclasses.replace(QUIET, resume=True), dataset=data)
    assert same_state(tmp_path / "a", tmp_path / "b")
    strip = [{k: v for k, v in r.items() if k not in ("time_s", "train_s")} for r in straight.history]
    assert strip == [{k: v for k, v in r.items() if k not in ("time_s", "train_s")} for r in resumed.history]
    assert load_checkpoint(tmp_path / "a" / "checkpoint.pt")["device_type"] == "cuda"


@needs_cuda
def test_the_training_step_never_waits_for_the_gpu(mnist, tmp_path):
    """torch's sync debug mode turns any host synchronisation inside the steps into an error (the loss checks
    every SYNC_EVERY steps are outside the window)."""
    trainer = Trainer(gpu_config(1, **{"model.likelihood": "gaussian", "data.binarize": False}), slice_of(mnist),
                      tmp_path / "run", progress=False)
    state = trainer._fresh_state()
    epoch = trainer._start_epoch(state)
    model = state.model.train()
    trainer._step(state, model, epoch, 0)  # the first step allocates: outside the window
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(1, 8):
            trainer._step(state, model, epoch, i)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    epoch.bar.close()


@needs_cuda
@pytest.mark.slow
def test_final_measures_on_the_gpu_match_the_cpus(mnist, tiny_classifier, tmp_path):
    data = slice_of(mnist, 2048, 512)
    result = train(gpu_config(1), tmp_path / "run", QUIET, dataset=data)
    on_cpu = load_model(tmp_path / "run")[0]
    gpu_scores, _ = final_measures(result.model, result.config, data, tiny_classifier, iwae_k=8)
    cpu_scores, _ = final_measures(on_cpu, result.config, data, tiny_classifier, iwae_k=8)
    for key in ("iwae_log_likelihood", "probe_accuracy", "recon_class_accuracy", "active_units"):
        assert gpu_scores[key] == pytest.approx(cpu_scores[key], rel=1e-3, abs=1e-3), key


@needs_cuda
def test_figures_and_the_explorer_work_from_a_gpu_trained_run(mnist, tmp_path):
    study = tmp_path / "study"
    result = train(gpu_config(1), study / "latent_2", RunOptions(progress=False, tensorboard=False, measures=False),
                   dataset=slice_of(mnist))
    assert next(result.model.parameters()).is_cuda and "samples.png" in result.figures
    render_run_artifacts(study / "latent_2", model=result.model)  # a CUDA model, drawn from a CPU copy
    client = create_app(load_explorer(study), hosts={"localhost"}).test_client()
    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/runs/latent_2/plane").status_code == 200


@needs_two_gpus
def test_two_processes_train_data_parallel_over_nccl(mnist_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(vaelab.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "vaelab",
               "train", "-z", "2", "--run-dir", str(tmp_path / "run"), "--data-dir", str(mnist_dir), "--epochs", "1",
               "--hidden", "64", "--train-eval-size", "500", "--device", "cuda", "--no-progress", "--no-measures"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 1/2 on cuda:1 (nccl)" in done.stdout + done.stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1


@needs_mps
@pytest.mark.slow
def test_a_short_run_and_its_measures_on_apple_mps(mnist, tiny_classifier, tmp_path):
    data = slice_of(mnist)
    result = train(gpu_config(1, "mps", **{"train.deterministic": False, "data.binarize": True}), tmp_path / "run",
                   QUIET, dataset=data)
    scores, _ = final_measures(result.model, result.config, data, tiny_classifier, iwae_k=4)
    assert scores["iwae_log_likelihood"] < 0
