"""Memory estimated before anything is allocated: absurd sizes are refused with their estimate, before training
and before a study writes its plan."""

import pytest
import torch
from click.testing import CliRunner

from helpers import one_line, small_config
from vaelab import architectures, resources
from vaelab.cli import cli
from vaelab.config import RunConfig, with_settings
from vaelab.errors import SettingsError
from vaelab.models import VAE


@pytest.mark.parametrize("name", architectures.names())
def test_the_parameter_count_on_the_meta_device_is_the_real_models(name):
    arch = architectures.get(name)
    settings = {"model.arch": name, "model.latent_dim": 3}
    if arch.likelihoods:
        settings["model.likelihood"] = arch.likelihoods[0]
    config = with_settings(RunConfig(), settings)
    assert resources.parameter_count(config) == sum(p.numel() for p in VAE(config.model).parameters())


def test_a_run_that_cannot_fit_is_refused_with_its_estimate(monkeypatch):
    monkeypatch.setattr(resources, "available_bytes", lambda device: 2**30)
    resources.check_fits(small_config(), torch.device("cpu"), iwae_k=32)  # a small model fits in 1 GiB
    wide = with_settings(small_config(), {"model.hidden": (200_000,)})  # 315,200,788 parameters
    with pytest.raises(SettingsError, match=r"needs about 4\.7 GiB for training 315,200,788 parameters .* but cpu "
                                            r"has 1\.0 GiB free"):
        resources.check_fits(wide, torch.device("cpu"))
    with pytest.raises(SettingsError, match="--iwae-k"):
        resources.check_fits(small_config(), torch.device("cpu"), iwae_k=10**6)


@pytest.mark.parametrize("args, words", [
    (["train", "-z", "100000000"], "needs about"),
    (["train", "--hidden", "100000000"], "needs about"),
    (["train", "--iwae-k", "100000000"], "--iwae-k"),
    (["study", "-z", "99999999999999999999"], "cannot be built"),
    (["study", "--vary", "hidden=[100000000]"], "needs about"),
])
def test_absurd_sizes_exit_2_before_anything_is_written(args, words, tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("VAELAB_DATA", str(mnist_dir))
    where = ["--run-dir", str(tmp_path / "run")] if args[0] == "train" else ["--study-dir", str(tmp_path / "study")]
    result = CliRunner().invoke(cli, [*args, *where, "--no-progress"])
    assert result.exit_code == 2 and words in one_line(result.output) and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_device_vaelab_does_not_train_on_is_refused(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("VAELAB_DATA", str(mnist_dir))
    result = CliRunner().invoke(cli, ["train", "--device", "meta", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and "vaelab trains on cpu, cuda, mps" in result.output


def test_serving_on_an_address_that_is_none_is_a_clear_error(tmp_path, serve_study):
    result = CliRunner().invoke(cli, ["serve", str(serve_study), "--host", "999.1.1.1"])
    assert result.exit_code == 1 and "cannot listen on 999.1.1.1" in result.output and "Traceback" not in result.output
