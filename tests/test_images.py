"""Tests for vaelab.images: folder layouts, conversions, bad input, the split's stability, the
decoding cache, and CIFAR-10 from an archive built here (never the network)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import write_image, write_image_folder
from vaelab import data, images
from vaelab.datasets import load_dataset
from vaelab.errors import DataError, DataNotFoundError
from vaelab.images import LoadOptions, held_out, load_cifar10, load_folder


@pytest.fixture(autouse=True)
def private_image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_IMAGE_CACHE", str(tmp_path / "image-cache"))


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a load of good files warns about nothing
        return function(*args, **kwargs)


# --- layouts --------------------------------------------------------------------------------


def test_given_split_with_class_folders(tmp_path):
    root = write_image_folder(tmp_path / "d", {"train/cat": 6, "train/dog": 4, "test/cat": 2, "test/dog": 3},
                              size=16, mode="RGB")
    dataset = quietly(load_folder, root)
    assert dataset.class_names == ("cat", "dog") and dataset.labelled
    assert dataset.image_shape == (3, 16, 16)
    assert dataset.train.images.shape == (10, 3, 16, 16) and dataset.train.images.dtype == torch.uint8
    assert sorted(dataset.train.labels.tolist()) == [0] * 6 + [1] * 4
    assert sorted(dataset.test.labels.tolist()) == [0, 0, 1, 1, 1]


def test_class_folders_without_split_are_split_by_path_hash(tmp_path):
    root = write_image_folder(tmp_path / "d", {"a": 60, "b": 40}, size=12, mode="L")
    dataset = quietly(load_folder, root)
    assert dataset.class_names == ("a", "b") and dataset.image_shape == (1, 12, 12)
    assert dataset.train.images.shape[1:] == (12, 12)  # grey images are (N, H, W), as MNIST's
    expected_test = sum(held_out(f"{c}/{i:05d}.png") for c, n in (("a", 60), ("b", 40)) for i in range(n))
    assert len(dataset.test) == expected_test and len(dataset.train) == 100 - expected_test
    assert 10 <= expected_test <= 30  # about a fifth
    # every image is where its pixels say it came from: the label is its folder
    for split in (dataset.train, dataset.test):
        for image, label in zip(split.images, split.labels, strict=True):
            assert label == (0 if int(image[0, 0]) < 128 else 1)


def test_flat_folder_is_unlabelled(tmp_path):
    root = write_image_folder(tmp_path / "d", {"": 50}, size=12, mode="RGB")
    (root / "notes.txt").write_text("not an image")  # other files are not images and pass silently
    dataset = quietly(load_folder, root)
    assert not dataset.labelled and dataset.class_names is None
    assert set(dataset.train.labels.tolist()) == {-1} and len(dataset.train) + len(dataset.test) == 50


def test_split_is_stable_when_files_are_added(tmp_path):
    root = write_image_folder(tmp_path / "d", {"": 40}, size=12, mode="L")
    before = load_folder(root)
    write_image_folder(root, {"": 80}, size=12, mode="L", start=40)  # 80 more, new names
    after = load_folder(root)
    ids = lambda split: {int(image[1, 1]) + 256 * int(image[2, 2]) for image in split.images}  # noqa: E731
    assert ids(before.test) <= ids(after.test) and ids(before.train) <= ids(after.train)
    assert len(after.test) > len(before.test)


# --- conversions ----------------------------------------------------------------------------


def test_modes_are_converted(tmp_path):
    root = tmp_path / "d"
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255  # opaque red on the left half, transparent on the right
    rgba[:, :8, 3] = 255
    write_image(root / "rgba.png", Image.fromarray(rgba, "RGBA"))
    write_image(root / "palette.png", Image.new("RGB", (16, 16), (0, 0, 255)).convert("P"))
    write_image(root / "deep.png", Image.fromarray(np.full((16, 16), 65535, np.uint16)))
    arrays = {name: images.decode_image(root / f"{name}.png", 3, 16) for name in ("rgba", "palette", "deep")}
    assert arrays["rgba"].shape == (3, 16, 16)
    assert tuple(arrays["rgba"][:, 0, 0]) == (255, 0, 0) and tuple(arrays["rgba"][:, 0, 15]) == (255, 255, 255)
    assert tuple(arrays["palette"][:, 5, 5]) == (0, 0, 255)
    assert tuple(arrays["deep"][:, 5, 5]) == (255, 255, 255)  # 16-bit white is 8-bit white
    grey = images.decode_image(root / "rgba.png", 1, 16)
    assert grey.shape == (1, 16, 16) and grey[0, 0, 15] == 255


def test_channels_default_to_what_most_files_are_and_can_be_forced(tmp_path):
    root = write_image_folder(tmp_path / "d", {"": 30}, size=12, mode="L")
    write_image_folder(root, {"": 5}, size=12, mode="RGB", start=30)
    assert load_folder(root).image_shape == (1, 12, 12)
    assert load_folder(root, LoadOptions(channels=3)).image_shape == (3, 12, 12)


def test_image_size_resizes_the_shorter_side_and_centre_crops(tmp_path):
    root = tmp_path / "d"
    wide = np.zeros((20, 40), np.uint8)
    wide[:, 10:30] = 255  # a white square in the middle of a black 40x20 image
    for i in range(12):
        write_image(root / f"{i}.png", Image.fromarray(wide))
    with pytest.raises(DataError, match="not all square.*--image-size"):
        load_folder(root)
    dataset = load_folder(root, LoadOptions(image_size=10))
    assert dataset.image_shape == (1, 10, 10)
    assert dataset.train.images.float().mean() > 250  # the crop kept the white middle only


def test_jpeg_bmp_webp_tiff_are_read(tmp_path):
    root = tmp_path / "d"
    for k, suffix in enumerate((".jpg", ".bmp", ".webp", ".tif") * 10):
        write_image(root / f"{k}{suffix}", Image.new("RGB", (14, 14), (6 * k, 100, 200)))
    dataset = quietly(load_folder, root)
    assert len(dataset.train) + len(dataset.test) == 40 and dataset.image_shape == (3, 14, 14)


# --- bad input ------------------------------------------------------------------------------


def test_corrupt_files_are_skipped_counted_and_named(tmp_path):
    root = write_image_folder(tmp_path / "d", {"a": 20, "b": 20}, size=12, mode="L")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "b" / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable or corrupt image file\(s\): a/broken.png, b/empty.jpg"):
        dataset = load_folder(root)
    assert len(dataset.train) + len(dataset.test) == 40
    with pytest.warns(UserWarning, match="skipped 2"):  # the cached load warns again
        load_folder(root)


@pytest.mark.parametrize(("build", "message"), [
    (lambda root: (root / "x.png").write_bytes(b"junk"), "none of the 1 image files could be read"),
    (lambda root: root.mkdir(exist_ok=True), "no image files found"),
    (lambda root: (write_image_folder(root, {"train": 3}, size=12, mode="L"), (root / "test").mkdir()),
     "test split would be empty"),
    (lambda root: write_image_folder(root, {"train/a": 3, "train/b": 3, "test/a": 2, "test/c": 1}, size=12, mode="L"),
     r"different classes \(only in train: b; only in test: c\)"),
    (lambda root: write_image_folder(root, {"": 20}, size=7, mode="L"), "smaller than the 8x8 the models need"),
])
def test_bad_folders_are_clear_errors(tmp_path, build, message):
    root = tmp_path / "d"
    root.mkdir()
    build(root)
    with pytest.raises(DataError, match=message):
        load_folder(root)


def test_missing_directory_and_missing_data_dir(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such directory"):
        load_dataset("folder", tmp_path / "nope")
    with pytest.raises(DataError, match="--dataset folder needs --data-dir"):
        load_dataset("folder", None)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", {"": 20}, size=16, mode="L")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 16x16 = 256 > 2 * 100: Pillow raises
    with pytest.raises(DataError, match="none of the 20 image files could be read"):
        load_folder(root)


# --- cache ----------------------------------------------------------------------------------


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", {"a": 20, "b": 20}, size=12, mode="RGB")
    first = load_folder(root)
    monkeypatch.setattr(images, "decode_image", lambda *a: pytest.fail("decoded again despite the cache"))
    second = load_folder(root)
    assert torch.equal(first.train.images, second.train.images) and torch.equal(first.test.labels, second.test.labels)


def test_cache_is_invalidated_when_a_file_changes(tmp_path):
    root = write_image_folder(tmp_path / "d", {"": 30}, size=12, mode="L")
    before = load_folder(root)
    changed = sorted(root.iterdir())[0]
    write_image(changed, Image.new("L", (12, 12), 77))
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    after = load_folder(root)
    pixels = lambda d: torch.cat([d.train.images, d.test.images]).flatten(1)[:, 0].tolist()  # noqa: E731
    assert 77 in pixels(after) and 77 not in pixels(before)
    assert len(list(images.cache_dir().iterdir())) == 2  # one entry per folder state


def test_load_options_are_part_of_the_cache_key(tmp_path):
    root = write_image_folder(tmp_path / "d", {"": 30}, size=16, mode="RGB")
    assert load_folder(root, LoadOptions(image_size=12)).image_shape == (3, 12, 12)
    assert load_folder(root, LoadOptions(channels=1)).image_shape == (1, 16, 16)


# --- real images ----------------------------------------------------------------------------


def test_lfw_faces_folder(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    faces = skimage_data.lfw_subset()  # 200 grey faces, 25x25, floats in [0, 1]
    root = tmp_path / "faces"
    for i, face in enumerate(faces):
        write_image(root / f"face_{i:03d}.png", Image.fromarray(np.round(face * 255).astype(np.uint8)))
    dataset = quietly(load_dataset, "folder", root)
    assert dataset.image_shape == (1, 25, 25) and not dataset.labelled
    assert len(dataset.train) + len(dataset.test) == 200
    everything = torch.cat([dataset.train.images, dataset.test.images]).double().sum()
    assert everything == pytest.approx(np.round(faces * 255).sum())


# --- CIFAR-10 -------------------------------------------------------------------------------


def cifar_batches(per_batch: int = 4) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    batches = {}
    for name in (*images.CIFAR_TRAIN_BATCHES, images.CIFAR_TEST_BATCH):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per_batch).tolist(), b"batch_label": name.encode()}
        batches[name] = pickle.dumps(batch, protocol=2)
    return batches


def cifar_archive(batches: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, raw in batches.items():
            info = tarfile.TarInfo(f"{images.CIFAR_DIR}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


def expected_cifar(batches: dict[str, bytes], names) -> np.ndarray:
    return np.concatenate([pickle.loads(batches[n], encoding="bytes")[b"data"] for n in names]).reshape(-1, 3, 32, 32)


def test_cifar_from_archive_and_extracted_batches(tmp_path):
    batches = cifar_batches()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / images.CIFAR_ARCHIVE).write_bytes(cifar_archive(batches))
    for name, raw in batches.items():
        (tmp_path / "b" / images.CIFAR_DIR).mkdir(parents=True, exist_ok=True)
        (tmp_path / "b" / images.CIFAR_DIR / name).write_bytes(raw)
    for root in (tmp_path / "a", tmp_path / "b"):
        dataset = load_dataset("cifar10", root, download=False)
        assert dataset.image_shape == (3, 32, 32) and len(dataset.train) == 20 and len(dataset.test) == 4
        np.testing.assert_array_equal(dataset.train.images.numpy(), expected_cifar(batches, images.CIFAR_TRAIN_BATCHES))
        assert dataset.class_names[0] == "airplane"


def test_cifar_download_is_verified_and_atomic(tmp_path, monkeypatch):
    archive = cifar_archive(cifar_batches())
    opener = lambda url, timeout: io.BytesIO(archive)  # noqa: E731
    with pytest.raises(DataError, match="does not match its published md5"):
        load_cifar10(tmp_path / "c", opener=opener)
    assert [p.name for p in (tmp_path / "c").iterdir()] == []  # nothing half-saved, nothing unverified
    monkeypatch.setattr(images, "CIFAR_MD5", data.Checksum("md5", hashlib.md5(archive).hexdigest(), True))
    dataset = load_cifar10(tmp_path / "c", opener=opener)
    assert len(dataset.train) == 20 and (tmp_path / "c" / images.CIFAR_ARCHIVE).read_bytes() == archive


def test_cifar_refuses_pickles_that_run_code(tmp_path):
    root = tmp_path / "evil" / images.CIFAR_DIR
    root.mkdir(parents=True)
    for name, raw in cifar_batches().items():
        (root / name).write_bytes(raw)
    (root / "test_batch").write_bytes(pickle.dumps(os.system))
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", tmp_path / "evil", download=False)


def test_cifar_missing_without_download(tmp_path):
    with pytest.raises(DataNotFoundError, match="CIFAR-10 data not found.*downloading is turned off"):
        load_dataset("cifar10", tmp_path, download=False)


def test_a_size_the_machine_could_not_hold_is_refused_before_decoding(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs", {"a": 3, "b": 3}, 16, "L")
    decoded = []
    monkeypatch.setattr(images, "decode_image", lambda *args: decoded.append(args))
    monkeypatch.setattr("vaelab.resources.available_bytes", lambda device: 64 * 2**30)
    with pytest.raises(DataError, match=r"6 images of 1x100000x100000 need about 279\.4 GiB .* has 64\.0 GiB free"):
        load_folder(root, LoadOptions(channels=1, image_size=100_000))
    assert decoded == []  # refused from the count and the size alone


def test_images_beside_class_folders_are_named_not_dropped_silently(tmp_path):
    root = write_image_folder(tmp_path / "d", {"a": 10, "b": 10}, 16, "L")
    write_image_folder(root, {"": 2}, 16, "L", start=100)  # two loose files at the top
    with pytest.warns(UserWarning, match=r"2 image file\(s\) directly in d/ are not used.*00100.png, 00101.png"):
        dataset = load_folder(root)
    assert len(dataset.train) + len(dataset.test) == 20


def test_an_image_over_the_pixel_limit_is_skipped_with_its_reason_before_decoding(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", {"": 30}, size=16, mode="L")
    write_image(root / "huge.png", Image.new("L", (24, 24)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 16x16 = 256 fits; 24x24 = 576 is over, under 2 x 300
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_folder(root, LoadOptions(channels=1, image_size=16))
    messages = [str(w.message) for w in caught]
    assert any("huge.png (over 64 megapixels" in m for m in messages), messages
    assert len(dataset.train) + len(dataset.test) == 30
