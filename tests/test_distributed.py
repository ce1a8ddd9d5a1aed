"""Data-parallel training with torchrun: shards, rank-0-only writes, exact global metrics, checkpoint interchange.

The end-to-end test launches ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m vaelab train``
on CPUs (gloo) with a small IDX data set cut from MNIST. Each worker runs with a ``sitecustomize`` that installs
a Python audit hook recording every file it opens for writing, renames, removes or creates, so the test sees
which rank wrote what.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import vaelab
from helpers import write_idx_dataset
from vaelab import distributed
from vaelab.checkpoint import load_checkpoint, load_model
from vaelab.cli import cli
from vaelab.config import ModelConfig, RunConfig
from vaelab.datasets import load_dataset
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_split, split_sums
from vaelab.losses import negative_elbo
from vaelab.models import VAE
from vaelab.prepare import as_float_images
from vaelab.run_store import fit
from vaelab.training import Trainer, epoch_permutation, train_eval_subset

N_TRAIN, N_TEST = 509, 255  # odd sizes: the last global batch and the test set split unevenly over 2 ranks
BATCH, TRAIN_EVAL, SEED = 64, 301, 3


# -- pure pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, batch_size, world", [(509, 64, 2), (10, 4, 3), (7, 8, 4), (5, 2, 4), (100, 10, 1)])
def test_local_batches_cut_every_global_batch_into_disjoint_parts(n, batch_size, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    parts = [distributed.local_batches(order, batch_size, rank, world) for rank in range(world)]
    global_batches = order.split(batch_size)
    assert all(len(p) == len(global_batches) for p in parts)  # every rank takes every step
    for step, batch in enumerate(global_batches):
        pieces = [p[step] for p in parts]
        assert torch.equal(torch.cat(pieces), batch)  # contiguous parts, in rank order, of the global batch
        sizes = [len(piece) for piece in pieces]
        assert max(sizes) - min(sizes) <= 1
    assert sorted(torch.cat([torch.cat(p) for p in parts]).tolist()) == list(range(n))


@pytest.mark.parametrize("n, world", [(255, 2), (10, 3), (2, 4), (0, 2), (7, 1)])
def test_shard_rows_tile_the_set_like_tensor_split(n, world):
    rows = [distributed.shard_rows(n, rank, world) for rank in range(world)]
    reference = torch.arange(n).tensor_split(world)
    assert [list(range(*r)) for r in rows] == [chunk.tolist() for chunk in reference]


def test_shard_sums_add_up_to_the_whole_split_evaluation():
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=3, hidden=(32,)))
    images = torch.rand(103, 1, 28, 28)
    whole = evaluate_split(model, images, batch_size=40)
    parts = [split_sums(model, images, distributed.shard_rows(103, rank, 3), batch_size=40) for rank in range(3)]
    means = (sum(s for s, _ in parts) / 103).tolist()
    # Per-image values are float32, and a matmul's rounding depends on which rows it computes together.
    assert means == pytest.approx(list(whole.metrics.values()), rel=1e-6)
    assert torch.allclose(torch.cat([mu for _, mu in parts]), whole.mu, atol=1e-6)


def test_device_choice_under_torchrun():
    assert distributed.rank_device("cpu", 3) == torch.device("cpu")
    for name in ("cuda:1", "mps"):
        with pytest.raises(VaelabError, match="LOCAL_RANK"):
            distributed.rank_device(name, 0)
    with pytest.raises(VaelabError, match="RANK"):
        distributed.ranks_from_environment({"RANK": "0", "LOCAL_RANK": "0"})
    assert distributed.ranks_from_environment({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}) == (3, 1, 4)


def test_noise_states_resume_per_rank_only_on_the_same_world_size():
    states = [torch.full((4,), r, dtype=torch.uint8) for r in range(2)]
    saved = {"noise": states[0], "rank_noise": states}
    ranks = [distributed.DdpContext(r, r, 2, torch.device("cpu")) for r in range(2)]
    assert torch.equal(distributed.saved_noise_state(saved, None), states[0])  # one process continues rank 0
    resumed = [distributed.saved_noise_state(saved, ddp) for ddp in ranks]
    assert [torch.equal(r, s) for r, s in zip(resumed, states, strict=True)] == [True] * 2
    bigger = distributed.DdpContext(1, 1, 3, torch.device("cpu"))
    assert distributed.saved_noise_state(saved, bigger) is None  # a fresh stream from noise_seed(seed, 1)
    assert distributed.saved_noise_state({"noise": states[0]}, ranks[1]) is None  # from a single-process run
    assert distributed.noise_seed(5, 0) == 5 and distributed.noise_seed(5, 1) != 5


def test_study_refuses_to_run_under_torchrun():
    result = CliRunner().invoke(cli, ["study", "-z", "2"], env={"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
    assert result.exit_code == 2 and "vaelab train -z Z --study-dir DIR" in result.output


# -- a real 2-process launch ----------------------------------------------------------------------

AUDIT_SITECUSTOMIZE = """
    import os, sys

    _dir, _rank = os.environ.get("VAELAB_TEST_AUDIT_DIR"), os.environ.get("RANK")
    if _dir and _rank is not None:
        _log = open(os.path.join(_dir, f"rank{_rank}.log"), "a", buffering=1)
        _WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

        def _record(event, *paths):
            for path in paths:
                if isinstance(path, (str, bytes, os.PathLike)):
                    _log.write(f"{os.getpid()}\\t{event}\\t{os.path.abspath(os.fsdecode(path))}\\n")

        def _hook(event, args):
            if event == "open":
                path, mode, flags = args
                if (any(c in mode for c in "wax+") if isinstance(mode, str) else flags & _WRITING):
                    _record(event, path)
            elif event == "os.rename":
                _record(event, args[0], args[1])
            elif event in ("os.remove", "os.mkdir", "os.rmdir", "os.truncate"):
                _record(event, args[0])

        sys.addaudithook(_hook)
"""


@pytest.fixture(scope="module")
def small_idx(mnist, tmp_path_factory) -> Path:
    """The first N_TRAIN / N_TEST MNIST images as a user's own IDX data set (--dataset idx)."""
    return write_idx_dataset(tmp_path_factory.mktemp("idx"), mnist.head(N_TRAIN, N_TEST))


def audit_log(directory: Path, rank: int) -> list[tuple[int, str, Path]]:
    rows = [line.split("\t") for line in (directory / f"rank{rank}.log").read_text().splitlines()]
    return [(int(pid), event, Path(path)) for pid, event, path in rows]


def train_args(small_idx: Path, epochs: int) -> list[str]:
    return ["--dataset", "idx", "--data-dir", str(small_idx), "--epochs", str(epochs), "--batch-size", str(BATCH),
            "--hidden", "64", "--train-eval-size", str(TRAIN_EVAL), "--seed", str(SEED), "--lr", "3e-3",
            "--no-progress", "--device", "cpu", "--no-measures"]


def torchrun_train(work: Path, args: list[str]) -> str:
    """``vaelab train ARGS`` on 2 CPU processes launched by torchrun, watched by the audit hook; the output."""
    audit, site = work / "audit", work / "site"
    audit.mkdir(exist_ok=True)
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent(AUDIT_SITECUSTOMIZE))
    src = Path(vaelab.__file__).resolve().parents[1]  # the workers import the vaelab under test
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(src), env.get("PYTHONPATH", "")]),
               VAELAB_SHARD_LOG=str(work / "shards"), VAELAB_TEST_AUDIT_DIR=str(audit), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "vaelab", "train", *args]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def ddp_run(small_idx, tmp_path_factory) -> dict:
    """One epoch of a fresh data-parallel run."""
    work = tmp_path_factory.mktemp("ddp")
    output = torchrun_train(work, ["-z", "4", "--study-dir", str(work / "study"), *train_args(small_idx, 1)])
    return {"work": work, "run_dir": work / "study" / "latent_4", "audit": work / "audit", "shards": work / "shards",
            "output": output}


@pytest.mark.slow
def test_each_rank_trains_its_part_of_every_global_batch(ddp_run):
    logs = [json.loads((ddp_run["shards"] / f"rank{r}.jsonl").read_text()) for r in range(2)]
    assert [(log["epoch"], log["first_step"], log["rank"], log["world_size"]) for log in logs] == [(0, 0, 0, 2),
                                                                                                 (0, 0, 1, 2)]
    seen = [sum(log["batches"], []) for log in logs]
    assert set(seen[0]).isdisjoint(seen[1]) and sorted(seen[0] + seen[1]) == list(range(N_TRAIN))
    # Both ranks took the same number of steps, each on its half of the single-process batch of that step.
    global_batches = epoch_permutation(N_TRAIN, SEED, 0).split(BATCH)
    assert len(logs[0]["batches"]) == len(logs[1]["batches"]) == len(global_batches)
    for mine, theirs, batch in zip(logs[0]["batches"], logs[1]["batches"], global_batches, strict=False):
        assert mine + theirs == batch.tolist() and abs(len(mine) - len(theirs)) <= 1


@pytest.mark.slow
def test_only_rank_0_writes_the_run_directory(ddp_run):
    run_dir = ddp_run["run_dir"]
    figures = ["architecture.png", "frames", "interpolations.png", "latent_space.gif", "latent_space.png",
               "metrics.png", "reconstructions.gif", "reconstructions.png", "samples.png", "tensorboard"]  # by rank 0
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([".lock", "checkpoint.pt", "config.json", "metrics.csv",
                                                                "metrics.json", *figures])  # no stray temporary files
    writes = [audit_log(ddp_run["audit"], r) for r in range(2)]
    in_run_dir = [{(event, path.name) for _, event, path in log if path.is_relative_to(run_dir)} for log in writes]
    assert not in_run_dir[1]
    assert any(path.is_relative_to(ddp_run["shards"]) for _, _, path in writes[1])  # rank 1 was being watched
    assert {("os.rename", name) for name in ("checkpoint.pt", "config.json", "metrics.json")} <= in_run_dir[0]
    rank0_pid = writes[0][0][0]
    assert (run_dir / ".lock").read_text() == str(rank0_pid)  # rank 0 held the run lock
    assert "rank 1/2 on cpu (gloo); this rank writes nothing" in ddp_run["output"]
    assert f"rank 0/2 on cpu (gloo); this rank writes {run_dir}" in ddp_run["output"]


@pytest.mark.slow
def test_recorded_metrics_are_those_of_one_process_on_the_whole_sets(ddp_run, small_idx):
    saved = json.loads((ddp_run["run_dir"] / "metrics.json").read_text())
    history = saved["history"]
    assert saved["eval_sizes"] == {"train": TRAIN_EVAL, "test": N_TEST}
    assert len(history) == 5 + 1 and history[-1]["epoch"] == 1.0
    assert history[-1]["test"]["loss"] < history[0]["test"]["loss"]  # it trained

    model, _ = load_model(ddp_run["run_dir"])
    data = load_dataset("idx", small_idx)
    cpu = torch.device("cpu")
    train_x = as_float_images(data.train.images, cpu)
    expected = {"train": evaluate_split(model, train_x[train_eval_subset(N_TRAIN, TRAIN_EVAL)]).metrics,
                "test": evaluate_split(model, as_float_images(data.test.images, cpu)).metrics}
    for split in ("train", "test"):
        for name, value in expected[split].items():
            assert history[-1][split][name] == pytest.approx(value, rel=1e-6, abs=1e-9), (split, name)


@pytest.mark.slow
def test_a_distributed_checkpoint_resumes_in_one_process(ddp_run, small_idx, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("checkpoint.pt", "config.json"):
        (run_dir / name).write_bytes((ddp_run["run_dir"] / name).read_bytes())
    config = RunConfig.load(run_dir / "config.json")
    config.train.epochs = 2
    before = load_checkpoint(run_dir / "checkpoint.pt")
    assert len(before["rank_noise"]) == 2 and torch.equal(before["rank_noise"][0], before["noise"])
    history = fit(Trainer(config, load_dataset("idx", small_idx), run_dir, progress=False), resume=True)
    assert history[:6] == before["history"] and [r["epoch"] for r in history[6:]] == [2.0]
    assert history[-1]["test"]["loss"] < history[5]["test"]["loss"]


@pytest.mark.slow
def test_a_single_process_checkpoint_resumes_data_parallel(small_idx, tmp_path):
    run_dir = tmp_path / "run"
    single = CliRunner().invoke(cli, ["train", "-z", "2", "--run-dir", str(run_dir), *train_args(small_idx, 1)])
    assert single.exit_code == 0, single.output
    before = load_checkpoint(run_dir / "checkpoint.pt")
    torchrun_train(tmp_path, ["-z", "2", "--run-dir", str(run_dir), "--resume", *train_args(small_idx, 2)])
    after = load_checkpoint(run_dir / "checkpoint.pt")
    assert after["epoch"] == 2 and len(after["rank_noise"]) == 2
    assert after["history"][:6] == before["history"] and after["history"][6]["epoch"] == 2.0
    assert after["history"][6]["test"]["loss"] < before["history"][5]["test"]["loss"]
    logs = [json.loads((tmp_path / "shards" / f"rank{r}.jsonl").read_text()) for r in range(2)]
    assert [(log["epoch"], log["rank"]) for log in logs] == [(1, 0), (1, 1)]  # only epoch 2 ran distributed


def test_ranks_wait_for_each_other_longer_than_nccls_default_and_the_wait_can_be_set():
    assert distributed.collective_timeout({}) == datetime.timedelta(minutes=60)
    assert distributed.collective_timeout({"VAELAB_DDP_TIMEOUT_MIN": "2.5"}) == datetime.timedelta(minutes=2.5)
    for bad in ("0", "-3", "soon", "nan"):
        with pytest.raises(VaelabError, match="VAELAB_DDP_TIMEOUT_MIN"):
            distributed.collective_timeout({"VAELAB_DDP_TIMEOUT_MIN": bad})


@pytest.mark.parametrize("arch", ["mlp", "conv", "conv-spatial", "resnet-spatial"])
def test_a_rank_with_an_empty_share_of_the_last_batch_still_gives_every_parameter_a_gradient(arch):
    """A last global batch smaller than the world leaves some ranks no images; DDP still all-reduces a gradient
    for every parameter, so that rank's must exist and be zero (GroupNorm over no images included)."""
    extra = {"likelihood": "gaussian", "channels": (8, 16, 32)} if arch == "resnet-spatial" else {}
    model = VAE(ModelConfig(arch=arch, latent_dim=2, **extra))
    x = torch.zeros(0, 1, 28, 28)
    logits, mu, logvar = model(x, torch.Generator())
    loss = negative_elbo(logits, x, mu, logvar, model.config.likelihood, 1.0, model.decoder_std(),
                         model.linear_output)[0]
    (loss.sum() * (2 / 1)).backward()  # the trainer's weighting: world size / global batch
    assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in model.parameters())
