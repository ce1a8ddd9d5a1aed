"""Every data set by name, loaded into one ``Dataset``: the IDX files of MNIST, Fashion-MNIST and custom sets
(``data``), image folders and CIFAR-10 (``images``). The one place that knows which reader reads what, so
that ``data`` and ``images`` need not know each other (images builds on data's types and download utility).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import (
    DISPLAY_NAMES,
    IDX_DATASETS,
    SOURCES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    Dataset,
    check_dataset_name,
    download_dataset,
    find_dataset_files,
    load_split,
    not_found_message,
    resolve_data_dir,
)
from .errors import DataNotFoundError
from .images import LoadOptions, load_image_dataset


def load_dataset(
    name: str = "mnist", data_dir: str | os.PathLike[str] | None = None, download: bool = True,
    channels: int | None = None, image_size: int | None = None, progress: bool | None = None,
) -> Dataset:
    """Load both splits into memory, downloading the files first when missing (mnist / fashion-mnist /
    cifar10). ``channels`` and ``image_size`` convert a ``folder`` dataset's images (None: decided from
    the files); ``progress`` shows its decoding bar (None: only on a terminal)."""
    check_dataset_name(name)
    if name not in IDX_DATASETS:
        return load_image_dataset(name, data_dir, LoadOptions(channels, image_size), download, progress)
    root = resolve_data_dir(data_dir, name)
    files = find_dataset_files(name, root)
    if files is None:
        if name not in SOURCES:
            raise DataNotFoundError(not_found_message(name, root, "the 'idx' dataset is never downloaded"))
        if not download:
            raise DataNotFoundError(not_found_message(name, root, "downloading is turned off"))
        download_dataset(name, root)
        files = find_dataset_files(name, root)
        if files is None:  # only if something removed the files right after they were saved
            raise DataNotFoundError(not_found_message(name, root, "the downloaded files disappeared"))
    return Dataset(
        name=name,
        root=files[TRAIN_IMAGES].parent,
        train=load_split(files[TRAIN_IMAGES], files[TRAIN_LABELS], name),
        test=load_split(files[TEST_IMAGES], files[TEST_LABELS], name),
    )


def load_first_found(name: str, directories: Sequence[str | os.PathLike[str] | None], **options: Any) -> Dataset:
    """The dataset from the first of ``directories`` that holds it (None and empty entries are skipped;
    nothing is downloaded; ``options`` go to ``load_dataset``). The error lists every directory tried."""
    tried: list[Path] = []
    for directory in directories:
        if directory is None or os.fspath(directory) == "":
            continue
        root = Path(directory).expanduser().absolute()
        if root in tried:
            continue
        tried.append(root)
        try:
            return load_dataset(name, root, download=False, **options)
        except DataNotFoundError:
            continue
    where = "; ".join(str(d) for d in tried) or "no directory"
    raise DataNotFoundError(
        f"{DISPLAY_NAMES[name]} data not found: tried {where}. Point --data-dir or the VAELAB_DATA environment "
        "variable at the directory that holds it."
    )
