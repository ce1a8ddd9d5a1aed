"""MNIST-style IDX data: find the four standard files, download them when missing, load them.

Shaped like torchvision's ``datasets/mnist.py`` (resources with checksums, a mirror list,
download kept apart from loading) without depending on torchvision. The whole dataset is
read into memory once as uint8 / int64 tensors; there is no per-item Python work.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import math
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

import numpy as np
import torch

from .errors import DataError, DataNotFoundError
from .progress import progress_bar

IDX_DATASETS = ("mnist", "fashion-mnist", "idx")
DATASETS = (*IDX_DATASETS, "folder", "cifar10")  # the last two are read by vaelab.images (datasets.py picks)
# Data sets whose images are digits: the only ones whose figures and report say "digit".
DIGIT_DATASETS = ("mnist",)


def item_word(dataset: str) -> str:
    """What the data set's images are, in the plural, for words that follow the data: "digits" or "images"."""
    return "digits" if dataset in DIGIT_DATASETS else "images"

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
STANDARD_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
DOWNLOAD_TIMEOUT_S = 10.0
DOWNLOAD_CHUNK_BYTES = 1 << 16
USER_AGENT = "vaelab"  # some mirrors refuse urllib's default "Python-urllib/x.y"

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08
# The other type codes the IDX format defines, so the error can say what the file holds.
IDX_OTHER_TYPES = MappingProxyType(
    {0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
)

DISPLAY_NAMES = MappingProxyType({"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "idx": "IDX",
                                   "folder": "image folder", "cifar10": "CIFAR-10"})


@dataclass(frozen=True)
class ImageSplit:
    """One split held in memory: ``images`` uint8 in 0..255, (N, H, W) when grey (MNIST: 28x28) or
    (N, C, H, W) when colour; ``labels`` int64 (N,), -1 where the images have no labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        shape = tuple(int(d) for d in self.images.shape[1:])
        return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]

    def head(self, n: int) -> ImageSplit:
        """The first ``n`` images and labels (views, no copy): for quick experiments and tests."""
        return ImageSplit(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset and the directory it was read from.

    ``class_names``: the label of class k is ``class_names[k]`` (folder names, CIFAR's classes); None
    when the labels are their own names (digits). ``labelled`` is False for a folder without class
    subfolders: its labels are all -1 and nothing that needs classes (probe, classifier) applies.
    """

    name: str
    root: Path
    train: ImageSplit
    test: ImageSplit
    class_names: tuple[str, ...] | None = None
    labelled: bool = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image: what the models are built for."""
        return self.train.image_shape

    def describe(self) -> str:
        """One line for logs and the report: shape, colour, counts, classes."""
        channels, height, width = self.image_shape
        colour = "grey" if channels == 1 else "RGB" if channels == 3 else f"{channels} channels"
        classes = (f"{len(self.class_names)} classes" if self.class_names
                   else "digit labels" if self.labelled else "no labels")
        return f"{channels}×{height}×{width} {colour} · {len(self.train):,} train, {len(self.test):,} test · {classes}"

    def head(self, n_train: int, n_test: int) -> Dataset:
        """The same dataset cut to its first ``n_train`` training and ``n_test`` test images."""
        return dataclasses.replace(self, train=self.train.head(n_train), test=self.test.head(n_test))


@dataclass(frozen=True)
class Checksum:
    """A published digest: of the .gz archive as served (``of_archive``) or of the decompressed IDX bytes."""

    algorithm: str
    hexdigest: str
    of_archive: bool


@dataclass(frozen=True)
class Resource:
    """One standard file; mirrors serve it as ``filename + ".gz"``."""

    filename: str
    checksum: Checksum


@dataclass(frozen=True)
class Source:
    """Where a dataset is downloaded from, and the folder torchvision keeps it in (``<root>/<dir>/raw``)."""

    mirrors: tuple[str, ...]
    resources: tuple[Resource, ...]
    torchvision_dir: str


def _sha256_of_content(hexdigest: str) -> Checksum:
    return Checksum("sha256", hexdigest, of_archive=False)


def _md5_of_archive(hexdigest: str) -> Checksum:
    return Checksum("md5", hexdigest, of_archive=True)


SOURCES: Mapping[str, Source] = MappingProxyType(
    {
        # MNIST: SHA-256 of the decompressed bytes (shared/data/mnist/SHA256SUMS), so a re-compressed
        # copy still verifies; torchvision's MD5s cover the .gz archives only.
        "mnist": Source(
            mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
            resources=(
                Resource(
                    TRAIN_IMAGES, _sha256_of_content("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db")
                ),
                Resource(
                    TRAIN_LABELS, _sha256_of_content("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5")
                ),
                Resource(
                    TEST_IMAGES, _sha256_of_content("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7")
                ),
                Resource(
                    TEST_LABELS, _sha256_of_content("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")
                ),
            ),
            torchvision_dir="MNIST",
        ),
        # Fashion-MNIST: MD5 of the .gz archives, copied from FashionMNIST.resources in
        # torchvision/datasets/mnist.py (pytorch/vision); no digest of the decompressed bytes is published.
        "fashion-mnist": Source(
            mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            resources=(
                Resource(TRAIN_IMAGES, _md5_of_archive("8d4fb7e6c68d591d4c3dfef9ec88bf0d")),
                Resource(TRAIN_LABELS, _md5_of_archive("25c81989df183df01b3e8a0aad5dffbe")),
                Resource(TEST_IMAGES, _md5_of_archive("bef4ecab320f06d8554ea6380940ec79")),
                Resource(TEST_LABELS, _md5_of_archive("bb300cfdad3c16e7a12a480ee83cd310")),
            ),
            torchvision_dir="FashionMNIST",
        ),
    }
)

Opener = Callable[[str, float], AbstractContextManager[BinaryIO]]


# --- where the data lives -------------------------------------------------------------------


def user_cache_dir() -> Path:
    """vaelab's per-user cache: ``$XDG_CACHE_HOME/vaelab`` (``~/.cache/vaelab`` when it is unset)."""
    xdg_cache = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    cache = Path(xdg_cache) if os.path.isabs(xdg_cache) else Path.home() / ".cache"
    return cache / "vaelab"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None, dataset: str = "mnist") -> Path:
    """``data_dir`` if given, else ``$VAELAB_DATA``, else ``$XDG_CACHE_HOME/vaelab/<dataset>``
    (``~/.cache/vaelab/<dataset>`` when XDG_CACHE_HOME is unset)."""
    check_dataset_name(dataset)
    # An empty value is what an unset shell variable expands to; it never means "the cwd".
    if data_dir is not None and os.fspath(data_dir) != "":
        return Path(data_dir).expanduser().absolute()
    return default_data_dirs(dataset)[0]


def default_data_dirs(dataset: str = "mnist") -> list[Path]:
    """Where the data is looked for when no directory is given: ``$VAELAB_DATA`` if set, then the
    per-user cache ``$XDG_CACHE_HOME/vaelab/<dataset>`` (``~/.cache/vaelab/<dataset>``)."""
    check_dataset_name(dataset)
    from_env = os.environ.get("VAELAB_DATA", "")
    env_dirs = [Path(from_env).expanduser().absolute()] if from_env else []
    return [*env_dirs, user_cache_dir() / dataset]


def find_dataset_files(name: str, root: Path) -> dict[str, Path] | None:
    """The four standard files, all from one directory (``root`` or torchvision's layout under it), or None."""
    check_dataset_name(name)
    for directory in _candidate_dirs(name, Path(root)):
        found = _find_in_directory(directory)
        if found is not None:
            return found
    return None


def _candidate_dirs(name: str, root: Path) -> tuple[Path, ...]:
    if name in SOURCES:
        return (root, root / SOURCES[name].torchvision_dir / "raw")
    return (root,)


def _find_in_directory(directory: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for filename in STANDARD_FILES:
        path = _find_idx_file(directory, filename)
        if path is None:
            return None
        found[filename] = path
    return found


def _find_idx_file(directory: Path, filename: str) -> Path | None:
    # The uncompressed file wins when both exist: reading it skips decompression.
    for candidate in (directory / filename, directory / f"{filename}.gz"):
        if candidate.is_file():
            return candidate
    return None


# --- parsing --------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file of unsigned bytes, gzipped or not, into a writable uint8 array of its shape."""
    path = Path(path)
    data = _read_decompressed(path)
    shape, header_bytes = _parse_idx_header(data, path)
    needed = math.prod(shape)
    found = len(data) - header_bytes
    if found != needed:
        problem = "truncated" if found < needed else "followed by extra bytes"
        raise DataError(
            f"{path}: IDX data is {problem}: dimensions {shape} need {needed} bytes after the header, found {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, count=needed, offset=header_bytes).reshape(shape)


def _parse_idx_header(data: bytearray, path: Path) -> tuple[tuple[int, ...], int]:
    """The dimensions the header declares, and the header's length in bytes."""
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        magic = int.from_bytes(data[:4], "big")
        raise DataError(f"{path}: not an IDX file: magic number 0x{magic:08X} does not start with 0x0000")
    type_code, ndim = data[2], data[3]
    if type_code != IDX_UBYTE:
        held = IDX_OTHER_TYPES.get(type_code)
        what = f"holds {held} values" if held else f"has unknown data type code 0x{type_code:02X}"
        raise DataError(f"{path}: IDX file {what}; only unsigned bytes (type code 0x08) are supported")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise DataError(
            f"{path}: IDX header is truncated: {ndim} dimensions need {header_bytes} header bytes, "
            f"the file has {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return shape, header_bytes


def _read_decompressed(path: Path) -> bytearray:
    # A bytearray, so that the numpy and torch views of it are writable without another copy.
    raw = _read_bytes(path)
    # Sniff the content rather than trust the suffix: a server that sends a .gz with
    # "Content-Encoding: gzip" makes some clients store the decompressed bytes under the .gz name.
    if raw[:2] != GZIP_MAGIC:
        return bytearray(raw)
    try:
        return bytearray(gzip.decompress(raw))
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt gzip data ({error})") from error


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror or error})") from error


# --- loading --------------------------------------------------------------------------------


def load_split(images_path: Path, labels_path: Path, name: str) -> ImageSplit:
    """Read and cross-check one images file and its labels file."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{images_path}: expected 28x28 grayscale images, shape (N, 28, 28); got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels of shape (N,); got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if name in SOURCES:
        _check_label_range(labels, labels_path)
    return ImageSplit(images=torch.from_numpy(images), labels=torch.from_numpy(labels.astype(np.int64)))


def _check_label_range(labels: np.ndarray, path: Path) -> None:
    out_of_range = np.flatnonzero(labels >= NUM_CLASSES)
    if out_of_range.size:
        first = int(out_of_range[0])
        raise DataError(
            f"{path}: label {int(labels[first])} at index {first} is outside 0..{NUM_CLASSES - 1} "
            f"({out_of_range.size} labels out of range)"
        )


# --- downloading ----------------------------------------------------------------------------


def open_url(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` for reading: the one place that touches the network, so tests can replace it."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)  # type: ignore[no-any-return]


def download_dataset(name: str, root: Path, *, opener: Opener | None = None) -> None:
    """Download the files missing from ``root`` as ``<file>.gz``, each verified before it gets its name."""
    source = _source(name, lacking="is never downloaded")
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataNotFoundError(not_found_message(name, root, f"the directory cannot be created ({error})")) from error
    for resource in source.resources:
        if _find_idx_file(root, resource.filename) is None:
            _refuse_what_is_in_the_way(root, resource.filename)
            _download_resource(name, source.mirrors, resource, root, opener)


def _refuse_what_is_in_the_way(root: Path, filename: str) -> None:
    """A directory, a broken link or a link loop under a data file's name: say so rather than download over it."""
    for candidate in (root / filename, root / f"{filename}.gz"):
        if os.path.lexists(candidate) and not candidate.is_file():
            kind = "a directory" if candidate.is_dir() else "a link that leads to no file"
            raise DataError(f"{candidate}: is {kind}, where the data file {filename} should be; move it away (vaelab "
                            "would download the file there) or put the file in its place.")


def _download_resource(
    name: str, mirrors: tuple[str, ...], resource: Resource, root: Path, opener: Opener | None
) -> None:
    final = root / f"{resource.filename}.gz"
    download_verified([mirror + final.name for mirror in mirrors], final, resource.checksum,
                      lambda reason: not_found_message(name, root, reason), opener)


def download_verified(urls: list[str], final: Path, checksum: Checksum, missing: Callable[[str], str],
                      opener: Opener | None = None) -> None:
    """Fetch ``final`` from the first of ``urls`` that answers; it is saved under its name only once it matches
    ``checksum``. Every download vaelab makes goes through here (the IDX mirrors, the CIFAR-10 archive);
    ``missing(reason)`` words the error when nothing could be fetched."""
    # Looked up at call time so that monkeypatching ``open_url`` reaches every download.
    opener = opener if opener is not None else open_url
    failures: list[str] = []
    for url in urls:
        temp = _new_temp_file(final, missing)
        try:
            try:
                fetch_to_file(url, temp, opener, final.name)
            except (OSError, http.client.HTTPException) as error:
                failures.append(f"{url}: {error}")
                continue
            if not checksum_matches(temp.read_bytes(), checksum):
                raise DataError(
                    f"{final}: the file downloaded from {url} does not match its published "
                    f"{checksum.algorithm} checksum {checksum.hexdigest}; it was not saved. "
                    "The mirror may be serving a corrupt or changed file."
                )
            _replace(temp, final)
            return
        finally:
            temp.unlink(missing_ok=True)
    raise DataNotFoundError(missing(f"downloading failed ({'; '.join(failures)})"))


def _new_temp_file(final: Path, missing: Callable[[str], str]) -> Path:
    # In the target directory, so the final os.replace is an atomic rename on the same filesystem.
    try:
        handle, temp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    except OSError as error:
        raise DataNotFoundError(missing(f"the directory is not writable ({error})")) from error
    os.close(handle)
    return Path(temp)


def fetch_to_file(url: str, destination: Path, opener: Opener, label: str) -> None:
    with opener(url, DOWNLOAD_TIMEOUT_S) as response, destination.open("wb") as out:
        # urllib's response knows the Content-Length as ``length``; other streams need not.
        total = getattr(response, "length", None)
        # disable=None: a bar on a terminal, silence in logs and under pytest.
        with progress_bar(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=None) as bar:
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))


def _replace(temp: Path, final: Path) -> None:
    try:
        os.replace(temp, final)
    except OSError as error:
        raise DataError(f"{final}: cannot save the downloaded file ({error})") from error


# --- integrity ------------------------------------------------------------------------------


def verify_checksums(name: str, root: Path) -> None:
    """Check the dataset's four files under ``root`` against their published checksums; DataError if any fails.

    Slower than loading (it hashes every byte), so loading files found on disk does not call it.
    """
    source = _source(name, lacking="has no published checksums")
    root = Path(root)
    files = find_dataset_files(name, root)
    if files is None:
        raise DataNotFoundError(not_found_message(name, root, "there is nothing to verify"))
    for resource in source.resources:
        path = files[resource.filename]
        raw = _read_bytes(path)
        if resource.checksum.of_archive and raw[:2] != GZIP_MAGIC:
            raise DataError(
                f"{path}: cannot verify: the published {resource.checksum.algorithm} checksum is of the .gz "
                "archive, and this file is not gzipped"
            )
        if not checksum_matches(raw, resource.checksum):
            hint = " (it covers the .gz exactly as published; a re-compressed copy will not match)"
            raise DataError(
                f"{path}: {resource.checksum.algorithm} checksum does not match the published value "
                f"{resource.checksum.hexdigest}{hint if resource.checksum.of_archive else ''}; "
                f"the file is corrupt or not the {DISPLAY_NAMES[name]} file"
            )


def checksum_matches(raw: bytes, checksum: Checksum) -> bool:
    """Whether a file's stored bytes match ``checksum``."""
    if not checksum.of_archive and raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return False  # a corrupt archive matches no published digest
    return hashlib.new(checksum.algorithm, raw).hexdigest() == checksum.hexdigest


# --- names and messages ---------------------------------------------------------------------


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _source(name: str, lacking: str) -> Source:
    check_dataset_name(name)
    if name not in SOURCES:
        raise DataError(f"the {name!r} dataset is read from your own files and {lacking}")
    return SOURCES[name]


def not_found_message(name: str, root: Path, reason: str) -> str:
    """One paragraph: what was searched, why nothing was fetched, and what to put where."""
    searched = [str(directory) for directory in _candidate_dirs(name, root)]
    where = " or ".join(searched)
    missing = [filename for filename in STANDARD_FILES if _find_idx_file(root, filename) is None]
    wanted = ", ".join(STANDARD_FILES[:-1]) + f" and {STANDARD_FILES[-1]}"
    # Name the missing files only when some are there; otherwise the list below says it all.
    lacking = f", missing {', '.join(missing)}" if 0 < len(missing) < len(STANDARD_FILES) else ""
    return (
        f"{DISPLAY_NAMES[name]} data not found: searched {where}{lacking}; {reason}. "
        f"Put the four files {wanted} (each may be gzipped, with a .gz suffix) in {root}, "
        "or point --data-dir or the VAELAB_DATA environment variable at the directory that holds them."
    )
