"""The nodes' transform cache, fed from /tf and /tf_static and asked like tf2_ros.Buffer:
`lookup_transform(target_frame, source_frame, time[, timeout])` -> geometry_msgs/TransformStamped
(header.frame_id = target, child_frame_id = source: it maps points given in the source frame into the
target frame), so a system install's tf2_ros.Buffer can take its place.

What differs from tf2 (on purpose, the nodes rely on it):
- a time-stamped (/tf) transform is looked up between exactly the two frames of a message, never
  chained; the answer is the newest sample at or before `time` (no interpolation), the newest of all
  for a time after it, and `rclpy.time.Time()` (zero) asks for the newest, as in tf2;
- a time before the oldest sample raises ExtrapolationException, or with `clamp_to_oldest` answers
  the oldest sample (a node that would rather place an encoding with a slightly late map -> odom
  than drop it);
- static (/tf_static) transforms chain through the tree, whatever `time`; a later one for the same
  child frame replaces the earlier, a malformed one too (the latest word on a frame counts: lookups
  through it fail, naming it, until a good one comes);
- samples older than `cache_time_s` before an edge's newest are dropped, and a sample more than that
  before the newest (time jumped back: a restarted simulation, a looped bag) starts the edge over;
- `timeout` is taken and ignored: the nodes' callbacks run on one thread, so waiting here would hold
  up the very message that brings the transform.
Leading '/' of frame names are ignored, as tf2 does.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from geometry_msgs.msg import TransformStamped

from m2vae_fusion.perception import frames
from m2vae_fusion.perception.readings import Transform
from m2vae_fusion.perception.ros_messages import matrix_from_msg, transform_from_msg
from m2vae_fusion.ros_interface import stamps

DEFAULT_CACHE_TIME_S = 10.0  # tf2_ros.Buffer's default cache_time


class TransformException(LookupError):
    """No transform between two frames; the message names both."""


class LookupException(TransformException):
    """Neither /tf nor /tf_static connects the two frames."""


class ExtrapolationException(TransformException):
    """The frames are connected on /tf, but not as early as the time asked for."""


@dataclass
class _Edge:
    stamps: list[int] = field(default_factory=list)  # ns, ascending
    messages: list[TransformStamped] = field(default_factory=list)


def _frame(name: str) -> str:
    return name.lstrip("/")


class TransformBuffer:
    """/tf and /tf_static as the node received them; see the module's description for the lookups."""

    def __init__(self, cache_time_s: float = DEFAULT_CACHE_TIME_S, clamp_to_oldest: bool = False) -> None:
        if not cache_time_s > 0:
            raise ValueError(f"cache_time_s must be > 0, got {cache_time_s}")
        self.cache_ns = round(cache_time_s * 1e9)
        self.clamp_to_oldest = clamp_to_oldest
        self._edges: dict[tuple[str, str], _Edge] = {}  # (parent, child) -> samples
        self._static: dict[str, Transform] = {}  # child -> its transform from its parent
        self._chains: dict[tuple[str, str], np.ndarray] = {}  # static lookups, until the next static transform

    # ------------------------------------------------------------ feeding

    def set_transform(self, transform: TransformStamped, authority: str = "") -> bool:
        """Add one /tf sample (tf2's signature); ValueError naming the frames for a malformed one,
        which is not stored. True when time jumped back and the edge's older samples are gone."""
        parent, child = _frame(transform.header.frame_id), _frame(transform.child_frame_id)
        self._check(transform, parent, child)
        stamp = stamps.to_ns(transform.header.stamp)
        edge = self._edges.setdefault((parent, child), _Edge())
        jumped = bool(edge.stamps) and stamp < edge.stamps[-1] - self.cache_ns
        if jumped:
            edge.stamps.clear()
            edge.messages.clear()
        i = bisect.bisect(edge.stamps, stamp)
        edge.stamps.insert(i, stamp)
        edge.messages.insert(i, transform)
        old = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
        del edge.stamps[:old], edge.messages[:old]
        return jumped

    def set_transform_static(self, transform: TransformStamped, authority: str = "") -> None:
        """Add one /tf_static transform (tf2's signature)."""
        parent, child = _frame(transform.header.frame_id), _frame(transform.child_frame_id)
        self._static[child] = transform_from_msg(parent, child, transform.transform)
        self._chains.clear()

    @staticmethod
    def _check(transform: TransformStamped, parent: str, child: str) -> None:
        try:
            matrix_from_msg(transform.transform)
        except ValueError as exc:
            raise ValueError(f"{parent} -> {child}: {exc}") from None

    # ------------------------------------------------------------ asking

    @property
    def has_static(self) -> bool:
        """Whether any /tf_static transform has arrived."""
        return bool(self._static)

    def children(self, parent: str) -> list[str]:
        """Frames with a /tf or /tf_static transform from `parent`."""
        parent = _frame(parent)
        timed = [child for (p, child), edge in self._edges.items() if p == parent and edge.stamps]
        return timed + [child for child, t in self._static.items() if t.parent == parent and child not in timed]

    def newest_ns(self, target_frame: str, source_frame: str) -> int | None:
        """Stamp of the newest /tf sample target -> source, None before the first."""
        edge = self._edges.get((_frame(target_frame), _frame(source_frame)))
        return edge.stamps[-1] if edge and edge.stamps else None

    def can_transform(self, target_frame: str, source_frame: str, time: Any, timeout: Any = None) -> bool:
        try:
            self.lookup_transform(target_frame, source_frame, time, timeout)
        except TransformException:
            return False
        return True

    def lookup_transform(self, target_frame: str, source_frame: str, time: Any, timeout: Any = None) -> TransformStamped:
        """target_frame <- source_frame at `time` (rclpy.time.Time; zero: the newest)."""
        target, source = _frame(target_frame), _frame(source_frame)
        at_ns = time.nanoseconds
        edge = self._edges.get((target, source))
        if edge and edge.stamps:
            return self._sample(edge, target, source, at_ns)
        if target == source:
            return self._stamped(target, source, np.eye(4), at_ns)
        return self._stamped(target, source, self._static_chain(target, source), at_ns)

    def lookup_matrix(self, target_frame: str, source_frame: str, time: Any) -> np.ndarray:
        """lookup_transform as a 4x4 matrix."""
        return matrix_from_msg(self.lookup_transform(target_frame, source_frame, time).transform)

    def _sample(self, edge: _Edge, target: str, source: str, at_ns: int) -> TransformStamped:
        if at_ns == 0:
            return edge.messages[-1]
        i = bisect.bisect_right(edge.stamps, at_ns)
        if i == 0 and not self.clamp_to_oldest:
            raise ExtrapolationException(
                f"no {target} -> {source} on /tf at or before {at_ns * 1e-9:.3f} s (the oldest kept is {edge.stamps[0] * 1e-9:.3f} s)"
            )
        return edge.messages[max(i - 1, 0)]

    def _static_chain(self, target: str, source: str) -> np.ndarray:
        if (target, source) not in self._chains:
            try:
                self._chains[(target, source)] = frames.lookup(self._static.values(), target, source)
            except KeyError as exc:
                raise LookupException(exc.args[0]) from None
            except ValueError as exc:  # a malformed transform on the chain
                raise LookupException(f"from {target!r} to {source!r}: {exc}") from None
        return self._chains[(target, source)]

    @staticmethod
    def _stamped(target: str, source: str, matrix: np.ndarray, at_ns: int) -> TransformStamped:
        msg = TransformStamped(child_frame_id=source)
        msg.header.frame_id = target
        msg.header.stamp = stamps.from_ns(at_ns)
        (tx, ty, tz), (qx, qy, qz, qw) = frames.to_translation_quaternion(matrix)
        t, q = msg.transform.translation, msg.transform.rotation
        t.x, t.y, t.z = tx, ty, tz
        q.x, q.y, q.z, q.w = qx, qy, qz, qw
        return msg
