"""Images as a model sees them: floats in [0, 1] with a channel axis, and the fixed binarisation of each
evaluation set."""

import numpy as np
import torch

from vaelab.config import ModelConfig
from vaelab.models import VAE
from vaelab.prepare import as_float_images, binarized, evaluation_images, posterior_means


def test_grey_uint8_images_gain_a_channel_and_scale_to_the_unit_interval():
    raw = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    images = as_float_images(raw)
    assert images.shape == (1, 1, 2, 2) and images.dtype == torch.float32
    assert torch.equal(images[0, 0], torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    colour = as_float_images(np.zeros((3, 3, 4, 4), dtype=np.uint8))
    assert colour.shape == (3, 3, 4, 4)


def test_the_fixed_binarisation_is_one_seeded_bernoulli_draw_per_set():
    grey = torch.rand(20, 1, 8, 8)
    expected = torch.bernoulli(grey, generator=torch.Generator().manual_seed(5))
    assert torch.equal(binarized(grey, 5), expected)
    test_a, test_b = evaluation_images(grey, True, "test"), evaluation_images(grey, True, "test")
    assert torch.equal(test_a, test_b) and set(test_a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(test_a, evaluation_images(grey, True, "train_eval"))
    assert evaluation_images(grey, False, "test") is grey


def test_posterior_means_are_the_encoders_means_whatever_the_batch():
    torch.manual_seed(0)
    model = VAE(ModelConfig(arch="conv-spatial", latent_dim=2))
    x = torch.rand(9, 1, 28, 28)
    with torch.no_grad():
        mu = model.encode(x)[0].flatten(1)
    assert torch.allclose(posterior_means(model, x, batch_size=4), mu, atol=1e-6)
    assert posterior_means(model, x).shape == (9, 2 * 7 * 7)
