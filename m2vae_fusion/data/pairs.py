"""A split of a bi-modal data set: N pairs (a, b) with class labels, as every reproduction uses it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from m2vae_fusion.core.errors import DataError


@dataclass(frozen=True)
class LabelledPairs:
    """a (N, DIM) and b (N, DIM) float32; labels int64 (N,). Subclasses set DIM and NAME."""

    DIM: ClassVar[int]
    NAME: ClassVar[str]

    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        if self.labels.ndim != 1 or self.labels.dtype != np.int64:
            raise DataError(f"{self.NAME} labels: expected int64 of shape (N,), got {self.labels.dtype} {self.labels.shape}")
        for name, x in self.modalities.items():
            if x.shape != (n, self.DIM) or x.dtype != np.float32:
                raise DataError(
                    f"{self.NAME} modality {name}: expected float32 of shape ({n}, {self.DIM}), got {x.dtype} {x.shape}"
                )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def modalities(self) -> dict[str, np.ndarray]:
        return {"a": self.a, "b": self.b}

    def as_tensors(self) -> dict[str, Tensor]:
        """The model inputs {"a": (N, DIM), "b": (N, DIM)} as float32 tensors."""
        return {name: torch.from_numpy(x) for name, x in self.modalities.items()}

    def fingerprint(self) -> str:
        """sha256 over each array's dtype, shape and bytes, first 16 hex digits: the data-set hash
        checkpoints carry."""
        digest = hashlib.sha256()
        for x in (self.a, self.b, self.labels):
            digest.update(f"{x.dtype.str}{x.shape}".encode())
            digest.update(np.ascontiguousarray(x).tobytes())
        return digest.hexdigest()[:16]
