"""The demo's exploration behaviour, free of ROS: find objects in LiDAR scans, then visit each and look
at it from a few sides at the distance the perception model was trained on, then start another round
from new sides. Everything is in the odometry frame; one call of `Explorer.step` per control tick turns
the newest pose (and, when a scan came, its object candidates) into a velocity command.

The behaviour is deliberately simple (no map, no planner): objects are the only obstacles it knows, a
straight path that passes too close to one gets a detour waypoint beside it, and a goal it cannot reach
in `stuck_timeout_s` is given up. That is enough for the arenas of this package; a robot in a real room
wants Nav2 instead, with this node's goals as its input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from m2vae_fusion.core.errors import ConfigError


@dataclass
class ExplorerConfig:
    view_distance: float = 0.2  # m, robot centre to object centre when looking (training views: 0.16-0.25)
    views_per_object: int = 3  # sides looked from per round
    view_spacing: float = 1.0472  # rad between neighbouring sides (60 degrees)
    dwell_s: float = 1.5  # standing still at each side, so every sensor sends a few views
    linear_speed: float = 0.15  # m/s
    angular_speed: float = 1.5  # rad/s
    goal_tolerance: float = 0.015  # m
    heading_tolerance: float = 0.05  # rad
    clearance: float = 0.13  # m, the closest a path may pass an object's centre (robot + object radius + margin)
    merge_distance: float = 0.1  # m, candidates this close to a known object are that object
    min_sightings: int = 3  # scans that must have seen an object before it becomes a target
    max_range: float = 1.5  # m, candidates farther than this are ignored (noisy, often clutter)
    stuck_timeout_s: float = 6.0  # give a goal up when it got no closer for this long

    def __post_init__(self) -> None:
        for name in ("view_distance", "view_spacing", "linear_speed", "angular_speed", "goal_tolerance", "heading_tolerance",
                     "clearance", "merge_distance", "max_range", "stuck_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"explorer.{name} must be a finite number > 0, got {value!r}")
        if not math.isfinite(self.dwell_s) or self.dwell_s < 0:
            raise ConfigError(f"explorer.dwell_s must be a finite number >= 0, got {self.dwell_s!r}")
        for name in ("views_per_object", "min_sightings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"explorer.{name} must be an integer >= 1, got {value!r}")
        if self.clearance >= self.view_distance:
            raise ConfigError(f"explorer.clearance ({self.clearance}) must be smaller than explorer.view_distance ({self.view_distance})")


@dataclass
class Landmark:
    """An object seen in the scans: running mean of its centre, how often it was seen, how many rounds
    of views it has had and which side (angle from the object to the robot) the next round starts at."""

    position: np.ndarray
    sightings: int = 1
    rounds: int = 0
    next_side: float | None = None
    failures: int = 0


@dataclass
class Goal:
    """Stand at `position` facing `target`, then wait `dwell_s`; `waypoints` come first."""

    landmark: int
    position: np.ndarray
    waypoints: list[np.ndarray] = field(default_factory=list)


def wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class Explorer:
    def __init__(self, config: ExplorerConfig | None = None) -> None:
        self.config = config or ExplorerConfig()
        self.landmarks: list[Landmark] = []
        self.plan: list[Goal] = []  # the current object's remaining sides
        self.dwell_until: float | None = None
        self._best = (math.inf, 0.0)  # (closest distance to the current goal, time it was reached)
        self.views_taken = 0

    # ------------------------------------------------------------ perception

    def observe(self, x: float, y: float, yaw: float, candidates: np.ndarray) -> None:
        """Object candidates (K, 2) in the robot's frame, seen at pose (x, y, yaw) in odom."""
        c, s = math.cos(yaw), math.sin(yaw)
        for bx, by in np.asarray(candidates, float).reshape(-1, 2):
            if math.hypot(bx, by) > self.config.max_range:
                continue
            p = np.array([x + c * bx - s * by, y + s * bx + c * by])
            distances = [float(np.linalg.norm(lm.position - p)) for lm in self.landmarks]
            if distances and min(distances) <= self.config.merge_distance:
                lm = self.landmarks[int(np.argmin(distances))]
                lm.sightings += 1
                lm.position = lm.position + (p - lm.position) / min(lm.sightings, 50)
            else:
                self.landmarks.append(Landmark(p))

    # ------------------------------------------------------------ control

    def step(self, x: float, y: float, yaw: float, now: float) -> tuple[float, float]:
        """(linear m/s, angular rad/s) for the robot at (x, y, yaw) in odom at time `now` (s)."""
        here = np.array([x, y])
        if self.dwell_until is not None:
            if now < self.dwell_until:
                return 0.0, 0.0
            self.dwell_until = None
            self.views_taken += 1
            self.plan.pop(0)
            self._best = (math.inf, now)
        if not self.plan and not self._plan_next(here):
            return 0.0, self.config.angular_speed / 3  # nothing known yet: turn slowly so the scans cover the room
        goal = self.plan[0]
        target = goal.waypoints[0] if goal.waypoints else goal.position
        distance = float(np.linalg.norm(target - here))
        if distance < self._best[0] - 0.01:
            self._best = (distance, now)
        elif now - self._best[1] > self.config.stuck_timeout_s:
            return self._give_up(now)
        if distance > self.config.goal_tolerance:
            return self._drive(here, yaw, target, distance)
        if goal.waypoints:
            goal.waypoints.pop(0)
            self._best = (math.inf, now)
            return 0.0, 0.0
        facing = self.landmarks[goal.landmark].position - here
        error = wrap(math.atan2(facing[1], facing[0]) - yaw)
        if abs(error) > self.config.heading_tolerance:
            return 0.0, self._turn(error)
        self.dwell_until = now + self.config.dwell_s
        return 0.0, 0.0

    def _drive(self, here: np.ndarray, yaw: float, target: np.ndarray, distance: float) -> tuple[float, float]:
        heading = math.atan2(target[1] - here[1], target[0] - here[0])
        error = wrap(heading - yaw)
        if abs(error) > 0.3:  # turn on the spot first: the arcs of a diff drive would clip objects
            return 0.0, self._turn(error)
        linear = min(self.config.linear_speed, 2.0 * distance) * math.cos(error)
        return linear, self._turn(error)

    def _turn(self, error: float) -> float:
        return float(np.clip(3.0 * error, -self.config.angular_speed, self.config.angular_speed))

    def _give_up(self, now: float) -> tuple[float, float]:
        goal = self.plan.pop(0)
        self.landmarks[goal.landmark].failures += 1
        if self.landmarks[goal.landmark].failures >= 2 * self.config.views_per_object:
            self.plan = [g for g in self.plan if g.landmark != goal.landmark]
        self._best = (math.inf, now)
        return 0.0, 0.0

    # ------------------------------------------------------------ planning

    def _plan_next(self, here: np.ndarray) -> bool:
        """Plan the sides of the next object: the fewest rounds so far, then the nearest; objects given up
        on (every side failed twice) are left out."""
        limit = 2 * self.config.views_per_object
        ready = [i for i, lm in enumerate(self.landmarks) if lm.sightings >= self.config.min_sightings and lm.failures < limit]
        ready.sort(key=lambda i: (self.landmarks[i].rounds, float(np.linalg.norm(self.landmarks[i].position - here))))
        for index in ready:
            lm = self.landmarks[index]
            lm.rounds += 1
            toward_robot = here - lm.position
            first = lm.next_side if lm.next_side is not None else math.atan2(toward_robot[1], toward_robot[0])
            # the next round starts half a spacing past this one's last side, so rounds fill in new sides
            lm.next_side = first + (self.config.views_per_object + 0.5) * self.config.view_spacing
            start = here
            for k in range(self.config.views_per_object):
                side = first + k * self.config.view_spacing
                position = lm.position + self.config.view_distance * np.array([math.cos(side), math.sin(side)])
                if self._blocked(position, index):
                    lm.failures += 1
                    continue
                self.plan.append(Goal(index, position, self._detours(start, position)))
                start = position
            if self.plan:
                self._best = (math.inf, 0.0)
                return True
        return False

    def _blocked(self, position: np.ndarray, own: int) -> bool:
        return any(
            i != own and float(np.linalg.norm(lm.position - position)) < self.config.clearance for i, lm in enumerate(self.landmarks)
        )

    def _detours(self, start: np.ndarray, end: np.ndarray) -> list[np.ndarray]:
        """One waypoint beside the object nearest to the straight path when it passes too close to one."""
        blocking = None
        for lm in self.landmarks:
            d = _segment_distance(lm.position, start, end)
            if d < self.config.clearance and (blocking is None or d < blocking[0]):
                blocking = (d, lm.position)
        if blocking is None:
            return []
        centre = blocking[1]
        direction = end - start
        normal = np.array([-direction[1], direction[0]]) / max(float(np.linalg.norm(direction)), 1e-9)
        side = 1.0 if float(np.dot(centre - start, normal)) < 0 else -1.0  # pass on the side away from the centre
        return [centre + side * normal * self.config.view_distance]


def _segment_distance(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = 0.0 if not ab.any() else float(np.clip(np.dot(point - a, ab) / np.dot(ab, ab), 0.0, 1.0))
    return float(np.linalg.norm(point - (a + t * ab)))
