"""The model side of `vaelab serve`: finding runs, checking inputs, and MNIST-style preprocessing of drawings
(checked against the MNIST test digits themselves, which were made by that same procedure)."""

import base64
import io
import json

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image

from vaelab.errors import CheckpointError, VaelabError
from vaelab.explorer import (
    Z_LIMIT,
    BadInput,
    ServedRun,
    decode_image_data,
    discover_runs,
    interpolation_path,
    latent_vector,
    load_explorer,
    mnist_style,
    prior_sample,
    scatter_bounds,
)


def upscaled(digit: np.ndarray, factor: int = 10) -> Image.Image:
    """A 28x28 MNIST digit blown up like a drawing on a large canvas."""
    return Image.fromarray(digit).resize((28 * factor, 28 * factor), Image.Resampling.BILINEAR)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def best_correlation_within_a_pixel(a: np.ndarray, b: np.ndarray) -> float:
    """Centring by mass rounds to whole pixels, so a faithful redo may land one pixel off MNIST's own."""
    return max(correlation(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_mnist_style_recovers_mnist_digits_from_large_drawings_of_them(mnist):
    digits = mnist.test.images[:40].numpy()
    redone = [mnist_style(upscaled(d)) for d in digits]
    assert np.mean([correlation(r, d) for r, d in zip(redone, digits, strict=True)]) > 0.9
    assert min(best_correlation_within_a_pixel(r, d) for r, d in zip(redone, digits, strict=True)) > 0.9


def test_mnist_style_fits_a_20_pixel_box_centred_by_mass(mnist):
    for digit in mnist.test.images[:20].numpy():
        out = mnist_style(upscaled(digit, 7))
        rows, cols = np.nonzero(out)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 in (20, 21)  # 20 after scaling; a shift never grows it
        assert np.allclose(scipy.ndimage.center_of_mass(out.astype(float)), (14, 14), atol=0.5)


def test_where_and_how_the_digit_is_drawn_does_not_matter(mnist):
    digit = mnist.test.images[3].numpy()
    centred = mnist_style(upscaled(digit))
    canvas = np.zeros((400, 400), dtype=np.uint8)
    canvas[5:285, 100:380] = np.asarray(upscaled(digit))  # off-centre, on a larger page
    assert correlation(mnist_style(Image.fromarray(canvas)), centred) > 0.98
    dark_on_light = Image.fromarray(255 - np.asarray(upscaled(digit)))
    assert np.array_equal(mnist_style(dark_on_light), centred)
    # A canvas with a transparent background and white ink, as a browser may export it.
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = np.asarray(upscaled(digit))
    assert correlation(mnist_style(Image.fromarray(rgba, "RGBA")), centred) > 0.98


def test_a_blank_drawing_is_refused():
    with pytest.raises(BadInput, match="blank"):
        mnist_style(Image.new("L", (100, 100)))


def png_base64(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def test_decode_image_data_accepts_data_urls_and_bare_base64():
    image = Image.new("L", (50, 40), 7)
    for data in (png_base64(image), "data:image/png;base64," + png_base64(image)):
        decoded = decode_image_data(data)
        assert decoded.size == (50, 40) and np.asarray(decoded).max() == 7


@pytest.mark.parametrize(
    "data, complaint",
    [
        (42, "base64 string"),
        ("data:image/png,abc", "without base64"),
        ("not base64 !!", "not valid base64"),
        (base64.b64encode(b"hello, this is text").decode(), "not a readable image"),
        (png_base64(Image.new("L", (16, 16)), "GIF"), "GIF"),
        (png_base64(Image.new("L", (4, 4))), "4x4"),
        (png_base64(Image.new("L", (3000, 20))), "3000x20"),
        (base64.b64encode(base64.b64decode(png_base64(Image.new("L", (64, 64), 9)))[:60]).decode(), "damaged"),
    ],
)
def test_decode_image_data_refuses_what_is_not_a_sensible_image(data, complaint):
    with pytest.raises(BadInput, match=complaint):
        decode_image_data(data)


@pytest.mark.parametrize(
    "value, complaint",
    [
        (None, "list of 2 numbers"),
        ([0.0], "must have 2 numbers"),
        ([0.0, 1.0, 2.0], "must have 2 numbers"),
        ([0.0, "1"], "only numbers"),
        ([0.0, True], "only numbers"),
        ([0.0, [1.0]], "only numbers"),
        ([float("nan"), 0.0], "NaN or infinite"),
        ([0.0, float("-inf")], "NaN or infinite"),
        ([0.0, Z_LIMIT + 0.5], "magnitude"),
        ([-1e300, 0.0], "magnitude"),
    ],
)
def test_latent_vector_refuses_bad_points(value, complaint):
    with pytest.raises(BadInput, match=complaint):
        latent_vector(value, 2)


def test_latent_vector_accepts_points_up_to_the_limit():
    z = latent_vector([-Z_LIMIT, 3], 2)
    assert z.shape == (1, 2) and z.dtype == torch.float32 and z.tolist() == [[-Z_LIMIT, 3.0]]


def test_the_accepted_range_widens_to_reach_every_test_digit():
    def limit_for(extent: float) -> float:
        return ServedRun(name="r", model=None, config=None, epochs_trained=1, test_loss=None,
                   test_mu=torch.tensor([[0.5, -extent], [1.0, 0.0]])).z_limit

    assert limit_for(3.0) == Z_LIMIT and limit_for(7.9) == Z_LIMIT
    assert limit_for(12.0) == 15.0  # 1.25 x the farthest test mean, rounded up


def test_interpolation_path_is_evenly_spaced_on_the_segment():
    start, end = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-3.0, 2.0, 0.5])
    path = interpolation_path(start, end, 5)
    assert torch.equal(path[0], start) and torch.allclose(path[-1], end)
    assert torch.allclose(path[1:] - path[:-1], (end - start) / 4)


def test_prior_sample_is_a_standard_normal_draw_reproducible_by_seed():
    assert torch.equal(prior_sample(4, 7), torch.randn((1, 4), generator=torch.Generator().manual_seed(7)))
    draws = torch.cat([prior_sample(2, seed) for seed in range(4000)])
    assert draws.mean().abs() < 0.05 and (draws.std() - 1).abs() < 0.05


def test_scatter_bounds_cover_the_points_and_the_bulk_of_the_prior():
    points = torch.tensor([[0.5, -6.0], [1.0, 2.0]])
    x0, x1, y0, y1 = scatter_bounds(points)
    assert x0 <= -3 and x1 >= 3 and y0 < -6 and y1 >= 3
    assert scatter_bounds(torch.tensor([[-40.0, 0.0], [40.0, 1.0]]))[:2] == [-Z_LIMIT, Z_LIMIT]


def test_discover_runs_finds_a_run_a_study_and_refuses_anything_else(serve_study, tmp_path):
    assert discover_runs(serve_study) == {"latent_2": serve_study / "latent_2", "latent_10": serve_study / "latent_10"}
    assert discover_runs(serve_study / "latent_10") == {"latent_10": serve_study / "latent_10"}
    study_file = serve_study / "study.json"
    saved = study_file.read_text()
    try:
        study_file.unlink()  # without study.json, the latent_<z> runs are found, in numeric order
        assert list(discover_runs(serve_study)) == ["latent_2", "latent_10"]
    finally:
        study_file.write_text(saved)
    with pytest.raises(VaelabError, match="neither a run directory"):
        discover_runs(tmp_path)
    with pytest.raises(VaelabError, match="no such directory"):
        discover_runs(tmp_path / "absent")
    (tmp_path / "study.json").write_text('{"latent_dims": "two"}')
    with pytest.raises(VaelabError, match="latent_dims"):
        discover_runs(tmp_path)


def test_load_explorer_reports_missing_and_broken_checkpoints(serve_study, tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"latent_dims": [2, 5]}))
    (tmp_path / "latent_2").symlink_to(serve_study / "latent_2")
    with pytest.raises(CheckpointError, match="latent_5"):
        load_explorer(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((serve_study / "latent_2" / "config.json").read_text())
    (broken / "checkpoint.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        load_explorer(broken)


def test_load_explorer_refuses_a_spatial_latent_run_clearly(tmp_path):
    from vaelab.checkpoint import save_checkpoint
    from vaelab.config import ModelConfig, RunConfig
    from vaelab.models import VAE

    config = RunConfig(model=ModelConfig(arch="conv-spatial", latent_dim=2, likelihood="gaussian"))
    model = VAE(config.model)
    config.save(tmp_path / "config.json")
    save_checkpoint(tmp_path / "checkpoint.pt", {"config": config.to_dict(), "model": model.state_dict(),
                                                 "optimizer": {}, "epoch": 1, "step": 1, "history": []})
    with pytest.raises(VaelabError, match="spatial latent \\(2x7x7"):
        load_explorer(tmp_path)


def test_a_study_still_training_serves_its_finished_runs_and_names_the_others(serve_study, tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"latent_dims": [2, 5]}))
    (tmp_path / "latent_2").symlink_to(serve_study / "latent_2")
    (tmp_path / "latent_5").mkdir()  # started, no checkpoint yet
    explorer = load_explorer(tmp_path)
    assert list(explorer.runs) == ["latent_2"] and explorer.training == ("latent_5",)
    (tmp_path / "latent_2").unlink()
    (tmp_path / "latent_2").mkdir()
    with pytest.raises(VaelabError, match="no run has a checkpoint yet"):
        load_explorer(tmp_path)


def test_a_data_dir_that_does_not_exist_is_an_error_not_a_fallback(serve_study, tmp_path):
    with pytest.raises(VaelabError, match="no such directory"):
        load_explorer(serve_study, tmp_path / "absent")
