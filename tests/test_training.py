import json

import pytest
import torch

from conftest import small_config as shared_small_config
from vaelab.checkpoint import load_checkpoint, load_model
from vaelab.config import RunConfig
from vaelab.errors import CheckpointError, OutputDirError
from vaelab.training import Trainer, first_epoch_eval_steps, kl_weight


def small_config(epochs=2, **train) -> RunConfig:
    return shared_small_config(2, epochs, hidden=(128,), train_eval_size=512, **train)


def test_first_epoch_points_are_evenly_spaced_strictly_inside():
    assert first_epoch_eval_steps(469, 5) == [78, 156, 234, 313, 391]
    assert first_epoch_eval_steps(3, 5) == [1, 2]  # tiny epochs: distinct steps only


@pytest.mark.slow
def test_short_run_on_real_mnist_lowers_the_test_loss_and_records_every_point(mnist, tmp_path):
    history = Trainer(small_config(epochs=3), mnist.head(2048, 1000), tmp_path / "run", progress=False).run()
    assert len(history) == 5 + 3
    epochs = [r["epoch"] for r in history]
    assert epochs == sorted(epochs) and epochs[5:] == [1.0, 2.0, 3.0] and 0 < epochs[0] < 1
    assert history[-1]["test"]["loss"] < history[0]["test"]["loss"] - 20
    assert history[-1]["test"]["ssim"] > history[0]["test"]["ssim"]
    for record in history:
        for split in ("train", "test"):
            assert set(record[split]) == {"loss", "nll", "kl", "mse", "ssim", "psnr"}
            assert record[split]["loss"] == pytest.approx(record[split]["nll"] + record[split]["kl"], rel=1e-6)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["history"] == history and saved["eval_sizes"] == {"train": 512, "test": 1000}
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,step,time_s,train_s,train_loss") and header.endswith("test_psnr")
    assert (tmp_path / "run" / "config.json").exists()


@pytest.mark.slow
def test_resume_continues_exactly(mnist, tmp_path):
    data = mnist.head(1024, 256)
    straight = Trainer(small_config(epochs=3), data, tmp_path / "a", progress=False).run()
    Trainer(small_config(epochs=1), data, tmp_path / "b", progress=False).run()
    resumed = Trainer(small_config(epochs=3), data, tmp_path / "b", progress=False).run(resume=True)

    def strip_time(history):
        return [{k: v for k, v in r.items() if k not in ("time_s", "train_s")} for r in history]

    assert strip_time(resumed) == strip_time(straight)
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for name, weight in a["model"].items():
        assert torch.equal(weight, b["model"][name]), name


def test_refuses_to_overwrite_a_run_without_resume(mnist, tmp_path):
    data = mnist.head(256, 128)
    Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False).run()
    with pytest.raises(OutputDirError, match="--resume"):
        Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False).run()


def test_load_model_round_trips_and_rejects_foreign_files(mnist, tmp_path):
    data = mnist.head(256, 128)
    Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False).run()
    model, config = load_model(tmp_path / "run")
    assert config.model.latent_dim == 2 and model.sample(2).shape == (2, 1, 28, 28)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a vaelab checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_kl_weight_ramps_linearly_from_zero_to_beta_over_the_warmup():
    assert kl_weight(0.5, 0.0, 0, 100) == 0.5  # no warm-up: beta from the first step
    assert [kl_weight(2.0, 1.5, step, 100) for step in (0, 75, 150, 1000)] == [0.0, 1.0, 2.0, 2.0]


@pytest.mark.slow
def test_beta_trades_kl_for_reconstruction(mnist, tmp_path):
    data = mnist.head(1024, 256)
    final = {}
    for beta in (0.2, 5.0):
        config = small_config(epochs=1, beta=beta)
        final[beta] = Trainer(config, data, tmp_path / f"beta_{beta}", progress=False).run()[-1]["test"]
    assert final[5.0]["kl"] < 0.7 * final[0.2]["kl"] and final[5.0]["nll"] > final[0.2]["nll"]


def test_resume_from_a_checkpoint_missing_resume_state_is_a_clear_error(mnist, tmp_path):
    data = mnist.head(256, 128)
    Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False).run()
    path = tmp_path / "run" / "checkpoint.pt"
    saved = torch.load(path, weights_only=True)
    del saved["eval_s"]
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match="lacks \\['eval_s'\\]"):
        Trainer(small_config(epochs=2), data, tmp_path / "run", progress=False).run(resume=True)
