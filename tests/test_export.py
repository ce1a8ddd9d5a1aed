"""Portable model files: safetensors + JSON (VAE.save_pretrained / from_pretrained) give identical outputs;
ONNX encoder and decoder run by onnxruntime match PyTorch within 1e-5."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from helpers import one_line
from vaelab import VAE, ModelConfig
from vaelab.cli import cli
from vaelab.errors import CheckpointError

ONNX_TOLERANCE = 1e-5  # float32 through another kernel library; measured: at most 7.7e-7 (encoder), 1.8e-7 (decoder)


def trained_like(config: ModelConfig) -> VAE:
    """A model with non-default weights (so a load that kept the init would show)."""
    torch.manual_seed(1)
    model = VAE(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("config", [
    ModelConfig(arch="mlp", latent_dim=3, hidden=(64, 32)),
    ModelConfig(arch="conv", latent_dim=5, image_shape=(3, 32, 32)),
    ModelConfig(arch="conv-spatial", latent_dim=2, likelihood="gaussian-learned"),
])
def test_save_pretrained_then_from_pretrained_gives_identical_outputs(tmp_path, config):
    model = trained_like(config)
    model.save_pretrained(tmp_path / "shared")
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["config.json", "model.safetensors"]
    loaded = VAE.from_pretrained(tmp_path / "shared")
    x = torch.rand(4, *config.image_shape)
    z = torch.randn(4, *model.latent_shape)
    assert loaded.config == config and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.encode(x), model.encode(x), strict=True))
    assert torch.equal(loaded.decode(z), model.decode(z))
    assert torch.equal(torch.as_tensor(loaded.decoder_std()), torch.as_tensor(model.decoder_std()))


def test_the_files_load_with_safetensors_and_json_alone(tmp_path):
    from safetensors.torch import load_file

    model = trained_like(ModelConfig(latent_dim=2, hidden=(16,)))
    model.save_pretrained(tmp_path)
    description = json.loads((tmp_path / "config.json").read_text())
    weights = load_file(tmp_path / "model.safetensors")
    assert description["model"]["latent_dim"] == 2 and description["format"] == "vaelab-pretrained"
    assert set(weights) == set(model.state_dict())
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_from_pretrained_explains_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        VAE.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"config_version": 1, "train": {}}))
    with pytest.raises(CheckpointError, match="run directory"):
        VAE.from_pretrained(tmp_path)
    trained_like(ModelConfig(latent_dim=2, hidden=(16,))).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="damaged"):
        VAE.from_pretrained(tmp_path)


def onnx_max_differences(model: VAE, directory) -> tuple[float, float]:
    import onnxruntime

    from vaelab.export import export_onnx

    encoder_path, decoder_path = export_onnx(model, directory)
    encoder = onnxruntime.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    decoder = onnxruntime.InferenceSession(str(decoder_path), providers=["CPUExecutionProvider"])
    x = torch.rand(7, *model.config.image_shape)  # another batch size than the export's example
    z = torch.randn(7, *model.latent_shape)
    mu, logvar = encoder.run(["mu", "logvar"], {"image": x.numpy()})
    (image,) = decoder.run(["image"], {"z": z.numpy()})
    with torch.no_grad():
        torch_mu, torch_logvar = model.encode(x)
        torch_image = torch.sigmoid(model.decode(z))
    encoder_diff = max(np.abs(mu - torch_mu.numpy()).max(), np.abs(logvar - torch_logvar.numpy()).max())
    return float(encoder_diff), float(np.abs(image - torch_image.numpy()).max())


@pytest.mark.slow  # each export traces the model through torch.export: seconds per file
@pytest.mark.parametrize("config", [ModelConfig(arch="mlp", latent_dim=3, hidden=(64, 32)),
                                    ModelConfig(arch="conv", latent_dim=4)])
def test_onnx_encoder_and_decoder_match_pytorch(tmp_path, config):
    pytest.importorskip("onnxruntime")
    encoder_diff, decoder_diff = onnx_max_differences(trained_like(config), tmp_path)
    assert encoder_diff < ONNX_TOLERANCE and decoder_diff < ONNX_TOLERANCE, (encoder_diff, decoder_diff)


@pytest.mark.slow
def test_export_command_writes_both_forms(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    model = trained_like(ModelConfig(latent_dim=2, hidden=(16,)))
    monkeypatch.setattr("vaelab.checkpoint.load_model", lambda run_dir: (model, None))
    run = tmp_path / "run"
    run.mkdir()
    result = CliRunner().invoke(cli, ["export", str(run), "--pretrained", str(tmp_path / "p"),
                                      "--onnx", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert torch.equal(VAE.from_pretrained(tmp_path / "p").decode(torch.ones(1, 2)), model.decode(torch.ones(1, 2)))
    assert (tmp_path / "o" / "encoder.onnx").stat().st_size > 0 and (tmp_path / "o" / "decoder.onnx").exists()
    nothing = CliRunner().invoke(cli, ["export", str(run)])
    assert nothing.exit_code == 2 and "--pretrained" in nothing.output


@pytest.mark.parametrize("target", ["run", "earlier", "file"])
def test_export_refuses_to_overwrite_a_run_or_another_model(tmp_path, monkeypatch, target):
    model = trained_like(ModelConfig(latent_dim=2, hidden=(16,)))
    monkeypatch.setattr("vaelab.checkpoint.load_model", lambda run_dir: (model, None))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"config_version": 1, "train": {}}')
    (run / "checkpoint.pt").write_bytes(b"weights")
    model.save_pretrained(tmp_path / "earlier")
    (tmp_path / "file").write_text("not a directory")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = CliRunner().invoke(cli, ["export", str(run), "--pretrained", str(tmp_path / target)])
    assert result.exit_code == (2 if target == "file" else 1) and "Traceback" not in result.output
    assert ("run directory" if target == "run" else "holds a model" if target == "earlier" else "is a file") in \
        one_line(result.output)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_export_under_a_regular_file_is_a_clear_error(tmp_path, monkeypatch):
    model = trained_like(ModelConfig(latent_dim=2, hidden=(16,)))
    monkeypatch.setattr("vaelab.checkpoint.load_model", lambda run_dir: (model, None))
    (tmp_path / "afile").write_text("not a directory")
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--pretrained", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 1 and "afile is a file" in one_line(result.output)
    assert "Traceback" not in result.output
