"""TensorBoard, MLflow and Weights & Biases through the tracker hook: a tiny study trained through the CLI, read
back with tensorboard's own event reader, MLflow's client and W&B's own record format, must hold exactly the
numbers of metrics.json, the reconstruction grids, the config as hparams, the latent means of the final model
and the figures."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from helpers import wandb_offline_records, write_idx_dataset
from vaelab.checkpoint import load_model
from vaelab.cli import cli
from vaelab.trackers import flat_params, point_scalars

DIMS = (2, 3)


def test_point_scalars_name_every_number_of_a_record():
    record = {"epoch": 0.5, "step": 10, "time_s": 1.0, "train_s": 0.8, "test_iwae_log_likelihood": -90.0,
              "train": {"loss": 1.0, "ssim": 0.5}, "test": {"loss": 2.0, "ssim": 0.4}}
    assert point_scalars(record) == {"train/loss": 1.0, "train/ssim": 0.5, "test/loss": 2.0, "test/ssim": 0.4,
                                     "epoch": 0.5, "time_s": 1.0, "train_s": 0.8, "test/iwae_log_likelihood": -90.0}


@pytest.fixture(scope="module")
def tracked_study(mnist, tmp_path_factory) -> Path:
    """Two latent sizes, one epoch on 2,000 training images, every tracker on (MLflow in its default
    SQLite store inside the study directory, W&B offline)."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("tracked")
    data_dir = write_idx_dataset(root / "idx", mnist.head(2000, 1000))
    study = root / "study"
    result = CliRunner().invoke(cli, [
        "study", "-z", ",".join(map(str, DIMS)), "--dataset", "idx", "--data-dir", str(data_dir),
        "--study-dir", str(study), "--epochs", "1", "--hidden", "32", "--batch-size", "100",
        "--train-eval-size", "300", "--no-progress", "--device", "cpu", "--no-measures", "--projection", "pca",
        "--tensorboard", "--mlflow", "--wandb"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return study


def history_of(run: Path) -> list[dict]:
    return json.loads((run / "metrics.json").read_text())["history"]


def event_reader(run: Path):
    from tensorboard.backend.event_processing import event_accumulator

    reader = event_accumulator.EventAccumulator(
        str(run / "tensorboard"), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    return reader.Reload()


@pytest.mark.slow
@pytest.mark.parametrize("latent_dim", DIMS)
def test_tensorboard_holds_every_metric_of_metrics_json_at_every_point(tracked_study, latent_dim):
    run = tracked_study / f"latent_{latent_dim}"
    history = history_of(run)
    reader = event_reader(run)
    for tag in [f"{split}/{m}" for split in ("train", "test") for m in ("loss", "nll", "kl", "mse", "ssim", "psnr")]:
        logged = [(e.step, e.value) for e in reader.Scalars(tag)]
        split, metric = tag.split("/")
        # TensorBoard keeps scalars as float32: equal to metrics.json's values rounded to float32.
        assert logged == [(r["step"], float(np.float32(r[split][metric]))) for r in history], tag
    grids = reader.Images("reconstructions")
    assert [g.step for g in grids] == [r["step"] for r in history]
    assert (grids[0].height, grids[0].width) == (2 * 28, 10 * 28)  # originals over reconstructions


@pytest.mark.slow
def test_tensorboard_has_the_config_as_hparams_and_the_final_latent_means(tracked_study):
    from tensorboard.plugins.hparams import plugin_data_pb2

    from vaelab.datasets import load_dataset
    from vaelab.prepare import as_float_images
    from vaelab.visualisation import stratified_subsample

    run = tracked_study / "latent_3"
    reader = event_reader(run)
    content = reader.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    model, config = load_model(run)
    assert start.hparams["model.latent_dim"].number_value == 3
    assert start.hparams["model.arch"].string_value == "mlp" and set(start.hparams) == set(flat_params(config))
    # The projector's points are the final model's posterior means of the fixed test subsample.
    (embedding_dir,) = [p.parent for p in (run / "tensorboard").glob("*/latent_means/tensors.tsv")]
    means = np.loadtxt(embedding_dir / "tensors.tsv", ndmin=2)
    labels = (embedding_dir / "metadata.tsv").read_text().split()
    test = load_dataset(config.data.dataset, config.data.data_dir, download=False).test
    chosen = stratified_subsample(test.labels.numpy())
    with torch.no_grad():
        mu, _ = model.encode(as_float_images(test.images[chosen], torch.device("cpu")))
    assert means.shape == (len(chosen), 3) and np.allclose(means, mu.numpy(), atol=1e-4)
    assert labels == [str(int(label)) for label in test.labels[chosen]]
    assert (embedding_dir / "sprite.png").exists()


@pytest.mark.slow
def test_a_studys_runs_read_side_by_side(tracked_study):
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tracked_study))
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == [f"latent_{d}/tensorboard" for d in DIMS]


@pytest.mark.slow
def test_mlflow_runs_hold_the_same_metrics_params_and_figures(tracked_study):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracked_study.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("study")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == [f"latent_{d}" for d in DIMS]
    for d in DIMS:
        run, history = runs[f"latent_{d}"], history_of(tracked_study / f"latent_{d}")
        assert run.info.status == "FINISHED" and run.data.params["model.latent_dim"] == str(d)
        for split, metric in (("test", "loss"), ("train", "ssim"), ("test", "psnr")):
            logged = client.get_metric_history(run.info.run_id, f"{split}/{metric}")
            assert sorted((m.step, m.value) for m in logged) == [(r["step"], r[split][metric]) for r in history]
        figures = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "figures")}
        assert {"metrics.png", "latent_space.gif", "reconstructions.png", "samples.png"} <= figures
        assert "metrics.json" in {f.path for f in client.list_artifacts(run.info.run_id)}


@pytest.mark.slow
@pytest.mark.parametrize("latent_dim", DIMS)
def test_wandb_offline_runs_hold_the_same_metrics_config_and_figures(tracked_study, latent_dim):
    run = tracked_study / f"latent_{latent_dim}"
    records = wandb_offline_records(run)
    kinds = [r.WhichOneof("record_type") for r in records]
    (start,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (start.run_group, start.display_name, start.project) == ("study", run.name, "study")
    config = {item.key: json.loads(item.value_json) for item in start.config.update if item.key != "_wandb"}
    assert config == json.loads(json.dumps(flat_params(load_model(run)[1])))
    rows = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    history = history_of(run)
    assert [row["_step"] for row in rows] == [r["step"] for r in history]
    for row, record in zip(rows, history, strict=True):  # the very numbers of metrics.json, not rounded
        assert {k: row[f"test/{k}"] for k in record["test"]} == record["test"]
        assert {k: row[f"train/{k}"] for k in record["train"]} == record["train"]
        assert row["reconstructions/_type"] == "image-file" and row["reconstructions/width"] == 10 * 28
    assert rows[-1]["latent_means/_type"] == "table-file" and rows[-1]["latent_means/ncols"] == 1 + latent_dim
    assert {"figures/metrics.png/_type", "figures/samples.png/_type"} <= set(rows[-1])
    assert "artifact" in kinds and kinds[-1] == "exit" and records[-1].exit.exit_code == 0


@pytest.mark.parametrize("option, extra", [("--mlflow", "mlflow"), ("--wandb", "wandb")])
def test_a_missing_tracker_is_one_line_naming_the_extra(option, extra, monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == extra else real(name, *a))
    monkeypatch.setattr("vaelab.pipeline.load_dataset", lambda *args, **kwargs: pytest.fail("trained without it"))
    result = CliRunner().invoke(cli, ["train", option, "--run-dir", str(tmp_path / "r"), "--no-progress"])
    assert result.exit_code == 1 and f"vaelab[{extra}]" in result.output and len(result.output.splitlines()) == 1
