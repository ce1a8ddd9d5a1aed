"""A whole study on an RGB image folder through the CLI: every per-run figure, the measures that apply,
a report that renders in Chromium without a broken image; and an unlabelled folder, where the
label-based measures are absent and the report says why."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import write_image
from vaelab.cli import cli
from vaelab.report import build_report
from vaelab.visualisation import load_frames

PER_RUN = {"architecture.png", "latent_space.gif", "latent_space.png", "metrics.png", "reconstructions.gif",
           "reconstructions.png", "samples.png", "interpolations.png"}
QUICK = ["--epochs", "1", "--batch-size", "32", "--train-eval-size", "64", "--no-progress", "--device", "cpu",
         "--iwae-k", "4", "--arch", "conv"]


def write_colour_classes(root, per_class: int, size: int = 16):
    """Three classes of RGB images: reddish, greenish and bluish noise, under DIR/train and DIR/test."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", max(4, per_class // 4))):
        for c, name in enumerate(("red", "green", "blue")):
            for i in range(count):
                pixels = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
                pixels[..., c] += 120
                from PIL import Image

                write_image(root / split / name / f"{i:03d}.png", Image.fromarray(pixels, "RGB"))
    return root


@pytest.fixture(scope="module")
def rgb_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rgb")
    data = write_colour_classes(tmp / "colours", per_class=24)
    study = tmp / "study"
    result = CliRunner().invoke(cli, ["study", "--dataset", "folder", "--data-dir", str(data), "-z", "2,4",
                                      "--study-dir", str(study), *QUICK], catch_exceptions=False,
                                env={"VAELAB_IMAGE_CACHE": str(tmp / "cache")})
    assert result.exit_code == 0, result.output
    return study


@pytest.mark.slow
def test_rgb_study_writes_every_figure_and_the_labelled_measures(rgb_study):
    for d in (2, 4):
        run = rgb_study / f"latent_{d}"
        assert PER_RUN | ({"manifold.png"} if d == 2 else set()) <= {p.name for p in run.iterdir()}
        final = json.loads((run / "metrics.json").read_text())["final"]
        assert {"iwae_log_likelihood", "active_units", "probe_accuracy", "fd_classifier"} <= set(final)
        frame = load_frames(run)[-1]
        assert frame.digits.shape == (9, 16, 16, 3)  # three fixed examples of each of 3 classes, in colour
        assert [frame.example_title(k) for k in range(9)] == ["blue"] * 3 + ["green"] * 3 + ["red"] * 3
    assert "3×16×16 RGB · 72 train, 18 test · 3 classes" in (rgb_study / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.browser
def test_rgb_study_report_renders_without_a_broken_image(rgb_study, page):
    page.goto((rgb_study / "report.html").as_uri(), wait_until="load")
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])")
    # comparison + latent 2 (7 figures with the manifold) + latent 4 (6), as for MNIST
    assert len(images) == 1 + 7 + 6 and all(width > 0 for _, width in images), images
    assert page.errors == []


@pytest.mark.slow
def test_unlabelled_folder_leaves_out_label_measures_and_says_why(tmp_path):
    rng = np.random.default_rng(1)
    from PIL import Image

    for i in range(100):  # flat: no class folders (about a fifth go to test, by path hash)
        write_image(tmp_path / "flat" / f"{i:03d}.jpg", Image.fromarray(rng.integers(0, 255, (14, 14, 3), np.uint8)))
    study = tmp_path / "study"
    result = CliRunner().invoke(cli, ["study", "--dataset", "folder", "--data-dir", str(tmp_path / "flat"), "-z", "3",
                                      "--study-dir", str(study), *QUICK], catch_exceptions=False,
                                env={"VAELAB_IMAGE_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert "no probe or classifier scores: the data has no labels" in result.output
    final = json.loads((study / "latent_3" / "metrics.json").read_text())["final"]
    assert "probe_accuracy" not in final and final["absent"]["fd_classifier"].startswith("the data has no labels")
    frame = load_frames(study / "latent_3")[-1]
    assert not frame.labelled and frame.brightness is not None and len(frame.digits) == 10  # the first ten
    assert frame.example_title(0) == "test image 0"
    html = build_report(study).html.read_text()
    assert "Not measured: probe accuracy" in html and "the data has no labels" in html
    words = re.sub(r"<[^>]+>", " ", html).lower()  # the text, not the markup: no digits, and no classes to speak of
    assert "digit" not in words and "class probe" not in words and "classifier's view" not in words
    assert "fixed test images (top) and their reconstructions" in words


@pytest.mark.slow
def test_the_explorer_serves_the_rgb_study(rgb_study, tmp_path, monkeypatch):
    """The explorer loads the study's runs and its colour test images, decodes and encodes in RGB."""
    import base64
    import io

    from PIL import Image

    from vaelab.explorer import load_explorer
    from vaelab.serve import create_app

    monkeypatch.setenv("VAELAB_IMAGE_CACHE", str(tmp_path / "cache"))
    client = create_app(load_explorer(rgb_study), hosts={"localhost"}).test_client()

    body = client.get("/api/runs").get_json()
    assert [r["latent_dim"] for r in body["runs"]] == [2, 4]
    assert body["image"] == {"channels": 3, "height": 16, "width": 16} and body["drawable"] is False
    assert body["class_names"] == ["blue", "green", "red"]

    decoded = client.post("/api/runs/latent_2/decode", json={"z": [0.5, -0.5]}).get_json()["pixels"]
    assert len(decoded) == 16 * 16 * 3 and all(0 <= p <= 255 for p in decoded)

    reddish = np.zeros((40, 40, 3), dtype=np.uint8)
    reddish[..., 0] = 220
    buffer = io.BytesIO()
    Image.fromarray(reddish, "RGB").save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    encoded = client.post("/api/runs/latent_4/encode", json={"image": url}).get_json()
    assert len(encoded["input"]) == 16 * 16 * 3 and len(encoded["mu"]) == 4 and len(encoded["std"]) == 4


@pytest.mark.slow
def test_the_report_of_a_folder_of_colours_speaks_of_images_and_classes_not_digits(rgb_study):
    html = (rgb_study / "report.html").read_text()
    words = re.sub(r"<[^>]+>", " ", html)  # the text, not the markup
    assert "digit" not in words.lower()
    assert "reconstructs the test images" in words and "class probe" in words
    assert "Fixed test images (top) and their reconstructions" in words
