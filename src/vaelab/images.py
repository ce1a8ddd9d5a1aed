"""Image sets beyond IDX files: a folder of images (torchvision's ImageFolder layouts) and CIFAR-10.

Both load into the same ``Dataset`` as MNIST: one uint8 tensor per split, (N, H, W) for grey
images and (N, 3, H, W) for colour, and int64 labels (-1 everywhere when a folder has no class
subfolders). A folder is decoded once, in parallel threads (Pillow releases the GIL while it
decodes and resizes), and cached on disk under a key made of its file list, sizes, modification
times and the load options, so loading it again reads two arrays instead of decoding every file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from . import data, resources
from .config import MIN_IMAGE_SIDE
from .data import Checksum, Dataset, ImageSplit
from .errors import DataError, DataNotFoundError
from .progress import progress_bar

IMAGE_DATASETS = ("folder", "cifar10")
TEST_FRACTION = 0.2  # of a folder without a train/test split, held out for test by path hash
NAMED_BAD_FILES = 5  # the warning about unreadable files names this many of them
CACHE_FORMAT = 1  # bump when the decoding changes, so old caches are never read
UNLABELLED = -1
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# Pillow refuses images larger than this many pixels (decompression bombs); vaelab never needs more.
Image.MAX_IMAGE_PIXELS = 64_000_000
# vaelab checks the limit itself, from the header, and names the files it skips: Pillow's own warning between
# one and two times the limit would only repeat that, as a raw warning with a source line.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
UNREADABLE = "unreadable"
TOO_LARGE = "over 64 megapixels, the decompression-bomb limit"

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_MD5 = Checksum("md5", "c58f30108f718f92721af3b95e74349a", of_archive=True)  # published with the archive
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class LoadOptions:
    """How a folder's images are converted: None means "decide from the files"."""

    channels: int | None = None  # 1 (grey) or 3 (RGB)
    image_size: int | None = None  # resize the shorter side to this, then centre-crop to a square


@dataclass(frozen=True)
class FileEntry:
    path: Path
    relative: str  # POSIX path under the data directory: what the split hash and the cache key see
    label: int
    test: bool


# --- entry point ----------------------------------------------------------------------------


def load_image_dataset(name: str, data_dir: str | os.PathLike[str] | None, options: LoadOptions = LoadOptions(),
                       download: bool = True, progress: bool | None = None) -> Dataset:
    """Load ``folder`` (``data_dir`` required) or ``cifar10`` (downloaded into ``data_dir`` when missing)."""
    if name == "cifar10":
        return load_cifar10(data.resolve_data_dir(data_dir, name), download)
    if name != "folder":
        raise DataError(f"unknown image dataset {name!r}; choose one of {', '.join(IMAGE_DATASETS)}")
    if data_dir is None or os.fspath(data_dir) == "":
        raise DataError("--dataset folder needs --data-dir: the directory that holds your images "
                        "(DIR/train/<class>/..., DIR/<class>/... or images directly in DIR).")
    return load_folder(Path(data_dir).expanduser().absolute(), options, progress)


def load_folder(root: Path, options: LoadOptions = LoadOptions(), progress: bool | None = None) -> Dataset:
    """Decode (or read from the cache) every image under ``root``; see the module docstring."""
    if not root.is_dir():
        raise DataNotFoundError(f"{root}: no such directory; --data-dir must name a folder of images.")
    entries, classes = list_folder(root)
    if not entries:
        raise DataError(f"{root}: no image files found (looked for {', '.join(_example_extensions())} ...); "
                        "put images in DIR/<class>/, DIR/train|test/<class>/ or directly in DIR.")
    cache = cache_path(root, entries, options)
    cached = read_cache(cache)
    if cached is None:
        cached = decode_folder(entries, options, progress)
        write_cache(cache, cached)
    images, labels, is_test, bad = cached
    _warn_about_bad_files(root, bad)
    return _assemble(root, images, labels, is_test, classes)


def _assemble(root: Path, images: np.ndarray, labels: np.ndarray, is_test: np.ndarray,
              classes: tuple[str, ...]) -> Dataset:
    if not is_test.any():
        raise DataError(f"{root}: the test split would be empty; add images to DIR/test/ or add more images "
                        f"(about {TEST_FRACTION:.0%} of a folder without a split go to test).")
    if is_test.all():
        raise DataError(f"{root}: the training split would be empty; add images to DIR/train/.")
    if images.shape[1] == 1:
        images = images[:, 0]  # grey images are (N, H, W), as MNIST's
    split = {flag: ImageSplit(torch.from_numpy(np.ascontiguousarray(images[is_test == flag])),
                              torch.from_numpy(labels[is_test == flag].astype(np.int64)))
             for flag in (False, True)}
    return Dataset(name="folder", root=root, train=split[False], test=split[True],
                   class_names=classes or None, labelled=bool(classes))


# --- layouts --------------------------------------------------------------------------------


def list_folder(root: Path) -> tuple[list[FileEntry], tuple[str, ...]]:
    """Every image file under ``root`` with its label and split, and the class names (empty: unlabelled).

    ``root/train`` + ``root/test``: the split is given. Else subfolders are classes, or, with none, the
    files in ``root`` are one unlabelled set; the test split is then chosen by a hash of each path.
    """
    train, test = root / "train", root / "test"
    if train.is_dir() and test.is_dir():
        train_classes, test_classes = _class_dirs(train), _class_dirs(test)
        if [d.name for d in train_classes] != [d.name for d in test_classes]:
            raise DataError(_class_mismatch_message(root, train_classes, test_classes))
        classes = tuple(d.name for d in train_classes)
        for directory in (train, test) if classes else ():
            _warn_about_loose_files(root, directory)
        entries = _entries(root, train, train_classes, test=False) + _entries(root, test, test_classes, test=True)
        return entries, classes
    class_dirs = _class_dirs(root)
    classes = tuple(d.name for d in class_dirs)
    if class_dirs:
        _warn_about_loose_files(root, root)
    return _entries(root, root, class_dirs, test=None), classes


def _warn_about_loose_files(root: Path, directory: Path) -> None:
    """Images beside class folders belong to no class: say that they are left out rather than drop them silently."""
    loose = sorted(p.name for p in directory.iterdir() if _is_image_file(p))
    if loose:
        named = ", ".join(loose[:NAMED_BAD_FILES]) + (" ..." if len(loose) > NAMED_BAD_FILES else "")
        warnings.warn(f"{root}: {len(loose)} image file(s) directly in {directory.name or directory}/ are not used, "
                      f"because its images are sorted into class folders: {named}. Move them into a class folder "
                      "to use them.", UserWarning, stacklevel=4)


def _class_dirs(directory: Path) -> list[Path]:
    """Subfolders that hold at least one image file, sorted by name (their index is the label)."""
    found = [d for d in directory.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return sorted((d for d in found if any(_is_image_file(p) for p in d.rglob("*"))), key=lambda d: d.name)


def _entries(root: Path, directory: Path, class_dirs: list[Path], test: bool | None) -> list[FileEntry]:
    """Files of each class folder (or of ``directory`` itself when there are none); ``test`` None: by hash."""
    groups = [(label, d, d.rglob("*")) for label, d in enumerate(class_dirs)] or [(UNLABELLED, directory,
                                                                                   directory.iterdir())]
    entries = []
    for label, _, paths in groups:
        for path in sorted(p for p in paths if _is_image_file(p)):
            relative = path.relative_to(root).as_posix()
            entries.append(FileEntry(path, relative, label, held_out(relative) if test is None else test))
    return entries


def held_out(relative: str) -> bool:
    """Whether a file goes to the test split: decided by its path alone, so adding files moves none."""
    digest = hashlib.sha256(relative.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < TEST_FRACTION * 2**64


def _is_image_file(path: Path) -> bool:
    return (path.suffix.lower() in Image.registered_extensions() and not path.name.startswith(".")
            and path.is_file())


def _example_extensions() -> list[str]:
    return [".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif"]


def _class_mismatch_message(root: Path, train: list[Path], test: list[Path]) -> str:
    train_names, test_names = {d.name for d in train}, {d.name for d in test}
    only_train = sorted(train_names - test_names)
    only_test = sorted(test_names - train_names)
    return (f"{root}: train/ and test/ hold different classes (only in train: {', '.join(only_train) or 'none'}; "
            f"only in test: {', '.join(only_test) or 'none'}); give both splits the same class folders.")


# --- decoding -------------------------------------------------------------------------------


Decoded = tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]  # images, labels, is_test, bad files


def decode_folder(entries: list[FileEntry], options: LoadOptions, progress: bool | None = None) -> Decoded:
    """Decode every file into one uint8 (N, C, S, S) array; unreadable files are left out and listed."""
    channels, size = resolve_options(entries, options, progress)
    check_decoded_size(len(entries), channels, size)
    workers = min(32, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda entry: decode_image(entry.path, channels, size), entries, chunksize=64)
        decoded = list(progress_bar(results, total=len(entries), desc="decoding images", unit="img",
                                    disable=None if progress is None else not progress))
    good = [i for i, array in enumerate(decoded) if isinstance(array, np.ndarray)]
    skipped = [(entries[i].relative, array) for i, array in enumerate(decoded) if not isinstance(array, np.ndarray)]
    if all(reason == UNREADABLE for _, reason in skipped):
        bad = [name for name, _ in skipped]
    else:  # say why each was left out
        bad = [f"{name} ({reason})" for name, reason in skipped]
    if not good:
        raise DataError(f"none of the {len(entries)} image files could be read "
                        f"(for example {', '.join(bad[:NAMED_BAD_FILES])}); are they images?")
    images = np.empty((len(good), channels, size, size), dtype=np.uint8)
    for row, i in enumerate(good):
        images[row] = decoded[i]
    labels = np.array([entries[i].label for i in good], dtype=np.int64)
    is_test = np.array([entries[i].test for i in good], dtype=bool)
    return images, labels, is_test, bad


def check_decoded_size(count: int, channels: int, size: int) -> None:
    """Refuse, before decoding, a folder that could not be held: its images as bytes, then as floats to train on."""
    need = count * channels * size * size * (1 + 4)
    free = resources.available_bytes(torch.device("cpu"))
    if free is not None and need > free:
        raise DataError(f"{count} images of {channels}x{size}x{size} need about {need / 2**30:,.1f} GiB (as bytes, "
                        f"then as floats to train on), but the machine has {free / 2**30:,.1f} GiB free; choose a "
                        "smaller --image-size.")


def resolve_options(entries: list[FileEntry], options: LoadOptions, progress: bool | None) -> tuple[int, int]:
    """The channel count and square size: as given, else what most files are (read from headers only)."""
    if options.channels is not None and options.image_size is not None:
        return options.channels, options.image_size
    with ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 2)) as pool:
        read = pool.map(_header, [e.path for e in entries], chunksize=256)
        headers = [h for h in progress_bar(read, total=len(entries), desc="reading image headers", unit="img",
                                           disable=None if progress is None else not progress) if h is not None]
    if not headers:
        raise DataError(f"none of the {len(entries)} image files could be read "
                        f"(for example {', '.join(e.relative for e in entries[:NAMED_BAD_FILES])}); are they images?")
    channels = options.channels or _most_common_channels(headers)
    size = options.image_size or _common_square_size(headers)
    return channels, size


def _header(path: Path) -> tuple[str, tuple[int, int]] | None:
    try:
        with Image.open(path) as image:  # reads the header, not the pixels
            return image.mode, image.size
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return None


def _most_common_channels(headers: list[tuple[str, tuple[int, int]]]) -> int:
    grey = sum(mode in GREY_MODES for mode, _ in headers)
    return 1 if grey > len(headers) / 2 else 3


def _common_square_size(headers: list[tuple[str, tuple[int, int]]]) -> int:
    sizes = Counter(size for _, size in headers)
    if any(w != h for w, h in sizes):
        examples = ", ".join(f"{w}x{h}" for (w, h), _ in sizes.most_common(3))
        raise DataError(f"the images are not all square (sizes include {examples}); pass --image-size N to resize "
                        "each image's shorter side to N and centre-crop it to NxN.")
    (side, _), count = sizes.most_common(1)[0]
    if side < MIN_IMAGE_SIDE:
        raise DataError(f"the images are {side}x{side}, smaller than the {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} the models "
                        "need; pass --image-size with a larger size to upscale them.")
    return side


def decode_image(path: Path, channels: int, size: int) -> np.ndarray | str:
    """One file as uint8 (channels, size, size), or why it was skipped: unreadable, or larger than the
    decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``), which is checked from the header before decoding."""
    try:
        with Image.open(path) as image:
            if Image.MAX_IMAGE_PIXELS and image.width * image.height > Image.MAX_IMAGE_PIXELS:
                return TOO_LARGE
            image.load()
            return fit_image(image, channels, (size, size))
    except Image.DecompressionBombError:  # Pillow's own refusal, at twice the limit, when the file is opened
        return TOO_LARGE
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return UNREADABLE


def fit_image(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """A loaded image as uint8 (channels, height, width) of ``size`` = (width, height)."""
    converted = to_mode(image, "L" if channels == 1 else "RGB")
    if converted.size != size:
        # ImageOps.fit crops to the target's aspect around the centre, then resizes: the same as
        # resizing the shorter side and centre-cropping.
        converted = ImageOps.fit(converted, size, method=Image.Resampling.BICUBIC)
    array = np.asarray(converted, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image`` as 8-bit ``L`` or ``RGB``: transparency flattened onto white, 16-bit and float scaled."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _to_8_bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert(mode)


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit (or float) grey to 8-bit L by its type's range, not by the image's own extremes."""
    values = np.asarray(image).astype(np.float64)
    scale = 1.0 if image.mode == "F" else (257.0 if values.max(initial=0) <= 65535 else 16843009.0)
    if image.mode == "F":
        values = values * (255.0 if values.max(initial=0) <= 1.0 else 1.0)
    return Image.fromarray(np.clip(np.rint(values / scale), 0, 255).astype(np.uint8), mode="L")


def _warn_about_bad_files(root: Path, bad: list[str]) -> None:
    if bad:
        named = ", ".join(bad[:NAMED_BAD_FILES]) + (" ..." if len(bad) > NAMED_BAD_FILES else "")
        reasons_given = any(name.endswith(f" ({TOO_LARGE})") for name in bad)
        what = "image file(s) that could not be used" if reasons_given else "unreadable or corrupt image file(s)"
        warnings.warn(f"{root}: skipped {len(bad)} {what}: {named}", UserWarning, stacklevel=3)


# --- cache ----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$VAELAB_IMAGE_CACHE`` if set, else ``$XDG_CACHE_HOME/vaelab/images`` (``~/.cache/...``)."""
    explicit = os.environ.get("VAELAB_IMAGE_CACHE", "")
    return Path(explicit) if explicit else data.user_cache_dir() / "images"


def cache_path(root: Path, entries: list[FileEntry], options: LoadOptions) -> Path:
    """Where this exact folder state and these options are cached: any file added, removed, resized or
    touched, or another option, gives another key."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, str(root), options.channels, options.image_size,
                                        TEST_FRACTION]).encode())
    for entry in entries:
        stat = entry.path.stat()
        digest.update(f"{entry.relative}\0{entry.label}\0{int(entry.test)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode("utf-8", "surrogateescape"))
    return cache_dir() / digest.hexdigest()[:32]


def read_cache(path: Path) -> Decoded | None:
    try:
        arrays = [np.load(path / f"{name}.npy") for name in ("images", "labels", "is_test")]
        bad = json.loads((path / "bad.json").read_text())
    except (OSError, ValueError):
        return None  # absent or damaged: decode again
    return arrays[0], arrays[1], arrays[2], bad


def write_cache(path: Path, decoded: Decoded) -> None:
    """Written into a temporary folder renamed into place, so a reader never sees half a cache.
    A cache that cannot be written only costs the next load its speed."""
    images, labels, is_test, bad = decoded
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        for name, array in (("images", images), ("labels", labels), ("is_test", is_test)):
            np.save(temp / f"{name}.npy", array)
        (temp / "bad.json").write_text(json.dumps(bad))
        os.replace(temp, path)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True) if "temp" in locals() else None
        warnings.warn(f"could not cache the decoded images in {path.parent} ({exc}); the next load decodes "
                      "them again.", UserWarning, stacklevel=2)


# --- CIFAR-10 -------------------------------------------------------------------------------


def load_cifar10(root: Path, download: bool = True, opener: data.Opener | None = None) -> Dataset:
    """CIFAR-10 from ``root``: the extracted ``cifar-10-batches-py`` (or its batches directly in ``root``),
    else the archive, downloaded and checked against its published MD5 first when missing."""
    batches = _cifar_batch_dir(root)
    if batches is not None:
        read = lambda name: _read_batch_file(batches / name)  # noqa: E731
    else:
        archive = root / CIFAR_ARCHIVE
        if not archive.is_file():
            if not download:
                raise DataNotFoundError(_cifar_missing_message(root, "downloading is turned off"))
            download_cifar10(root, opener)
        members = _read_archive(archive)
        read = lambda name: _unpickle(members[name], f"{archive}:{name}")  # noqa: E731
    train = _cifar_split([read(name) for name in CIFAR_TRAIN_BATCHES])
    test = _cifar_split([read(CIFAR_TEST_BATCH)])
    return Dataset(name="cifar10", root=root, train=train, test=test, class_names=CIFAR_CLASSES)


def _cifar_batch_dir(root: Path) -> Path | None:
    for candidate in (root / CIFAR_DIR, root):
        if all((candidate / name).is_file() for name in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)):
            return candidate
    return None


def _read_archive(archive: Path) -> dict[str, bytes]:
    wanted = {*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile() and Path(m.name).name in wanted}
            missing = wanted - set(members)
            if missing:
                raise DataError(f"{archive}: not the CIFAR-10 python archive (it lacks {', '.join(sorted(missing))}).")
            return {name: tar.extractfile(member).read() for name, member in members.items()}  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive}: cannot read the archive ({exc}); delete it to download it again.") from None


def _read_batch_file(path: Path) -> dict:
    try:
        return _unpickle(path.read_bytes(), str(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles; only the NumPy array types they hold may be rebuilt, so a crafted
    file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
               ("builtins", "object"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(raw: bytes, where: str) -> dict:
    import io

    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{where}: not a CIFAR-10 python batch ({exc}).") from None
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels.")
    return {"images": images, "labels": labels}


def _cifar_split(batches: list[dict]) -> ImageSplit:
    images = np.concatenate([b["images"] for b in batches])
    labels = np.concatenate([b["labels"] for b in batches])
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels))


def download_cifar10(root: Path, opener: data.Opener | None = None) -> None:
    """Fetch the archive into ``root``; it gets its name only once its MD5 matches the published one."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataNotFoundError(_cifar_missing_message(root, f"the directory is not writable ({exc})")) from None
    data.download_verified([CIFAR_URL], root / CIFAR_ARCHIVE, CIFAR_MD5,
                           lambda reason: _cifar_missing_message(root, reason), opener)


def _cifar_missing_message(root: Path, reason: str) -> str:
    return (f"CIFAR-10 data not found in {root} (neither {CIFAR_ARCHIVE} nor its extracted {CIFAR_DIR}/); "
            f"{reason}. Put the archive from {CIFAR_URL} there, or point --data-dir at the directory that holds it.")
