"""Grid studies end to end: --vary and --seeds through the pipeline and the CLI, runs side by side with the
same numbers, resume that adds values, the plain autoencoder, and the grid report."""

import json

import pytest
from click.testing import CliRunner

import vaelab
from conftest import small_config
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
    one = vaelab.study([2], tmp_path / "one", small_config(), QUICK, axes=axes, seeds=2, dataset=data, notify=print)
    two = vaelab.study([2], tmp_path / "two", small_config(), QUICK, axes=axes, seeds=2, dataset=data, jobs=2,
                       notify=print)
    assert sorted(one.runs) == sorted(two.runs) == ["beta=0.5,z=2,seed=0", "beta=0.5,z=2,seed=1",
                                                    "beta=2,z=2,seed=0", "beta=2,z=2,seed=1"]
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
