"""The Python API: a study in a few lines, results returned, the trained models kept in memory."""

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

import vaelab
from helpers import small_config
from vaelab.checkpoint import load_model
from vaelab.cli import cli
from vaelab.pipeline import RunOptions, resumed_config

QUICK = RunOptions(progress=False, measures=False, artifacts=False)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    theirs = b.state_dict()
    return all(torch.equal(weight, theirs[name]) for name, weight in a.state_dict().items())


def test_a_small_study_from_python_returns_its_runs_and_report(mnist, tmp_path):
    messages = []
    result = vaelab.study([2, 3], tmp_path / "study", small_config(epochs=1), QUICK, dataset=mnist.head(512, 200),
                          notify=messages.append)
    assert sorted(result.runs) == [2, 3] and result.report.html.exists()
    for latent_dim, run in result.runs.items():
        assert run.run_dir == tmp_path / "study" / f"latent_{latent_dim}" and run.config.model.latent_dim == latent_dim
        assert json.loads((run.run_dir / "metrics.json").read_text())["history"] == run.history
        assert run.test == run.history[-1]["test"] and run.test["loss"] > 0
        assert not run.model.training and same_weights(run.model, load_model(run.run_dir)[0])
    assert "== latent size 3 -> " + str(tmp_path / "study" / "latent_3") in messages
    again = vaelab.study([2, 3], tmp_path / "study", small_config(epochs=1), RunOptions(resume=True, measures=False),
                         notify=messages.append)
    assert all(run.skipped and run.model is None for run in again.runs.values())
    assert [again.runs[d].history for d in (2, 3)] == [result.runs[d].history for d in (2, 3)]


@pytest.mark.slow
def test_train_measures_and_draws_with_the_model_in_memory(mnist, tmp_path, monkeypatch, tiny_classifier):
    def no_reload(*args, **kwargs):
        raise AssertionError("the trained model was read back from disk")

    monkeypatch.setattr("vaelab.classifier.load_or_train_classifier", lambda *args, **kwargs: tiny_classifier)
    monkeypatch.setattr("vaelab.visualisation.load_model", no_reload)
    options = RunOptions(progress=False, projection="pca", iwae_k=2)
    run = vaelab.train(small_config(epochs=1), tmp_path / "run", options, dataset=mnist.head(512, 200),
                       notify=lambda message: None)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["final"] == run.final and run.final["iwae_k"] == 2 and run.final["latent_units"] == 2
    assert {"samples.png", "manifold.png", "latent_space.gif"} <= set(run.figures)
    assert all(path.exists() for path in run.figures.values())


def test_resuming_keeps_the_saved_settings_but_may_extend_the_epochs(mnist, tmp_path):
    data = mnist.head(256, 100)
    vaelab.train(small_config(epochs=1, lr=3e-3), tmp_path / "run", QUICK, dataset=data, notify=print)
    more = RunOptions(resume=True, resume_epochs=2, progress=False, measures=False, artifacts=False)
    run = vaelab.train(small_config(epochs=5, lr=1e-4), tmp_path / "run", more, dataset=data, notify=print)
    assert run.config.train.lr == 3e-3 and run.config.train.epochs == 2
    assert [r["epoch"] for r in run.history][-2:] == [1.0, 2.0]
    # Never shortened: a config.json of 1 epoch beside a history of 2 would contradict it.
    fewer = RunOptions(resume=True, resume_epochs=1, progress=False, measures=False, artifacts=False)
    with pytest.raises(vaelab.VaelabError, match="has already trained 2 epochs; a resumed run can only go further"):
        vaelab.train(small_config(epochs=1), tmp_path / "run", fewer, dataset=data)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["epochs"] == 2


def test_a_global_batch_smaller_than_the_world_is_refused_before_training(tmp_path):
    from vaelab.distributed import DdpContext
    from vaelab.errors import SettingsError

    ddp = DdpContext(rank=0, local_rank=0, world_size=4, device=torch.device("cpu"))
    config = small_config()
    config.train.batch_size = 2
    with pytest.raises(SettingsError, match="global batch"):
        vaelab.train(config, tmp_path / "run", QUICK, ddp=ddp)


def test_an_interrupted_study_leaves_its_plan_for_the_report(mnist, tmp_path, monkeypatch):
    from vaelab.errors import Interrupted
    from vaelab.report.study import read_study

    real_train = vaelab.pipeline.train

    def train_then_stop(config, run_dir, options, **kwargs):
        if config.model.latent_dim == 3:
            raise Interrupted("stopped at step 0")
        return real_train(config, run_dir, options, **kwargs)

    monkeypatch.setattr(vaelab.pipeline, "train", train_then_stop)
    with pytest.raises(Interrupted, match="--resume"):
        vaelab.study([2, 3], tmp_path / "study", small_config(epochs=1), QUICK, dataset=mnist.head(512, 200))
    assert json.loads((tmp_path / "study" / "study.json").read_text()) == {"latent_dims": [2, 3],
                                                                       "threads": torch.get_num_threads()}
    assert "planned" in read_study(tmp_path / "study").left_out["latent_3"]


class Recorder(vaelab.Callback):
    """Notes every call, and changes what it is given to show that the change goes nowhere."""

    def __init__(self):
        self.events = []

    def on_fit_start(self, start):
        self.events.append(("start", start.run_dir.name, start.config.model.latent_dim))

    def on_eval_point(self, point):
        self.events.append(("point", point.index, point.record["epoch"]))
        point.record["test"]["loss"] = -1.0

    def on_fit_end(self, result):
        self.events.append(("end", len(result.history)))

    def on_exception(self, error):
        self.events.append(("error", type(error).__name__))


def test_callbacks_see_every_moment_of_a_run_and_cannot_change_it(mnist, tmp_path):
    recorder = Recorder()
    run = vaelab.train(small_config(latent_dim=3), tmp_path / "run", QUICK, dataset=mnist.head(512, 200),
                       callbacks=[recorder])
    assert recorder.events[0] == ("start", "run", 3) and recorder.events[-1] == ("end", len(run.history))
    assert [e[1] for e in recorder.events if e[0] == "point"] == list(range(len(run.history)))
    assert all(r["test"]["loss"] > 0 for r in run.history)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["history"] == run.history


def test_callbacks_hear_of_the_error_that_stopped_a_run(mnist, tmp_path, monkeypatch):
    recorder = Recorder()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vaelab.pipeline, "measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vaelab.train(small_config(), tmp_path / "run", RunOptions(progress=False, artifacts=False),
                     dataset=mnist.head(512, 200), callbacks=[recorder])
    assert recorder.events[-1] == ("error", "KeyboardInterrupt")


def test_resuming_a_finished_study_draws_the_figures_a_kill_left_missing(mnist, tmp_path):
    options = RunOptions(progress=False, measures=False, projection="pca")
    vaelab.study([2], tmp_path / "study", small_config(epochs=1), options, dataset=mnist.head(256, 100),
                 notify=lambda message: None)
    run = tmp_path / "study" / "latent_2"
    drawn = {name: (run / name).read_bytes() for name in ("samples.png", "latent_space.gif")}
    for name in drawn:
        (run / name).unlink()
    messages = []
    again = vaelab.study([2], tmp_path / "study", small_config(epochs=1), dataclasses.replace(options, resume=True),
                         dataset=mnist.head(256, 100), notify=messages.append)
    assert again.runs[2].skipped and any("figures were incomplete" in m for m in messages)
    assert all((run / name).exists() for name in drawn)


@pytest.mark.parametrize("call, complaint", [
    (lambda d: vaelab.study("24", d), "the latent sizes must be a list of whole numbers"),  # not [2, 4]
    (lambda d: vaelab.study([2.7], d), "(2.7 is not one)"),  # not 2
    (lambda d: vaelab.study([True], d), "(True is not one)"),
    (lambda d: vaelab.study([], d), "non-empty list"),
    (lambda d: vaelab.study([2], d, seeds=[0.5]), "(0.5 is not one)"),
    (lambda d: vaelab.study([2], ""), "study_dir is empty"),  # not the current directory
    (lambda d: vaelab.train(run_dir=" "), "run_dir is empty"),
])
def test_latent_sizes_seeds_and_directories_are_refused_not_converted(call, complaint, tmp_path):
    with pytest.raises(vaelab.VaelabError) as refused:
        call(tmp_path / "study")
    assert complaint in str(refused.value)
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("build, complaint", [
    (lambda: vaelab.RunConfig(train={"lr": 1}), "RunConfig.train must be a TrainConfig, got dict"),
    (lambda: vaelab.RunConfig(model=vaelab.TrainConfig()), "RunConfig.model must be a ModelConfig, got TrainConfig"),
    (lambda: RunOptions(iwae_k=0), "options.iwae_k must be a whole number >= 1, got 0"),
    (lambda: RunOptions(resume_epochs=2.5), "options.resume_epochs must be a whole number >= 1, got 2.5"),
    (lambda: RunOptions(progress="no"), "options.progress must be true or false, got 'no'"),
    (lambda: RunOptions(projection="umap"), "options.projection must be one of tsne, pca"),
])
def test_configs_and_options_of_the_wrong_kind_are_refused_naming_the_field(build, complaint):
    with pytest.raises(vaelab.ConfigError) as refused:
        build()
    assert complaint in str(refused.value)


@pytest.mark.parametrize("train, test", [(0, 50), (300, 1), (1, 50), (4, 50)])
def test_splits_too_small_to_train_or_score_are_refused_before_training(train, test, tmp_path):
    from helpers import write_idx_dataset
    from vaelab.data import Dataset, ImageSplit

    rng = torch.Generator().manual_seed(0)

    def split(n):
        return ImageSplit(torch.randint(0, 256, (n, 28, 28), generator=rng, dtype=torch.uint8),
                          torch.randint(0, 10, (n,), generator=rng))

    data = write_idx_dataset(tmp_path / "data", Dataset("idx", tmp_path / "data", split(train), split(test)))
    result = CliRunner().invoke(cli, ["train", "--dataset", "idx", "--data-dir", str(data), "--run-dir",
                                      str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1 and "vaelab needs at least 5 training and 2 test images" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_an_epoch_of_a_few_steps_is_warned_with_a_batch_size_to_try(mnist, tmp_path):
    with pytest.warns(UserWarning, match="optimiser steps per epoch") as caught:
        vaelab.train(small_config(epochs=1), tmp_path / "run", QUICK, dataset=mnist.head(70, 50))
    warning = next(str(w.message) for w in caught if "optimiser steps" in str(w.message))
    assert "70 training images at --batch-size 64 make 2 optimiser steps per epoch" in warning
    assert "try --batch-size 7" in warning


def test_a_resumed_run_keeps_its_settings_but_runs_on_the_device_asked_for_now(tmp_path):
    """The device is where a run runs, not what it trains: resuming on another node takes --device where
    it is given, keeps the recorded one where it is not, and the command line does not call it ignored."""
    run = tmp_path / "run"
    run.mkdir()
    # IDX files in an empty directory: the resumed command stops at once where it reads its data (MNIST
    # would be looked for online), which is not the subject here
    nowhere = {"data.dataset": "idx", "data.data_dir": str(tmp_path / "nowhere")}
    small_config(latent_dim=3, epochs=2, lr=5e-3).with_settings(nowhere).save(run / "config.json")
    asked = small_config(latent_dim=3, epochs=2).with_settings({"train.device": "auto", "lr": 1e-4})
    assert resumed_config(run, asked, None).train.device == "cpu"
    resumed = resumed_config(run, asked, None, "auto")
    assert resumed.train.device == "auto" and resumed.train.lr == 5e-3
    with pytest.warns(UserWarning, match="ignored") as warned:
        CliRunner().invoke(cli, ["train", "--run-dir", str(run), "--resume", "--device", "cpu", "--lr", "0.1",
                                 "--no-progress"])
    message = str(warned[0].message)
    assert "--lr 0.1 (kept: 0.005). Only" in message and "--device" not in message.split("Only")[0]
