"""The classifier on z that the fusion node runs: a small MLP fitted (scikit-learn) on the embeddings of
every subset encoder, so one classifier reads a belief whatever was sensed (the coherence protocol of
Table I). It is stored as plain arrays in the model's manifest and evaluated with numpy, so the nodes
neither unpickle anything nor depend on scikit-learn's version."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m2vae_fusion.core.errors import CheckpointError


@dataclass(frozen=True)
class LatentClassifier:
    classes: np.ndarray  # (C,) class ids
    weights: tuple[np.ndarray, ...]  # per layer (fan_in, fan_out)
    biases: tuple[np.ndarray, ...]

    @classmethod
    def fit(cls, z: np.ndarray, labels: np.ndarray, seed: int = 0, hidden: tuple[int, ...] = (64,)) -> LatentClassifier:
        from sklearn.neural_network import MLPClassifier

        mlp = MLPClassifier(hidden_layer_sizes=hidden, max_iter=500, early_stopping=True, random_state=seed).fit(z, labels)
        if len(mlp.classes_) < 2:
            raise ValueError(f"the classifier needs at least two classes in the labels, got {mlp.classes_.tolist()}")
        return cls(
            np.asarray(mlp.classes_), tuple(np.asarray(w) for w in mlp.coefs_), tuple(np.asarray(b) for b in mlp.intercepts_)
        )

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        """p(class | z), (N, C) in the order of `classes`: ReLU hidden layers, softmax output (as fitted)."""
        h = np.atleast_2d(np.asarray(z, np.float64))
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0.0)
        logits = h @ self.weights[-1] + self.biases[-1]
        if logits.shape[1] == 1:  # two classes: scikit-learn's logistic output
            p = 1.0 / (1.0 + np.exp(-logits))
            return np.hstack([1.0 - p, p])
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict:
        return {
            "type": "mlp",
            "classes": self.classes.tolist(),
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in zip(self.weights, self.biases)],
        }

    @classmethod
    def from_dict(cls, data: dict) -> LatentClassifier:
        if data.get("type") != "mlp" or not data.get("layers"):
            raise CheckpointError(f"classifier of type {data.get('type')!r} is not supported (expected an mlp with layers)")
        layers = data["layers"]
        return cls(
            np.asarray(data["classes"]),
            tuple(np.asarray(layer["weight"]) for layer in layers),
            tuple(np.asarray(layer["bias"]) for layer in layers),
        )
