"""The on-disk layout: run directory names, metrics.json and metrics.csv, study.json."""

import json

import pytest

from vaelab import rundir
from vaelab.config import RunConfig
from vaelab.rundir import MetricsFileError, StudyFileError

HISTORY = [{"epoch": 0.5, "step": 4, "train": {"loss": 2.0}, "test": {"loss": 3.0}},
           {"epoch": 1.0, "step": 8, "train": {"loss": 1.0}, "test": {"loss": 2.5}, "test_iwae_log_likelihood": -90.0}]


def test_metrics_round_trip_and_the_csv_has_every_column_any_point_has(tmp_path):
    rundir.write_metrics(tmp_path, RunConfig(), HISTORY, {"train": 10, "test": 5}, {"device": "cpu"},
                         final={"active_units": 2, "absent": {"probe_accuracy": "no labels"}})
    metrics = rundir.read_metrics(tmp_path)
    assert metrics.history == HISTORY and metrics.eval_sizes == {"train": 10, "test": 5}
    assert metrics.final == {"active_units": 2.0} and metrics.absent == {"probe_accuracy": "no labels"}
    assert metrics.config == json.loads(json.dumps(RunConfig().to_dict()))
    header, first, second = (tmp_path / rundir.METRICS_CSV).read_text().splitlines()
    assert header.split(",") == ["epoch", "step", "train_loss", "test_loss", "test_iwae_log_likelihood"]
    assert first.endswith(",") and second.endswith(",-90.0")  # a value only some points have is left empty


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"history": 3}'])
def test_an_unreadable_metrics_file_is_an_error_and_a_missing_one_is_none(tmp_path, text):
    assert rundir.read_metrics(tmp_path) is None
    (tmp_path / rundir.METRICS_JSON).write_text(text)
    with pytest.raises(MetricsFileError):
        rundir.read_metrics(tmp_path)


def test_run_directory_names_carry_the_latent_size(tmp_path):
    run = rundir.run_dir_of(tmp_path, 16)
    assert run == tmp_path / "latent_16" and rundir.latent_dim_of(run) == 16
    assert rundir.latent_dim_of(tmp_path / "beta=0.5,z=2,seed=1") is None


def test_the_study_file_round_trips_and_refuses_malformed_runs(tmp_path):
    assert rundir.read_study_file(tmp_path) is None
    rundir.write_study_file(tmp_path, [2, 4], {"runs": [{"dir": "z=2", "coords": {"model.latent_dim": 2}}]})
    assert rundir.read_study_file(tmp_path)["latent_dims"] == [2, 4]
    (tmp_path / rundir.STUDY_FILE).write_text(json.dumps({"latent_dims": [2], "runs": [{"coords": {}}]}))
    with pytest.raises(StudyFileError, match="runs"):
        rundir.read_study_file(tmp_path)
