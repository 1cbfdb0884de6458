"""sensor_msgs/Image fields -> RGB array: the fallback for machines without cv_bridge."""

from __future__ import annotations

import numpy as np

from m2vae_fusion.core.errors import M2VAEError

# encoding -> (bytes per pixel, channel order to take for R, G, B)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
    "32FC1": (4, (0, 0, 0)),
}


class ImageFormatError(M2VAEError, ValueError):
    """An image's fields are inconsistent or its encoding is not supported; names the field."""


def to_rgb(encoding: str, width: int, height: int, step: int, data: bytes, is_bigendian: bool = False) -> np.ndarray:
    """H x W x 3 uint8 from the fields of a sensor_msgs/Image.

    Grey encodings are replicated into three channels; 32FC1 (a float image, e.g. depth) is
    clipped to [0, 1] and scaled to 255 (NaN -> 0). Row padding (step > width * bytes per pixel)
    is skipped.
    """
    if encoding not in ENCODINGS:
        raise ImageFormatError(f"encoding {encoding!r} is not supported; supported: {', '.join(ENCODINGS)}")
    if width <= 0 or height <= 0:
        raise ImageFormatError(f"width and height must be > 0, got width={width} height={height}")
    size, channels = ENCODINGS[encoding]
    row = width * size
    if step < row:
        raise ImageFormatError(f"step {step} is less than a row of {width} {encoding} pixels ({row} bytes)")
    try:
        buffer = memoryview(data).cast("B")
    except TypeError:
        raise ImageFormatError(f"data must be bytes-like, got {type(data).__name__}") from None
    if buffer.nbytes != step * height:
        raise ImageFormatError(f"data has {buffer.nbytes} bytes, expected step * height = {step} * {height} = {step * height}")
    rows = np.frombuffer(buffer, dtype=np.uint8).reshape(height, step)[:, :row]
    if encoding == "32FC1":
        values = rows.copy().view(">f4" if is_bigendian else "<f4").reshape(height, width)
        grey = np.round(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    pixels = rows.reshape(height, width, size)
    return np.ascontiguousarray(pixels[:, :, list(channels)])
