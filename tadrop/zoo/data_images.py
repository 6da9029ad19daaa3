"""Image data shipped in packages: Fashion-MNIST (Debian), Animal-MNIST (pip), sklearn digits.

Every reader returns uint8 grayscale images of shape (N, H, W); resizing to the backbone's
input size happens in `tadrop.zoo.backbone_image`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from tadrop.zoo.datasets import LabelledData
from tadrop.zoo.errors import MissingSourceError, ZooError
from tadrop.zoo.safe_pickle import load_numpy_pickle
from tadrop.zoo.sources import ANIMAL_MNIST, FASHION_MNIST, FASHION_MNIST_DIR

FASHION_LABELS = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
# Alphabetical, as listed in the package description (checked against the silhouettes).
ANIMAL_LABELS = (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
)  # fmt: skip
DIGIT_LABELS = tuple(str(digit) for digit in range(10))

_IDX_MAGIC = {2049: 1, 2051: 3}  # idx1 (labels) and idx3 (images) files, big-endian uint8 data


def read_idx(path: Path) -> np.ndarray:
    """An array from a gzipped IDX file (the MNIST format)."""
    raw = gzip.decompress(path.read_bytes())
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_MAGIC:
        raise ZooError(f"{path}: not an IDX file (magic number {magic}); reinstall the package.")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(_IDX_MAGIC[magic])]
    offset = 4 + 4 * len(dims)
    data = np.frombuffer(raw, dtype=np.uint8, offset=offset)
    if data.size != int(np.prod(dims)):
        raise ZooError(f"{path}: truncated ({data.size} values, expected {dims}); reinstall it.")
    return data.reshape(dims)


def read_fashion_mnist() -> LabelledData:
    """All 70,000 Fashion-MNIST images (the official train and test files together)."""
    images, labels = [], []
    for part in ("train", "t10k"):
        images.append(
            read_idx(FASHION_MNIST.file(FASHION_MNIST_DIR / f"{part}-images-idx3-ubyte.gz"))
        )
        labels.append(
            read_idx(FASHION_MNIST.file(FASHION_MNIST_DIR / f"{part}-labels-idx1-ubyte.gz"))
        )
    return LabelledData(
        np.concatenate(images), np.concatenate(labels).astype(np.int64), FASHION_LABELS
    )


def read_animal_mnist() -> LabelledData:
    """10,000 animal silhouettes, read with the numpy-only unpickler (never imports the package)."""
    folder = "data/Animal_MNIST"
    images = load_numpy_pickle(ANIMAL_MNIST.file(f"{folder}/animal_data_version_3.gz"))
    labels = load_numpy_pickle(ANIMAL_MNIST.file(f"{folder}/animal_label_version_3.gz"))
    if images.ndim != 3 or labels.shape != (len(images),):
        raise ZooError(
            f"animal-mnist: unexpected array shapes {images.shape} and {labels.shape}; "
            f"reinstall with: {ANIMAL_MNIST.install}"
        )
    return LabelledData(images.astype(np.uint8), labels.astype(np.int64), ANIMAL_LABELS)


def read_digits() -> LabelledData:
    """scikit-learn's 1,797 8x8 handwritten digits (16 grey levels), scaled to 0..255."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingSourceError(
            "Python package scikit-learn", "pip install scikit-learn"
        ) from None
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return LabelledData(images, digits.target.astype(np.int64), DIGIT_LABELS)
