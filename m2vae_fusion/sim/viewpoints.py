"""Where to put the robot so that it looks at one object from a given distance and bearing, the way
the paper's data set was recorded (each observation shows one object, random distance and bearing)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from m2vae_fusion.perception.readings import ObjectState, Pose2D
from m2vae_fusion.sim.simulator import Simulator


@dataclass(frozen=True)
class ViewpointRange:
    """Distances are robot centre to object centre (m); `heading_jitter` turns the robot off the
    line of sight (rad) so the object is not always in the image centre. The near range keeps the
    object within reach of the IR sensor facing it (25 cm from the robot's centre, one ray each) and
    the whole object within the camera's crop (nearer, a 16 cm crop overflows the 320x240 image).
    `far_fraction` of the observations are taken from beyond that, out to `far_distance`, where the IR
    ring does not reach: the camera encoder takes objects out to 0.5 m (config/encoders.yaml), so a
    model trained on such a collection has seen what it will send."""

    min_distance: float = 0.16
    max_distance: float = 0.25
    heading_jitter: float = 0.1
    far_distance: float = 0.5
    far_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.min_distance <= self.max_distance:
            raise ValueError(f"need 0 < min_distance <= max_distance, got {self.min_distance}, {self.max_distance}")
        if not 0 <= self.heading_jitter < math.pi / 2:
            raise ValueError(f"heading_jitter must be in [0, pi/2), got {self.heading_jitter}")
        if not 0 <= self.far_fraction <= 1:
            raise ValueError(f"far_fraction must be in [0, 1], got {self.far_fraction}")
        if self.far_fraction > 0 and not self.far_distance > self.max_distance:
            raise ValueError(f"need far_distance > max_distance for far views, got {self.far_distance}, {self.max_distance}")

    @property
    def farthest(self) -> float:
        return self.far_distance if self.far_fraction > 0 else self.max_distance

    def distance(self, rng: np.random.Generator) -> float:
        """One observation's distance: near, or with probability far_fraction beyond the near range."""
        # no coin is drawn without far views, so near-only collections keep their seeds' viewpoints
        if self.far_fraction > 0 and rng.uniform() < self.far_fraction:
            return float(rng.uniform(self.max_distance, self.far_distance))
        return float(rng.uniform(self.min_distance, self.max_distance))


def look_at(target: ObjectState, distance: float, bearing: float, heading_offset: float = 0.0) -> Pose2D:
    """The robot pose `distance` from the object along `bearing` (world angle from the object to the
    robot), facing the object, turned by `heading_offset`."""
    x = target.x + distance * math.cos(bearing)
    y = target.y + distance * math.sin(bearing)
    return Pose2D(x, y, math.atan2(target.y - y, target.x - x) + heading_offset)


def sample_viewpoint(
    sim: Simulator, target: ObjectState, rng: np.random.Generator, spec: ViewpointRange, attempts: int = 200
) -> Pose2D:
    """A random free viewpoint on `target` from which no other object is nearer to the robot than it."""
    others = [o for o in sim.objects if o.name != target.name]
    for _ in range(attempts):
        distance = spec.distance(rng)
        pose = look_at(target, distance, rng.uniform(-math.pi, math.pi), rng.uniform(-spec.heading_jitter, spec.heading_jitter))
        if sim.collides(pose):
            continue
        if any(math.hypot(o.x - pose.x, o.y - pose.y) <= distance + 0.1 for o in others):
            continue
        return pose
    raise RuntimeError(
        f"no free viewpoint on {target.name} at {spec.min_distance}-{spec.farthest} m in {attempts} tries: "
        "objects are too close together in this world"
    )
