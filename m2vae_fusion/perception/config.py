"""Parameters of object detection and feature extraction (YAML via m2vae_fusion.core.config).

Defaults fit the simulated AMiRo and the paper's primitives: 12 cm tall objects of ~6 cm footprint
(cylinder r 3 cm, square prism 5.32 cm). Bad values raise `ConfigError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from m2vae_fusion.core.errors import ConfigError


def _positive(section: str, config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{section}.{name} must be a finite number > 0, got {value!r}")


@dataclass
class DetectionConfig:
    """LiDAR segmentation into object candidates (see lidar_objects.detect_objects)."""

    jump: float = 0.03  # neighbouring points farther apart than this (m) start a new segment
    min_beams: int = 3
    # Chord between the first and last point of a segment (m). 3 cm, not 2: another AMiRo's LiDAR
    # housing (2.4 cm across, plus range noise) passes 2 cm in ~40 % of close views; no primitive
    # seen from 0.12-1.2 m has a chord under 3 cm.
    min_width: float = 0.03
    max_width: float = 0.10
    object_radius: float = 0.03  # nearest surface -> centre, along the ray (m)
    object_height: float = 0.06  # height of object centres above base_link's origin (m)
    # Wall test: a segment is rejected when it and the `line_neighbours` beams on one side of it
    # fit one straight line at least `line_min_length` (m) long with an RMS residual below
    # `line_tolerance` (m); at least `line_min_points` of those neighbours must have a return, so
    # a lone flat face is kept.
    line_neighbours: int = 10
    line_min_points: int = 3
    line_tolerance: float = 0.01
    line_min_length: float = 0.12
    # A segment whose inner points lie on average this far (m) behind its chord is concave (a room
    # corner), not an object.
    concave_tolerance: float = 0.01

    def __post_init__(self) -> None:
        _positive(
            "detection",
            self,
            "jump",
            "min_width",
            "max_width",
            "object_radius",
            "line_tolerance",
            "line_min_length",
            "concave_tolerance",
        )
        for name in ("min_beams", "line_neighbours", "line_min_points"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"detection.{name} must be an integer >= 1, got {value!r}")
        if self.min_width > self.max_width:
            raise ConfigError(f"detection.min_width ({self.min_width}) must be <= detection.max_width ({self.max_width})")
        if self.line_min_points > self.line_neighbours:
            raise ConfigError(
                f"detection.line_min_points ({self.line_min_points}) cannot exceed detection.line_neighbours "
                f"({self.line_neighbours}), the beams the wall test looks at on each side"
            )
        if not math.isfinite(self.object_height):
            raise ConfigError(f"detection.object_height must be finite, got {self.object_height!r}")


@dataclass
class FeatureConfig:
    """Per-modality views of one object (see features.py); sizes are in metres at the object."""

    lidar_samples: int = 32
    lidar_half_width: float = 0.06
    lidar_depth_window: float = 0.05  # twice the depth contrast of 0.1 on the flanks, where cube and cylinder differ
    crop_size: float = 0.16
    crop_pixels: int = 64
    crop_min_depth: float = 0.05  # nearer than this the crop would exceed any sane pixel budget
    crop_min_inside: float = 0.5  # fraction of the crop square that must lie inside the image

    def __post_init__(self) -> None:
        _positive("features", self, "lidar_half_width", "lidar_depth_window", "crop_size", "crop_min_depth")
        for name, least in (("lidar_samples", 2), ("crop_pixels", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"features.{name} must be an integer >= {least}, got {value!r}")
        if not 0 < self.crop_min_inside <= 1:
            raise ConfigError(f"features.crop_min_inside must be in (0, 1], got {self.crop_min_inside!r}")


@dataclass
class PerceptionConfig:
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
