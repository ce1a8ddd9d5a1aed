import csv
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from helpers import one_line
from vaelab.cli import cli
from vaelab.pipeline import RunResult

FAST = ["--epochs", "1", "--hidden", "64", "--batch-size", "256", "--train-eval-size", "500", "--no-progress",
        "--device", "cpu", "--no-artifacts", "--no-measures"]  # figures: test_visualisation.py; measures below


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_help_lists_the_commands_and_explains_options():
    result = invoke("--help")
    assert result.exit_code == 0 and "study" in result.output and "train" in result.output
    train_help = invoke("train", "--help").output
    assert "--latent-dim" in train_help and "--resume" in train_help and "--likelihood" in train_help


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["train", "--latent-dim", "0"], "--latent-dim"),
        (["train", "--arch", "transformer"], "--arch"),
        (["train", "--lr", "-1"], "--lr"),
        (["study", "--latent-dims", "2,x"], "--latent-dims"),
        (["train", "--hidden", "0"], "--hidden"),
        (["train", "--bogus"], "--bogus"),
        (["train", "--run-dir", ""], "--run-dir': the directory name is empty"),
        (["study", "--study-dir", " "], "--study-dir': the directory name is empty"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, complaint, tmp_path):
    somewhere = [] if "--study-dir" in args else ["--study-dir", str(tmp_path)]  # nothing lands in the checkout
    result = CliRunner().invoke(cli, args + somewhere)
    assert result.exit_code == 2
    assert complaint in result.output and "Traceback" not in result.output


def test_missing_data_is_a_clear_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr("vaelab.data.open_url", lambda url, timeout: (_ for _ in ()).throw(OSError("offline")))
    result = CliRunner().invoke(cli, ["train", "--dataset", "idx", "--data-dir", str(tmp_path / "empty"),
                                      "--study-dir", str(tmp_path / "runs"), *FAST])
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte" in result.output and "Traceback" not in result.output


def test_unwritable_output_dir_is_a_clear_message(mnist_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(mnist_dir), "--run-dir", str(blocker / "run"), *FAST])
    assert result.exit_code == 1
    assert "cannot write to the output directory" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_study_trains_each_latent_size_in_its_own_run_dir_then_resume_skips_them(mnist_dir, tmp_path):
    study = tmp_path / "study"
    result = invoke("study", "--latent-dims", "2,3", "--data-dir", str(mnist_dir), "--study-dir", str(study), *FAST,
                    "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert (study / "report.html").exists() and (study / "final_metrics.csv").exists()
    for d in (2, 3):
        run = study / f"latent_{d}"
        assert (run / "config.json").exists() and (run / "checkpoint.pt").exists()
        history = json.loads((run / "metrics.json").read_text())["history"]
        assert len(history) == 5 + 1 and json.loads((run / "config.json").read_text())["model"]["latent_dim"] == d
    again = invoke("study", "--latent-dims", "2,3", "--data-dir", str(mnist_dir), "--study-dir", str(study),
                   "--resume", *FAST)
    assert again.exit_code == 0 and again.output.count("already finished") == 2
    refused = CliRunner().invoke(cli, ["study", "--latent-dims", "2", "--data-dir", str(mnist_dir),
                                       "--study-dir", str(study), *FAST])
    assert refused.exit_code == 1 and "--resume" in refused.output


@pytest.mark.slow
def test_train_resume_can_extend_the_epochs(mnist_dir, tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "-z", "2", "--data-dir", str(mnist_dir), "--run-dir", str(run), *FAST).exit_code == 0
    result = invoke("train", "--data-dir", str(mnist_dir), "--run-dir", str(run), "--resume", "--no-measures",
                    "--epochs", "2", "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history][-2:] == [1.0, 2.0]


def test_module_entry_point_runs_and_version_names_torch_and_the_device():
    import torch

    from vaelab import __version__
    from vaelab.training import select_device

    result = subprocess.run([sys.executable, "-m", "vaelab", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and f"vaelab {__version__}" in result.stdout
    assert f"torch {torch.__version__}" in result.stdout and f"device {select_device('auto')}" in result.stdout


def test_shell_completion_completes_commands_and_options():
    script = CliRunner().invoke(cli, [], prog_name="vaelab", env={"_VAELAB_COMPLETE": "bash_source"})
    assert script.exit_code == 0 and "complete -o nosort -F _vaelab_completion vaelab" in script.output
    words = CliRunner().invoke(cli, [], prog_name="vaelab", env={
        "_VAELAB_COMPLETE": "bash_complete", "COMP_WORDS": "vaelab st", "COMP_CWORD": "1"})
    assert "plain,study" in words.output.split()
    options = CliRunner().invoke(cli, [], prog_name="vaelab", env={
        "_VAELAB_COMPLETE": "bash_complete", "COMP_WORDS": "vaelab train --tensor", "COMP_CWORD": "2"})
    assert "plain,--tensorboard" in options.output.split()


def assert_csv_holds_every_history_value(history: list[dict], path) -> None:
    """Every value of every metrics.json record is in metrics.csv: top-level keys as they are, a split's
    metrics as <split>_<metric>; a value a record lacks is an empty cell."""
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(history)
    for record, row in zip(history, rows, strict=True):
        flat = {f"{key}_{name}": v for key, inner in record.items() if isinstance(inner, dict)
                for name, v in inner.items()}
        flat.update({key: v for key, v in record.items() if not isinstance(v, dict)})
        assert set(flat) <= set(row), set(flat) - set(row)
        assert all(float(row[column]) == pytest.approx(value, rel=1e-12) for column, value in flat.items())
        assert all(row[column] == "" for column in set(row) - set(flat))


@pytest.mark.slow
def test_final_measures_land_in_metrics_json_and_a_finished_study_is_then_skipped(mnist_dir, tmp_path, monkeypatch,
                                                                                  tiny_classifier):
    monkeypatch.setattr("vaelab.classifier.load_or_train_classifier", lambda *args, **kwargs: tiny_classifier)
    study = tmp_path / "study"
    with_measures = [a for a in FAST if a != "--no-measures"]
    args = ["study", "-z", "3", "--data-dir", str(mnist_dir), "--study-dir", str(study), *with_measures,
            "--iwae-k", "4", "--iwae-every-epoch"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    saved = json.loads((study / "latent_3" / "metrics.json").read_text())
    final = saved["final"]
    assert final["iwae_k"] == 4 and final["latent_units"] == 3 and final["classifier_test_accuracy"] > 0.8
    assert final["iwae_log_likelihood"] > -saved["history"][-1]["test"]["loss"] - 5  # K = 4 ~ the ELBO or above
    assert "test_iwae_log_likelihood" in saved["history"][-1] and "test_iwae_log_likelihood" not in saved["history"][0]
    assert_csv_holds_every_history_value(saved["history"], study / "latent_3" / "metrics.csv")
    assert "final measures" in result.output
    again = invoke(*args, "--resume")
    assert again.exit_code == 0 and "already finished" in again.output


def test_preset_original_sets_the_spatial_model_and_explicit_options_win(monkeypatch, tmp_path):
    configs = []

    def fake_train(config, run_dir, options=None, **kwargs):
        configs.append(config)
        return RunResult(run_dir, config, [{"test": {"loss": 0.0, "mse": 0.0, "ssim": 1.0, "psnr": 100.0}}])

    monkeypatch.setattr("vaelab.pipeline.train", fake_train)
    monkeypatch.setattr("vaelab.pipeline.build_report", lambda path: SimpleNamespace(html=path / "report.html"))
    assert invoke("train", "--preset", "original", "-z", "16", "--run-dir", str(tmp_path / "a")).exit_code == 0
    assert invoke("study", "--preset", "original", "-z", "2", "--beta", "0.5", "--warmup-epochs", "2",
                  "--study-dir", str(tmp_path / "b")).exit_code == 0
    assert invoke("train", "--preset", "original-vae", "-z", "4", "--run-dir", str(tmp_path / "c")).exit_code == 0
    assert invoke("train", "--preset", "original-small", "-z", "2", "--run-dir", str(tmp_path / "d")).exit_code == 0
    assert invoke("train", "--preset", "original-wide", "-z", "2", "--run-dir", str(tmp_path / "e")).exit_code == 0
    first, second, vae, small, wide = configs
    assert (first.model.arch, first.model.channels, first.model.latent_dim, first.model.likelihood) == (
        "resnet-spatial", (32, 64, 128), 16, "gaussian")
    assert (first.train.beta, first.train.lr, first.train.betas, first.train.batch_size, first.train.seed,
            first.train.epochs) == (0.0, 1e-4, (0.5, 0.999), 64, 1111, 20)
    assert second.model.arch == "resnet-spatial" and second.train.beta == 0.5 and second.train.warmup_epochs == 2
    # 5e-6 on the published loss (per-pixel mean squared error on [-1, 1]) is 0.049 on vaelab's NLL at sigma 0.1.
    assert vae.model.arch == "resnet-spatial" and vae.train.beta == pytest.approx(5e-6 * 784 / 4 / (2 * 0.1**2))
    assert (small.model.arch, small.model.channels, small.train.beta) == ("conv-spatial", (32, 64), 1e-3)
    assert (wide.model.arch, wide.model.channels, wide.model.likelihood, wide.train.beta, wide.train.lr,
            wide.train.lr_schedule, wide.train.precision, wide.train.epochs) == (
        "conv-spatial", (128, 256), "gaussian", 0.0, 3e-3, "onecycle", "bf16", 20)


def test_widths_must_fit_the_architecture(tmp_path):
    result = invoke("train", "--arch", "resnet-spatial", "--likelihood", "gaussian", "--widths", "32,64",
                    "--run-dir", str(tmp_path / "a"))
    assert result.exit_code == 2 and "resnet-spatial takes 3 widths" in result.output
    result = invoke("train", "--arch", "resnet-spatial", "--run-dir", str(tmp_path / "b"))
    assert result.exit_code == 2 and "needs --likelihood gaussian" in result.output


def test_train_on_an_rgb_folder_records_the_data_shape_and_resumes(tmp_path, monkeypatch):
    from helpers import write_image_folder
    from vaelab.checkpoint import load_model

    monkeypatch.setenv("VAELAB_IMAGE_CACHE", str(tmp_path / "cache"))
    data_dir = write_image_folder(tmp_path / "images", {"a": 30, "b": 30}, size=20, mode="RGB")
    args = ["train", "--dataset", "folder", "--data-dir", str(data_dir), "--arch", "conv", "-z", "3",
            "--run-dir", str(tmp_path / "run"), "--image-size", "16", *FAST]
    assert invoke(*args).exit_code == 0
    model, config = load_model(tmp_path / "run")
    assert config.model.image_shape == (3, 16, 16) and config.data.image_size == 16
    assert config.data.data_dir == str(data_dir)
    assert model.sample(1).shape == (1, 3, 16, 16)
    resumed = invoke(*args[:-len(FAST)], *FAST, "--resume", "--epochs", "2")
    assert resumed.exit_code == 0
    assert [r["epoch"] for r in json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]][-1] == 2


def test_folder_errors_exit_1_with_the_message(tmp_path):
    (tmp_path / "images").mkdir()
    result = CliRunner().invoke(cli, ["train", "--dataset", "folder", "--data-dir", str(tmp_path / "images"),
                                      "--run-dir", str(tmp_path / "run"), *FAST])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no image files found" in one_line(result.output)


@pytest.mark.slow
def test_a_runs_config_json_given_as_config_reproduces_the_run(mnist, tmp_path):
    from helpers import write_idx_dataset

    data_dir = write_idx_dataset(tmp_path / "idx", mnist.head(3000, 1000))
    first = tmp_path / "study" / "latent_3"
    args = ["-z", "3", "--likelihood", "gaussian", "--beta", "0.5", "--seed", "7", "--dataset", "idx",
            "--data-dir", str(data_dir), *FAST]
    assert invoke("train", *args, "--run-dir", str(first)).exit_code == 0
    again = tmp_path / "again"
    result = invoke("train", "--config", str(first / "config.json"), "--run-dir", str(again), "--no-progress",
                    "--no-artifacts", "--no-measures")
    assert result.exit_code == 0, result.output
    saved, reproduced = (json.loads((run / "config.json").read_text()) for run in (first, again))
    assert reproduced == saved
    metrics = [json.loads((run / "metrics.json").read_text())["history"][-1]["test"] for run in (first, again)]
    assert metrics[0] == metrics[1]  # same seed, same settings: the same numbers


def test_options_given_on_the_command_line_override_the_config_file(monkeypatch, tmp_path):
    configs = []
    monkeypatch.setattr("vaelab.pipeline.train", lambda config, run_dir, *args, **kwargs: configs.append(config) or
                        RunResult(run_dir, config, [{"test": {"loss": 0.0, "mse": 0.0, "ssim": 1.0, "psnr": 100.0}}]))
    monkeypatch.setattr("vaelab.pipeline.build_report", lambda path: SimpleNamespace(html=path / "report.html"))
    path = tmp_path / "base.toml"
    path.write_text('[model]\narch = "conv"\nlatent_dim = 5\n\n[train]\nepochs = 4\nlr = 0.01\nseed = 3\n')
    assert invoke("train", "--config", str(path), "--lr", "0.002", "--study-dir", str(tmp_path)).exit_code == 0
    assert invoke("train", "--config", str(path), "-z", "9", "--run-dir", str(tmp_path / "r")).exit_code == 0
    assert invoke("study", "--config", str(path), "-z", "2,6", "--epochs", "2", "--study-dir",
                  str(tmp_path / "s"), "--jobs", "1").exit_code == 0  # in this process, where train is replaced
    file_only, with_z, *study = configs
    assert (file_only.model.arch, file_only.model.latent_dim, file_only.train.epochs) == ("conv", 5, 4)
    assert (file_only.train.lr, file_only.train.seed) == (0.002, 3)
    assert with_z.model.latent_dim == 9 and with_z.train.lr == 0.01
    assert [(c.model.latent_dim, c.model.arch, c.train.epochs, c.train.lr) for c in study] == [
        (2, "conv", 2, 0.01), (6, "conv", 2, 0.01)]


@pytest.mark.parametrize("text, complaint", [
    ("[train]\nepochs = 0\n", "train.epochs"),
    ('[model]\narch = "transformer"\n', "model.arch"),
    ("[model]\nhidden = [0]\n", "model.hidden"),
    ("[model]\nlatent_dim = 0\n", "model.latent_dim"),
    ("[model]\nwidth = 3\n", "'model.width'"),
    ('[train]\nlr = "fast"\n', "train.lr"),
    ("[train\n", "not valid TOML"),
])
def test_bad_config_files_exit_2_naming_the_key(tmp_path, text, complaint):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["train", "--config", str(path), "--study-dir", str(tmp_path)])
    assert result.exit_code == 2 and complaint in one_line(result.output) and "Traceback" not in result.output


def test_a_missing_config_file_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["study", "--config", str(tmp_path / "none.toml"), "--study-dir", str(tmp_path)])
    assert result.exit_code == 2 and "none.toml" in result.output and "Traceback" not in result.output


def test_lpips_weights_that_are_not_there_give_a_clear_message(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("VAELAB_DATA", str(mnist_dir))
    result = invoke("train", "--preset", "original", "--lpips-weights", str(tmp_path / "vgg.pth"), "--epochs", "1",
                    "--run-dir", str(tmp_path / "run"), "--no-progress")
    assert result.exit_code == 1, result.output
    message = one_line(result.output)  # the message is wrapped at 100 columns
    assert "vgg.pth does not exist" in message and "cannot download anything" in message
    assert "Traceback" not in result.output


def test_warnings_print_as_vaelab_messages_without_a_source_line(capsys):
    from vaelab.cli import show_warning

    show_warning(UserWarning("/data: skipped 2 unreadable or corrupt image file(s): a.png"), UserWarning,
                 "/src/vaelab/images.py", 82)
    err = capsys.readouterr().err
    assert err.startswith("vaelab: warning: /data: skipped 2") and "images.py" not in err and "82" not in err


def test_a_file_the_system_refuses_is_named_in_one_paragraph_not_a_traceback(tmp_path, monkeypatch):
    def failing_disk(study_dir):
        raise OSError(5, "Input/output error", str(tmp_path / "report.html"))

    monkeypatch.setattr("vaelab.cli.build_report", failing_disk)
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--no-figures"])
    message = one_line(result.output)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message.startswith(f"vaelab: {tmp_path / 'report.html'}: Input/output error. Check the path")
