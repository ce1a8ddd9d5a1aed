import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vaelab.config import ModelConfig
from vaelab.errors import SettingsError
from vaelab.models import VAE


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("latent_dim", [1, 2, 16])
def test_shapes_for_every_architecture_and_latent_size(arch, latent_dim):
    model = VAE(ModelConfig(arch=arch, latent_dim=latent_dim))
    x = torch.rand(5, 1, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == x.shape
    assert mu.shape == logvar.shape == (5, latent_dim)
    assert model.sample(3).shape == (3, 1, 28, 28)
    recon = model.reconstruct(x)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1


def test_reparameterization_has_the_posterior_moments_and_passes_gradients():
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, 2 * torch.log(torch.tensor(0.5)).item()]], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    z = VAE.reparameterize(mu.expand(200_000, 2), logvar.expand(200_000, 2), g)
    assert torch.allclose(z.mean(0), mu[0], atol=0.01)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None and torch.all(mu.grad == 200_000)


def test_reconstruct_decodes_the_posterior_mean():
    model = VAE(ModelConfig(latent_dim=3))
    x = torch.rand(4, 1, 28, 28)
    mu, _ = model.encode(x)
    assert torch.equal(model.reconstruct(x), torch.sigmoid(model.decode(mu)))


def test_sampling_is_reproducible_with_a_generator():
    model = VAE(ModelConfig(latent_dim=4))
    a = model.sample(8, torch.Generator().manual_seed(1))
    b = model.sample(8, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_rejects_bad_configs():
    with pytest.raises(ValueError, match="latent size"):
        VAE(ModelConfig(latent_dim=0))
    with pytest.raises(ValueError, match="architecture"):
        VAE(ModelConfig(arch="transformer"))


def test_public_api_in_a_few_lines():
    import vaelab

    model = vaelab.VAE(vaelab.ModelConfig(latent_dim=2))
    images = model.sample(4)
    mu, logvar = model.encode(images)
    assert model.reconstruct(images).shape == images.shape and mu.shape == logvar.shape == (4, 2)
    assert model.decode(torch.zeros(1, 2)).shape == (1, 1, 28, 28)


@pytest.mark.parametrize("channels", [2, 16])
def test_spatial_latent_is_a_map_of_c_channels_at_7x7(channels):
    model = VAE(ModelConfig(arch="conv-spatial", latent_dim=channels))
    x = torch.rand(3, 1, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == x.shape
    assert model.latent_shape == mu.shape[1:] == logvar.shape[1:] == (channels, 7, 7)
    assert model.sample(4).shape == (4, 1, 28, 28)
    assert torch.equal(model.reconstruct(x), torch.sigmoid(model.decode(mu)))


def test_only_the_learned_gaussian_has_a_trainable_std():
    learned = VAE(ModelConfig(likelihood="gaussian-learned", gaussian_std=0.2))
    assert abs(learned.decoder_std().item() - 0.2) < 1e-6 and learned.decoder_std().requires_grad
    assert any(p is learned.log_std for p in learned.parameters())
    fixed = VAE(ModelConfig(likelihood="gaussian", gaussian_std=0.2))
    assert fixed.decoder_std() == 0.2 and not hasattr(fixed, "log_std")


@pytest.mark.parametrize("arch", ["mlp", "conv", "conv-spatial"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 25, 25), (3, 20, 36)])
def test_every_architecture_builds_from_the_data_shape(arch, shape):
    model = VAE(ModelConfig(arch=arch, latent_dim=3, image_shape=shape))
    x = torch.rand(2, *shape)
    logits, mu, _ = model(x)
    assert logits.shape == x.shape and mu.shape == (2, *model.latent_shape)
    assert model.sample(2).shape == (2, *shape)


def test_conv_depth_follows_the_image_size():
    def strided(shape):
        encoder = VAE(ModelConfig(arch="conv", image_shape=shape)).encoder
        return [m.out_channels for m in encoder if isinstance(m, torch.nn.Conv2d)]

    assert strided((1, 28, 28)) == [32, 64]  # 28 -> 14 -> 7, as before
    assert strided((3, 32, 32)) == [32, 64]  # -> 16 -> 8
    assert strided((3, 64, 64)) == [32, 64, 128]  # -> 32 -> 16 -> 8
    assert strided((3, 128, 128)) == [32, 64, 128, 256]
    assert VAE(ModelConfig(arch="conv-spatial", image_shape=(3, 64, 64))).latent_shape == (2, 16, 16)


def test_images_too_small_are_refused():
    with pytest.raises(ValueError, match="too small"):
        VAE(ModelConfig(arch="conv", image_shape=(1, 6, 6)))


def test_load_model_rebuilds_the_saved_shape(tmp_path):
    from vaelab.checkpoint import load_model, save_checkpoint
    from vaelab.config import RunConfig

    config = RunConfig(model=ModelConfig(arch="conv", latent_dim=4, image_shape=(3, 20, 20)))
    model = VAE(config.model)
    save_checkpoint(tmp_path / "checkpoint.pt", {"config": config.to_dict(), "model": model.state_dict(),
                                                 "optimizer": {}, "epoch": 1, "step": 1, "history": []})
    loaded, loaded_config = load_model(tmp_path / "checkpoint.pt")
    assert loaded_config.model.image_shape == (3, 20, 20)
    x = torch.rand(2, 3, 20, 20)
    assert torch.equal(loaded.reconstruct(x), model.eval().reconstruct(x))


# --- resnet-spatial: the published project's architecture ----------------------------------------------

ORIGINAL = {"down_channels": (32, 64, 128), "mid_channels": 128, "im_channels": 1}  # its autoencoder_params


def original_parameter_count(z: int) -> int:
    """Hand count of the published VAE's parameters from its configuration (one ResNet layer per block,
    one attention layer in each mid block, no attention in the down/up blocks)."""
    def conv(k, cin, cout):
        return k * k * cin * cout + cout

    def gn(c):
        return 2 * c

    def resnet(cin, cout):  # GN-SiLU-conv3, GN-SiLU-conv3, 1x1 shortcut
        return gn(cin) + conv(3, cin, cout) + gn(cout) + conv(3, cout, cout) + conv(1, cin, cout)

    def attention(c):  # GroupNorm + MultiheadAttention (in_proj 3c x c + bias, out_proj c x c + bias)
        return gn(c) + 3 * c * c + 3 * c + c * c + c

    def mid(c):
        return resnet(c, c) + attention(c) + resnet(c, c)

    (c0, c1, c2), m, im = ORIGINAL["down_channels"], ORIGINAL["mid_channels"], ORIGINAL["im_channels"]
    encoder = (conv(3, im, c0) + resnet(c0, c1) + conv(4, c1, c1) + resnet(c1, c2) + conv(4, c2, c2) + mid(m)
               + gn(c2) + conv(3, c2, 2 * z) + conv(1, 2 * z, 2 * z))
    decoder = (conv(1, z, z) + conv(3, z, m) + mid(m) + conv(4, c2, c2) + resnet(c2, c1) + conv(4, c1, c1)
               + resnet(c1, c0) + gn(c0) + conv(3, c0, im))  # transposed 4x4 convs count like convs
    return encoder + decoder


@pytest.mark.parametrize("c", [2, 4, 16])
def test_resnet_spatial_shapes_parameters_and_gradients(c):
    model = VAE(ModelConfig(arch="resnet-spatial", latent_dim=c, channels=(32, 64, 128), likelihood="gaussian"))
    assert sum(p.numel() for p in model.parameters()) == original_parameter_count(c)
    x = torch.rand(3, 1, 28, 28)
    out, mu, logvar = model(x)
    assert out.shape == x.shape and mu.shape == logvar.shape == (3, c, 7, 7)
    assert model.latent_shape == (c, 7, 7) and model.sample(2).shape == (2, 1, 28, 28)
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_resnet_spatial_scores_its_output_on_the_signed_scale():
    model = VAE(ModelConfig(arch="resnet-spatial", latent_dim=2, channels=(32, 64, 128), likelihood="gaussian"))
    x = torch.rand(2, 1, 28, 28)
    mu, _ = model.encode(x)
    output = model.decode(mu)
    assert torch.equal(model.reconstruct(x), (output + 1) / 2)  # the [-1, 1] output mapped back, unclamped


def test_resnet_spatial_refuses_a_bernoulli_likelihood_and_wrong_widths():
    with pytest.raises(ValueError, match="gaussian"):
        VAE(ModelConfig(arch="resnet-spatial", channels=(32, 64, 128), likelihood="bernoulli"))
    with pytest.raises(ValueError, match="three widths"):
        VAE(ModelConfig(arch="resnet-spatial", channels=(32, 64), likelihood="gaussian"))


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 25, 25)])
def test_resnet_spatial_fits_other_image_shapes(shape):
    model = VAE(ModelConfig(arch="resnet-spatial", latent_dim=4, channels=(16, 32, 32), likelihood="gaussian",
                            image_shape=shape))
    out, mu, _ = model(torch.rand(2, *shape))
    assert out.shape == (2, *shape) and mu.shape[-2:] == model.latent_shape[-2:]


@pytest.mark.parametrize("channels", [128, 64])
def test_self_attention_equals_torch_multihead_attention(channels):
    """The hand-written product (faster on CPU) against nn.MultiheadAttention on the same weights."""
    from vaelab.architectures.resnet_spatial import SelfAttention

    torch.manual_seed(0)
    layer = SelfAttention(channels)
    x = torch.randn(3, channels, 7, 7)
    tokens = layer.norm(x).reshape(3, channels, 49).transpose(1, 2)
    reference, _ = layer.attention(tokens, tokens, tokens, need_weights=False)
    expected = x + reference.transpose(1, 2).reshape(3, channels, 7, 7)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [-1, 2.5, "3", True])
def test_sample_refuses_a_count_that_is_not_a_whole_number(n):
    model = VAE(ModelConfig(hidden=(16,)))
    with pytest.raises(SettingsError, match=r"sample\(n\): n is the number of images to draw"):
        model.sample(n)
    assert model.sample(0).shape == (0, 1, 28, 28)


def test_samples_are_drawn_where_the_generator_lives_and_decoded_where_the_model_is():
    """A CPU generator gives the same codes on every device (the figures' and measures' fixed draws); the
    ``meta`` device stands in for a GPU: the draw is moved there, never made there."""
    model = VAE(ModelConfig(latent_dim=3, hidden=(16,)))
    on_cpu = model.sample(5, torch.Generator().manual_seed(1))
    again = model.sample(5, torch.Generator().manual_seed(1))
    assert torch.equal(on_cpu, again) and on_cpu.shape == (5, 1, 28, 28)
    draws: list[torch.device] = []

    class Draws(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.randn.generator:
                draws.append(kwargs["device"])
            return func(*args, **(kwargs or {}))

    elsewhere = VAE(ModelConfig(latent_dim=3, hidden=(16,))).to("meta")
    with Draws():
        drawn = elsewhere.sample(5, torch.Generator().manual_seed(1))
    assert drawn.device.type == "meta" and drawn.shape == (5, 1, 28, 28) and draws == [torch.device("cpu")]


def test_the_fused_attention_a_gpu_uses_equals_the_written_out_product_of_the_cpu():
    from vaelab.architectures.resnet_spatial import attend

    q, k, v = torch.randn(3, 2, 4, 49, 8, generator=torch.Generator().manual_seed(0)).unbind(0)
    assert torch.allclose(attend(q, k, v, fused=True), attend(q, k, v, fused=False), atol=1e-6)
