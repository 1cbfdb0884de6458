"""Rigid transforms as 4x4 homogeneous matrices.

Convention (tf's): `parent_to_child` is the pose of the child frame in the parent frame, so it maps
points given in the child frame into the parent frame: p_parent = parent_to_child @ p_child.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from m2vae_fusion.perception.readings import Transform

__all__ = [
    "apply",
    "compose",
    "default_frame_prefix",
    "from_translation_quaternion",
    "inverse",
    "lookup",
    "matrix_quaternion",
    "matrix_yaw",
    "planar",
    "pose_matrix",
    "to_translation_quaternion",
]


def from_translation_quaternion(translation: Sequence[float], quaternion: Sequence[float]) -> np.ndarray:
    """4x4 transform from a translation (x, y, z) and a rotation quaternion (x, y, z, w)."""
    q = np.asarray(quaternion, dtype=float)
    norm = float(np.linalg.norm(q))
    if q.shape != (4,) or not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"quaternion must be 4 finite numbers (x, y, z, w), not all 0; got {tuple(quaternion)}")
    x, y, z, w = q / norm
    t = np.eye(4)
    t[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    t[:3, 3] = _vector(translation, "translation")
    return t


def to_translation_quaternion(t: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """The inverse of `from_translation_quaternion`."""
    return (float(t[0, 3]), float(t[1, 3]), float(t[2, 3])), matrix_quaternion(t)


def planar(x: float, y: float, yaw: float) -> np.ndarray:
    """A pose in the plane (e.g. map -> base_link from a Pose2D) as a 4x4 transform."""
    return pose_matrix(x, y, 0.0, 0.0, 0.0, yaw)


def compose(*transforms: np.ndarray) -> np.ndarray:
    """a_to_b, b_to_c, ... -> a_to_z (left to right along the chain)."""
    result = np.eye(4)
    for t in transforms:
        result = result @ t
    return result


def inverse(t: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (transposed rotation; no general matrix inversion)."""
    r = t[:3, :3]
    inv = np.eye(4)
    inv[:3, :3] = r.T
    inv[:3, 3] = -r.T @ t[:3, 3]
    return inv


def apply(t: np.ndarray, points: np.ndarray | Sequence[float]) -> np.ndarray:
    """Map one point (3,) or many (N, 3) through `t`."""
    p = np.asarray(points, dtype=float)
    if p.shape[-1:] != (3,) or p.ndim > 2:
        raise ValueError(f"points must have shape (3,) or (N, 3), got {p.shape}")
    return p @ t[:3, :3].T + t[:3, 3]


def lookup(transforms: Iterable[Transform], parent: str, child: str) -> np.ndarray:
    """parent_to_child from a set of static transforms (a tree, e.g. /tf_static), walking up from the child."""
    up = {}
    for tr in transforms:
        up[tr.child] = (tr.parent, from_translation_quaternion(tr.translation, tr.rotation))
    chain = []
    frame = child
    while frame != parent:
        if frame not in up:
            raise KeyError(f"no transform chain from {parent!r} to {child!r}: {frame!r} has no parent among the transforms")
        frame, t = up[frame]
        chain.append(t)
        if len(chain) > len(up):
            raise KeyError(f"the transforms from {parent!r} to {child!r} form a loop")
    return compose(*reversed(chain))


def _vector(values: Sequence[float], name: str) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be 3 finite numbers, got {tuple(values)}")
    return v


def pose_matrix(x: float, y: float, z: float, roll: float, pitch: float, yaw: float) -> np.ndarray:
    """4x4 homogeneous transform of an SDF pose (fixed-axis roll, pitch, yaw: R = Rz Ry Rx)."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    t = np.eye(4)
    t[:3, :3] = [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ]
    t[:3, 3] = (x, y, z)
    return t


def matrix_quaternion(t: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation of a 4x4 transform as a unit quaternion (x, y, z, w)."""
    r = t[:3, :3]
    w = math.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    n = math.sqrt(x * x + y * y + z * z + w * w)
    return (x / n, y / n, z / n, w / n)


def matrix_yaw(t: np.ndarray) -> float:
    """Heading (rotation about z) of a 4x4 transform."""
    return math.atan2(t[1, 0], t[0, 0])


def default_frame_prefix(namespace: str) -> str:
    """The tf frame prefix of a robot in a node namespace: `/robot1` -> `robot1/`, `/` -> ``."""
    return "" if namespace.strip("/") == "" else namespace.strip("/") + "/"
