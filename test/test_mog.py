"""The MoG data set of Sec. IV: class structure, noise, determinism and the naive-Bayes ceilings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.core.metrics import raw_accuracy
from m2vae_fusion.data.mog import (
    MERGED_A,
    MERGED_B,
    NUM_CLASSES,
    SCALE,
    SIGMA_A,
    SIGMA_B,
    class_means,
    make_mog,
    mog_splits,
)


def _merged_pairs(groups):
    return {frozenset(p) for group in groups for p in itertools.combinations(group, 2)}


def test_merged_means_are_identical_and_all_others_differ():
    mean_a, mean_b = class_means()
    merged_a, merged_b = _merged_pairs(MERGED_A), _merged_pairs(MERGED_B)
    assert merged_a == {frozenset(p) for p in [(5, 6), (5, 7), (6, 7), (0, 8)]}
    assert merged_b == {frozenset((0, 9))}
    for i, j in itertools.combinations(range(NUM_CLASSES), 2):
        pair = frozenset((i, j))
        dist_a = np.linalg.norm(mean_a[i] - mean_a[j])
        dist_b = np.linalg.norm(mean_b[i] - mean_b[j])
        if pair in merged_a:
            assert dist_a == 0.0
        else:
            assert dist_a > 10 * SCALE * SIGMA_A, (i, j)
        if pair in merged_b:
            assert dist_b == 0.0
        else:
            assert dist_b > 6 * SCALE * SIGMA_B, (i, j)
        # Both modalities together tell every pair of classes apart.
        assert dist_a > 0 or dist_b > 0
    assert len({tuple(m) for m in mean_a}) == 7
    assert len({tuple(m) for m in mean_b}) == 9
    # Modality b lies on a circle around the centre of the unit box.
    radii = np.linalg.norm(mean_b - 0.5, axis=1)
    np.testing.assert_allclose(radii, SCALE)


def test_samples_lie_in_the_unit_box_with_the_papers_noise():
    data = make_mog(2000, seed=1)
    assert data.a.dtype == np.float32 and data.b.dtype == np.float32 and data.labels.dtype == np.int64
    assert data.a.shape == (20000, 2) and data.b.shape == (20000, 2) and len(data) == 20000
    assert np.bincount(data.labels).tolist() == [2000] * NUM_CLASSES
    for x in (data.a, data.b):
        assert x.min() >= 0.0 and x.max() <= 1.0
        # The margins make clipping (values exactly on the border) practically never happen.
        assert np.mean((x == 0.0) | (x == 1.0)) < 1e-3
    mean_a, mean_b = class_means()
    for x, means, sigma in ((data.a, mean_a, SIGMA_A), (data.b, mean_b, SIGMA_B)):
        residual = x - means[data.labels]
        for c in range(NUM_CLASSES):
            std = residual[data.labels == c].std(axis=0)
            np.testing.assert_allclose(std, SCALE * sigma, rtol=0.06)
            standard_error = SCALE * sigma / np.sqrt(2000)
            np.testing.assert_allclose(residual[data.labels == c].mean(axis=0), 0.0, atol=4 * standard_error)


def test_determinism_and_seeds():
    first, again, other = make_mog(20, seed=7), make_mog(20, seed=7), make_mog(20, seed=8)
    for name in ("a", "b", "labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert first.fingerprint() == again.fingerprint()
    assert len(first.fingerprint()) == 16 and int(first.fingerprint(), 16) >= 0
    assert first.fingerprint() != other.fingerprint()
    assert not np.array_equal(first.a, other.a)
    # Samples are shuffled, not sorted by class.
    assert not np.all(np.diff(first.labels) >= 0)


def test_splits_are_deterministic_and_independent():
    train, test = mog_splits(3)
    assert len(train) == 10_000 and len(test) == 2_000
    train2, test2 = mog_splits(3, n_train_per_class=1000, n_test_per_class=200)
    assert train.fingerprint() == train2.fingerprint() and test.fingerprint() == test2.fingerprint()
    small_train, small_test = mog_splits(3, n_train_per_class=5, n_test_per_class=5)
    assert small_train.fingerprint() != small_test.fingerprint()
    assert mog_splits(4, 5, 5)[0].fingerprint() != small_train.fingerprint()


def test_as_tensors():
    data = make_mog(3, seed=0)
    tensors = data.as_tensors()
    assert set(tensors) == {"a", "b"}
    assert tensors["a"].dtype == torch.float32 and tensors["b"].shape == (30, 2)
    np.testing.assert_array_equal(tensors["b"].numpy(), data.b)


@pytest.mark.parametrize("n, seed", [(0, 0), (-1, 0), (2.5, 0), (3, -1), (3, 1.5)])
def test_bad_arguments_raise_config_error(n, seed):
    with pytest.raises(ConfigError, match="MoG"):
        make_mog(n, seed)


def test_naive_bayes_ceilings_on_raw_data():
    """Table I, raw column: .99 / .71 / .90 for a&b / a / b (Bayes ceilings 1, .7, .9)."""
    train, test = mog_splits(0, n_train_per_class=300, n_test_per_class=300)
    rates = raw_accuracy(train.as_tensors(), train.labels, test.as_tensors(), test.labels, ["a", "b"])
    assert set(rates) == {"a", "b", "a+b"}
    assert rates["a+b"] >= 0.97
    assert 0.65 <= rates["a"] <= 0.75
    assert 0.85 <= rates["b"] <= 0.95
