"""What the embedded simulator hands out: poses, sensor readings, object states. Plain data, no ROS,
so the sim node, data collection and tests all share one vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Pose2D:
    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class Odometry:
    """Dead-reckoned pose in the odom frame and the body-frame velocities (m/s, rad/s)."""

    x: float
    y: float
    yaw: float
    linear: float
    angular: float


@dataclass(frozen=True)
class CameraImage:
    """An RGB frame and the pinhole intrinsics of the optical frame (z forward, x right, y down)."""

    rgb: np.ndarray  # H x W x 3 uint8
    fx: float
    fy: float
    cx: float
    cy: float
    frame_id: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True)
class Scan:
    """A planar range scan in the sensor frame, counter-clockwise from angle_min (LaserScan layout).

    ranges in metres (inf where nothing is hit within range_max); intensities are the surface's
    reflectance as the sensor sees it (dimensionless, 0 where nothing is hit).
    """

    ranges: np.ndarray  # float32[n]
    intensities: np.ndarray  # float32[n]
    angle_min: float
    angle_max: float
    angle_increment: float
    range_min: float
    range_max: float
    frame_id: str


@dataclass(frozen=True)
class SensorSpec:
    name: str
    kind: Literal["camera", "lidar", "ir"]
    rate_hz: float
    frame_id: str


@dataclass(frozen=True)
class Transform:
    """parent -> child: translation (x, y, z) in metres and rotation quaternion (x, y, z, w)."""

    parent: str
    child: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]


@dataclass(frozen=True)
class ObjectState:
    """Ground truth of one primitive, in the map (world) frame."""

    name: str
    colour: str
    shape: str
    surface: str
    class_id: int
    label: str
    x: float
    y: float
    z: float
    yaw: float
