"""Tests for vaelab.data: IDX parsing, finding and loading the files, downloading, checksums."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from pathlib import Path
from types import MappingProxyType
from urllib.error import URLError

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab import data
from vaelab.data import (
    DATASETS,
    STANDARD_FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    Checksum,
    Dataset,
    ImageSplit,
    Resource,
    Source,
    download_dataset,
    read_idx,
    resolve_data_dir,
    verify_checksums,
)
from vaelab.datasets import load_dataset
from vaelab.errors import DataError, DataNotFoundError

# --- fixtures: IDX files built in tmp_path ----------------------------------------------------


def encode_idx(array: np.ndarray, *, magic: bytes = b"\x00\x00", type_code: int = 0x08) -> bytes:
    """IDX bytes for ``array``; ``magic`` and ``type_code`` are there to build broken files."""
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic + bytes([type_code, array.ndim]) + dims + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_file(directory: Path, filename: str, content: bytes, *, gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (f"{filename}.gz" if gz else filename)
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def make_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def standard_contents(n_train: int = 6, n_test: int = 4) -> dict[str, bytes]:
    """IDX bytes of the four standard files, tiny."""
    train_images, train_labels = make_split(n_train, seed=0)
    test_images, test_labels = make_split(n_test, seed=1)
    return {
        TRAIN_IMAGES: encode_idx(train_images),
        TRAIN_LABELS: encode_idx(train_labels),
        TEST_IMAGES: encode_idx(test_images),
        TEST_LABELS: encode_idx(test_labels),
    }


def write_dataset(directory: Path, *, gz: bool = False, replace: dict[str, bytes] | None = None) -> dict[str, Path]:
    contents = {**standard_contents(), **(replace or {})}
    return {filename: write_file(directory, filename, content, gz=gz) for filename, content in contents.items()}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the real network; a download test installs its own fake."""

    def refuse(url: str, timeout: float) -> io.BytesIO:
        raise AssertionError(f"unexpected network access: {url}")

    monkeypatch.setattr(data, "open_url", refuse)


# --- read_idx -------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_read_idx_round_trips(tmp_path: Path, gz: bool) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_file(tmp_path, "x-idx3-ubyte", encode_idx(array), gz=gz)
    result = read_idx(path)
    assert result.dtype == np.uint8 and result.shape == (2, 3, 4)
    np.testing.assert_array_equal(result, array)
    assert result.flags.writeable  # so torch.from_numpy needs no copy and warns about nothing


def test_read_idx_recognises_gzip_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(5, dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"  # gzipped content under a plain name
    path.write_bytes(gzip.compress(encode_idx(array)))
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_empty_first_dimension(tmp_path: Path) -> None:
    path = write_file(tmp_path, "empty", encode_idx(np.zeros((0, 28, 28), np.uint8)))
    assert read_idx(path).shape == (0, 28, 28)


LABELS = np.array([1, 2, 3], np.uint8)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "too short"),
        (b"\x00\x00\x08", "too short"),
        (b"\x08\x03" + encode_idx(LABELS)[2:], "magic number 0x08030801"),
        (encode_idx(LABELS, magic=b"\x12\x34"), "not an IDX file"),
        (encode_idx(LABELS, type_code=0x0C), "int32"),
        (encode_idx(LABELS, type_code=0x07), "unknown data type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (encode_idx(LABELS)[:6], "header is truncated"),
        (encode_idx(LABELS)[:-1], "truncated: dimensions (3,) need 3 bytes"),
        (encode_idx(LABELS) + b"\x00", "followed by extra bytes"),
        (gzip.compress(encode_idx(LABELS))[:-4], "corrupt gzip"),
    ],
    ids=[
        "empty",
        "short-header",
        "wrong-magic",
        "nonzero-magic-prefix",
        "wrong-dtype",
        "unknown-dtype",
        "zero-dims",
        "truncated-header",
        "truncated-payload",
        "trailing-bytes",
        "truncated-gzip",
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = write_file(tmp_path, "broken-idx1-ubyte", content)
    with pytest.raises(DataError) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_read_idx_missing_file_is_data_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


def test_read_idx_directory_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path)):
        read_idx(tmp_path)


@st.composite
def mutated_idx(draw: st.DrawFn) -> bytes:
    """A valid IDX file (gzipped or not) with some bytes overwritten, then maybe cut short or extended."""
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    size = int(np.prod(shape))
    payload = draw(st.binary(min_size=size, max_size=size))
    raw = encode_idx(np.frombuffer(payload, np.uint8).reshape(shape))
    if draw(st.booleans()):
        raw = gzip.compress(raw)
    buffer = bytearray(raw)
    for index, value in draw(st.lists(st.tuples(st.integers(0, len(buffer) - 1), st.integers(0, 255)), max_size=4)):
        buffer[index] = value
    cut = draw(st.integers(0, len(buffer)))
    return bytes(buffer[:cut]) + draw(st.binary(max_size=8))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=64).map(lambda tail: b"\x1f\x8b" + tail),  # things that look gzipped
        mutated_idx(),
    )
)
def test_read_idx_returns_an_array_or_raises_data_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz-idx-ubyte"
    path.write_bytes(content)
    try:
        result = read_idx(path)
    except DataError:
        return
    assert isinstance(result, np.ndarray)
    assert result.dtype == np.uint8 and result.ndim >= 1


# --- resolve_data_dir -----------------------------------------------------------------------


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert resolve_data_dir(None, "fashion-mnist") == tmp_path / "home" / ".cache" / "vaelab" / "fashion-mnist"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(None) == tmp_path / "xdg" / "vaelab" / "mnist"

    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"

    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_resolve_data_dir_ignores_empty_and_relative_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("VAELAB_DATA", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # invalid per the XDG spec
    assert resolve_data_dir("") == tmp_path / ".cache" / "vaelab" / "mnist"


def test_resolve_data_dir_rejects_unknown_dataset() -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        resolve_data_dir(None, "cifar")


# --- load_dataset ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(
    ("name", "subdir"),
    [("mnist", ""), ("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"), ("idx", "")],
)
def test_load_dataset(tmp_path: Path, name: str, subdir: str, gz: bool) -> None:
    write_dataset(tmp_path / subdir, gz=gz)
    dataset = load_dataset(name, tmp_path, download=False)

    assert isinstance(dataset, Dataset)
    assert dataset.name == name and dataset.root == tmp_path / subdir
    train_images, train_labels = make_split(6, seed=0)
    assert isinstance(dataset.train, ImageSplit) and len(dataset.train) == 6 and len(dataset.test) == 4
    for split in (dataset.train, dataset.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (28, 28)
        assert split.labels.dtype == torch.int64 and split.labels.shape == (len(split),)
    np.testing.assert_array_equal(dataset.train.images.numpy(), train_images)
    np.testing.assert_array_equal(dataset.train.labels.numpy(), train_labels)


def test_load_dataset_reads_VAELAB_DATA(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(tmp_path)
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path))
    assert load_dataset("mnist", download=False).root == tmp_path


def test_load_dataset_prefers_a_complete_directory(tmp_path: Path) -> None:
    # Three files in the plain dir and all four in torchvision's layout: the files come from one place.
    write_dataset(tmp_path / "MNIST" / "raw")
    write_file(tmp_path, TRAIN_IMAGES, standard_contents()[TRAIN_IMAGES])
    assert load_dataset("mnist", tmp_path, download=False).root == tmp_path / "MNIST" / "raw"


def test_load_dataset_rejects_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("svhn", tmp_path)


@pytest.mark.parametrize(
    ("replace", "named", "problem"),
    [
        ({TRAIN_IMAGES: encode_idx(np.zeros((6, 32, 32), np.uint8))}, TRAIN_IMAGES, "28x28"),
        ({TEST_IMAGES: encode_idx(np.zeros((4, 784), np.uint8))}, TEST_IMAGES, "28x28"),
        ({TRAIN_LABELS: encode_idx(np.zeros((6, 1, 1), np.uint8))}, TRAIN_LABELS, "shape (N,)"),
        ({TEST_LABELS: encode_idx(np.zeros(5, np.uint8))}, TEST_LABELS, "4 images but"),
        ({TRAIN_LABELS: encode_idx(np.array([0, 1, 2, 10, 3, 4], np.uint8))}, TRAIN_LABELS, "label 10 at index 3"),
        ({TEST_IMAGES: encode_idx(np.zeros((4, 28, 28), np.uint8), type_code=0x0D)}, TEST_IMAGES, "float32"),
        ({TRAIN_IMAGES: encode_idx(np.zeros((6, 28, 28), np.uint8))[:-10]}, TRAIN_IMAGES, "truncated"),
    ],
    ids=["32x32-images", "flat-images", "3d-labels", "count-mismatch", "label-range", "float-images", "truncated"],
)
def test_load_dataset_rejects_bad_files(tmp_path: Path, replace: dict[str, bytes], named: str, problem: str) -> None:
    write_dataset(tmp_path, replace=replace)
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", tmp_path, download=False)
    assert str(tmp_path / named) in str(caught.value)
    assert problem in str(caught.value)


def test_idx_allows_any_label_value(tmp_path: Path) -> None:
    write_dataset(tmp_path, replace={TRAIN_LABELS: encode_idx(np.array([0, 1, 2, 200, 3, 4], np.uint8))})
    assert int(load_dataset("idx", tmp_path).train.labels.max()) == 200


def test_idx_rejects_non_28x28_images(tmp_path: Path) -> None:
    write_dataset(tmp_path, replace={TEST_IMAGES: encode_idx(np.zeros((4, 27, 28), np.uint8))})
    with pytest.raises(DataError, match=f"{tmp_path / TEST_IMAGES}.*28x28"):
        load_dataset("idx", tmp_path)


def test_idx_missing_file_is_not_downloaded(tmp_path: Path) -> None:
    paths = write_dataset(tmp_path)
    paths[TEST_LABELS].unlink()
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("idx", tmp_path, download=True)  # the autouse fixture fails any network access
    message = str(caught.value)
    assert str(tmp_path) in message and f"missing {TEST_LABELS}" in message and "never downloaded" in message


def test_missing_files_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist", tmp_path / "empty", download=False)
    message = str(caught.value)
    assert str(tmp_path / "empty") in message and str(tmp_path / "empty" / "MNIST" / "raw") in message
    assert all(filename in message for filename in STANDARD_FILES)
    assert "--data-dir" in message and "VAELAB_DATA" in message


# --- downloading ----------------------------------------------------------------------------

MIRRORS = ("https://mirror-a.test/mnist/", "https://mirror-b.test/mnist/")


class FakeNetwork:
    """Serves fixed bytes (or raises) per URL and records what was requested; stands in for ``open_url``."""

    def __init__(self, responses: dict[str, bytes | BaseException]) -> None:
        self.responses = responses
        self.requested: list[str] = []

    def __call__(self, url: str, timeout: float) -> io.BytesIO:
        assert 0 < timeout <= 60
        self.requested.append(url)
        outcome = self.responses.get(url, URLError("no route to host"))
        if isinstance(outcome, BaseException):
            raise outcome
        return io.BytesIO(outcome)


class BrokenStream(io.BytesIO):
    """Delivers a few bytes, then fails like a dropped connection (or a Ctrl-C)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(b"\x1f\x8b partial")
        self.error = error

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0:
            raise self.error
        return super().read(4)


def fixture_source(contents: dict[str, bytes], *, of_archive: bool) -> Source:
    """A download source whose checksums match the gzipped ``contents`` the fake mirrors serve."""

    def checksum(content: bytes) -> Checksum:
        if of_archive:
            return Checksum("md5", hashlib.md5(gzip.compress(content, mtime=0)).hexdigest(), of_archive=True)
        return Checksum("sha256", hashlib.sha256(content).hexdigest(), of_archive=False)

    return Source(
        mirrors=MIRRORS,
        resources=tuple(Resource(filename, checksum(content)) for filename, content in contents.items()),
        torchvision_dir="MNIST",
    )


@pytest.fixture(params=[False, True], ids=["sha256-of-content", "md5-of-archive"])
def served(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Install a fixture download source for "mnist"; returns the .gz bytes each file is served as."""
    contents = standard_contents()
    source = fixture_source(contents, of_archive=request.param)
    monkeypatch.setattr(data, "SOURCES", MappingProxyType({"mnist": source}))
    return {f"{filename}.gz": gzip.compress(content, mtime=0) for filename, content in contents.items()}


def install_network(monkeypatch: pytest.MonkeyPatch, responses: dict[str, bytes | BaseException]) -> FakeNetwork:
    network = FakeNetwork(responses)
    monkeypatch.setattr(data, "open_url", network)
    return network


def test_download_saves_files_only_after_verification(
    tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    network = install_network(monkeypatch, {MIRRORS[0] + name: body for name, body in served.items()})
    real_check = data.checksum_matches
    checked: list[str] = []

    def spying_check(raw: bytes, checksum: Checksum) -> bool:
        # While the checksum is checked, the bytes sit in a temp file and the final name does not exist yet.
        (temp,) = tmp_path.glob("*.part")
        assert temp.read_bytes() == raw
        final = tmp_path / temp.name[1 : temp.name.index(".gz.") + len(".gz")]  # ".<name>.gz.<random>.part"
        assert final.name in served and not final.exists()
        checked.append(final.name)
        return real_check(raw, checksum)

    monkeypatch.setattr(data, "checksum_matches", spying_check)
    dataset = load_dataset("mnist", tmp_path, download=True)

    assert len(checked) == 4
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(served)  # no temp files left behind
    assert network.requested == [MIRRORS[0] + f"{filename}.gz" for filename in STANDARD_FILES]
    assert dataset.root == tmp_path and len(dataset.train) == 6 and len(dataset.test) == 4


def test_download_accepts_an_injected_opener(tmp_path: Path, served: dict[str, bytes]) -> None:
    network = FakeNetwork({MIRRORS[0] + name: body for name, body in served.items()})
    download_dataset("mnist", tmp_path, opener=network)  # open_url itself refuses, via the autouse fixture
    assert len(network.requested) == 4
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(served)


def test_download_falls_back_to_the_next_mirror(
    tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    responses: dict[str, bytes | BaseException] = {MIRRORS[1] + name: body for name, body in served.items()}
    responses[MIRRORS[0] + f"{TRAIN_IMAGES}.gz"] = ConnectionResetError("reset by peer")
    network = install_network(monkeypatch, responses)

    download_dataset("mnist", tmp_path)

    assert network.requested[:2] == [MIRRORS[0] + f"{TRAIN_IMAGES}.gz", MIRRORS[1] + f"{TRAIN_IMAGES}.gz"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(served)


def test_download_survives_a_connection_dropped_mid_file(
    tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    network = install_network(monkeypatch, {MIRRORS[1] + name: body for name, body in served.items()})
    first_url = MIRRORS[0] + f"{TRAIN_IMAGES}.gz"

    def flaky(url: str, timeout: float) -> io.BytesIO:
        if url == first_url:
            return BrokenStream(TimeoutError("timed out"))
        return network(url, timeout)

    monkeypatch.setattr(data, "open_url", flaky)
    download_dataset("mnist", tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(served)


def test_download_skips_files_already_present(
    tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    network = install_network(monkeypatch, {MIRRORS[0] + name: body for name, body in served.items()})
    write_file(tmp_path, TRAIN_IMAGES, standard_contents()[TRAIN_IMAGES])
    download_dataset("mnist", tmp_path)
    assert f"{TRAIN_IMAGES}.gz" not in {url.rsplit("/", 1)[1] for url in network.requested}
    assert len(network.requested) == 3


def test_checksum_mismatch_saves_nothing(
    tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    responses: dict[str, bytes | BaseException] = {MIRRORS[0] + name: body for name, body in served.items()}
    responses[MIRRORS[0] + f"{TRAIN_IMAGES}.gz"] = gzip.compress(b"not the file you want")
    install_network(monkeypatch, responses)

    with pytest.raises(DataError) as caught:
        download_dataset("mnist", tmp_path)

    assert not isinstance(caught.value, DataNotFoundError)
    assert str(tmp_path / f"{TRAIN_IMAGES}.gz") in str(caught.value) and "checksum" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # neither a final name nor a temp file


def test_interrupted_download_leaves_no_file(
    tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "open_url", lambda url, timeout: BrokenStream(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        download_dataset("mnist", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_no_network_names_directory_and_files(
    tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    network = install_network(monkeypatch, {})  # every URL fails
    root = tmp_path / "data"

    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist", root)

    message = str(caught.value)
    assert str(root) in message and str(root / "MNIST" / "raw") in message
    assert all(filename in message for filename in STANDARD_FILES)
    assert "--data-dir" in message and "VAELAB_DATA" in message and "no route to host" in message
    assert "\n" not in message  # one paragraph
    assert network.requested == [mirror + f"{TRAIN_IMAGES}.gz" for mirror in MIRRORS]
    assert list(root.iterdir()) == []


def test_unwritable_directory_is_data_not_found(tmp_path: Path, served: dict[str, bytes]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(DataNotFoundError, match="cannot be created"):
        download_dataset("mnist", blocker / "data")


def test_idx_has_no_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is never downloaded"):
        download_dataset("idx", tmp_path)


def test_real_sources_are_complete() -> None:
    assert set(data.SOURCES) == {"mnist", "fashion-mnist"}
    assert set(DATASETS) == {"mnist", "fashion-mnist", "idx", "folder", "cifar10"}
    for source in data.SOURCES.values():
        assert [resource.filename for resource in source.resources] == list(STANDARD_FILES)
        assert source.mirrors and all(mirror.endswith("/") for mirror in source.mirrors)


# --- verify_checksums -----------------------------------------------------------------------


def test_verify_checksums_passes_and_catches_corruption(
    tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, body in served.items():
        (tmp_path / name).write_bytes(body)
    verify_checksums("mnist", tmp_path)

    corrupt = tmp_path / f"{TEST_LABELS}.gz"
    corrupt.write_bytes(gzip.compress(encode_idx(np.zeros(4, np.uint8)), mtime=0))
    with pytest.raises(DataError, match=f"{corrupt}: .* checksum does not match"):
        verify_checksums("mnist", tmp_path)


def test_verify_checksums_of_archive_needs_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contents = standard_contents()
    monkeypatch.setattr(data, "SOURCES", MappingProxyType({"mnist": fixture_source(contents, of_archive=True)}))
    write_dataset(tmp_path)  # uncompressed
    with pytest.raises(DataError, match="not gzipped"):
        verify_checksums("mnist", tmp_path)


def test_verify_checksums_of_content_accepts_plain_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contents = standard_contents()
    monkeypatch.setattr(data, "SOURCES", MappingProxyType({"mnist": fixture_source(contents, of_archive=False)}))
    write_dataset(tmp_path)
    verify_checksums("mnist", tmp_path)


def test_verify_checksums_idx_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no published checksums"):
        verify_checksums("idx", tmp_path)
    with pytest.raises(DataNotFoundError, match="nothing to verify"):
        verify_checksums("mnist", tmp_path)


# --- the real MNIST -------------------------------------------------------------------------


def real_mnist_dir() -> Path:
    override = os.environ.get("VAELAB_TEST_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def test_real_mnist() -> None:
    root = real_mnist_dir()
    if data.find_dataset_files("mnist", root) is None:
        pytest.skip(f"real MNIST not found in {root} (set VAELAB_TEST_DATA to the directory holding it)")

    # How fast this loads is a benchmark's business (benchmarks/), not a unit test's.
    dataset = load_dataset("mnist", root, download=False)
    assert dataset.train.images.shape == (60000, 28, 28) and dataset.test.images.shape == (10000, 28, 28)
    assert dataset.train.labels.shape == (60000,) and dataset.test.labels.shape == (10000,)
    for split in (dataset.train, dataset.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert int(split.labels.min()) == 0 and int(split.labels.max()) == 9
    verify_checksums("mnist", root)


def test_head_cuts_both_splits_without_copying(mnist):
    small = mnist.head(100, 30)
    assert (len(small.train), len(small.test)) == (100, 30) and small.name == mnist.name
    assert small.train.images.data_ptr() == mnist.train.images.data_ptr()
    assert torch.equal(small.test.labels, mnist.test.labels[:30])


@pytest.mark.parametrize("in_the_way", ["directory", "loop"])
def test_a_directory_or_link_loop_where_a_file_should_be_is_named_not_downloaded_over(tmp_path, in_the_way):
    target = tmp_path / "train-images-idx3-ubyte.gz"
    if in_the_way == "directory":
        target.mkdir()
    else:
        target.symlink_to(target.name)  # points at itself
    requested = []
    with pytest.raises(DataError, match="where the data file train-images-idx3-ubyte should be"):
        download_dataset("mnist", tmp_path, opener=lambda url, timeout: requested.append(url))
    assert requested == []


def test_only_digit_data_sets_are_called_digits():
    assert data.item_word("mnist") == "digits"
    assert {data.item_word(name) for name in ("fashion-mnist", "idx", "folder", "cifar10")} == {"images"}
