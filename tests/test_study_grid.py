"""Grid studies end to end: --vary and --seeds through the pipeline and the CLI, runs side by side with the
same numbers, resume that adds values, the plain autoencoder, and the grid report."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import vaelab
import vaelab.pipeline
from helpers import small_config, train_where_placed, write_idx_dataset
from vaelab import parallel
from vaelab.checkpoint import load_checkpoint
from vaelab.cli import cli
from vaelab.pipeline import RunOptions

QUICK = RunOptions(progress=False, measures=False, artifacts=False, tensorboard=False)


def histories(study_dir):
    """Every run's history without its timings, by run directory name."""
    runs = {}
    for path in sorted(study_dir.glob("*=*")):
        history = json.loads((path / "metrics.json").read_text())["history"]
        runs[path.name] = [{k: v for k, v in r.items() if k not in ("time_s", "train_s")} for r in history]
    return runs


@pytest.mark.slow
def test_runs_side_by_side_give_the_numbers_of_runs_one_by_one(mnist, tmp_path):
    data = mnist.head(512, 200)
    axes = {"beta": [0.5, 2]}
    # One thread per run either way: a run's numbers depend on its thread count (the order of float sums).
    one = vaelab.study([2, 3], tmp_path / "one", small_config(), QUICK, axes=axes, seeds=2, dataset=data, threads=1)
    two = vaelab.study([2, 3], tmp_path / "two", small_config(), QUICK, axes=axes, seeds=2, dataset=data, jobs=2)
    assert len(one.runs) == 8 and sorted(one.runs) == sorted(two.runs)
    assert histories(tmp_path / "one") == histories(tmp_path / "two")
    assert all(run.model is None for run in two.runs.values())


def test_a_resumed_grid_trains_only_the_values_added_to_an_axis(mnist, tmp_path):
    data, messages = mnist.head(512, 200), []
    first = vaelab.study([2], tmp_path, small_config(), QUICK, axes={"beta": [1]}, seeds=[0, 1], dataset=data,
                         notify=messages.append)
    resumed = vaelab.study(None, tmp_path, small_config(), RunOptions(resume=True, progress=False, measures=False,
                                                                     artifacts=False, tensorboard=False),
                           axes={"beta": [4]}, dataset=data, notify=messages.append)
    assert sorted(resumed.runs) == ["beta=1,z=2,seed=0", "beta=1,z=2,seed=1", "beta=4,z=2,seed=0",
                                    "beta=4,z=2,seed=1"]
    assert [m for m in messages if "already finished" in m] == [
        "beta 1, z 2, seed 0: already finished, skipped", "beta 1, z 2, seed 1: already finished, skipped"]
    assert resumed.runs["beta=1,z=2,seed=0"].history == first.runs["beta=1,z=2,seed=0"].history
    assert resumed.runs["beta=4,z=2,seed=1"].config.train.beta == 4.0
    plan = json.loads((tmp_path / "study.json").read_text())
    assert plan["axes"][0] == {"key": "train.beta", "values": [1.0, 4.0]} and plan["seeds"] == [0, 1]
    assert len(plan["runs"]) == 4 and plan["base_config"]["train"]["epochs"] == 1


@pytest.mark.parametrize(("cores", "runs", "jobs"), [(2, 1, 1), (2, 2, 2), (2, 3, 3), (2, 4, 2), (2, 27, 2),
                                                     (1, 3, 1), (8, 9, 9), (8, 16, 8)])
def test_auto_jobs_runs_all_at_once_below_two_runs_per_core(monkeypatch, cores, runs, jobs):
    monkeypatch.setattr(parallel, "cores", lambda: cores)
    assert parallel.auto_jobs(runs) == jobs


def test_workers_side_by_side_draw_their_bars_on_lines_of_their_own(tmp_path):
    tasks = [parallel.RunTask(None, tmp_path / str(i), None) for i in range(4)]
    placed = parallel.run_tasks(train_where_placed, tasks, jobs=2, threads=1, bars=True)
    assert {task.line for task in placed} <= {1, 2}  # line 0 is the study's own bar
    for a in placed:
        for b in placed:
            if a is not b and a.started < b.ended and b.started < a.ended:
                assert a.line != b.line


def test_each_run_of_a_grid_names_itself_by_its_coordinates_in_its_progress_lines(mnist, tmp_path, capsys):
    data = mnist.head(512, 200)
    shown = dataclasses.replace(QUICK, progress=True)
    vaelab.study([2], tmp_path / "grid", small_config(), shown, axes={"beta": [0.5, 2]}, dataset=data, notify=print)
    vaelab.study([2], tmp_path / "sizes", small_config(), shown, dataset=data, notify=print)
    lines = [line for line in capsys.readouterr().out.splitlines() if "· epoch 1/1: test" in line]
    assert [line.split(" · ")[0] for line in lines] == ["beta 0.5, z 2", "beta 2, z 2", "latent 2"]


def test_a_resumed_study_trains_with_the_thread_count_it_started_with(mnist, tmp_path):
    data = mnist.head(512, 200)
    vaelab.study([2], tmp_path, small_config(), QUICK, axes={"beta": [1]}, dataset=data, threads=1)
    assert json.loads((tmp_path / "study.json").read_text())["threads"] == 1
    resume = RunOptions(resume=True, progress=False, measures=False, artifacts=False, tensorboard=False)
    vaelab.study(None, tmp_path, small_config(), resume, axes={"beta": [4]}, dataset=data)
    environment = json.loads((tmp_path / "beta=4,z=2" / "metrics.json").read_text())["environment"]
    assert environment["threads"] == "1"


def test_a_job_array_task_trains_only_its_run_of_the_grid(mnist, tmp_path):
    data = mnist.head(512, 200)
    task = vaelab.study([2, 3], tmp_path, small_config(), QUICK, axes={"beta": [1, 4]}, run_index=2, dataset=data)
    assert list(task.runs) == ["beta=4,z=2"] and [p.name for p in tmp_path.glob("*=*")] == ["beta=4,z=2"]
    assert len(json.loads((tmp_path / "study.json").read_text())["runs"]) == 4
    with pytest.raises(vaelab.pipeline.SettingsError, match="numbered 0 to 3"):
        vaelab.study([2, 3], tmp_path, small_config(), QUICK, axes={"beta": [1, 4]}, run_index=4, dataset=data)


def test_a_plain_autoencoder_trains_on_the_reconstruction_term_alone(mnist, tmp_path):
    result = vaelab.study([2], tmp_path, small_config(), QUICK, axes={"objective": ["ae", "vae"]},
                          dataset=mnist.head(512, 200))
    ae, vae = result.runs["objective=ae,z=2"], result.runs["objective=vae,z=2"]
    assert all(r["test"]["kl"] == 0 and r["test"]["loss"] == r["test"]["nll"] for r in ae.history)
    assert all(r["test"]["kl"] > 0 for r in vae.history[1:])
    # z = mu: the decoder sees the posterior mean, so the reconstruction term is its whole loss and is smaller
    assert ae.test["nll"] < vae.test["nll"]


def test_the_grid_report_has_its_table_bands_and_rate_distortion_plane(mnist, tmp_path):
    vaelab.study([2, 3], tmp_path, small_config(), QUICK, axes={"beta": [0.5, 2]}, seeds=2,
                 dataset=mnist.head(512, 200))
    html = (tmp_path / "report.html").read_text()
    assert (tmp_path / "rate_distortion.png").stat().st_size > 10_000 and "rate_distortion.png" in html
    assert 'id="grid-table"' in html and 'id="pivot-loss"' in html and " ± " in html
    assert "beyond the seed spread" in html or "within the seed spread" in html
    assert "vaelab study · MNIST · beta (2) × z (2) × 2 seeds" in html
    rows = (tmp_path / "final_metrics.csv").read_text().splitlines()
    assert rows[0].startswith("run,beta,z,seed,latent_dim") and len(rows) == 9


@pytest.mark.parametrize("args, complaint", [
    (["--vary", "bta=1,2"], "'bta' is not a setting"),
    (["--vary", "beta=-1"], "beta=-1"),
    (["--vary", "arch=mlp,resnet-spatial"], "needs --likelihood gaussian"),
    (["--vary", "beta"], "KEY=V1,V2"),
    (["--vary", "z=2,4", "-z", "2"], "give the latent sizes once"),
    (["--seeds", "2", "--seed-list", "1,2"], "not both"),
    (["--jobs", "0"], "--jobs"),
])
def test_a_bad_vary_exits_2_and_trains_nothing(tmp_path, args, complaint):
    result = CliRunner().invoke(cli, ["study", *args, "--study-dir", str(tmp_path / "s")])
    assert result.exit_code == 2 and complaint in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


@pytest.mark.slow
def test_ray_tasks_give_the_numbers_of_runs_one_by_one(mnist, tmp_path):
    pytest.importorskip("ray")
    data = mnist.head(512, 200)
    vaelab.study([2, 3], tmp_path / "one", small_config(), QUICK, axes={"beta": [1]}, dataset=data, threads=1)
    on_ray = vaelab.study([2, 3], tmp_path / "ray", small_config(), QUICK, axes={"beta": [1]}, dataset=data, jobs=2,
                          threads=1, executor="ray")
    assert sorted(on_ray.runs) == ["beta=1,z=2", "beta=1,z=3"]
    assert histories(tmp_path / "one") == histories(tmp_path / "ray")


REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("fault_driver.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def small_idx(mnist, tmp_path_factory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("grid_idx"), mnist.head(1024, 256))


def grid_study(small_idx, study_dir, *extra, fault=None, jobs="1"):
    """`vaelab study` over two betas with 2 seeds each in a subprocess, under fault_driver.py when ``fault``."""
    args = ["study", "--study-dir", str(study_dir), "--dataset", "idx", "--data-dir", str(small_idx), "--vary",
            "beta=0.5,2", "-z", "2", "--seeds", "2", "--hidden", "64", "--batch-size", "128", "--train-eval-size",
            "300", "--epochs", "2", "--device", "cpu", "--no-progress", "--no-measures", "--no-tensorboard",
            "--no-artifacts", "--jobs", jobs, *extra]
    command = [str(DRIVER), *fault] if fault else ["-m", "vaelab"]
    return subprocess.run([sys.executable, *command, *args], env=ENV, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_grid_killed_mid_run_resumes_to_the_uninterrupted_numbers(small_idx, tmp_path):
    reference = grid_study(small_idx, tmp_path / "whole")
    assert reference.returncode == 0, reference.stderr
    killed = grid_study(small_idx, tmp_path / "killed", fault=("step", "37", "KILL"))  # in the third run
    assert killed.returncode == -9
    resumed = grid_study(small_idx, tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("already finished, skipped") == 2
    assert len(histories(tmp_path / "whole")) == 4
    assert histories(tmp_path / "killed") == histories(tmp_path / "whole")


@pytest.mark.slow
def test_killing_a_study_of_parallel_runs_ends_its_workers_and_resume_finishes_them(small_idx, tmp_path):
    study = tmp_path / "parallel"
    process = subprocess.Popen([sys.executable, "-m", "vaelab", "study", "--study-dir", str(study), "--dataset", "idx",
                                "--data-dir", str(small_idx), "--vary", "beta=0.5,2", "-z", "2", "--hidden", "64",
                                "--train-eval-size", "300", "--epochs", "30", "--device", "cpu", "--no-progress",
                                "--no-measures", "--no-tensorboard", "--no-artifacts", "--jobs", "2"],
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not all((study / name / "checkpoint.pt").exists() for name in ("beta=0.5,z=2", "beta=2,z=2")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                                              text=True).stdout.split()]
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
              for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived the study"
        time.sleep(0.2)
    # Finished quickly: to the epochs the furthest run reached (a resume never shortens a run below that).
    reached = max(load_checkpoint(study / name / "checkpoint.pt")["epoch"] for name in ("beta=0.5,z=2", "beta=2,z=2"))
    resumed = subprocess.run([sys.executable, "-m", "vaelab", "study", "--study-dir", str(study), "--resume",
                              "--epochs", str(reached), "--no-progress", "--no-measures", "--no-tensorboard",
                              "--no-artifacts"],
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert {run["dir"] for run in json.loads((study / "study.json").read_text())["runs"]} == {
        "beta=0.5,z=2", "beta=2,z=2"}


@pytest.mark.slow
@pytest.mark.browser
def test_a_grid_report_with_every_figure_renders_without_a_broken_image(mnist, tmp_path, page):
    options = RunOptions(progress=False, measures=False, tensorboard=False)
    vaelab.study([2], tmp_path, small_config(), options, axes={"beta": [0.5, 2]}, seeds=2,
                 dataset=mnist.head(512, 200))
    html = (tmp_path / "report.html").read_text()
    # GIFs for the first seed of each cell, the last frame for the other (each linked and shown: twice)
    assert html.count("latent_space.gif") == 4 and html.count("latent_space.png") == 4
    page.goto((tmp_path / "report.html").as_uri(), wait_until="load")
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])")
    # comparison + rate-distortion, then 7 figures per run (the manifold: a plane latent)
    assert len(images) == 2 + 4 * 7 and all(width > 0 for _, width in images), images
    assert page.errors == []


def test_the_claims_preset_is_a_study_not_a_run(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--preset", "claims", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "vaelab study --preset claims" in result.output


@pytest.mark.slow
def test_runs_side_by_side_share_one_mlflow_store(mnist, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    options = RunOptions(progress=False, measures=False, artifacts=False, tensorboard=False, mlflow_uri="")
    vaelab.study([2, 3], tmp_path / "tracked", small_config(), options, axes={"beta": [1, 2]},
                 dataset=mnist.head(512, 200), jobs=2)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'tracked' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [
        ("beta=1,z=2", "FINISHED"), ("beta=1,z=3", "FINISHED"), ("beta=2,z=2", "FINISHED"), ("beta=2,z=3", "FINISHED")]
