"""Gaussian naive Bayes in numpy: the classifier of the coherence test (Sec. V-A, Table I).

Each class c has a prior pi_c (its share of the training set) and, per feature j, a Gaussian
N(theta_cj, var_cj) fitted by maximum likelihood; the features are assumed independent given c:

    log p(c | x) = log pi_c + sum_j log N(x_j; theta_cj, var_cj) - log sum_c' exp(...)

Like scikit-learn's GaussianNB, every variance gets epsilon = var_smoothing * max_j Var(x_j)
added, so a feature that is constant within a class (a collapsed embedding) stays finite.
"""

from __future__ import annotations

import numpy as np

from m2vae_fusion.core.errors import DataError


class GaussianNaiveBayes:
    """Gaussian naive Bayes: `fit(X, y)`, then `predict_proba`, `predict`, `score`."""

    def __init__(self, var_smoothing: float = 1e-9) -> None:
        if var_smoothing < 0:
            raise DataError(f"var_smoothing must be >= 0, got {var_smoothing}")
        self.var_smoothing = var_smoothing
        self.classes_: np.ndarray | None = None
        self.theta_: np.ndarray | None = None  # (classes, features) means
        self.var_: np.ndarray | None = None  # (classes, features) smoothed variances
        self.log_prior_: np.ndarray | None = None  # (classes,)

    def fit(self, X: np.ndarray, y: np.ndarray) -> GaussianNaiveBayes:
        """Maximum-likelihood means, variances (ddof=0) and class priors."""
        X = _features(X, "X")
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise DataError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
        if X.shape[0] == 0:
            raise DataError("cannot fit naive Bayes on zero samples")
        self.classes_, index, counts = np.unique(y, return_inverse=True, return_counts=True)
        n_classes, n_features = len(self.classes_), X.shape[1]
        sums = np.zeros((n_classes, n_features))
        np.add.at(sums, index, X)
        self.theta_ = sums / counts[:, None]
        squares = np.zeros((n_classes, n_features))
        np.add.at(squares, index, (X - self.theta_[index]) ** 2)
        epsilon = self.var_smoothing * float(np.var(X, axis=0).max())
        self.var_ = squares / counts[:, None] + epsilon
        if not np.all(self.var_ > 0):
            # Smoothing cannot help when every feature is constant over the whole training set.
            raise DataError("zero variance in some feature and class: X is constant or var_smoothing is 0")
        self.log_prior_ = np.log(counts / X.shape[0])
        return self

    def joint_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """log pi_c + log p(x | c) for every sample and class, shape (samples, classes)."""
        if self.theta_ is None:
            raise DataError("naive Bayes classifier used before fit()")
        X = _features(X, "X")
        if X.shape[1] != self.theta_.shape[1]:
            raise DataError(f"X has {X.shape[1]} features, the classifier was fitted on {self.theta_.shape[1]}")
        log_norm = -0.5 * np.log(2.0 * np.pi * self.var_).sum(axis=1)  # (classes,)
        mahalanobis = (((X[:, None, :] - self.theta_[None]) ** 2) / self.var_[None]).sum(axis=2)
        return self.log_prior_[None] + log_norm[None] - 0.5 * mahalanobis

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        """log p(c | x), normalised with log-sum-exp so that far-away samples do not underflow."""
        joint = self.joint_log_likelihood(X)
        peak = joint.max(axis=1, keepdims=True)
        return joint - (peak + np.log(np.exp(joint - peak).sum(axis=1, keepdims=True)))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """p(c | x), shape (samples, classes), columns ordered like `classes_`."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The maximum a-posteriori class label of each sample."""
        return self.classes_[np.argmax(self.joint_log_likelihood(X), axis=1)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Classification rate: the fraction of samples whose predicted label equals `y` (Table I)."""
        y = np.asarray(y)
        predicted = self.predict(X)
        if y.shape != predicted.shape:
            raise DataError(f"y must have shape {predicted.shape} to match X, got {y.shape}")
        return float(np.mean(predicted == y))


def _features(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"{name} must have shape (samples, features), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{name} contains NaN or infinite values")
    return X
