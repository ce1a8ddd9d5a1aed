import pytest
import torch

from vaelab.errors import VaelabError
from vaelab.perceptual import LPIPS, PatchDiscriminator, load_lpips, vgg16_features


def test_patch_discriminator_matches_the_published_layout():
    discriminator = PatchDiscriminator(1)
    # conv 1->64 (bias), conv 64->128 + BN, conv 128->256 + BN, conv 256->1; 4x4 kernels, only the first biased
    expected = (16 * 64 + 64) + (16 * 64 * 128 + 2 * 128) + (16 * 128 * 256 + 2 * 256) + 16 * 256
    assert sum(p.numel() for p in discriminator.parameters()) == expected
    assert discriminator(torch.rand(3, 1, 28, 28)).shape == (3, 1, 2, 2)  # 28 -> 14 -> 7 -> 3 -> 2 patches


def weights_file(path, seed=0):
    """A stand-in for the user's file: torchvision-named VGG16 features plus LPIPS lin weights."""
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    state.update({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 128, 256, 512, 512))})
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's classifier keys are ignored
    torch.save(state, path)
    return path


def test_lpips_loads_user_weights_and_is_a_distance(tmp_path):
    lpips = load_lpips(weights_file(tmp_path / "vgg_lpips.pth"), torch.device("cpu"))
    assert not any(p.requires_grad for p in lpips.parameters())
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape)).clamp(-1, 1)
    assert torch.allclose(lpips(x, x), torch.zeros(4), atol=1e-6)
    assert (lpips(x, y) > 0).all() and torch.allclose(lpips(x, y), lpips(y, x), rtol=1e-4)
    reference = LPIPS()
    assert set(reference.state_dict()) - {"shift", "scale"} <= set(lpips.state_dict())


def test_lpips_without_weights_says_nothing_can_be_downloaded(tmp_path):
    with pytest.raises(VaelabError, match="cannot download anything") as missing:
        load_lpips(tmp_path / "nowhere.pth", torch.device("cpu"))
    assert "nowhere.pth does not exist" in str(missing.value)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(VaelabError, match="lacks"):
        load_lpips(tmp_path / "partial.pth", torch.device("cpu"))
    (tmp_path / "junk.pth").write_text("not a state dict")
    with pytest.raises(VaelabError, match="not a readable PyTorch state dict"):
        load_lpips(tmp_path / "junk.pth", torch.device("cpu"))
