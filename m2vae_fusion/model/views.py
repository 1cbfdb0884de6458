"""How one sensor's view of an object is laid out as its beta-VAE's input, for training and the nodes alike."""

from __future__ import annotations

import numpy as np


def view_vector(modality: str, view: np.ndarray) -> np.ndarray:
    """One sensor's view as perception.observe returns it -> the flat float32 input of its beta-VAE,
    camera crops HWC -> CHW for the Conv2D."""
    view = np.asarray(view, np.float32)
    if modality == "camera":
        view = np.transpose(view, (2, 0, 1))
    return view.reshape(-1)
