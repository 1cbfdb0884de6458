"""Read the sensor frames of a ROS 2 bag (any storage `rosbags` reads): each LiDAR scan with the camera
image and IR reading nearest in time, the robot's pose in the map, and the labelled objects of the
scene — the input of training from bags (`m2vae train --bag`), for bags from `m2vae sim collect`,
`m2vae record` or `ros2 bag record` alike.

Labels come from the simulator's ground-truth topic (`ground_truth/objects`) or, for a real robot's
bag, from a YAML file of labelled object positions in the map frame (see `load_labels`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.data.rosbag_types import typestore
from m2vae_fusion.perception.labels import CLASSES, parse_class
from m2vae_fusion.perception.readings import CameraImage, ObjectState, Scan, Transform
from m2vae_fusion.perception.ros_messages import (
    frame_name,
    image_from_msgs,
    matrix_from_msg,
    scan_from_msg,
    stamp_seconds,
    transform_from_msg,
)


@dataclass(frozen=True)
class TopicNames:
    """Topic names in the bag (a namespaced robot's are e.g. /robot1/scan)."""

    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    scan: str = "/scan"
    ir: str = "/ir/scan"
    tf: str = "/tf"
    tf_static: str = "/tf_static"
    ground_truth: str = "/ground_truth/objects"

    @classmethod
    def for_namespace(cls, namespace: str) -> TopicNames:
        """The topics of a robot started under `__ns:=namespace` (/tf and /tf_static stay global)."""
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        names = {f.name: getattr(cls, f.name) for f in fields(cls)}
        return cls(**{k: v if v in ("/tf", "/tf_static") else ns + v for k, v in names.items()})


@dataclass(frozen=True)
class Frame:
    """One LiDAR scan with what was sensed at (nearly) the same time."""

    stamp: float  # seconds, the scan's header stamp
    scan: Scan
    image: CameraImage | None
    ir: Scan | None
    base_in_map: np.ndarray | None  # 4x4, None if /tf has no map -> base chain at that time


@dataclass
class BagFrames:
    frames: list[Frame]
    static: list[Transform]  # from /tf_static, robot prefixes stripped
    objects: list[ObjectState]  # labelled objects in the map frame
    topics: dict[str, int] = field(default_factory=dict)  # messages per topic


class _TimedPoses:
    """A planar transform chain parent -> child sampled over time; nearest sample lookup."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.poses: list[np.ndarray] = []

    def add(self, stamp: float, pose: np.ndarray) -> None:
        i = bisect.bisect(self.stamps, stamp)
        self.stamps.insert(i, stamp)
        self.poses.insert(i, pose)

    def at(self, stamp: float, tolerance: float) -> np.ndarray | None:
        i = bisect.bisect(self.stamps, stamp)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self.stamps)), key=lambda j: abs(self.stamps[j] - stamp), default=None)
        if best is None or abs(self.stamps[best] - stamp) > tolerance:
            return None
        return self.poses[best]


def _nearest(stamps: list[float], items: list[Any], stamp: float, tolerance: float) -> Any | None:
    i = bisect.bisect(stamps, stamp)
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - stamp), default=None)
    if best is None or abs(stamps[best] - stamp) > tolerance:
        return None
    return items[best]


def _messages(paths: Sequence[Path], topics: set[str]) -> Iterator[tuple[str, Any]]:
    from rosbags.highlevel import AnyReader

    store = typestore()
    try:
        with AnyReader(list(paths), default_typestore=store) as reader:
            connections = [c for c in reader.connections if c.topic in topics]
            for connection, _, raw in reader.messages(connections=connections):
                yield connection.topic, reader.deserialize(raw, connection.msgtype)
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read bag(s) {', '.join(map(str, paths))}: {exc}") from exc


def _camera_image(topic: str, msg: Any, info: Any) -> CameraImage:
    """image_from_msgs for a sensor_msgs/Image or a CompressedImage (JPEG or PNG, told apart by the
    message type recorded in the bag, whatever the topic is called)."""
    if getattr(msg, "__msgtype__", "") != "sensor_msgs/msg/CompressedImage":
        return image_from_msgs(msg, info)
    from m2vae_fusion.perception.compressed_images import CompressedImageError, decode

    try:
        return image_from_msgs(msg, info, decode(msg.format, msg.data))
    except CompressedImageError as exc:
        raise DataError(f"{topic}: the CompressedImage stamped {stamp_seconds(msg.header):.3f} s: {exc}") from None


def read_frames(paths: Sequence[Path], topics: TopicNames = TopicNames(), tolerance: float = 0.05) -> BagFrames:
    """Every LiDAR scan of the bag(s) with the image / IR reading within `tolerance` seconds."""
    for path in paths:
        if not Path(path).exists():
            raise DataError(f"bag {path} does not exist")
    images: list[tuple[float, Any]] = []
    irs: list[tuple[float, Scan]] = []
    scans: list[tuple[float, Scan]] = []
    compressed: list[tuple[float, Any]] = []
    info = None
    map_odom, odom_base = _TimedPoses(), _TimedPoses()
    static: dict[tuple[str, str], Transform] = {}
    truth: dict[str, ObjectState] = {}
    counts: dict[str, int] = {}
    compressed_topic = topics.image + "/compressed"  # image_transport's name for the camera's JPEG / PNG stream
    wanted = {topics.image, compressed_topic, topics.camera_info, topics.scan, topics.ir, topics.tf, topics.tf_static, topics.ground_truth}
    for topic, msg in _messages(paths, wanted):
        counts[topic] = counts.get(topic, 0) + 1
        if topic == topics.scan:
            scans.append((stamp_seconds(msg.header), scan_from_msg(msg)))
        elif topic == topics.ir:
            irs.append((stamp_seconds(msg.header), scan_from_msg(msg)))
        elif topic == topics.image:
            images.append((stamp_seconds(msg.header), msg))
        elif topic == compressed_topic:
            compressed.append((stamp_seconds(msg.header), msg))
        elif topic == topics.camera_info:
            info = msg
        elif topic == topics.tf_static:
            for t in msg.transforms:
                pair = (frame_name(t.header.frame_id), frame_name(t.child_frame_id))
                static[pair] = transform_from_msg(*pair, t.transform)
        elif topic == topics.tf:
            for t in msg.transforms:
                pair = (frame_name(t.header.frame_id), frame_name(t.child_frame_id))
                if pair == ("map", "odom"):
                    map_odom.add(stamp_seconds(t.header), matrix_from_msg(t.transform))
                elif pair == ("odom", "base_link"):
                    odom_base.add(stamp_seconds(t.header), matrix_from_msg(t.transform))
        elif topic == topics.ground_truth:
            for o in msg.objects:
                p = o.pose.position
                yaw = 2 * np.arctan2(o.pose.orientation.z, o.pose.orientation.w)
                truth[o.name] = ObjectState(o.name, o.colour, o.shape, o.surface, int(o.class_id), o.label, p.x, p.y, p.z, float(yaw))
    if not scans:
        raise DataError(f"no LaserScan on {topics.scan} in {', '.join(map(str, paths))} (topics there: {sorted(counts) or 'none of the expected'})")
    image_topic = topics.image
    if not images and compressed:  # a bag with both keeps the raw, lossless images
        images, image_topic = compressed, compressed_topic
    for kind, found in (("images", images), ("IR readings", irs)):
        if not found:
            raise DataError(f"no {kind} in {', '.join(map(str, paths))}; expected {f'{topics.image} or {compressed_topic}' if kind == 'images' else topics.ir}")
    if info is None:
        raise DataError(f"no CameraInfo on {topics.camera_info}: the camera's intrinsics are needed to crop objects")
    images.sort(key=lambda item: item[0])
    irs.sort(key=lambda item: item[0])
    image_stamps, ir_stamps = [s for s, _ in images], [s for s, _ in irs]
    frames = []
    for stamp, scan in sorted(scans, key=lambda item: item[0]):
        image_msg = _nearest(image_stamps, [m for _, m in images], stamp, tolerance)
        a, b = map_odom.at(stamp, tolerance), odom_base.at(stamp, tolerance)
        frames.append(
            Frame(
                stamp, scan, _camera_image(image_topic, image_msg, info) if image_msg is not None else None,
                _nearest(ir_stamps, [s for _, s in irs], stamp, tolerance),
                a @ b if a is not None and b is not None else None,
            )
        )
    return BagFrames(frames, list(static.values()), list(truth.values()), counts)


def load_labels(path: Path) -> list[ObjectState]:
    """Labelled object positions for a real robot's bag, in the map frame. Format (YAML):

        objects:
          - name: mug_1                 # unique
            label: red_cylinder_shiny   # one of the 8 classes <colour>_<shape>_<surface>
            x: 1.20                     # metres, map frame
            y: -0.35
            z: 0.06                     # optional, default 0.06 (object centre)
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read labels {path}: {exc}") from None
    entries = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: expected a non-empty list under 'objects'")
    objects, names = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: objects[{i}]"
        if not isinstance(entry, dict) or not {"name", "label", "x", "y"} <= set(entry):
            raise DataError(f"{where}: needs name, label, x and y")
        cls = parse_class(str(entry["label"]))
        if cls is None:
            raise DataError(f"{where}: label {entry['label']!r} is not one of {', '.join(CLASSES)}")
        if entry["name"] in names:
            raise DataError(f"{where}: name {entry['name']!r} is used twice")
        names.add(entry["name"])
        try:
            x, y, z = float(entry["x"]), float(entry["y"]), float(entry.get("z", 0.06))
        except (TypeError, ValueError):
            raise DataError(f"{where}: x, y, z must be numbers") from None
        objects.append(ObjectState(str(entry["name"]), cls.colour, cls.shape, cls.surface, cls.class_id, cls.label, x, y, z, 0.0))
    return objects
