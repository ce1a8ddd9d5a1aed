import functools
import json

import pytest
import torch

from helpers import small_config as shared_small_config
from vaelab import precision
from vaelab.callbacks import Callback
from vaelab.checkpoint import load_checkpoint, load_model
from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaelab.errors import CheckpointError, OutputDirError
from vaelab.prepare import as_float_images
from vaelab.run_store import fit
from vaelab.training import (
    RESUMED_STATE,
    Trainer,
    TrainState,
    build_model,
    first_epoch_eval_steps,
    kl_weight,
    scheduled_lr,
)


def small_config(epochs=2, **train) -> RunConfig:
    return shared_small_config(2, epochs, hidden=(128,), train_eval_size=512, **train)


def test_first_epoch_points_are_evenly_spaced_strictly_inside():
    assert first_epoch_eval_steps(469, 5) == [78, 156, 234, 313, 391]
    assert first_epoch_eval_steps(3, 5) == [1, 2]  # tiny epochs: distinct steps only


@pytest.mark.slow
def test_short_run_on_real_mnist_lowers_the_test_loss_and_records_every_point(mnist, tmp_path):
    history = fit(Trainer(small_config(epochs=3), mnist.head(2048, 1000), tmp_path / "run", progress=False))
    assert len(history) == 5 + 3
    epochs = [r["epoch"] for r in history]
    assert epochs == sorted(epochs) and epochs[5:] == [1.0, 2.0, 3.0] and 0 < epochs[0] < 1
    assert history[-1]["test"]["loss"] < history[0]["test"]["loss"] - 20
    assert history[-1]["test"]["ssim"] > history[0]["test"]["ssim"]
    for record in history:
        for split in ("train", "test"):
            assert set(record[split]) == {"loss", "nll", "kl", "mse", "ssim", "psnr", "ssim_orig", "psnr_orig"}
            assert record[split]["loss"] == pytest.approx(record[split]["nll"] + record[split]["kl"], rel=1e-6)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["history"] == history and saved["eval_sizes"] == {"train": 512, "test": 1000}
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,step,time_s,train_s,train_loss") and header.endswith("test_psnr_orig")
    assert (tmp_path / "run" / "config.json").exists()


@pytest.mark.slow
def test_resume_continues_exactly(mnist, tmp_path):
    data = mnist.head(1024, 256)
    straight = fit(Trainer(small_config(epochs=3), data, tmp_path / "a", progress=False))
    fit(Trainer(small_config(epochs=1), data, tmp_path / "b", progress=False))
    resumed = fit(Trainer(small_config(epochs=3), data, tmp_path / "b", progress=False), resume=True)
    assert_same_run(tmp_path / "a", straight, tmp_path / "b", resumed)


def resnet_config(epochs, precision, channels=(8, 16, 32)):
    return RunConfig(
        data=DataConfig(train_eval_size=64),
        model=ModelConfig(arch="resnet-spatial", latent_dim=2, channels=channels, likelihood="gaussian"),
        train=TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, betas=(0.5, 0.999), beta=0.0, device="cpu",
                          precision=precision, evals_in_first_epoch=1),
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resnet_spatial_resumes_exactly_in_either_precision(mnist, tmp_path, precision, monkeypatch):
    monkeypatch.setattr("vaelab.precision.bf16_is_fast", lambda device: True)  # bf16 even where it is emulated
    data = mnist.head(192, 64)
    # Narrow: emulated bf16 convolutions are slow, and the widths do not change what resuming must restore.
    config = functools.partial(resnet_config, precision=precision, channels=(4, 8, 16))
    straight = fit(Trainer(config(2), data, tmp_path / "a", progress=False))
    fit(Trainer(config(1), data, tmp_path / "b", progress=False))
    resumed = fit(Trainer(config(2), data, tmp_path / "b", progress=False), resume=True)
    assert_same_run(tmp_path / "a", straight, tmp_path / "b", resumed)
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["environment"]["precision"] == precision


def assert_same_run(dir_a, history_a, dir_b, history_b):

    def strip_time(history):
        return [{k: v for k, v in r.items() if k not in ("time_s", "train_s")} for r in history]

    assert strip_time(history_b) == strip_time(history_a)
    a, b = load_checkpoint(dir_a / "checkpoint.pt"), load_checkpoint(dir_b / "checkpoint.pt")
    for name, weight in a["model"].items():
        assert torch.equal(weight, b["model"][name]), name


def test_refuses_to_overwrite_a_run_without_resume(mnist, tmp_path):
    data = mnist.head(256, 128)
    fit(Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False))
    with pytest.raises(OutputDirError, match="--resume"):
        fit(Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False))


def test_load_model_round_trips_and_rejects_foreign_files(mnist, tmp_path):
    data = mnist.head(256, 128)
    fit(Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False))
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
        final[beta] = fit(Trainer(config, data, tmp_path / f"beta_{beta}", progress=False))[-1]["test"]
    assert final[5.0]["kl"] < 0.7 * final[0.2]["kl"] and final[5.0]["nll"] > final[0.2]["nll"]


def test_resume_from_a_checkpoint_missing_resume_state_is_a_clear_error(mnist, tmp_path):
    data = mnist.head(256, 128)
    fit(Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False))
    path = tmp_path / "run" / "checkpoint.pt"
    saved = torch.load(path, weights_only=True)
    del saved["eval_s"]
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match="lacks \\['eval_s'\\]"):
        fit(Trainer(small_config(epochs=2), data, tmp_path / "run", progress=False), resume=True)


def test_learning_rate_schedules_follow_their_shapes():
    def rates(schedule):
        cfg = TrainConfig(lr=1e-3, lr_schedule=schedule)
        return [scheduled_lr(cfg, step, 1000) for step in range(0, 1001, 100)]

    assert rates("constant") == [1e-3] * 11
    cosine = rates("cosine")
    assert cosine[0] == 1e-3 and cosine[5] == pytest.approx(5e-4) and cosine[-1] == pytest.approx(0, abs=1e-12)
    onecycle = rates("onecycle")
    assert onecycle[0] == pytest.approx(1e-3 / 25) and onecycle[3] == pytest.approx(1e-3)  # the peak at 30%
    assert onecycle[-1] == pytest.approx(1e-3 / 25 / 1e4) and max(onecycle) == pytest.approx(1e-3)
    assert onecycle[:4] == sorted(onecycle[:4]) and onecycle[3:] == sorted(onecycle[3:], reverse=True)


def test_precision_auto_follows_the_hardware_and_keeps_the_mlp_in_fp32(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert precision.resolve("auto", cpu, "resnet-spatial") == "bf16"
    assert precision.resolve("auto", cpu, "mlp") == "fp32"  # the default study keeps its fp32 numbers
    assert precision.resolve("auto", cpu, "conv-spatial") == "fp32"  # bf16 ended outside the tolerance
    assert precision.resolve("bf16", cpu, "conv-spatial") == "bf16"
    assert precision.resolve("fp32", cpu, "resnet-spatial") == "fp32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert precision.resolve("auto", cpu, "resnet-spatial") == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert precision.resolve("auto", cpu, "resnet-spatial") == "fp32"
    # asked for explicitly where it is emulated (far slower than fp32 there): fp32, said so
    with pytest.warns(UserWarning, match="this CPU has no bf16 instructions .* training in fp32 instead"):
        assert precision.resolve("bf16", cpu, "mlp") == "fp32"


def test_configs_written_before_precision_existed_resume_in_fp32(tmp_path):
    raw = RunConfig().to_dict()
    del raw["train"]["precision"]
    assert RunConfig.from_dict(raw).train.precision == "fp32"
    assert RunConfig.from_dict(RunConfig().to_dict()).train.precision == "auto"


def test_adversarial_training_steps_the_discriminator_and_resumes_exactly(mnist, tmp_path, monkeypatch):
    monkeypatch.setattr("vaelab.perceptual.ADVERSARIAL_START", 2)  # the published 1000 is beyond this tiny run
    data = mnist.head(256, 64)

    def config(epochs):
        cfg = resnet_config(epochs, "fp32")
        cfg.train.adversarial = True
        return cfg

    straight = fit(Trainer(config(2), data, tmp_path / "a", progress=False))
    fit(Trainer(config(1), data, tmp_path / "b", progress=False))
    resumed = fit(Trainer(config(2), data, tmp_path / "b", progress=False), resume=True)
    assert_same_run(tmp_path / "a", straight, tmp_path / "b", resumed)
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for name, weight in a["discriminator"].items():
        assert torch.equal(weight, b["discriminator"][name]), name
    assert a["disc_optimizer"]["state"]  # the discriminator's Adam has taken steps


def test_lpips_term_enters_the_training_loss(mnist, tmp_path):
    from test_perceptual import weights_file

    cfg = resnet_config(1, "fp32")
    plain = Trainer(cfg, mnist.head(128, 64), tmp_path / "a", progress=False)
    cfg_lpips = resnet_config(1, "fp32")
    cfg_lpips.train.lpips_weights = str(weights_file(tmp_path / "w.pth"))
    with_lpips = Trainer(cfg_lpips, mnist.head(128, 64), tmp_path / "b", progress=False)
    state = plain._fresh_state()
    x = as_float_images(plain.train_images[:8])
    logits, _, _ = state.model(x)
    assert plain.perceptual.generator_loss(state.model, logits, x, state.step)[0] == 0.0
    extra, fake = with_lpips.perceptual.generator_loss(state.model, logits, x, state.step)
    assert extra.item() > 0 and fake.shape == x.shape
    extra.backward()
    assert any(p.grad is not None for p in state.model.parameters())


def test_the_train_state_round_trips_through_the_checkpoint(mnist, tmp_path):
    config = small_config(epochs=1)
    trainer = Trainer(config, mnist.head(256, 128), tmp_path / "run", progress=False)
    fit(trainer)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    model = build_model(config)
    restored = TrainState(model, torch.optim.Adam(model.parameters()), torch.Generator())
    restored.restore(saved, saved["noise"])
    trained = trainer.state
    assert all(getattr(restored, name) == getattr(trained, name) for name in RESUMED_STATE)
    assert torch.equal(restored.noise.get_state(), trained.noise.get_state())
    for name, weight in trained.model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[name], weight), name
    assert restored.to_checkpoint(config, {}).keys() == saved.keys() - {"format", "checkpoint_version"}


def test_a_run_checkpointed_on_another_kind_of_device_resumes_here_with_its_noise_reseeded(mnist, tmp_path):
    """A run started on a GPU node and continued on a CPU one: the weights, optimiser and position carry over;
    a CUDA generator's state (16 bytes of Philox) cannot seed a CPU generator, so the stream is reseeded, with a
    warning that says the continuation is valid but not bitwise the uninterrupted run."""
    data, run = mnist.head(512, 128), tmp_path / "run"
    fit(Trainer(small_config(epochs=1), data, run, progress=False))
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved["device_type"] == "cpu"
    torch.save({**saved, "device_type": "cuda", "noise": torch.zeros(16, dtype=torch.uint8)}, run / "checkpoint.pt")
    with pytest.warns(UserWarning, match="resuming on cpu a run checkpointed on cuda.*reseeded at step 8"):
        history = fit(Trainer(small_config(epochs=2), data, run, progress=False), resume=True)
    resumed = load_checkpoint(run / "checkpoint.pt")
    assert resumed["device_type"] == "cpu" and resumed["epoch"] == 2 and len(history) == 5 + 2
    assert history[:6] == saved["history"]


def test_the_numerical_settings_are_set_for_the_run_recorded_and_restored(mnist, tmp_path):
    """TF32 off (Ampere's default would make "fp32" untrue), deterministic kernels when asked; the process's own
    settings come back afterwards, and the environment record says what the run used."""
    seen = {}

    class Probe(Callback):
        def on_eval_point(self, point):
            seen.update(deterministic=torch.are_deterministic_algorithms_enabled(),
                        tf32=torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)

    torch.backends.cudnn.allow_tf32 = True
    trainer = Trainer(small_config(epochs=1, deterministic=True), mnist.head(256, 64), tmp_path / "run",
                      callbacks=[Probe()], progress=False)
    fit(trainer)
    assert seen == {"deterministic": True, "tf32": False}
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.allow_tf32
    environment = json.loads((tmp_path / "run" / "metrics.json").read_text())["environment"]
    assert (environment["tf32"], environment["deterministic"], environment["cudnn_benchmark"]) == ("off", "on", "off")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["deterministic"] is True


def test_bf16_asked_for_on_a_gpu_without_native_bf16_trains_in_fp32_with_a_notice(monkeypatch):
    """T4s and V100s (compute capability 7) emulate bf16, slower than fp32: vaelab says so and uses fp32."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.warns(UserWarning, match="Tesla T4 has no native bf16 .* training in fp32 instead"):
        assert precision.resolve("bf16", torch.device("cuda"), "resnet-spatial") == "fp32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert precision.resolve("bf16", torch.device("cuda"), "resnet-spatial") == "bf16"
    assert precision.resolve("auto", torch.device("cuda"), "resnet-spatial") == "bf16"


def test_the_training_images_stay_uint8_on_the_device_and_batches_are_converted_as_before(mnist, tmp_path):
    """A quarter of float32's memory on the device (once per rank under DDP); a batch converted from uint8 is
    bitwise the batch the float32 copy of the whole set gave."""
    data = mnist.head(256, 64)
    trainer = Trainer(small_config(epochs=1), data, tmp_path / "run", progress=False)
    assert trainer.train_images.dtype == torch.uint8 and trainer.train_images.shape == (256, 28, 28)
    rows = torch.tensor([5, 0, 255, 17])
    assert torch.equal(as_float_images(trainer.train_images[rows]), as_float_images(data.train.images)[rows])
