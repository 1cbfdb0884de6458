"""Read the sensor frames of a ROS 2 bag (any storage `rosbags` reads): each LiDAR scan with the camera
image and IR reading nearest in time, the robot's pose in the map, and the labelled objects of the
scene — the input of training from bags (`m2vae train --bag`), for bags from `m2vae sim collect`,
`m2vae record` or `ros2 bag record` alike.

Labels come from the simulator's ground-truth topic (`ground_truth/objects`) or, for a real robot's
bag, from a label file's labelled object positions in the map frame (see `labelled_objects`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.data.rosbag_types import typestore
from m2vae_fusion.perception.labels import LabelSpace, default_labels
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


@dataclass
class _Collected:
    """What frames are made of, as read from the bag(s): stamped readings per kind, the newest camera
    intrinsics, the odometry chain, the sensors' mountings, the ground truth, and a count per topic."""

    topics: TopicNames
    scans: list[tuple[float, Scan]] = field(default_factory=list)
    irs: list[tuple[float, Scan]] = field(default_factory=list)
    images: list[tuple[float, Any]] = field(default_factory=list)
    compressed: list[tuple[float, Any]] = field(default_factory=list)
    info: Any = None
    map_odom: _TimedPoses = field(default_factory=lambda: _TimedPoses())
    odom_base: _TimedPoses = field(default_factory=lambda: _TimedPoses())
    static: dict[tuple[str, str], Transform] = field(default_factory=dict)
    truth: dict[str, ObjectState] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def compressed_topic(self) -> str:
        return self.topics.image + "/compressed"  # image_transport's name for the camera's JPEG / PNG stream

    def take(self, topic: str, msg: Any) -> None:
        self.counts[topic] = self.counts.get(topic, 0) + 1
        topics = self.topics
        if topic in (topics.scan, topics.ir):
            (self.scans if topic == topics.scan else self.irs).append((stamp_seconds(msg.header), scan_from_msg(msg)))
        elif topic in (topics.image, self.compressed_topic):
            (self.images if topic == topics.image else self.compressed).append((stamp_seconds(msg.header), msg))
        elif topic == topics.camera_info:
            self.info = msg
        elif topic in (topics.tf, topics.tf_static):
            self._transforms(msg, static=topic == topics.tf_static)
        elif topic == topics.ground_truth:
            for o in msg.objects:
                p = o.pose.position
                yaw = 2 * np.arctan2(o.pose.orientation.z, o.pose.orientation.w)
                self.truth[o.name] = ObjectState(
                    o.name, o.colour, o.shape, o.surface, int(o.class_id), o.label, p.x, p.y, p.z, float(yaw)
                )

    def _transforms(self, msg: Any, static: bool) -> None:
        for t in msg.transforms:
            pair = (frame_name(t.header.frame_id), frame_name(t.child_frame_id))
            if static:
                self.static[pair] = transform_from_msg(*pair, t.transform)
            elif pair == ("map", "odom"):
                self.map_odom.add(stamp_seconds(t.header), matrix_from_msg(t.transform))
            elif pair == ("odom", "base_link"):
                self.odom_base.add(stamp_seconds(t.header), matrix_from_msg(t.transform))

    def camera(self, where: str) -> tuple[list[tuple[float, Any]], str]:
        """The image stream frames take their images from, and its topic; a DataError naming what is missing."""
        topics = self.topics
        if not self.scans:
            raise DataError(
                f"no LaserScan on {topics.scan} in {where} (topics there: {sorted(self.counts) or 'none of the expected'})"
            )
        images, image_topic = self.images, topics.image
        if not images and self.compressed:  # a bag with both keeps the raw, lossless images
            images, image_topic = self.compressed, self.compressed_topic
        if not images:
            raise DataError(f"no images in {where}; expected {topics.image} or {self.compressed_topic}")
        if not self.irs:
            raise DataError(f"no IR readings in {where}; expected {topics.ir}")
        if self.info is None:
            raise DataError(f"no CameraInfo on {topics.camera_info}: the camera's intrinsics are needed to crop objects")
        return sorted(images, key=lambda item: item[0]), image_topic


def read_frames(paths: Sequence[Path], topics: TopicNames = TopicNames(), tolerance: float = 0.05) -> BagFrames:
    """Every LiDAR scan of the bag(s) with the image / IR reading within `tolerance` seconds."""
    for path in paths:
        if not Path(path).exists():
            raise DataError(f"bag {path} does not exist")
    bag = _Collected(topics)
    wanted = {
        topics.image,
        bag.compressed_topic,
        topics.camera_info,
        topics.scan,
        topics.ir,
        topics.tf,
        topics.tf_static,
        topics.ground_truth,
    }
    for topic, msg in _messages(paths, wanted):
        bag.take(topic, msg)
    images, image_topic = bag.camera(", ".join(map(str, paths)))
    irs = sorted(bag.irs, key=lambda item: item[0])
    image_stamps, ir_stamps = [s for s, _ in images], [s for s, _ in irs]
    frames = []
    for stamp, scan in sorted(bag.scans, key=lambda item: item[0]):
        image_msg = _nearest(image_stamps, [m for _, m in images], stamp, tolerance)
        a, b = bag.map_odom.at(stamp, tolerance), bag.odom_base.at(stamp, tolerance)
        frames.append(
            Frame(
                stamp,
                scan,
                _camera_image(image_topic, image_msg, bag.info) if image_msg is not None else None,
                _nearest(ir_stamps, [s for _, s in irs], stamp, tolerance),
                a @ b if a is not None and b is not None else None,
            )
        )
    return BagFrames(frames, list(bag.static.values()), list(bag.truth.values()), bag.counts)


def labelled_objects(entries: Any, space: LabelSpace | None = None, where: str = "labels") -> list[ObjectState]:
    """Labelled object positions for a real robot's bag, in the map frame: the `objects` of a label
    file (perception/labels.py), each of one of the classes of `space` (default: the paper's eight).

        objects:
          - name: mug_1                 # unique
            label: red_cylinder_shiny   # one of the classes
            x: 1.20                     # metres, map frame
            y: -0.35
            z: 0.06                     # optional, default 0.06 (object centre)
    """
    space = space or default_labels()
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{where}: expected a non-empty list under 'objects'")
    objects, names = [], set()
    for i, entry in enumerate(entries):
        at = f"{where}: objects[{i}]"
        if not isinstance(entry, dict) or not {"name", "label", "x", "y"} <= set(entry):
            raise DataError(f"{at}: needs name, label, x and y")
        label = str(entry["label"])
        if label not in space.classes:
            raise DataError(f"{at}: label {label!r} is not one of {', '.join(space.classes)}")
        if entry["name"] in names:
            raise DataError(f"{at}: name {entry['name']!r} is used twice")
        names.add(entry["name"])
        try:
            x, y, z = float(entry["x"]), float(entry["y"]), float(entry.get("z", 0.06))
        except (TypeError, ValueError):
            raise DataError(f"{at}: x, y, z must be numbers") from None
        values = space.attribute_values(label)
        objects.append(
            ObjectState(
                str(entry["name"]),
                values.get("colour", ""),
                values.get("shape", ""),
                values.get("surface", ""),
                space.index(label),
                label,
                x,
                y,
                z,
                0.0,
            )
        )
    return objects
