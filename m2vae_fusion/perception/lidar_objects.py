"""Object candidates from a planar LiDAR scan: small, compact segments that are not pieces of a wall."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from m2vae_fusion.perception.config import DetectionConfig
from m2vae_fusion.perception.readings import Scan


@dataclass(frozen=True)
class Candidate:
    """One object candidate, in the scan's frame. Beam indices wrap: first_beam > last_beam when the
    segment crosses the end of a 360-degree scan."""

    bearing: float  # rad, middle of the segment's angular extent
    distance: float  # m, sensor to the object's centre
    x: float
    y: float
    width: float  # m, chord between the first and last point
    first_beam: int
    last_beam: int
    beams: int
    intensity: float  # mean over the segment


def circle_beams(scan: Scan) -> int | None:
    """How many distinct beams close a full circle, or None if the scan does not go all the way round.

    Gazebo's 360-degree scans run from -pi to +pi inclusive, so their last beam repeats the first;
    that duplicate is left out (n - 1 beams)."""
    n = len(scan.ranges)
    step = abs(scan.angle_increment)
    if n < 2 or step <= 0:
        return None
    for beams in (n, n - 1):
        if abs(beams * step - 2 * math.pi) < step / 2:
            return beams
    return None


def beam_hits(scan: Scan) -> np.ndarray:
    """Which beams measured a surface within [range_min, range_max]."""
    r = np.asarray(scan.ranges, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(r) & (r >= scan.range_min) & (r <= scan.range_max)


def scan_intensities(scan: Scan) -> np.ndarray:
    """Intensities as floats, zeros for a scan without any (LaserScan allows an empty array)."""
    intensities = np.asarray(scan.intensities, dtype=float)
    if intensities.size == 0:
        return np.zeros(len(scan.ranges))
    if intensities.shape != np.shape(scan.ranges) or intensities.ndim != 1:
        raise ValueError(
            f"scan ({scan.frame_id}): ranges {np.shape(scan.ranges)} and intensities {intensities.shape} must be equal 1-D arrays"
        )
    return intensities


def beam_position(scan: Scan, angle: float) -> float:
    """Fractional beam index of direction `angle`, taken modulo full turns to lie closest to the scan's middle."""
    position = (angle - scan.angle_min) / scan.angle_increment
    turn = 2 * math.pi / abs(scan.angle_increment)
    middle = (len(scan.ranges) - 1) / 2
    return position - turn * round((position - middle) / turn)


def detect_objects(scan: Scan, config: DetectionConfig | None = None) -> list[Candidate]:
    """Object candidates in `scan`, nearest first (see DetectionConfig for the criteria)."""
    config = config or DetectionConfig()
    ranges = np.asarray(scan.ranges, dtype=float)
    intensities = scan_intensities(scan)
    closed = circle_beams(scan)
    m = closed or len(ranges)
    if m == 0:
        return []
    ranges = ranges[:m]
    hit = beam_hits(scan)[:m]
    angles = scan.angle_min + scan.angle_increment * np.arange(m)
    safe = np.where(hit, ranges, 0.0)
    points = np.stack([safe * np.cos(angles), safe * np.sin(angles)], axis=1)

    # link[k]: beam order[k] and order[k + 1] belong to one segment. A closed scan is read starting
    # just after a break, so no segment straddles the start of `order`.
    nxt = np.roll(np.arange(m), -1)
    link = hit & hit[nxt] & (np.linalg.norm(points - points[nxt], axis=1) < config.jump)
    if closed:
        if link.all():
            return []  # one surface all around the sensor: nothing object-sized
        start = (int(np.flatnonzero(~link)[0]) + 1) % m
    else:
        start = 0
    order = (start + np.arange(m)) % m
    link = link[order][:-1]
    valid = hit[order]
    begins = np.flatnonzero(valid & np.concatenate([[True], ~link]))
    ends = np.flatnonzero(valid & np.concatenate([~link, [True]]))

    candidates = []
    for k0, k1 in zip(begins, ends):
        beams = order[k0 : k1 + 1]
        if len(beams) < config.min_beams:
            continue
        width = float(np.linalg.norm(points[beams[0]] - points[beams[-1]]))
        if not config.min_width <= width <= config.max_width:
            continue
        if _concave(points[beams], config.concave_tolerance) or _on_a_line(
            points, order, valid, k0, k1, closed is not None, config
        ):
            continue
        candidates.append(_candidate(beams, width, angles, ranges, intensities, scan.angle_increment, config.object_radius))
    return sorted(candidates, key=lambda c: c.distance)


def _candidate(
    beams: np.ndarray,
    width: float,
    angles: np.ndarray,
    ranges: np.ndarray,
    intensities: np.ndarray,
    increment: float,
    object_radius: float,
) -> Candidate:
    """The candidate a segment of beams makes: its centre's bearing and distance, width, mean intensity."""
    bearing = _wrap(angles[beams[0]] + increment * (len(beams) - 1) / 2)
    # The nearest surface of a convex object faces the sensor: the median over the central third
    # of the beams (at least 3) averages range noise yet stays on that surface.
    middle, half = (len(beams) - 1) // 2, max(1, len(beams) // 6)
    surface = float(np.median(ranges[beams[max(0, middle - half) : middle + half + 1]]))
    distance = surface + object_radius
    return Candidate(
        bearing,
        distance,
        distance * math.cos(bearing),
        distance * math.sin(bearing),
        width,
        int(beams[0]),
        int(beams[-1]),
        len(beams),
        float(np.mean(intensities[beams])),
    )


def _on_a_line(
    points: np.ndarray, order: np.ndarray, valid: np.ndarray, k0: int, k1: int, closed: bool, config: DetectionConfig
) -> bool:
    """Is segment order[k0..k1] part of a longer straight surface (a wall broken up by sparse beams)?

    Each side is tried on its own: next to a room corner only one side continues the wall. The
    line must be longer than an object, or a noisy split of one object (the arc of a near cylinder
    is nearly straight) would count as a wall."""
    m = len(order)
    k = config.line_neighbours
    segment = points[order[k0 : k1 + 1]]
    for side in (np.arange(k0 - k, k0), np.arange(k1 + 1, k1 + 1 + k)):
        side = side % m if closed else side[(side >= 0) & (side < m)]
        # on a short closed scan the window can wrap round into the segment itself
        side = side[((side < k0) | (side > k1)) & valid[side]]
        if len(side) < config.line_min_points:
            continue
        xy = np.concatenate([segment, points[order[side]]])
        centred = xy - xy.mean(axis=0)
        # best (total least squares) line: the first right singular vector; its residual is the last singular value
        _, singular, axes = np.linalg.svd(centred, full_matrices=False)
        along = centred @ axes[0]
        if singular[-1] / math.sqrt(len(xy)) < config.line_tolerance and np.ptp(along) >= config.line_min_length:
            return True
    return False


def _concave(xy: np.ndarray, tolerance: float) -> bool:
    """Does the segment's middle lie behind its chord, as in a room corner? Objects are convex: their
    middle bulges towards the sensor (cylinder, cube corner) or lies on the chord (flat face).

    The chord joins the means of the first and last third of the points, so one noisy end point
    cannot tip a flat face over."""
    if len(xy) < 3:
        return False
    third = max(1, len(xy) // 3)
    head, tail = xy[:third].mean(axis=0), xy[-third:].mean(axis=0)
    chord = tail - head
    length = float(np.linalg.norm(chord))
    if length == 0:
        return False
    middle = xy[third:-third] - head
    offsets = (chord[0] * middle[:, 1] - chord[1] * middle[:, 0]) / length
    sensor_side = np.sign(chord[1] * head[0] - chord[0] * head[1])  # cross(chord, sensor - head)
    return bool(np.mean(offsets) * sensor_side < -tolerance)


def _wrap(angle: float) -> float:
    return float((angle + math.pi) % (2 * math.pi) - math.pi)
