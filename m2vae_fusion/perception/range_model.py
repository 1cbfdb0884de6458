"""The AMiRo reading model of the range sensors, the one source for both simulators.

The shipped weights were trained on readings of this model (what the embedded simulator computes):
- LiDAR intensity = retro * cos(incidence);
- IR reading = retro * cos(incidence) * (d_ref / max(d, d_ref))^2: AMiRo's proximity sensors answer
  with more light from closer and brighter surfaces (inverse-square fall-off; the bare reflectivity at
  d_ref, just off the body),
where retro is the hit surface's SDF `laser_retro`. Gazebo's gpu_lidar (gz-sim 8, gz-rendering ogre2)
reports instead the hit visual's laser_retro itself, through a 16-bit texture (`gazebo_intensity`): no
incidence, no fall-off. Its ranges keep the geometry, so the Gazebo adapter node takes the incidence
from the LiDAR scan's own range profile (`surface_normals`: fits to the neighbouring beams of one
surface) and, for the 8-beam IR ring whose beams lie 45 degrees apart, from the LiDAR's view of the
surface the IR beam hits (`ir_incidence_cosines`; the objects and walls are vertical prisms taller
than the LiDAR's mounting height, so the LiDAR plane cuts the same cross-section).

numpy only: the embedded simulator (with MuJoCo's exact normals) and the adapter node share it.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from m2vae_fusion.perception.lidar_objects import beam_hits, beam_position, circle_beams, scan_intensities
from m2vae_fusion.perception.readings import Scan

# IR reads the bare reflectivity at this range (m), just off the AMiRo's 5 cm body; the simulator's
# SimConfig and the adapter node take their defaults from here.
IR_REFERENCE_DISTANCE = 0.06

# gz-rendering's Ogre2GpuRays renders laser_retro / 2000 into a PFG_R16_UNORM texture and the shader
# multiplies it back by 2000: intensities come in steps of 2000 / 65535 (about 1/33), retro clamped to [0, 2000].
GAZEBO_RETRO_MAX = 2000.0
GAZEBO_RETRO_LEVELS = 65535

# Incidence from a scan's profile (surface_normals), chosen by measuring on synthetic scans with Gazebo's
# 5 mm range noise at 1 degree spacing (test/test_range_model.py). A gap wider than SURFACE_JUMP (the
# object detection's own split, DetectionConfig.jump), or than GRAZING_SPACING beam steps at that range,
# starts another surface; one of object size (chord up to OBJECT_CHORD, DetectionConfig.max_width plus
# margin) is fitted whole, a longer one by lines over WINDOW_EXTENT either side of each beam.
SURFACE_JUMP = 0.03
GRAZING_SPACING = 4.0
OBJECT_CHORD = 0.12
WINDOW_EXTENT = 0.05
RESIDUAL_FLOOR = 1e-4  # m: keeps the BIC finite on noise-free scans
MIN_POINTS = 3  # fewer points on a surface: no normal (two noisy points say nothing about direction)
# An IR hit point and the LiDAR's return on the same bearing count as one surface within this (m): the
# two sensors' range noise (3 and 5 mm) plus the LiDAR's one-degree beam spacing at the ring's 25 cm reach.
SAME_SURFACE = 0.02
# Where no normal can be estimated (an IR point the LiDAR does not see, a surface of one or two beams),
# the reading is converted as if hit head-on: the model's reading at its largest, never invented darker.
FALLBACK_COS = 1.0


def lidar_intensity(retro: np.ndarray | float, cos_incidence: np.ndarray | float) -> np.ndarray:
    """The LiDAR's intensity without noise."""
    return np.asarray(retro, dtype=float) * np.asarray(cos_incidence, dtype=float)


def ir_falloff(distance: np.ndarray | float, d_ref: float = IR_REFERENCE_DISTANCE) -> np.ndarray:
    """(d_ref / max(d, d_ref))^2; 0 where there is no return (d not finite)."""
    if not d_ref > 0:
        raise ValueError(f"d_ref must be > 0, got {d_ref}")
    d = np.asarray(distance, dtype=float)
    finite = np.isfinite(d)
    return np.where(finite, (d_ref / np.maximum(np.where(finite, d, d_ref), d_ref)) ** 2, 0.0)


def ir_reading(
    retro: np.ndarray | float,
    cos_incidence: np.ndarray | float,
    distance: np.ndarray | float,
    d_ref: float = IR_REFERENCE_DISTANCE,
) -> np.ndarray:
    """The IR ring's reading without noise."""
    return lidar_intensity(retro, cos_incidence) * ir_falloff(distance, d_ref)


def gazebo_intensity(retro: np.ndarray | float) -> np.ndarray:
    """What Gazebo's gpu_lidar reports for a surface of `retro`: the value, clamped and quantised."""
    level = np.round(np.clip(np.asarray(retro, dtype=float), 0.0, GAZEBO_RETRO_MAX) / GAZEBO_RETRO_MAX * GAZEBO_RETRO_LEVELS)
    return level * (GAZEBO_RETRO_MAX / GAZEBO_RETRO_LEVELS)


def beam_directions(angles: np.ndarray) -> np.ndarray:
    """(n, 2) unit vectors of planar beams."""
    angles = np.asarray(angles, dtype=float)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def surface_normals(
    ranges: np.ndarray,
    angles: np.ndarray,
    closed: bool = False,
    jump: float = SURFACE_JUMP,
    extent: float = WINDOW_EXTENT,
) -> np.ndarray:
    """(n, 2) unit normals of the surface each beam hits, in the scan's frame; NaN where there is none.

    Neighbouring returns belong to one surface unless the gap between them is wider than `jump` (or
    than GRAZING_SPACING beam steps at that range, so a wall seen at a slant stays one). A surface of
    object size (chord up to OBJECT_CHORD) is fitted whole, as the simplest of a line, two lines meeting
    in a corner or a circular arc that explains it (BIC): a noisy 5 cm face is too short for local
    fits. A longer one (a wall) gets per beam the total-least-squares line through the points within
    `extent` of its own. `closed`: the scan goes all the way round (beam n-1 neighbours beam 0). Fewer
    than MIN_POINTS points on a surface: NaN."""
    r = np.asarray(ranges, dtype=float)
    a = np.asarray(angles, dtype=float)
    n = len(r)
    normals = np.full((n, 2), np.nan)
    hit = np.isfinite(r) & (r > 0)
    if n < MIN_POINTS or not hit.any():
        return normals
    points = beam_directions(a) * np.where(hit, r, 0.0)[:, None]
    following = np.roll(np.arange(n), -1)
    gap = np.linalg.norm(points[following] - points, axis=1)
    tolerance = np.maximum(jump, GRAZING_SPACING * np.abs(a[1] - a[0]) * np.where(hit, r, 0.0))
    link = hit & hit[following] & (gap < tolerance)
    if not closed:
        link[-1] = False
    for beams in _surfaces(link, hit):
        if len(beams) < MIN_POINTS:
            continue
        xy = points[beams]
        if np.linalg.norm(xy[-1] - xy[0]) <= OBJECT_CHORD:
            normals[beams] = _object_normals(xy)
        else:
            normals[beams] = _local_normals(xy, extent)
    return normals


def _surfaces(link: np.ndarray, hit: np.ndarray) -> list[np.ndarray]:
    """Runs of returns joined by `link` (link[i]: beam i and the next one), in beam order; a run may wrap
    past the last beam when link[-1] joins it to the first."""
    n = len(link)
    if link.all():
        return [np.arange(n)]
    start = int(np.flatnonzero(~link)[0]) + 1  # right after a break, so no run straddles the start
    order = (start + np.arange(n)) % n
    runs, current = [], []
    for i in order:
        if hit[i]:
            current.append(i)
        if not link[i] and current:
            runs.append(np.asarray(current))
            current = []
    if current:
        runs.append(np.asarray(current))
    return runs


def _line(xy: np.ndarray) -> tuple[np.ndarray, float]:
    """The total-least-squares line's unit normal and sum of squared residuals."""
    centred = xy - xy.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    return axes[-1], float(singular[-1] ** 2) if len(singular) > 1 else 0.0


def _object_normals(xy: np.ndarray) -> np.ndarray:
    """Normals of an object-sized surface from the model (line, corner, arc) with the best BIC."""
    m = len(xy)
    candidates = []
    normal, rss = _line(xy)
    candidates.append((rss, 2, np.tile(normal, (m, 1))))
    for split in range(2, m - 1):
        (n1, r1), (n2, r2) = _line(xy[:split]), _line(xy[split:])
        candidates.append((r1 + r2, 5, np.concatenate([np.tile(n1, (split, 1)), np.tile(n2, (m - split, 1))])))
    # algebraic (Kasa) circle: x^2 + y^2 + D x + E y + F = 0 in the least-squares sense
    design = np.column_stack([xy, np.ones(m)])
    (d, e, f), *_ = np.linalg.lstsq(design, -(xy**2).sum(axis=1), rcond=None)
    centre = np.array([-d / 2, -e / 2])
    radius = math.sqrt(max(centre @ centre - f, 0.0))
    spokes = xy - centre
    lengths = np.linalg.norm(spokes, axis=1)
    if radius > 0 and np.all(lengths > 0):
        candidates.append((float(((lengths - radius) ** 2).sum()), 3, spokes / lengths[:, None]))
    # Bayesian model averaging: under 5 mm noise a dozen points rarely tell an arc from a corner for
    # sure, and a weighted mean of the candidates' normals errs less than the single best one
    scores = np.array([m * math.log(rss / m + RESIDUAL_FLOOR**2) + k * math.log(m) for rss, k, _ in candidates])
    weights = np.exp(-(scores - scores.min()) / 2)
    reference = candidates[int(np.argmin(scores))][2]
    total = np.zeros((m, 2))
    for w, (_, _, normals) in zip(weights, candidates):
        total += w * normals * np.sign(np.einsum("ij,ij->i", normals, reference))[:, None]
    return total / np.linalg.norm(total, axis=1, keepdims=True)


def _local_normals(xy: np.ndarray, extent: float) -> np.ndarray:
    """Per point, the normal of the total-least-squares line through the points within `extent` of it
    (at least its neighbours either side)."""
    m = len(xy)
    normals = np.empty((m, 2))
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(steps)])  # arc length: a window cannot jump across a bend
    for i in range(m):
        lo = min(int(np.searchsorted(along, along[i] - extent)), max(i - 1, 0))
        hi = max(int(np.searchsorted(along, along[i] + extent, side="right")), min(i + 2, m))
        normals[i] = _line(xy[lo:hi])[0]
    return normals


def incidence_cosines(normals: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """|cos| of the angle between each beam's direction and the normal of what it hits (NaN stays NaN)."""
    return np.abs(np.einsum("ij,ij->i", np.asarray(normals, dtype=float), np.asarray(directions, dtype=float)))


def scan_normals(scan: Scan) -> np.ndarray:
    """surface_normals of a Scan, closing the circle of a 360-degree one (its duplicate last beam, as
    Gazebo sends it, repeats the first)."""
    ranges = np.asarray(scan.ranges, dtype=float)
    measured = np.where(beam_hits(scan), ranges, np.inf)
    closed = circle_beams(scan)
    m = closed or len(ranges)
    normals = np.full((len(ranges), 2), np.nan)
    normals[:m] = surface_normals(measured[:m], scan_angles(scan)[:m], closed=closed is not None)
    if m < len(ranges):
        normals[m:] = normals[: len(ranges) - m]
    return normals


def scan_angles(scan: Scan) -> np.ndarray:
    return scan.angle_min + scan.angle_increment * np.arange(len(scan.ranges))


def ir_incidence_cosines(ir: Scan, lidar: Scan, lidar_normals: np.ndarray, lidar_from_ir: np.ndarray) -> np.ndarray:
    """cos(incidence) of each IR beam, from the LiDAR's normal of the surface it hits; NaN where the LiDAR
    does not see that surface (no return, not within SAME_SURFACE of the IR point, no normal there).

    `lidar_from_ir`: the IR frame's pose in the LiDAR frame (base -> lidar inverted, times base -> ir).
    The IR hit point is moved into the LiDAR frame and dropped onto its scan plane: the surfaces are
    vertical prisms, so the LiDAR plane cuts the same cross-section the IR ring's does."""
    ranges = np.asarray(ir.ranges, dtype=float)
    local = beam_directions(scan_angles(ir))
    rotation, origin = lidar_from_ir[:3, :3], lidar_from_ir[:3, 3]
    rays = np.concatenate([local, np.zeros((len(local), 1))], axis=1) @ rotation.T
    rays = rays[:, :2] / np.maximum(np.linalg.norm(rays[:, :2], axis=1, keepdims=True), 1e-12)
    hit = np.isfinite(ranges)
    points = (
        origin[:2]
        + np.concatenate([local * np.where(hit, ranges, 0.0)[:, None], np.zeros((len(local), 1))], axis=1) @ rotation[:2].T
    )
    distance = np.hypot(points[:, 0], points[:, 1])
    position = np.array([beam_position(lidar, math.atan2(y, x)) for x, y in points])
    closed = circle_beams(lidar)
    beam = np.round(position).astype(int)
    if closed:
        beam %= closed
    seen = hit & (beam >= 0) & (beam < len(lidar.ranges))
    beam = np.clip(beam, 0, len(lidar.ranges) - 1)
    lidar_ranges = np.asarray(lidar.ranges, dtype=float)[beam]
    seen &= beam_hits(lidar)[beam] & (np.abs(lidar_ranges - distance) < SAME_SURFACE)
    cosines = incidence_cosines(lidar_normals[beam], rays)
    return np.where(seen, cosines, np.nan)


def lidar_from_gazebo(scan: Scan, normals: np.ndarray | None = None) -> tuple[Scan, int]:
    """A Gazebo LiDAR scan in the AMiRo reading model, and how many returns fell back to FALLBACK_COS.
    `normals`: scan_normals(scan) when already computed."""
    normals = scan_normals(scan) if normals is None else normals
    cosines = incidence_cosines(normals, beam_directions(scan_angles(scan)))
    return _converted(scan, lidar_intensity(scan_intensities(scan), _filled(scan, cosines)), cosines)


def ir_from_gazebo(
    ir: Scan,
    lidar: Scan | None,
    lidar_from_ir: np.ndarray,
    d_ref: float = IR_REFERENCE_DISTANCE,
    lidar_normals: np.ndarray | None = None,
) -> tuple[Scan, int]:
    """A Gazebo IR ring reading in the AMiRo reading model, with the incidence taken from `lidar` (a scan
    of the same moment; None: none at hand, every return falls back), and how many returns fell back to
    FALLBACK_COS. `lidar_normals`: scan_normals(lidar) when already computed."""
    if lidar is None:
        cosines = np.full(len(ir.ranges), np.nan)
    else:
        normals = scan_normals(lidar) if lidar_normals is None else lidar_normals
        cosines = ir_incidence_cosines(ir, lidar, normals, lidar_from_ir)
    ranges = np.asarray(ir.ranges, dtype=float)
    reading = ir_reading(scan_intensities(ir), _filled(ir, cosines), ranges, d_ref)
    return _converted(ir, reading, cosines)


def _filled(scan: Scan, cosines: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(cosines), cosines, FALLBACK_COS)


def _converted(scan: Scan, intensities: np.ndarray, cosines: np.ndarray) -> tuple[Scan, int]:
    """The scan with new intensities, 0 where nothing was measured (as the embedded simulator gives them)."""
    measured = np.isfinite(np.asarray(scan.ranges, dtype=float))
    fallbacks = int((measured & ~np.isfinite(cosines)).sum())
    values = np.where(measured, np.nan_to_num(intensities, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    return replace(scan, intensities=values.astype(np.float32)), fallbacks
