"""The fusion node's object table without ROS: one latent belief per object, association of sensor
encodings and of other robots' latents to objects, in-place fusion (paper Sec. III-B, Eq. 18),
classification and forgetting.

Rules (the fusion node is a thin adapter around `BeliefStore.update`, `add_latents`, `due_latents`
and `forget`):

- Association: an encoding belongs to the object whose position is nearest in the plane (x, y),
  if that is within `gate` metres; otherwise it starts a new object. The plane, because objects
  stand on the floor and a sensor's estimate of the centre's height says nothing about identity.
  An object's position is the running mean of the positions of every own encoding associated to it.
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
  in one burst is encoded by their joint subset encoder directly), the objects of the burst
  are fused in batches, one model call per (stored sensors, new sensors) (equal to one call per
  object up to float rounding), and every updated belief is classified in one batch. The same
  holds for the fused beliefs of objects that receive foreign latents.
- Association looks up the nearest object in a uniform grid over the plane with cells one gate
  wide (`PlaneIndex`): only the 3x3 cells around a position can hold an object within the gate,
  so a burst costs the same with 10 or 10 000 objects. It finds what a scan of every object in
  order of creation finds, ties in distance going to the object created last.
- Classification: one classifier on z for every subset of sensors (the M2VAE's coherent latent),
  the classes of the model's label space (m2vae_fusion.perception.labels, stored in its manifest) and
  each attribute's marginals summed from them (`PerceptionModel.labels.marginals`).
- Forgetting: foreign latents stamped more than `forget_after_s` before "now" (the caller's clock,
  in the stamps' time base) are dropped, and so is an object with neither own sensing nor a
  foreign latent newer than that.
- Encodings are checked before anything changes: model id, modality, feature count, finite
  features and position. A rejected encoding leaves the table untouched and comes back with its
  reason.

Several robots (LatentEmbedding on a shared topic):

- Two beliefs per object. The own belief (`TrackedObject.belief`) comes from this robot's own
  encodings only, by the rules above; it is the one this robot shares (`due_latents`), with
  contributors = the own robots and modalities = the own sensed ones. The fused belief
  (`TrackedObject.fused`) is what the object is classified and published by: the own belief
  combined with one foreign latent by in-place fusion, Eq. 18 - the foreign z (the stored belief)
  is decoded into its modalities that this robot has not sensed itself, and encoded together with
  the own sensing (each own modality's mean features, as for repeats) through the subset encoder
  of the union. No echo by construction: nothing foreign ever enters the own belief, so a robot's
  information cannot come back to it through another robot, however the robots are connected.
- Sharing (`due_latents`): an own belief that changed since it was last shared is due at once
  the first time, then at most `latent_rate_hz` times a second; `sequence` counts its latents.
- Own sensing wins for a modality that both sensed: the foreign reconstruction of it is not
  used. That bounds another robot's influence on an object sensed here to the modalities this
  robot lacks; a foreign latent that covers no missing modality is not used at all. What the
  foreign z decodes to is clamped to FOREIGN_FEATURE_BOUND, so it cannot feed the subset encoder
  an input farther out than real features go and outweigh the own sensing that way.
- Which foreign latent, when several robots share one object: the newest accepted latent per
  (robot, its object id) is kept, and the one covering most of the modalities this robot has not
  sensed is used, the newest stamp among equals. An object known from foreign latents only is
  published with the used latent's belief and position and is never shared (no own sensing).
- Association of a foreign latent: to the object its (robot, object id) went to before, if that
  object still exists; else by position with the same gate as encodings (both in the store's
  frame, which the caller makes sure of); else it creates an object held from foreign
  information only. Own encodings near such an object associate to it as to any other.
- Checks on foreign latents, each rejection with a kind counted in `latent_rejections`: own
  (robot id is ours), echo (our robot id among its contributors), model_id, size (mean and
  log_var of length D_z), non_finite (mean, log_var, position), magnitude (|mean| <= MAX_ABS_MEAN,
  |log_var| <= MAX_ABS_LOG_VAR: far beyond anything an encoder of the N(0, I)-regularised latent
  produces, so only corrupt or hostile values go), modality (unknown, none or repeated),
  duplicate (sequence not above the highest accepted for that (robot, object id): repeats and
  replays), stale (stamp older than the newest accepted for it - an equal stamp passes, since a
  late older sensing fused by the sender changes its belief without a newer stamp - or older than
  the forgetting horizon, so a replay stays stale after its record is forgotten) and rate (more
  than `foreign_rate_hz` accepted per foreign robot per second on average, token bucket with a
  one-second burst). Rate is checked last, so only latents that would be accepted take tokens.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.model.perception_model import Belief, PerceptionModel
from m2vae_fusion.model.plane_index import PlaneIndex
from m2vae_fusion.model.token_bucket import TokenBucket

MAX_ABS_MEAN = 100.0  # 100 standard deviations of the prior N(0, I)
MAX_ABS_LOG_VAR = 30.0  # sigma from 3e-7 to 3e6
# A foreign latent decodes to standardised features clamped to this: the AMiRo model's own features stay
# within 4.9 (train and test sets), a latent at the magnitude bounds would decode to hundreds, outside
# anything the subset encoder was trained on, and outweigh this robot's own sensors.
FOREIGN_FEATURE_BOUND = 5.0


@dataclass(frozen=True)
class BeliefStoreConfig:
    gate: float = 0.1  # m, in the plane; below half the closest spacing of two objects (world_gen: 0.15 m) plus noise
    forget_after_s: float = 600.0  # objects stay put: a robot's round of the room may take minutes
    latent_rate_hz: float = 2.0  # own latents shared per object per second, at most
    foreign_rate_hz: float = 20.0  # foreign latents accepted per foreign robot per second, at most
    # An unchanged own belief is shared again after this long: what a robot missed (cut off the network,
    # its fusion node restarted from an older snapshot, a lost message) reaches it within this period.
    reshare_after_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("gate", "forget_after_s", "latent_rate_hz", "foreign_rate_hz", "reshare_after_s"):
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
class Latent:
    """Another robot's shared belief of one of its objects (a LatentEmbedding), position in the store's frame."""

    robot_id: str
    object_id: str  # the sender's
    model_id: str
    sequence: int
    modalities: tuple[str, ...]
    contributors: tuple[str, ...]
    mean: np.ndarray  # (D_z,)
    log_var: np.ndarray  # (D_z,)
    position: np.ndarray  # (3,) m
    stamp_ns: int  # the sender's newest sensing in it

    @property
    def key(self) -> tuple[str, str]:
        return self.robot_id, self.object_id


@dataclass(frozen=True)
class Rejection:
    item: Encoding | Latent
    kind: (
        str  # encodings: model_id | modality | size | non_finite; latents also own | echo | magnitude | duplicate | stale | rate
    )
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
    position: np.ndarray  # (3,) in the store's frame: running mean of own encodings, else the used latent's
    belief: Belief | None  # own sensing only, what this robot shares; None: known from foreign latents only
    fused: Belief  # `belief` with the used foreign latent (Eq. 18): what is classified and published
    class_probabilities: np.ndarray  # (C,) of `fused`, in the order of the model's label space
    last_update_ns: int  # newest sensing in `fused`, own or foreign
    own_update_ns: int  # newest own sensing (0 while there is none)
    contributors: tuple[str, ...]  # robot ids of the own encodings, in order of first contribution
    evidence: dict[str, Evidence]
    position_count: int = 1  # own encodings averaged into `position`
    sequence: int = 0  # own latents shared so far: the LatentEmbedding sequence number of the last
    foreign: dict[tuple[str, str], Latent] = field(default_factory=dict)  # newest per (robot, its object id)
    used: Latent | None = None  # the foreign latent in `fused`
    shared_at_s: float | None = None  # caller's clock when the own belief was last shared
    unshared: bool = False  # the own belief changed since

    @property
    def sensed(self) -> tuple[str, ...]:
        """Modalities in the fused belief, own and foreign."""
        return self.fused.sensed

    @property
    def own_sensed(self) -> tuple[str, ...]:
        return self.belief.sensed if self.belief else ()

    @property
    def contributing_robots(self) -> tuple[str, ...]:
        """Robots whose sensing is in the fused belief: the own ones, then the used latent's."""
        return tuple(dict.fromkeys([*self.contributors, *(self.used.contributors if self.used else ())]))


@dataclass
class UpdateResult:
    updated: list[TrackedObject] = field(default_factory=list)  # each object once, in order of first item
    created: list[str] = field(default_factory=list)  # object ids among `updated` that are new
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class _NewObject:
    position: np.ndarray
    position_count: int = 1


class BeliefStore:
    """The object table of one robot's fusion node: `update` with bursts of own encodings,
    `add_latents` with other robots' latents, `due_latents` for what to share, `forget` now and then."""

    def __init__(self, model: PerceptionModel, robot_id: str, config: BeliefStoreConfig | None = None) -> None:
        if not robot_id:
            raise ConfigError("robot_id must not be empty")
        self.model = model
        self.robot_id = robot_id
        self.config = config or BeliefStoreConfig()
        self.modalities: tuple[str, ...] = tuple(model.config.fusion.modality_names)
        self.feature_dim: int = model.config.feature_dim
        self.latent_dim: int = model.config.fusion.latent_dim
        self.objects: dict[str, TrackedObject] = {}
        self.latent_rejections: Counter[str] = Counter()
        self._next_id = 1
        self._accepted: dict[tuple[str, str], tuple[int, int]] = {}  # (robot, its object id) -> (sequence, stamp_ns)
        self._links: dict[tuple[str, str], str] = {}  # (robot, its object id) -> our object id
        self._buckets: dict[str, TokenBucket] = {}
        self._horizon_ns = -1  # stamps before it are forgotten: latents that old are stale
        self._index = PlaneIndex(self.config.gate)  # every object's position
        self._unshared: dict[str, None] = {}  # ids of objects whose own belief changed since it was last shared
        self._oldest_ns: float = math.inf  # no own sensing or accepted latent in the table is older (a lower bound)

    # ------------------------------------------------------------ own encodings

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
        return self._check_position(e, e.position)

    def update(self, encodings: Iterable[Encoding]) -> UpdateResult:
        """Associate and fuse a burst of own encodings; see the module docstring for the rules."""
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
        jobs: dict[str, tuple[Belief | None, dict[str, np.ndarray]]] = {}
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
            sensed = {e.modality for e in group}
            inputs = {m: evidence[object_id][m].mean.astype(np.float32) for m in self.modalities if m in sensed}
            jobs[object_id] = (obj.belief if obj else None, inputs)
        beliefs = self._fuse_batched(jobs)
        for object_id, group in groups.items():
            stamp_ns = max(e.stamp_ns for e in group)
            robots = tuple(dict.fromkeys(e.robot_id for e in group))
            obj = self.objects.get(object_id)
            if obj is None:
                draft = new[object_id]
                belief = beliefs[object_id]
                obj = TrackedObject(
                    object_id,
                    draft.position,
                    belief,
                    belief,
                    np.zeros(len(self.model.labels.classes)),
                    stamp_ns,
                    stamp_ns,
                    robots,
                    evidence[object_id],
                    draft.position_count,
                )
                self.objects[object_id] = obj
                self._index.place(object_id, obj.position)
                result.created.append(object_id)
            else:
                obj.belief = beliefs[object_id]
                obj.own_update_ns = max(obj.own_update_ns, stamp_ns)
                obj.contributors = tuple(dict.fromkeys([*obj.contributors, *robots]))
            self._mark_unshared(obj)
            self._oldest_ns = min(self._oldest_ns, obj.own_update_ns)
            result.updated.append(obj)
        self._refuse(result.updated)
        return result

    def _associate(self, encodings: list[Encoding]) -> tuple[dict[str, list[Encoding]], dict[str, _NewObject]]:
        """Object id per encoding (grouped, in order of first encoding); new objects of this burst
        take part in the association of the encodings after them."""
        groups: dict[str, list[Encoding]] = {}
        new: dict[str, _NewObject] = {}
        drafts = PlaneIndex(self.config.gate)  # the burst's new objects, created after every stored one
        for e in encodings:
            position = np.asarray(e.position, np.float64)
            object_id = self._nearest(position, drafts)
            if object_id is None:
                object_id = self._new_id()
                new[object_id] = _NewObject(position.copy())
                drafts.place(object_id, position)
            else:
                # an object known from foreign latents only has position_count 0: its first own encoding sets it
                target = new.get(object_id) or self.objects[object_id]
                target.position_count += 1
                target.position = target.position + (position - target.position) / target.position_count
                (drafts if object_id in new else self._index).place(object_id, target.position)
            groups.setdefault(object_id, []).append(e)
        return groups, new

    def _nearest(self, position: np.ndarray, drafts: PlaneIndex | None = None) -> str | None:
        """The nearest object within the gate, stored or among `drafts` (newer than every stored one)."""
        found = self._index.nearest(position)
        draft = drafts.nearest(position) if drafts else None
        if draft is not None and (found is None or draft[1] <= found[1]):
            found = draft
        return None if found is None else found[0]

    def _fuse_batched(
        self, jobs: dict[str, tuple[Belief | None, dict[str, np.ndarray]]], decoded_bound: float | None = None
    ) -> dict[str, Belief]:
        """Per key, the stored belief (None: none yet) fused with the new sensing (Eq. 18) or a new
        belief from it: one model call per (stored sensors, new sensors); `jobs`' sensors in model order.
        `decoded_bound`: clamp what the stored beliefs decode to (foreign latents)."""
        batches: dict[tuple[tuple[str, ...] | None, tuple[str, ...]], list[str]] = {}
        for key, (stored, new) in jobs.items():
            batches.setdefault((stored.sensed if stored else None, tuple(new)), []).append(key)
        fused: dict[str, Belief] = {}
        for (sensed, names), keys in batches.items():
            features = {m: np.stack([jobs[k][1][m] for k in keys]) for m in names}
            stored = [jobs[k][0] for k in keys]
            beliefs = (
                self.model.belief_batch(features) if sensed is None else self.model.fuse_batch(stored, features, decoded_bound)
            )
            fused.update(zip(keys, beliefs, strict=True))
        return fused

    def _new_id(self) -> str:
        object_id = f"object_{self._next_id}"
        self._next_id += 1
        return object_id

    # ------------------------------------------------------------ other robots' latents

    def check_latent(self, latent: Latent) -> Rejection | None:
        """Why `latent` cannot be fused, or None (the rate limit aside: `add_latents` applies it)."""
        x = latent
        if x.robot_id == self.robot_id:
            return Rejection(x, "own", f"robot_id {x.robot_id!r} is this robot's")
        if self.robot_id in x.contributors:
            return Rejection(x, "echo", f"its contributors {list(x.contributors)} include this robot {self.robot_id!r}")
        if x.model_id != self.model.model_id:
            return Rejection(x, "model_id", f"model_id {x.model_id!r} is not the fusion model's {self.model.model_id!r}")
        mean, log_var = np.asarray(x.mean), np.asarray(x.log_var)
        if mean.shape != (self.latent_dim,) or log_var.shape != (self.latent_dim,):
            return Rejection(
                x,
                "size",
                f"mean and log_var have shapes {mean.shape} and {log_var.shape}, the model's latent is ({self.latent_dim},)",
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(log_var))):
            return Rejection(x, "non_finite", "mean or log_var contain NaN or inf")
        if np.abs(mean).max() > MAX_ABS_MEAN or np.abs(log_var).max() > MAX_ABS_LOG_VAR:
            return Rejection(
                x,
                "magnitude",
                f"|mean| up to {np.abs(mean).max():.3g} or |log_var| up to {np.abs(log_var).max():.3g} "
                f"(bounds {MAX_ABS_MEAN:g}, {MAX_ABS_LOG_VAR:g})",
            )
        unknown = [m for m in x.modalities if m not in self.modalities]
        if unknown or not x.modalities or len(set(x.modalities)) != len(x.modalities):
            return Rejection(x, "modality", f"modalities {list(x.modalities)} are not distinct ones of {list(self.modalities)}")
        rejection = self._check_position(x, x.position)
        if rejection:
            return rejection
        sequence, stamp_ns = self._accepted.get(x.key, (-1, -1))
        if x.sequence <= sequence:
            return Rejection(
                x, "duplicate", f"sequence {x.sequence} is not above {sequence}, the last accepted for {x.robot_id}/{x.object_id}"
            )
        if x.stamp_ns < stamp_ns:
            return Rejection(
                x,
                "stale",
                f"stamp {x.stamp_ns * 1e-9:.3f} s is older than {stamp_ns * 1e-9:.3f} s, the last accepted for {x.robot_id}/{x.object_id}",
            )
        if x.stamp_ns < self._horizon_ns:
            return Rejection(
                x,
                "stale",
                f"stamp {x.stamp_ns * 1e-9:.3f} s is older than the forgetting horizon {self._horizon_ns * 1e-9:.3f} s",
            )
        return None

    def add_latents(self, latents: Iterable[Latent], now_s: float) -> UpdateResult:
        """Check, associate and fuse other robots' latents (`now_s`: the caller's monotonic clock, for
        the rate limit); see the module docstring for the rules."""
        result = UpdateResult()
        touched: dict[str, TrackedObject] = {}
        rate = self.config.foreign_rate_hz
        for latent in latents:
            rejection = self.check_latent(latent)
            if rejection is None and not self._buckets.setdefault(latent.robot_id, TokenBucket(rate, max(1.0, rate), now_s)).take(
                now_s
            ):
                rejection = Rejection(latent, "rate", f"robot {latent.robot_id!r} sends more than {rate:g} latents per second")
            if rejection:
                self.latent_rejections[rejection.kind] += 1
                result.rejected.append(rejection)
                continue
            self._accepted[latent.key] = (latent.sequence, latent.stamp_ns)
            self._oldest_ns = min(self._oldest_ns, latent.stamp_ns)
            object_id = self._links.get(latent.key)
            if object_id not in self.objects:
                object_id = self._nearest(np.asarray(latent.position, np.float64))
            if object_id is None:
                object_id = self._new_id()
                belief = self._latent_belief(latent)
                self.objects[object_id] = TrackedObject(
                    object_id,
                    np.array(latent.position, np.float64),
                    None,
                    belief,
                    np.zeros(len(self.model.labels.classes)),
                    latent.stamp_ns,
                    0,
                    (),
                    {},
                    position_count=0,
                )
                self._index.place(object_id, self.objects[object_id].position)
                result.created.append(object_id)
            self._links[latent.key] = object_id
            obj = self.objects[object_id]
            obj.foreign[latent.key] = latent
            touched[object_id] = obj
        result.updated = list(touched.values())
        self._refuse(result.updated)
        return result

    def _latent_belief(self, latent: Latent) -> Belief:
        return Belief(
            np.asarray(latent.mean, np.float32),
            np.asarray(latent.log_var, np.float32),
            tuple(m for m in self.modalities if m in latent.modalities),
        )

    def _refuse(self, objects: list[TrackedObject]) -> None:
        """Fused beliefs (own + the chosen foreign latent, Eq. 18) and their classes, in one batch."""
        if not objects:
            return
        jobs: dict[str, tuple[Belief | None, dict[str, np.ndarray]]] = {}
        for obj in objects:
            own = set(obj.own_sensed)
            missing = {key: len(set(x.modalities) - own) for key, x in obj.foreign.items()}
            candidates = [x for key, x in obj.foreign.items() if missing[key]]
            obj.used = max(candidates, key=lambda x: (missing[x.key], x.stamp_ns), default=None)
            if obj.used is None:
                obj.fused = obj.belief
            elif obj.belief is None:
                obj.fused = self._latent_belief(obj.used)
                obj.position = np.array(obj.used.position, np.float64)
                self._index.place(obj.object_id, obj.position)
            else:
                # own sensing wins: the fusion decodes only the foreign modalities not in `own`
                jobs[obj.object_id] = (
                    self._latent_belief(obj.used),
                    {m: obj.evidence[m].mean.astype(np.float32) for m in obj.own_sensed},
                )
            obj.last_update_ns = max(obj.own_update_ns, obj.used.stamp_ns if obj.used else 0)
        for object_id, fused in self._fuse_batched(jobs, FOREIGN_FEATURE_BOUND).items():
            self.objects[object_id].fused = fused
        probabilities = self.model.class_probabilities(np.stack([obj.fused.mean for obj in objects]))
        for obj, p in zip(objects, probabilities, strict=True):
            obj.class_probabilities = p

    def _check_position(self, item: Encoding | Latent, position: np.ndarray) -> Rejection | None:
        position = np.asarray(position)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            return Rejection(item, "non_finite", f"position {tuple(position.ravel())} is not 3 finite numbers")
        return None

    # ------------------------------------------------------------ sharing, forgetting, frames

    def due_latents(self, now_s: float) -> list[TrackedObject]:
        """Objects whose own belief is to be shared now (`now_s`: the caller's monotonic clock): changed
        since it was last shared and that at least 1 / latent_rate_hz ago, or never shared. Each
        returned object's `sequence` is advanced: the caller must send them."""
        period = 1.0 / self.config.latent_rate_hz
        # only the changed objects are looked at: this runs every burst, whatever the number of objects
        changed = [self.objects[object_id] for object_id in self._unshared]
        due = [obj for obj in changed if obj.shared_at_s is None or now_s - obj.shared_at_s >= period]
        due.sort(key=lambda obj: self._index.rank(obj.object_id))
        for obj in due:
            obj.sequence += 1
            obj.shared_at_s, obj.unshared = now_s, False
            del self._unshared[obj.object_id]
        return due

    def reshare(self, now_s: float, budget: int) -> int:
        """Mark for sharing (`due_latents`) the own beliefs last shared more than reshare_after_s before
        `now_s`, longest unshared first, at most `budget` of them (the receivers' rate limit is per
        robot: re-sharing many objects at once would crowd out the changed ones); returns how many."""
        horizon = now_s - self.config.reshare_after_s
        old = [
            obj
            for obj in self.objects.values()
            if obj.belief is not None and not obj.unshared and (obj.shared_at_s or 0.0) <= horizon
        ]
        old.sort(key=lambda obj: obj.shared_at_s or 0.0)
        for obj in old[:budget]:
            self._mark_unshared(obj)
        return min(len(old), budget)

    def _mark_unshared(self, obj: TrackedObject) -> None:
        """`obj`'s own belief is due for sharing (`due_latents` looks only at these)."""
        obj.unshared = True
        self._unshared[obj.object_id] = None

    def forget(self, now_ns: int) -> list[str]:
        """Drop foreign latents stamped more than forget_after_s before `now_ns`, then objects with
        neither own sensing nor a foreign latent newer than that (re-fusing the others that lost a
        latent); returns the dropped objects' ids."""
        horizon = now_ns - round(self.config.forget_after_s * 1e9)
        self._horizon_ns = max(self._horizon_ns, horizon)
        if horizon <= self._oldest_ns:
            return []  # nothing is that old: no need to look at every object and latent
        stale, changed = [], []
        for object_id, obj in self.objects.items():
            old = [key for key, x in obj.foreign.items() if x.stamp_ns < horizon]
            for key in old:
                del obj.foreign[key]
            if obj.own_update_ns < horizon and not obj.foreign:
                stale.append(object_id)
            elif old:
                changed.append(obj)
        for object_id in stale:
            del self.objects[object_id]
            self._index.remove(object_id)
            self._unshared.pop(object_id, None)
        self._refuse(changed)
        self._accepted = {key: value for key, value in self._accepted.items() if value[1] >= horizon}
        if stale:
            self._links = {key: object_id for key, object_id in self._links.items() if object_id in self.objects}
        self._recompute_oldest()
        return stale

    def _recompute_oldest(self) -> None:
        """The oldest own sensing, held foreign latent or accepted record: what `forget` looks past."""
        self._oldest_ns = min(
            itertools.chain(
                (obj.own_update_ns for obj in self.objects.values() if obj.belief is not None),
                (x.stamp_ns for obj in self.objects.values() for x in obj.foreign.values()),
                (stamp_ns for _, stamp_ns in self._accepted.values()),
            ),
            default=math.inf,
        )

    # ------------------------------------------------------------ persistence (model.belief_snapshot)

    def state(self) -> dict:
        """Everything the table knows, as plain JSON types: each object's own belief, evidence,
        position and sharing sequence, the foreign latents it holds, and the records that refuse
        replays (accepted sequences and stamps, links, the forgetting horizon). Fused beliefs and
        classes are not stored: `from_state` recomputes them. Not stored either: rate buckets and
        what is due for sharing (a restored store shares every own belief once more)."""
        return {
            "next_id": self._next_id,
            "horizon_ns": self._horizon_ns,
            "accepted": [[*key, sequence, stamp] for key, (sequence, stamp) in self._accepted.items()],
            "links": [[*key, object_id] for key, object_id in self._links.items()],
            "objects": [_object_state(obj) for obj in self.objects.values()],
        }

    @classmethod
    def from_state(cls, model: PerceptionModel, robot_id: str, config: BeliefStoreConfig | None, state: dict) -> BeliefStore:
        """A store holding `state` (from `state()`), fused beliefs and classes recomputed. Raises
        ValueError (or KeyError / TypeError) naming the first part that does not fit the model."""
        store = cls(model, robot_id, config)
        store._next_id = int(state["next_id"])
        store._horizon_ns = int(state["horizon_ns"])
        store._accepted = {(str(r), str(o)): (int(seq), int(stamp)) for r, o, seq, stamp in state["accepted"]}
        store._links = {(str(r), str(o)): str(object_id) for r, o, object_id in state["links"]}
        for item in state["objects"]:
            obj = store._object_from_state(item)
            store.objects[obj.object_id] = obj
            store._index.place(obj.object_id, obj.position)
            if obj.belief is not None:
                store._mark_unshared(obj)
        store._recompute_oldest()
        store._refuse(list(store.objects.values()))
        return store

    def skip_ahead(self, ids: int, sequences: int) -> None:
        """After a restore from a snapshot: the lost time since it may have given out up to `ids`
        object ids and `sequences` latents per object, which other robots hold on to (they link a
        (robot, object id) to their object and refuse sequence numbers not above the last they
        took), so none of them is given out again."""
        self._next_id += ids
        for obj in self.objects.values():
            if obj.belief is not None:
                obj.sequence += sequences

    def _object_from_state(self, item: dict) -> TrackedObject:
        own = item["belief"]
        belief = None if own is None else self._checked_belief(own["mean"], own["log_var"], own["sensed"])
        evidence = {}
        for modality, e in item["evidence"].items():
            if modality not in self.modalities:
                raise ValueError(f"object {item['id']}: unknown modality {modality!r}")
            last, mean = np.asarray(e["last"], np.float32), np.asarray(e["mean"], np.float64)
            if last.shape != (self.feature_dim,) or mean.shape != (self.feature_dim,):
                raise ValueError(f"object {item['id']}: {modality} features do not have the model's {self.feature_dim} values")
            evidence[modality] = Evidence(last, mean, int(e["count"]))
        foreign = {}
        for x in item["foreign"]:
            latent = Latent(
                str(x["robot_id"]),
                str(x["object_id"]),
                self.model.model_id,
                int(x["sequence"]),
                tuple(x["modalities"]),
                tuple(x["contributors"]),
                np.asarray(x["mean"], np.float32),
                np.asarray(x["log_var"], np.float32),
                np.asarray(x["position"], np.float64),
                int(x["stamp_ns"]),
            )
            self._checked_belief(latent.mean, latent.log_var, latent.modalities)
            foreign[latent.key] = latent
        if belief is None and not foreign:
            raise ValueError(f"object {item['id']}: neither own sensing nor a foreign latent")
        position = np.asarray(item["position"], np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"object {item['id']}: position {item['position']!r} is not 3 finite numbers")
        return TrackedObject(
            str(item["id"]),
            position,
            belief,
            belief or Belief(np.zeros(self.latent_dim, np.float32), np.zeros(self.latent_dim, np.float32), ()),
            np.zeros(len(self.model.labels.classes)),
            0,
            int(item["own_update_ns"]),
            tuple(item["contributors"]),
            evidence,
            position_count=int(item["position_count"]),
            sequence=int(item["sequence"]),
            foreign=foreign,
        )

    def _checked_belief(self, mean: list | np.ndarray, log_var: list | np.ndarray, sensed: Iterable[str]) -> Belief:
        belief = Belief(np.asarray(mean, np.float32), np.asarray(log_var, np.float32), tuple(sensed))
        if belief.mean.shape != (self.latent_dim,) or belief.log_var.shape != (self.latent_dim,):
            raise ValueError(
                f"a belief of shapes {belief.mean.shape}, {belief.log_var.shape}: the model's latent is ({self.latent_dim},)"
            )
        if not (np.all(np.isfinite(belief.mean)) and np.all(np.isfinite(belief.log_var))):
            raise ValueError("a belief holds NaN or inf")
        if not belief.sensed or any(m not in self.modalities for m in belief.sensed):
            raise ValueError(f"a belief's modalities {list(belief.sensed)} are not ones of {list(self.modalities)}")
        return belief

    def transform(self, parent_to_frame: np.ndarray) -> None:
        """Re-express every position in a parent frame (4x4 parent_to_frame, tf convention), e.g. when
        the node switches from odom to map."""

        def moved(position: np.ndarray) -> np.ndarray:
            return parent_to_frame[:3, :3] @ position + parent_to_frame[:3, 3]

        for obj in self.objects.values():
            obj.position = moved(obj.position)
            obj.foreign = {key: replace(x, position=moved(np.asarray(x.position, np.float64))) for key, x in obj.foreign.items()}
            if obj.used is not None:
                obj.used = obj.foreign[obj.used.key]
            self._index.place(obj.object_id, obj.position)


def _object_state(obj: TrackedObject) -> dict:
    own = obj.belief
    return {
        "id": obj.object_id,
        "position": obj.position.tolist(),
        "belief": None
        if own is None
        else {"mean": own.mean.tolist(), "log_var": own.log_var.tolist(), "sensed": list(own.sensed)},
        "own_update_ns": obj.own_update_ns,
        "contributors": list(obj.contributors),
        "evidence": {m: {"last": e.last.tolist(), "mean": e.mean.tolist(), "count": e.count} for m, e in obj.evidence.items()},
        "position_count": obj.position_count,
        "sequence": obj.sequence,
        "foreign": [
            {
                "robot_id": x.robot_id,
                "object_id": x.object_id,
                "sequence": x.sequence,
                "modalities": list(x.modalities),
                "contributors": list(x.contributors),
                "mean": np.asarray(x.mean).tolist(),
                "log_var": np.asarray(x.log_var).tolist(),
                "position": np.asarray(x.position, np.float64).tolist(),
                "stamp_ns": x.stamp_ns,
            }
            for x in obj.foreign.values()
        ],
    }
