"""The bi-modal, 10-class Mixture-of-Gaussians data set of Sec. IV (Fig. 3a, Table I).

Paper geometry (its units): modality a puts the class means on a two-dimensional grid with
isotropic noise sigma_a = .06; modality b projects the classes onto a unit circle with
sigma_b = .1. Complementary information: a merges the means of classes (5, 6, 7) and (0, 8), so a
alone separates at most 7 of 10 classes; b merges (0, 9), so b alone separates at most 9 of 10;
both together separate all 10. Naive-Bayes ceilings: a&b ~ .99+, a ~ .70, b ~ .90.

Mapping into [0, 1]: the models use a Bernoulli (BCE) likelihood, which needs targets in [0, 1]
(DESIGN.md: BCE on data clipped to [0, 1] reaches the Table I ceiling). A unit circle with
sigma_b = .1 cannot fit in the unit box at the paper's scale, so both modalities are generated in
the paper's units (grid {-1, 0, 1}^2, unit circle) and mapped by the same affine map
x -> 0.5 + SCALE * x. That keeps every ratio of mean distance to noise, hence the ceilings, and
leaves more than 4 noise standard deviations of margin to the box (clipping touches about one
sample in 10^4). The stored noise is SCALE * sigma: .021 for a, .035 for b.
"""

from __future__ import annotations

import numpy as np

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.data.pairs import LabelledPairs

NUM_CLASSES = 10
SIGMA_A = 0.06  # paper units (Sec. IV)
SIGMA_B = 0.1  # paper units, relative to the unit circle
SCALE = 0.35  # paper units -> [0, 1]: x -> 0.5 + SCALE * x
MERGED_A = ((5, 6, 7), (0, 8))  # classes sharing one mean in modality a
MERGED_B = ((0, 9),)  # classes sharing one mean in modality b

# Modality a: 7 distinct points of the grid {-1, 0, 1}^2 (paper units), one per group of classes.
_GRID = [(-1, -1), (0, -1), (1, -1), (-1, 0), (0, 0), (1, 0), (-1, 1)]
_A_POINT = {0: 0, 8: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 5, 7: 5, 9: 6}
# Modality b: 9 equally spaced angles on the unit circle; classes 0 and 9 share angle 0.
_B_STEP = {0: 0, 9: 0, **{c: c for c in range(1, 9)}}


def class_means() -> tuple[np.ndarray, np.ndarray]:
    """Per-class means of modality a and b in [0, 1] units, each of shape (10, 2)."""
    grid = np.array([_GRID[_A_POINT[c]] for c in range(NUM_CLASSES)], dtype=np.float64)
    angles = np.array([2.0 * np.pi * _B_STEP[c] / 9.0 for c in range(NUM_CLASSES)])
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return 0.5 + SCALE * grid, 0.5 + SCALE * circle


class MoGData(LabelledPairs):
    """N samples: modality a (N, 2), modality b (N, 2), both float32 in [0, 1]; labels int64 (N,)."""

    DIM = 2
    NAME = "MoG"


def make_mog(n_per_class: int, seed: int) -> MoGData:
    """`n_per_class` samples of each of the 10 classes, shuffled, deterministic from `seed`."""
    _check_seed(seed)
    return _sample(n_per_class, np.random.default_rng(seed))


def mog_splits(seed: int, n_train_per_class: int = 1000, n_test_per_class: int = 200) -> tuple[MoGData, MoGData]:
    """(train, test) drawn from independent streams spawned from `seed`.

    The defaults (10k train, 2k test) keep `m2vae reproduce mog` well within minutes on a CPU.
    """
    _check_seed(seed)
    train_seed, test_seed = np.random.SeedSequence(seed).spawn(2)
    return (
        _sample(n_train_per_class, np.random.default_rng(train_seed)),
        _sample(n_test_per_class, np.random.default_rng(test_seed)),
    )


def _sample(n_per_class: int, rng: np.random.Generator) -> MoGData:
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 1:
        raise ConfigError(f"MoG samples per class must be an integer >= 1, got {n_per_class!r}")
    labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), n_per_class))
    mean_a, mean_b = class_means()
    a = mean_a[labels] + SCALE * SIGMA_A * rng.standard_normal((labels.size, 2))
    b = mean_b[labels] + SCALE * SIGMA_B * rng.standard_normal((labels.size, 2))
    # Bernoulli likelihood targets must lie in [0, 1]; the margins make this a no-op almost always.
    return MoGData(
        a=np.clip(a, 0.0, 1.0).astype(np.float32),
        b=np.clip(b, 0.0, 1.0).astype(np.float32),
        labels=labels,
    )


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"MoG seed must be an integer >= 0, got {seed!r}")
