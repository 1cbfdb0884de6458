"""The demo's exploration behaviour, free of ROS: find objects in LiDAR scans, then visit each and look
at it from a few sides at the distance the perception model was trained on, then start another round
from new sides. Everything is in the odometry frame; one call of `Explorer.step` per control tick turns
the newest pose (and, when a scan came, its object candidates) into a velocity command.

Which object to look at next is the policy's choice (`ExplorerConfig.policy`):
- tour: every object from `views_per_object` sides per round, the least visited and nearest first,
  however sure its belief already is (the demo's behaviour before active perception).
- entropy: no model needed beyond the belief's class probabilities: objects not sensed yet first, then
  those whose class entropy is above `entropy_threshold`, nearest first, one side per visit.
- active: the model's own imagination (core.information_gain): among the known objects and the two
  distances a look can be taken from, the (object, distance) whose look is expected to reduce the class
  entropy most per second of travel and dwell; an object is left alone once that gain falls below
  `gain_threshold`. Where the robot stands decides what a look yields: from `view_distance` every
  sensor sees the object, from `far_view_distance` only `far_view_modalities` (the camera: the LiDAR
  reads shape and the IR ring reaches only close up, config/encoders.yaml), and the fused belief
  carries the gain of each (the fusion node's gain_candidates). A first look is always taken from
  near: what a far one would add to no belief at all is not estimated. Unsure objects with no gain
  left are then revisited as by `entropy`.
The two belief-driven policies read `Assessment`s given to `Explorer.assess` (the fused beliefs moved
into odom) and fall back to the tour once nothing is left to learn, so the robot never stands idle.
Objects another robot is heading to (`Explorer.claim`) are left to it.

The behaviour is deliberately simple (no planner): scan returns mark cells of a coarse occupancy grid,
a viewpoint with an occupied cell within the robot's radius (a wall, another object, another robot) is
skipped, a straight path that passes too close to a known object gets a detour waypoint beside it, and
a goal it cannot reach in `stuck_timeout_s` is given up. That is enough for the arenas of this package; a robot in a real room
wants Nav2 instead, with this node's goals as its input.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from m2vae_fusion.core.errors import ConfigError

POLICIES = ("tour", "entropy", "active")


@dataclass
class ExplorerConfig:
    view_distance: float = 0.2  # m, robot centre to object centre when looking with every sensor (training views: 0.16-0.25)
    far_view_distance: float = 0.4  # m, active's other distance, beyond the IR's reach; 0: none
    far_view_modalities: str = "camera"  # the sensors that see an object from far_view_distance (config/encoders.yaml)
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
    stuck_timeout_s: float = 4.0  # give a goal up when it got no closer for this long
    robot_radius: float = 0.07  # m, a viewpoint needs this much free space around it (AMiRo: 5 cm body)
    policy: str = "tour"  # tour | entropy | active (module docstring)
    entropy_threshold: float = 0.3  # nats: entropy and active revisit objects whose class entropy is above this
    gain_threshold: float = 0.05  # nats: active stops looking at an object once a look is expected to gain less
    revisit_after_s: float = 4.0  # the belief-driven policies wait this long before choosing a just-viewed object again
    first_look_gain: float = 0.0  # nats active expects of a first look at an object; 0: ln(classes), from knowing nothing to sure

    def __post_init__(self) -> None:
        for name in (
            "view_distance",
            "view_spacing",
            "linear_speed",
            "angular_speed",
            "goal_tolerance",
            "heading_tolerance",
            "clearance",
            "merge_distance",
            "max_range",
            "stuck_timeout_s",
            "robot_radius",
            "entropy_threshold",
            "gain_threshold",
            "revisit_after_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"explorer.{name} must be a finite number > 0, got {value!r}")
        if self.far_view_distance != 0 and not (
            math.isfinite(self.far_view_distance) and self.far_view_distance > self.view_distance
        ):
            raise ConfigError(
                f"explorer.far_view_distance must be 0 (none) or farther than view_distance ({self.view_distance}), got {self.far_view_distance!r}"
            )
        if self.far_view_distance and not self.far_modalities:
            raise ConfigError(f"explorer.far_view_modalities must name sensors joined by '+', got {self.far_view_modalities!r}")
        if not math.isfinite(self.first_look_gain) or self.first_look_gain < 0:
            raise ConfigError(f"explorer.first_look_gain must be a finite number >= 0, got {self.first_look_gain!r}")
        if not math.isfinite(self.dwell_s) or self.dwell_s < 0:
            raise ConfigError(f"explorer.dwell_s must be a finite number >= 0, got {self.dwell_s!r}")
        if self.policy not in POLICIES:
            raise ConfigError(f"explorer.policy must be one of {list(POLICIES)}, got {self.policy!r}")
        for name in ("views_per_object", "min_sightings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"explorer.{name} must be an integer >= 1, got {value!r}")
        if self.robot_radius >= self.view_distance - 0.03:
            raise ConfigError(
                f"explorer.robot_radius ({self.robot_radius}) must leave room between the robot and the object at view_distance ({self.view_distance})"
            )
        if self.clearance >= self.view_distance:
            raise ConfigError(
                f"explorer.clearance ({self.clearance}) must be smaller than explorer.view_distance ({self.view_distance})"
            )

    @property
    def far_modalities(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.far_view_modalities.split("+") if n.strip())


@dataclass
class Landmark:
    """An object seen in the scans: running mean of its centre, how often it was seen, how many rounds
    of views it has had, which side (angle from the object to the robot) the next round starts at, and
    how often in a row it failed to get a view (a round with no reachable side, or a side the robot got
    stuck on); MAX_FAILED_ROUNDS of those retire it."""

    position: np.ndarray
    sightings: int = 1
    rounds: int = 0
    next_side: float | None = None
    failed_rounds: int = 0
    wall: bool | None = None  # a piece of wall or clutter, not an object: decided when first planned
    viewed_at: float = -math.inf  # time the last view of it ended
    looks: int = 0  # views of it taken (dwells ended)
    assessment: Assessment | None = None  # the nearest fused belief, if any


@dataclass(frozen=True)
class Assessment:
    """What the fused belief says about one object, position in odom: how unsure its class is, and how
    much one more look is expected to reduce that (nats), per set of sensors a look may yield (as the
    fusion node's gain_candidates name them)."""

    position: np.ndarray  # (2,)
    class_entropy: float
    gains: Mapping[frozenset[str], float] = field(default_factory=dict)

    @property
    def gain(self) -> float:
        """The best of any sensing (a look with every sensor, at view_distance); 0 without gains."""
        return max(self.gains.values(), default=0.0)


@dataclass(frozen=True)
class Choice:
    """Why the explorer went to an object: the policy's reason, the gain and entropy it saw, the score."""

    landmark: int
    reason: str  # tour | unseen | unsure | gain
    gain: float | None  # None: no beliefs had come yet
    class_entropy: float | None
    score: float | None = None  # active: expected gain per second of travel and dwell
    distance: float | None = None  # m the look is taken from; None: view_distance


@dataclass
class Goal:
    """Stand at `position` facing `target`, then wait `dwell_s`; `waypoints` come first."""

    landmark: int
    position: np.ndarray
    waypoints: list[np.ndarray] = field(default_factory=list)


CELL = 0.02  # m, occupancy grid resolution
SIGHT_CLEARANCE = 0.06  # m, another object's centre this close to a line of sight hides the object behind it
MAX_FAILED_ROUNDS = 2  # an object that failed to get a view this many times in a row is left alone
MAX_BLIND_LOOKS = 1  # the belief-driven policies leave an object no belief covers after this many looks
IN_VIEW = 1.0  # m: the newest scans show the surface of an object this close, unless something hides it
# A free-standing object leaves this ring around its centre estimate empty (its surface is within 4 cm,
# a neighbour's beyond 11 cm at the closest spacing of world_gen). A piece of wall is a short stretch of
# a line that passes about an object radius (3 cm) from its centre estimate; the occupied cells from the
# ring out to WALL_REACH lie along that line, on one side or both (the grid holds only the newest
# scans, which may have seen one side). An object next to a wall sees that wall there too, but along a
# line at least 8 cm out (world_gen keeps object centres 9 cm from a wall's inner face, less a grid
# cell). So a candidate is a piece of wall when the line through those cells passes within
# WALL_LINE of it.
RING = (0.065, 0.085)
WALL_REACH = 0.11
WALL_LINE = 0.055
OCCUPIED_HITS = 3  # returns in a cell over the remembered scans before it counts as occupied
REMEMBERED_SCANS = 30  # the grid holds the newest scans only (3 s at 10 Hz): odometry drifts, old hits smear


def wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class Explorer:
    def __init__(self, config: ExplorerConfig | None = None) -> None:
        self.config = config or ExplorerConfig()
        self.landmarks: list[Landmark] = []
        self.hits: dict[tuple[int, int], int] = {}  # occupancy grid: returns per cell in the remembered scans
        self._scans: deque[list[tuple[int, int]]] = deque()
        self.plan: list[Goal] = []  # the current object's remaining sides
        self.dwell_until: float | None = None
        self._best = (math.inf, 0.0)  # (closest distance to the current goal, time it was reached)
        self.views_taken = 0
        # nats a first look is expected to gain (set by assess); None before the first assess, when every
        # object is unseen and they are ordered by distance alone
        self.unseen_gain: float | None = self.config.first_look_gain or None
        self.claims: list[np.ndarray] = []  # odom positions of the objects other robots are heading to
        self.choices: list[Choice] = []  # every decision, newest last

    # ------------------------------------------------------------ beliefs

    def assess(self, assessments: list[Assessment], classes: int) -> None:
        """The newest fused beliefs (odom) over a label space of `classes` classes; each landmark takes
        the nearest within 1.5 merge distances. An object with none is valued at first_look_gain."""
        self.unseen_gain = self.config.first_look_gain or math.log(max(classes, 1))
        # a belief with a non-finite field (a broken or hostile publisher) says nothing usable
        assessments = [
            a
            for a in assessments
            if np.all(np.isfinite(a.position))
            and math.isfinite(a.class_entropy)
            and all(math.isfinite(g) for g in a.gains.values())
        ]
        radius = 1.5 * self.config.merge_distance
        for lm in self.landmarks:
            distances = [float(np.linalg.norm(a.position - lm.position)) for a in assessments]
            nearest = int(np.argmin(distances)) if distances else -1
            lm.assessment = assessments[nearest] if distances and distances[nearest] <= radius else None

    def claim(self, positions: list[np.ndarray]) -> None:
        """Odom positions of the objects other robots are heading to; the belief-driven policies leave them."""
        claims = [np.asarray(p, float)[:2] for p in positions]
        self.claims = [c for c in claims if np.all(np.isfinite(c))]  # a NaN claim would block every object

    @property
    def target(self) -> np.ndarray | None:
        """The odom position of the object being looked at or driven to (None: none), to share as a claim."""
        return self.landmarks[self.plan[0].landmark].position if self.plan else None

    # ------------------------------------------------------------ perception

    def observe(self, x: float, y: float, yaw: float, candidates: np.ndarray, returns: np.ndarray | None = None) -> None:
        """Object candidates (K, 2) and every scan return (M, 2) in the robot's frame, seen at pose
        (x, y, yaw) in odom."""
        c, s = math.cos(yaw), math.sin(yaw)
        rotation = np.array([[c, -s], [s, c]])
        if returns is not None and len(returns):
            points = np.asarray(returns, float).reshape(-1, 2)
            points = points[np.hypot(points[:, 0], points[:, 1]) <= self.config.max_range] @ rotation.T + (x, y)
            cells = list(map(tuple, np.floor(points / CELL).astype(int)))
            for cell in cells:
                self.hits[cell] = self.hits.get(cell, 0) + 1
            self._scans.append(cells)
            if len(self._scans) > REMEMBERED_SCANS:
                for cell in self._scans.popleft():
                    self.hits[cell] -= 1
                    if not self.hits[cell]:
                        del self.hits[cell]
        for bx, by in np.asarray(candidates, float).reshape(-1, 2):
            if math.hypot(bx, by) > self.config.max_range:
                continue
            p = rotation @ (bx, by) + (x, y)
            distances = [float(np.linalg.norm(lm.position - p)) for lm in self.landmarks]
            if distances and min(distances) <= self.config.merge_distance:
                lm = self.landmarks[int(np.argmin(distances))]
                lm.sightings += 1
                lm.position = lm.position + (p - lm.position) / min(lm.sightings, 50)
            else:
                self.landmarks.append(Landmark(p))

    def _cells(self, position: np.ndarray, radius: float, inner: float) -> Iterator[tuple[float, float]]:
        """Centres of the occupied cells between `inner` and `radius` from `position` (odom), lazily."""
        reach = int(math.ceil(radius / CELL))
        ci, cj = (int(math.floor(v / CELL)) for v in position)
        for i in range(ci - reach, ci + reach + 1):
            for j in range(cj - reach, cj + reach + 1):
                if self.hits.get((i, j), 0) >= OCCUPIED_HITS:
                    centre = ((i + 0.5) * CELL, (j + 0.5) * CELL)
                    if inner <= math.hypot(centre[0] - position[0], centre[1] - position[1]) <= radius:
                        yield centre

    def occupied_cells(self, position: np.ndarray, radius: float, inner: float = 0.0) -> np.ndarray:
        """Centres (K, 2) of the occupied cells between `inner` and `radius` from `position` (odom)."""
        return np.array(list(self._cells(position, radius, inner)), float).reshape(-1, 2)

    def occupied(self, position: np.ndarray, radius: float, inner: float = 0.0) -> bool:
        """Is there an occupied cell between `inner` and `radius` from `position` (odom)?"""
        # the planner asks this for every step of every path it tries: stop at the first cell
        return next(self._cells(position, radius, inner), None) is not None

    def _on_a_wall(self, position: np.ndarray) -> bool:
        """Is the candidate at `position` a piece of wall: something in the ring, on a line that passes
        within WALL_LINE of it (fitted to the occupied cells out to WALL_REACH)?"""
        if not self.occupied(position, RING[1], inner=RING[0]):
            return False
        cells = self.occupied_cells(position, WALL_REACH, inner=RING[0])
        centred = cells - cells.mean(axis=0)
        direction = np.linalg.svd(centred, full_matrices=False)[2][0]  # the cells' principal axis
        offset = position - cells.mean(axis=0)
        return abs(float(offset[0] * direction[1] - offset[1] * direction[0])) < WALL_LINE

    # ------------------------------------------------------------ control

    def step(self, x: float, y: float, yaw: float, now: float) -> tuple[float, float]:
        """(linear m/s, angular rad/s) for the robot at (x, y, yaw) in odom at time `now` (s)."""
        here = np.array([x, y])
        if self.dwell_until is not None:
            if now < self.dwell_until:
                return 0.0, 0.0
            self.dwell_until = None
            self.views_taken += 1
            viewed = self.landmarks[self.plan.pop(0).landmark]
            viewed.failed_rounds = 0
            viewed.viewed_at = now
            viewed.looks += 1
            self._best = (math.inf, now)
        if not self.plan and not self._plan_next(here, now):
            if self._jammed(here):
                return self._back_off(here, yaw)
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

    def _jammed(self, here: np.ndarray) -> bool:
        """Is something within the robot's radius (pushed against a wall, another robot, an object)?"""
        return self.occupied(here, self.config.robot_radius)

    def _back_off(self, here: np.ndarray, yaw: float) -> tuple[float, float]:
        """Turn away from what is within the robot's radius and drive off it: no path starts from here."""
        away = here - self.occupied_cells(here, self.config.robot_radius).mean(axis=0)
        norm = float(np.linalg.norm(away))
        direction = away / norm if norm > 1e-9 else np.array([math.cos(yaw + math.pi), math.sin(yaw + math.pi)])
        return self._drive(here, yaw, here + self.config.robot_radius * direction, self.config.robot_radius)

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
        lm = self.landmarks[goal.landmark]
        lm.failed_rounds += 1
        if lm.failed_rounds >= MAX_FAILED_ROUNDS:
            self.plan = [g for g in self.plan if g.landmark != goal.landmark]
        self._best = (math.inf, now)
        return 0.0, 0.0

    # ------------------------------------------------------------ planning

    def _plan_next(self, here: np.ndarray, now: float) -> bool:
        """Plan the next object's sides: the policy's choice (one side), else a round of the tour."""
        if self.config.policy != "tour":
            for choice in self._ranked(here, now):
                if self._plan_object(choice.landmark, here, sides=1, distance=choice.distance):
                    self.choices.append(choice)
                    return True
        return self._plan_tour(here)

    def _ready(self) -> list[int]:
        return [
            i
            for i, lm in enumerate(self.landmarks)
            if lm.sightings >= self.config.min_sightings and lm.failed_rounds < MAX_FAILED_ROUNDS and not lm.wall
        ]

    def _ranked(self, here: np.ndarray, now: float) -> list[Choice]:
        """The belief-driven policies' candidates, best first (module docstring). Objects another robot
        claimed, and those viewed less than revisit_after_s ago, are left out."""
        config = self.config
        open_ = [
            i
            for i in self._ready()
            if now - self.landmarks[i].viewed_at >= config.revisit_after_s
            and all(float(np.linalg.norm(c - self.landmarks[i].position)) > config.merge_distance for c in self.claims)
        ]
        distance = {i: float(np.linalg.norm(self.landmarks[i].position - here)) for i in open_}
        unseen = [
            Choice(i, "unseen", self.unseen_gain, None)
            for i in open_
            if self.landmarks[i].assessment is None and (self.unseen_gain is None or self._worth_a_first_look(i, distance[i]))
        ]
        unsure = [
            Choice(i, "unsure", a.gain, a.class_entropy)
            for i in open_
            if (a := self.landmarks[i].assessment) is not None and a.class_entropy > config.entropy_threshold
        ]
        if config.policy == "entropy":
            return sorted(unseen, key=lambda c: distance[c.landmark]) + sorted(unsure, key=lambda c: distance[c.landmark])
        scored = []
        for choice in [
            *unseen,
            *(Choice(i, "gain", a.gain, a.class_entropy) for i in open_ if (a := self.landmarks[i].assessment)),
        ]:
            for view, gain in self._looks(choice):
                if gain < config.gain_threshold:
                    continue
                seconds = max(distance[choice.landmark] - view, 0.0) / config.linear_speed + config.dwell_s
                scored.append(
                    dataclasses.replace(
                        choice, gain=gain if choice.gain is not None else None, score=gain / seconds, distance=view
                    )
                )
        scored.sort(key=lambda c: -c.score)
        chosen = {c.landmark for c in scored}
        return scored + sorted((c for c in unsure if c.landmark not in chosen), key=lambda c: distance[c.landmark])

    def _worth_a_first_look(self, index: int, distance: float) -> bool:
        """An object no belief covers is left alone after MAX_BLIND_LOOKS looks (the perception does not see
        it as an object: another robot, a piece of clutter the encoders reject), and while it is in view
        but the newest scans show nothing where it should be (a stray candidate, or one that drifted with
        the odometry; it may be hidden, and is looked at once it shows again)."""
        lm = self.landmarks[index]
        return lm.looks < MAX_BLIND_LOOKS and (distance > IN_VIEW or self.occupied(lm.position, RING[0]))

    def _looks(self, choice: Choice) -> list[tuple[float, float]]:
        """(distance, expected gain) of each look active can take at the choice's object: every sensor
        from view_distance, and where the belief carries the gain of far_view_modalities, those from
        far_view_distance. An unseen object (no belief: nothing to imagine from) gets a near look worth
        unseen_gain, or 1 while no beliefs have come at all, so the nearest comes first."""
        config = self.config
        if choice.gain is None:
            return [(config.view_distance, 1.0)]
        looks = [(config.view_distance, choice.gain)]
        assessment = self.landmarks[choice.landmark].assessment
        far = assessment.gains.get(config.far_modalities) if assessment is not None else None
        if config.far_view_distance and far is not None:
            looks.append((config.far_view_distance, far))
        return looks

    def _plan_tour(self, here: np.ndarray) -> bool:
        """A round of the tour: the fewest rounds so far, then the nearest. Left out: pieces of wall or
        clutter (something in the ring around them) and objects retired after MAX_FAILED_ROUNDS
        failures in a row."""
        ready = self._ready()
        ready.sort(key=lambda i: (self.landmarks[i].rounds, float(np.linalg.norm(self.landmarks[i].position - here))))
        for index in ready:
            if self._plan_object(index, here, self.config.views_per_object):
                lm = self.landmarks[index]
                self.choices.append(Choice(index, "tour", None, lm.assessment.class_entropy if lm.assessment else None))
                return True
        return False

    def _plan_object(self, index: int, here: np.ndarray, sides: int, distance: float | None = None) -> bool:
        """Plan `sides` reachable sides of one object from `distance` (default view_distance), starting
        where the last round left off (else facing the robot); False for a piece of wall or when no side
        is reachable. A side from which another object stands in the line of sight is skipped."""
        lm = self.landmarks[index]
        if lm.wall is None:
            lm.wall = self._on_a_wall(lm.position)
        if lm.wall:
            return False
        lm.rounds += 1
        toward_robot = here - lm.position
        first = lm.next_side if lm.next_side is not None else math.atan2(toward_robot[1], toward_robot[0])
        # the next round starts half a spacing past this one's last side, so rounds fill in new sides
        lm.next_side = first + (sides + 0.5) * self.config.view_spacing
        start = here
        reach = distance or self.config.view_distance
        for k in range(sides):
            side = first + k * self.config.view_spacing
            position = lm.position + reach * np.array([math.cos(side), math.sin(side)])
            waypoints = self._detours(start, position)
            legs = zip([start, *waypoints], [*waypoints, position])
            # a side inside or behind a wall or another obstacle is skipped
            if self._blocked(position, index) or self._hidden(position, index) or not all(self._path_free(a, b) for a, b in legs):
                continue
            self.plan.append(Goal(index, position, waypoints))
            start = position
        if self.plan:
            self._best = (math.inf, 0.0)
            return True
        # neither no free far side nor being jammed where the robot stands is the object's fault
        if reach == self.config.view_distance and not self._jammed(here):
            lm.failed_rounds += 1
        return False

    def _blocked(self, position: np.ndarray, own: int) -> bool:
        return self.occupied(position, self.config.robot_radius) or any(
            i != own and float(np.linalg.norm(lm.position - position)) < self.config.clearance
            for i, lm in enumerate(self.landmarks)
        )

    def _hidden(self, position: np.ndarray, own: int) -> bool:
        """Does another known object stand in the line of sight from `position` to object `own`?"""
        target = self.landmarks[own].position
        return any(
            i != own and _segment_distance(lm.position, position, target) < SIGHT_CLEARANCE for i, lm in enumerate(self.landmarks)
        )

    def _path_free(self, start: np.ndarray, end: np.ndarray) -> bool:
        """No occupied cell within robot_radius of the segment, after the robot has left its start."""
        length = float(np.linalg.norm(end - start))
        for t in np.arange(self.config.robot_radius, length + CELL, CELL):
            if self.occupied(start + (end - start) * min(t / max(length, 1e-9), 1.0), self.config.robot_radius):
                return False
        return True

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
