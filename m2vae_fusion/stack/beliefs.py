"""The fusion node's object table without ROS: one latent belief per object, association of sensor
encodings to objects, in-place fusion (paper Sec. III-B, Eq. 18), classification and forgetting.

Rules (the fusion node is a thin adapter around `BeliefStore.update` and `BeliefStore.forget`):

- Association: an encoding belongs to the object whose position is nearest in the plane (x, y),
  if that is within `gate` metres; otherwise it starts a new object. The plane, because objects
  stand on the floor and a sensor's estimate of the centre's height says nothing about identity.
  An object's position is the running mean of the positions of every encoding associated to it.
- A modality the belief has not sensed yet: in-place fusion, Eq. 18 - the stored z is decoded
  into the already-sensed modalities and re-encoded together with the new features through the
  subset encoder of their union (`PerceptionModel.fuse`).
- A repeat of an already-sensed modality: the same fusion, with that modality's input being the
  running mean of all its features measured for this object so far (the new one included), and
  the other sensed modalities decoded from z. Why: the subset encoder receives each modality
  exactly once, so a modality seen n times is not counted n times - the stored z's own
  reconstruction of the repeated modality is discarded, not re-fed beside the measurement - and
  the posterior keeps the spread of a single observation instead of growing overconfident. The
  objects are static, so every view is a noisy sample of the same object: the mean of n views
  refines the modality's input (view noise / n) where "the newest view wins" would let one bad
  view (partial occlusion, a crop at the image border) overturn all earlier ones.
- Encodings of one burst are processed in one go: all encodings that fall on the same object
  make one fusion step with all their modalities at once (a new object seen by several sensors
  in one burst is encoded by their joint subset encoder directly), and every updated belief is
  classified in one batch.
- Classification: one classifier on z for every subset of sensors (the M2VAE's coherent latent),
  8 classes of m2vae_fusion.sim.classes plus colour / shape / surface marginals summed from them.
- Forgetting: an object whose newest fused sensing is more than `forget_after_s` older than
  "now" (the caller's clock, in the stamps' time base) is dropped.
- Encodings are checked before anything changes: model id, modality, feature count, finite
  features and position. A rejected encoding leaves the table untouched and comes back with its
  reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.sim.classes import CLASSES, COLOURS, SHAPES, SURFACES, parse_class
from m2vae_fusion.stack.model import Belief, PerceptionModel

ATTRIBUTES: dict[str, tuple[str, ...]] = {"colour": COLOURS, "shape": SHAPES, "surface": SURFACES}
_CLASS_ATTRIBUTES = [parse_class(label) for label in CLASSES]


def attribute_probabilities(class_probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Marginals of colour, shape and surface (in ATTRIBUTES' value order) from p(class) in CLASSES order."""
    p = np.asarray(class_probabilities, dtype=float)
    if p.shape != (len(CLASSES),):
        raise ValueError(f"class probabilities must have shape ({len(CLASSES)},), got {p.shape}")
    return {
        name: np.array([sum(p[k] for k, c in enumerate(_CLASS_ATTRIBUTES) if getattr(c, name) == value) for value in values])
        for name, values in ATTRIBUTES.items()
    }


@dataclass(frozen=True)
class BeliefStoreConfig:
    gate: float = 0.06  # m, in the plane
    forget_after_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("gate", "forget_after_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class Encoding:
    """One sensor's encoding of one object observation, its position already in the store's frame."""

    modality: str
    model_id: str
    features: np.ndarray  # (feature_dim,) standardised beta-VAE means
    position: np.ndarray  # (3,) m
    stamp_ns: int  # sensor time
    robot_id: str


@dataclass(frozen=True)
class Rejection:
    encoding: Encoding
    kind: str  # "model_id" | "modality" | "size" | "non_finite"
    reason: str


@dataclass
class Evidence:
    """One modality's local measurements of one object: the newest features and the running mean."""

    last: np.ndarray
    mean: np.ndarray
    count: int = 1

    @classmethod
    def first(cls, features: np.ndarray) -> Evidence:
        return cls(features.copy(), features.astype(np.float64))

    def add(self, features: np.ndarray) -> None:
        self.count += 1
        self.last = features.copy()
        self.mean += (features - self.mean) / self.count


@dataclass
class TrackedObject:
    object_id: str
    position: np.ndarray  # (3,) running mean, in the store's frame
    belief: Belief
    class_probabilities: np.ndarray  # (8,) in CLASSES order
    last_update_ns: int
    contributors: tuple[str, ...]  # robot ids, in order of first contribution
    evidence: dict[str, Evidence]
    position_count: int = 1
    sequence: int = 1  # belief updates so far: the LatentEmbedding sequence number

    @property
    def sensed(self) -> tuple[str, ...]:
        return self.belief.sensed

    def attributes(self) -> dict[str, np.ndarray]:
        return attribute_probabilities(self.class_probabilities)


@dataclass
class UpdateResult:
    updated: list[TrackedObject] = field(default_factory=list)  # each object once, in order of first encoding
    created: list[str] = field(default_factory=list)  # object ids among `updated` that are new
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class _NewObject:
    position: np.ndarray
    position_count: int = 1


class BeliefStore:
    """The object table of one fusion node; `update` with bursts of encodings, `forget` now and then."""

    def __init__(self, model: PerceptionModel, config: BeliefStoreConfig | None = None) -> None:
        self.model = model
        self.config = config or BeliefStoreConfig()
        self.modalities: tuple[str, ...] = tuple(model.config.fusion.modality_names)
        self.feature_dim: int = model.config.feature_dim
        self.objects: dict[str, TrackedObject] = {}
        self._next_id = 1

    def check(self, encoding: Encoding) -> Rejection | None:
        """Why `encoding` cannot be fused, or None."""
        e = encoding
        if e.model_id != self.model.model_id:
            return Rejection(e, "model_id", f"model_id {e.model_id!r} is not the fusion model's {self.model.model_id!r}")
        if e.modality not in self.modalities:
            return Rejection(e, "modality", f"unknown modality {e.modality!r}; the model fuses {list(self.modalities)}")
        features = np.asarray(e.features)
        if features.shape != (self.feature_dim,):
            return Rejection(e, "size", f"features have shape {features.shape}, the model takes ({self.feature_dim},)")
        if not np.all(np.isfinite(features)):
            return Rejection(e, "non_finite", "features contain NaN or inf")
        position = np.asarray(e.position)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            return Rejection(e, "non_finite", f"position {tuple(position.ravel())} is not 3 finite numbers")
        return None

    def update(self, encodings: Iterable[Encoding]) -> UpdateResult:
        """Associate and fuse a burst of encodings; see the module docstring for the rules."""
        result = UpdateResult()
        accepted = []
        for encoding in encodings:
            rejection = self.check(encoding)
            if rejection:
                result.rejected.append(rejection)
            else:
                accepted.append(encoding)
        groups, new = self._associate(accepted)
        if not groups:
            return result
        beliefs: dict[str, Belief] = {}
        evidence: dict[str, dict[str, Evidence]] = {}
        for object_id, group in groups.items():
            obj = self.objects.get(object_id)
            evidence[object_id] = obj.evidence if obj else {}
            for e in group:
                features = np.asarray(e.features, np.float64)
                if e.modality in evidence[object_id]:
                    evidence[object_id][e.modality].add(features)
                else:
                    evidence[object_id][e.modality] = Evidence.first(features)
            inputs = {m: evidence[object_id][m].mean.astype(np.float32) for m in dict.fromkeys(e.modality for e in group)}
            beliefs[object_id] = self.model.fuse(obj.belief, inputs) if obj else self.model.belief(inputs)
        probabilities = self.model.class_probabilities(np.stack([b.mean for b in beliefs.values()]))
        for (object_id, group), p in zip(groups.items(), probabilities, strict=True):
            stamp_ns = max(e.stamp_ns for e in group)
            robots = tuple(dict.fromkeys(e.robot_id for e in group))
            obj = self.objects.get(object_id)
            if obj is None:
                draft = new[object_id]
                obj = TrackedObject(object_id, draft.position, beliefs[object_id], p, stamp_ns, robots, evidence[object_id], draft.position_count)
                self.objects[object_id] = obj
                result.created.append(object_id)
            else:
                obj.belief = beliefs[object_id]
                obj.class_probabilities = p
                obj.last_update_ns = max(obj.last_update_ns, stamp_ns)
                obj.contributors = tuple(dict.fromkeys([*obj.contributors, *robots]))
                obj.sequence += 1
            result.updated.append(obj)
        return result

    def _associate(self, encodings: list[Encoding]) -> tuple[dict[str, list[Encoding]], dict[str, _NewObject]]:
        """Object id per encoding (grouped, in order of first encoding); new objects of this burst
        take part in the association of the encodings after them."""
        groups: dict[str, list[Encoding]] = {}
        new: dict[str, _NewObject] = {}
        for e in encodings:
            position = np.asarray(e.position, np.float64)
            object_id = self._nearest(position, new)
            if object_id is None:
                object_id = f"object_{self._next_id}"
                self._next_id += 1
                new[object_id] = _NewObject(position.copy())
            else:
                target = new.get(object_id) or self.objects[object_id]
                target.position_count += 1
                target.position = target.position + (position - target.position) / target.position_count
            groups.setdefault(object_id, []).append(e)
        return groups, new

    def _nearest(self, position: np.ndarray, new: dict[str, _NewObject]) -> str | None:
        best, best_distance = None, self.config.gate
        for object_id, candidate in [*self.objects.items(), *new.items()]:
            distance = math.hypot(*(candidate.position[:2] - position[:2]))
            if distance <= best_distance:
                best, best_distance = object_id, distance
        return best

    def forget(self, now_ns: int) -> list[str]:
        """Drop objects not updated for more than forget_after_s before `now_ns`; returns their ids."""
        horizon = now_ns - round(self.config.forget_after_s * 1e9)
        stale = [object_id for object_id, obj in self.objects.items() if obj.last_update_ns < horizon]
        for object_id in stale:
            del self.objects[object_id]
        return stale

    def transform(self, parent_to_frame: np.ndarray) -> None:
        """Re-express every position in a parent frame (4x4 parent_to_frame, tf convention), e.g. when
        the node switches from odom to map."""
        for obj in self.objects.values():
            obj.position = parent_to_frame[:3, :3] @ obj.position + parent_to_frame[:3, 3]
