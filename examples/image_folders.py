"""Write two small image folders from images that ship with scikit-image and scikit-learn (no download),
for trying `vaelab study --dataset folder` (docs/images.md):

    python examples/image_folders.py faces runs/faces-data     # LFW subset: 100 faces, 100 non-faces, 25x25 grey
    python examples/image_folders.py crops runs/crops-data     # 32x32 RGB crops of two photos, one class each
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CROP_SIDE = 32
CROPS_PER_PHOTO = 1500


def write_faces(root: Path) -> int:
    from skimage.data import lfw_subset

    images = lfw_subset()  # (200, 25, 25) floats in [0, 1]: 100 faces, then 100 non-faces of the same size
    for i, image in enumerate(images):
        folder = root / ("face" if i < 100 else "not_face")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return len(images)


def write_crops(root: Path, seed: int = 0) -> int:
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    rng = np.random.default_rng(seed)
    for name, photo in zip(("china", "flower"), bunch.images, strict=True):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        height, width = photo.shape[:2]
        for i in range(CROPS_PER_PHOTO):
            top, left = rng.integers(0, height - CROP_SIDE), rng.integers(0, width - CROP_SIDE)
            crop = photo[top : top + CROP_SIDE, left : left + CROP_SIDE]
            Image.fromarray(crop).save(folder / f"{name}_{i:04d}.png")
    return 2 * CROPS_PER_PHOTO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("faces", "crops"))
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    count = (write_faces if args.which == "faces" else write_crops)(args.directory)
    print(f"wrote {count} images under {args.directory}")


if __name__ == "__main__":
    main()
