"""The README and the docs quote what the code does: numbers that follow from the code, not from a run, are
computed here and compared with the text."""

import re
import sys

import pytest

from helpers import REPO

README = (REPO / "README.md").read_text()


def test_the_faces_split_the_readme_quotes_is_the_one_the_folder_reader_makes(tmp_path):
    pytest.importorskip("skimage.data")
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from image_folders import write_faces
    finally:
        sys.path.remove(str(REPO / "examples"))
    from vaelab.datasets import load_dataset

    write_faces(tmp_path / "faces")
    dataset = load_dataset("folder", tmp_path / "faces")
    quoted = re.search(r"(\d+) faces, (\d+) non-faces; (\d+) to train\s+on, (\d+) to test", README)
    faces, others, train, test = map(int, quoted.groups())
    assert (train, test) == (len(dataset.train), len(dataset.test))
    assert faces + others == train + test and dataset.class_names == ("face", "not_face")
    assert f"trained on {train} images of the LFW subset" in README
