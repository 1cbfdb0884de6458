"""Each sensor's view of one object, as float32 arrays in [0, 1] (the beta-VAEs' Bernoulli inputs).

A function returns None when the object is not visible to its sensor. `observe` chains detection
and the three views for one synchronised set of readings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from m2vae_fusion.perception import frames
from m2vae_fusion.perception.config import FeatureConfig, PerceptionConfig
from m2vae_fusion.perception.lidar_objects import (
    Candidate,
    beam_hits,
    beam_position,
    circle_beams,
    detect_objects,
    scan_intensities,
)
from m2vae_fusion.perception.readings import CameraImage, Scan

_DEFAULTS = FeatureConfig()


def lidar_sector(
    scan: Scan,
    bearing: float,
    distance: float,
    samples: int = _DEFAULTS.lidar_samples,
    half_width: float = _DEFAULTS.lidar_half_width,
    depth_window: float = _DEFAULTS.lidar_depth_window,
) -> np.ndarray | None:
    """(2, samples): depth and intensity across the line of sight at lateral offsets [-half_width, half_width].

    Depth is relative to `distance` (the object's centre), so near and far views look alike:
    (range - distance + depth_window / 2) / depth_window, 1 where there is no return. Intensity is
    clipped to [0, 1], 0 where there is no return or the return lies beyond the window: whatever is
    behind the object (a wall, nothing) then reads the same, so the view does not learn the
    training world's background. Beams are interpolated linearly. None if the sector's centre lies
    outside the scan's field of view.
    """
    if not distance > 0 or not half_width > 0 or not depth_window > 0 or samples < 2:
        raise ValueError(
            f"need distance, half_width, depth_window > 0 and samples >= 2; got {distance}, {half_width}, {depth_window}, {samples}"
        )
    ranges = np.asarray(scan.ranges, dtype=float)
    hit = beam_hits(scan)
    # below range_min (REP-117: -inf) is a surface too close to measure; no return reads as infinitely far
    depth = np.where(hit, ranges, np.where(ranges < scan.range_min, scan.range_min, np.inf))
    depth = (depth - distance + depth_window / 2) / depth_window
    intensity = np.where(hit & (depth <= 1.0), np.clip(scan_intensities(scan), 0.0, 1.0), 0.0)
    depth = np.clip(depth, 0.0, 1.0)

    centre = beam_position(scan, bearing)
    offsets = np.linspace(-half_width, half_width, samples)
    position = centre + np.arctan2(offsets, distance) / scan.angle_increment
    closed = circle_beams(scan)
    if closed:
        lo = np.floor(position)
        frac = position - lo
        i0 = lo.astype(int) % closed
        i1 = (i0 + 1) % closed
        rows = [(1 - frac) * row[i0] + frac * row[i1] for row in (depth, intensity)]
    else:
        n = len(ranges)
        if not -0.5 <= centre <= n - 0.5:
            return None
        beams = np.arange(n)
        rows = [
            np.interp(position, beams, depth, left=1.0, right=1.0),
            np.interp(position, beams, intensity, left=0.0, right=0.0),
        ]
    return np.stack(rows).astype(np.float32)


def camera_crop(
    image: CameraImage,
    point_optical: Sequence[float],
    size_m: float = _DEFAULTS.crop_size,
    out: int = _DEFAULTS.crop_pixels,
    min_depth: float = _DEFAULTS.crop_min_depth,
    min_inside: float = _DEFAULTS.crop_min_inside,
) -> np.ndarray | None:
    """(out, out, 3): the square of side `size_m` (metres at the point's depth) centred on the
    point's projection, area-resampled; parts outside the image are 0. None if the point is nearer
    than `min_depth` or less than `min_inside` of the square lies inside the image."""
    x, y, z = (float(v) for v in point_optical)
    if not z > min_depth:
        return None
    u = image.fx * x / z + image.cx
    v = image.fy * y / z + image.cy
    # one square in metres: square in pixels too when fx == fy (the usual case); otherwise the
    # crop is cut to the metric rectangle and stretched to a square
    width = max(1, round(image.fx * size_m / z))
    height = max(1, round(image.fy * size_m / z))
    left, top = round(u - width / 2), round(v - height / 2)
    x0, x1 = max(left, 0), min(left + width, image.width)
    y0, y1 = max(top, 0), min(top + height, image.height)
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < min_inside * width * height:
        return None
    patch = np.zeros((height, width, 3), dtype=np.uint8)
    patch[y0 - top : y1 - top, x0 - left : x1 - left] = image.rgb[y0:y1, x0:x1]
    resized = cv2.resize(patch, (out, out), interpolation=cv2.INTER_AREA)
    return resized.astype(np.float32) / 255.0


def ir_features(ir: Scan, bearing: float) -> np.ndarray | None:
    """(6,): for the beam facing `bearing` and its two neighbours, [sqrt(reading), range / range_max].

    The square root undoes part of the inverse-square falloff that squeezes readings towards 0. A
    beam without a return contributes [0, 1]; a neighbour beyond the end of a partial ring too.
    None if the facing beam has no return or `bearing` is outside the ring's coverage."""
    ranges = np.asarray(ir.ranges, dtype=float)
    intensities = scan_intensities(ir)
    n = len(ranges)
    closed = circle_beams(ir)
    facing = round(beam_position(ir, bearing))
    if closed:
        facing %= closed
    elif not 0 <= facing < n:
        return None
    present = beam_hits(ir) | (ranges < ir.range_min)  # too close to measure (-inf) is still a return
    if not present[facing]:
        return None
    values = []
    for beam in (facing - 1, facing, facing + 1):
        if closed:
            beam %= closed
        if not 0 <= beam < n or not present[beam]:
            values += [0.0, 1.0]
            continue
        reading = math.sqrt(min(max(float(intensities[beam]), 0.0), 1.0))
        values += [reading, min(max(ranges[beam], 0.0) / ir.range_max, 1.0)]
    return np.asarray(values, dtype=np.float32)


@dataclass(frozen=True)
class ObjectObservation:
    """One detected object: where it is and what each sensor shows of it (None: not visible)."""

    candidate: Candidate  # in the LiDAR frame
    position: np.ndarray  # (3,) object centre in base_link
    lidar: np.ndarray | None  # (2, lidar_samples)
    camera: np.ndarray | None  # (crop_pixels, crop_pixels, 3)
    ir: np.ndarray | None  # (6,)


def observe(
    image: CameraImage | None,
    scan: Scan,
    ir: Scan | None,
    base_to_lidar: np.ndarray,
    base_to_ir: np.ndarray,
    base_to_optical: np.ndarray,
    config: PerceptionConfig | None = None,
) -> list[ObjectObservation]:
    """Detect objects in `scan` and cut out every sensor's view of each, nearest object first.

    The transforms are the sensor frames' poses in base_link (tf's base -> sensor), e.g. from
    `frames.lookup(static_transforms, "base_link", "camera_optical_frame")`. A missing image or IR
    scan (None) gives None features for that sensor.
    """
    config = config or PerceptionConfig()
    f = config.features
    optical_from_base = frames.inverse(base_to_optical)
    ir_from_base = frames.inverse(base_to_ir)
    observations = []
    for c in detect_objects(scan, config.detection):
        position = frames.apply(base_to_lidar, (c.x, c.y, 0.0))
        position[2] = config.detection.object_height
        lidar = lidar_sector(scan, c.bearing, c.distance, f.lidar_samples, f.lidar_half_width, f.lidar_depth_window)
        camera = None
        if image is not None:
            camera = camera_crop(
                image, frames.apply(optical_from_base, position), f.crop_size, f.crop_pixels, f.crop_min_depth, f.crop_min_inside
            )
        reflectance = None
        if ir is not None:
            x, y, _ = frames.apply(ir_from_base, position)
            # beyond the ring's reach whatever the facing beam sees is not this object
            if math.hypot(x, y) - config.detection.object_radius <= ir.range_max:
                reflectance = ir_features(ir, math.atan2(y, x))
        observations.append(ObjectObservation(c, position, lidar, camera, reflectance))
    return observations
