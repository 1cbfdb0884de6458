"""ROS message fields -> the sensing vocabulary (Scan, CameraImage, Transform, stamps in seconds).

Duck-typed on the fields of std_msgs/Header, sensor_msgs/LaserScan, Image, CameraInfo and
geometry_msgs/Transform, so the same functions read rclpy's messages in the nodes and `rosbags`'
deserialized ones in training from bags. Nothing here imports ROS or the bag reader: a node that
converts its messages must not pull in what only offline tools need.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from m2vae_fusion.perception.frames import from_translation_quaternion
from m2vae_fusion.perception.image_encodings import to_rgb
from m2vae_fusion.perception.readings import CameraImage, Scan, Transform


def stamp_seconds(header: Any) -> float:
    """A std_msgs/Header's stamp in seconds."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def frame_name(frame_id: str) -> str:
    """Frame name without a robot prefix (robot1/base_link -> base_link)."""
    return frame_id.rsplit("/", 1)[-1]


def transform_from_msg(parent: str, child: str, t: Any) -> Transform:
    """A geometry_msgs/Transform between two (already prefix-stripped) frames."""
    return Transform(
        parent,
        child,
        (t.translation.x, t.translation.y, t.translation.z),
        (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w),
    )


def transform_of(t: Any) -> Transform:
    """A geometry_msgs/TransformStamped as a Transform between its header's frame and its child frame."""
    return transform_from_msg(t.header.frame_id, t.child_frame_id, t.transform)


def matrix_from_msg(t: Any) -> np.ndarray:
    """A geometry_msgs/Transform as a 4x4 homogeneous matrix."""
    return from_translation_quaternion(
        (t.translation.x, t.translation.y, t.translation.z), (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w)
    )


def scan_from_msg(msg: Any) -> Scan:
    """A sensor_msgs/LaserScan as a Scan (no validation: the encoder node checks what it takes)."""
    return Scan(
        np.asarray(msg.ranges, dtype=np.float32),
        np.asarray(msg.intensities, dtype=np.float32),
        msg.angle_min,
        msg.angle_max,
        msg.angle_increment,
        msg.range_min,
        msg.range_max,
        frame_name(msg.header.frame_id),
    )


def image_from_msgs(image: Any, info: Any, rgb: np.ndarray | None = None) -> CameraImage:
    """A CameraImage from Image + CameraInfo messages; `rgb`: the pixels when already converted (by
    cv_bridge), else the project's own conversion (ImageFormatError names a bad field)."""
    if rgb is None:
        rgb = to_rgb(image.encoding, image.width, image.height, image.step, bytes(image.data), bool(image.is_bigendian))
    k = info.k
    return CameraImage(rgb, float(k[0]), float(k[4]), float(k[2]), float(k[5]), frame_name(image.header.frame_id))
