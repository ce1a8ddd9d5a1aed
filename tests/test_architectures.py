"""The architecture registry: what each architecture declares holds for the model it builds."""

import re

import pytest
import torch

from vaelab import architectures, precision
from vaelab.config import DEFAULT_WIDTHS, ConfigError, ModelConfig, has_latent_plane
from vaelab.models import VAE


def config_of(name: str, **fields) -> ModelConfig:
    arch = architectures.get(name)
    likelihood = arch.likelihoods[0] if arch.likelihoods else "bernoulli"
    return ModelConfig(arch=name, likelihood=likelihood, **{arch.widths_field: arch.default_widths}, **fields)


@pytest.mark.parametrize("name", architectures.names())
def test_each_architecture_builds_what_it_declares(name):
    arch = architectures.get(name)
    model = VAE(config_of(name, latent_dim=2, image_shape=(3, 20, 24)))
    x = torch.rand(2, 3, 20, 24)
    out, mu, _ = model(x)
    assert out.shape == x.shape and mu.shape == (2, *model.latent_shape)
    assert (len(model.latent_shape) == 3) == arch.spatial and model.latent_shape[0] == 2
    assert model.linear_output == arch.linear_output
    assert has_latent_plane(name, 2) and not has_latent_plane(name, 3)  # a map of 2 channels: its uniform maps
    if arch.widths_field == "channels":
        assert DEFAULT_WIDTHS[name] == arch.default_widths


@pytest.mark.parametrize("name", [n for n in architectures.names() if architectures.get(n).likelihoods])
def test_a_likelihood_an_architecture_does_not_support_is_refused_by_the_config(name):
    with pytest.raises(ConfigError, match=re.escape(architectures.get(name).likelihood_reason)):
        ModelConfig(arch=name, likelihood="bernoulli", channels=architectures.get(name).default_widths)


def test_auto_precision_follows_each_declaration(monkeypatch):
    monkeypatch.setattr(precision, "bf16_is_fast", lambda device: True)
    for name in architectures.names():
        expected = "bf16" if architectures.get(name).fast_in_bf16 else "fp32"
        assert precision.resolve("auto", torch.device("cpu"), name) == expected
