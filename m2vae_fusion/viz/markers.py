"""Object beliefs -> what to draw for each object: its estimated shape and colour at its position, the
class confidence as opacity, a caption with class, confidence and the sensors (and robots) fused in.

Works on any object with the fields of m2vae_msgs/ObjectBelief (an rclpy message or a `rosbags`
dataclass read from a bag), so the viz node's markers and `m2vae plot beliefs` draw the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

# The primitives of models/: 0.12 m tall, a 0.06 m cylinder and a cube of the same footprint area.
HEIGHT = 0.12
CYLINDER_DIAMETER = 0.06
CUBE_SIDE = float(np.sqrt(np.pi) * CYLINDER_DIAMETER / 2)
# The primitives' diffuse colours (models/*/model.sdf); grey for a class name that is not <colour>_<shape>_<surface>.
RGB = {"red": (0.75, 0.08, 0.08), "green": (0.08, 0.6, 0.12)}
UNKNOWN_RGB = (0.5, 0.5, 0.5)
SHAPES = ("cylinder", "cube")  # the bodies a marker can draw
# A uniform belief still shows faintly; a certain one is opaque.
MIN_ALPHA = 0.15
CAPTION_GAP = 0.04  # m between the object's top and its caption


@dataclass(frozen=True)
class ObjectMarker:
    """One object as drawn: a body (cylinder or cube) standing on the floor and a caption above it."""

    marker_id: int  # stable while the object exists; rviz keys markers by (namespace, id)
    object_id: str
    x: float
    y: float
    shape: str  # "cylinder" | "cube"
    colour: str  # "red" | "green" | "unknown"
    rgb: tuple[float, float, float]
    alpha: float
    class_name: str
    confidence: float  # p(argmax class | z)
    modalities: tuple[str, ...]
    robots: tuple[str, ...]

    @property
    def size(self) -> tuple[float, float, float]:
        side = CUBE_SIDE if self.shape == "cube" else CYLINDER_DIAMETER
        return side, side, HEIGHT

    @property
    def caption(self) -> str:
        sensed = "+".join(self.modalities) or "nothing sensed"
        robots = f"\nfrom {', '.join(self.robots)}" if len(self.robots) > 1 else ""
        return f"{self.object_id} {self.confidence:.0%}\n{self.class_name}\n{sensed}{robots}"


def alpha_for(confidence: float, classes: int) -> float:
    """Opacity rising linearly from MIN_ALPHA at the uniform belief (1 / classes) to 1 at certainty."""
    floor = 1.0 / max(classes, 1)
    share = (confidence - floor) / (1.0 - floor) if classes > 1 else 1.0
    return MIN_ALPHA + (1.0 - MIN_ALPHA) * float(np.clip(share, 0.0, 1.0))


def most_probable(belief: Any, attribute: str) -> str | None:
    """The most probable value of one of an ObjectBelief's attributes; None if it has no such attribute."""
    for a in belief.attributes:
        if a.name == attribute and len(a.values) and len(a.values) == len(a.probabilities):
            return str(a.values[int(np.argmax(np.asarray(a.probabilities, dtype=np.float64)))])
    return None


def object_marker(belief: Any, marker_id: int) -> ObjectMarker:
    """The drawing of one ObjectBelief: the most probable class, drawn in the most probable values of the
    belief's `colour` and `shape` attributes where its model's label space has them (grey cylinders
    where not: labels are the model's, see perception/labels.py)."""
    p = np.asarray(belief.class_probabilities, dtype=np.float64)
    names = list(belief.class_names)
    if p.ndim != 1 or len(p) == 0 or len(p) != len(names) or not np.all(np.isfinite(p)):
        raise ValueError(
            f"belief {belief.object_id!r}: {len(p)} class probabilities for {len(names)} class names, "
            "expected one finite probability per class"
        )
    best = int(np.argmax(p))
    colour, shape = most_probable(belief, "colour") or "unknown", most_probable(belief, "shape")
    return ObjectMarker(
        marker_id=marker_id,
        object_id=belief.object_id,
        x=float(belief.position.x),
        y=float(belief.position.y),
        shape=shape if shape in SHAPES else "cylinder",
        colour=colour,
        rgb=RGB.get(colour, UNKNOWN_RGB),
        alpha=alpha_for(float(p[best]), len(p)),
        class_name=names[best],
        confidence=float(p[best]),
        modalities=tuple(belief.modalities),
        robots=tuple(belief.contributing_robots),
    )


@dataclass(frozen=True)
class MarkerUpdate:
    objects: list[ObjectMarker]
    deleted: list[int]  # marker ids of objects that were drawn before and are gone now


class MarkerBook:
    """Keeps marker ids stable per object id across updates and says which ones to delete."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._next = 0

    def update(self, beliefs: Iterable[Any]) -> MarkerUpdate:
        objects = []
        for belief in beliefs:
            if belief.object_id not in self._ids:
                self._ids[belief.object_id] = self._next
                self._next += 1
            objects.append(object_marker(belief, self._ids[belief.object_id]))
        current = {o.object_id for o in objects}
        gone = [object_id for object_id in self._ids if object_id not in current]
        deleted = [self._ids.pop(object_id) for object_id in gone]
        return MarkerUpdate(objects, deleted)
