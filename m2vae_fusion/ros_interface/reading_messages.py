"""Readings (m2vae_fusion.perception.readings) as ROS 2 messages: LaserScan, Image + CameraInfo,
Odometry, TransformStamped / TFMessage, Clock. The other direction, messages -> readings, is
m2vae_fusion.perception.ros_messages (duck-typed, so the bag reader shares it without rclpy).

Every function takes the stamp in seconds and a `frame_prefix` (tf_prefix style, e.g. "robot1/" or
"") that is put in front of every robot frame. `map` is the world's frame, shared by all robots in
it, so it never gets a prefix: each robot publishes map -> <prefix>odom.
"""

from __future__ import annotations

import array
import math
from collections.abc import Iterable, Sequence

import numpy as np
from geometry_msgs.msg import Quaternion, TransformStamped
from nav_msgs.msg import Odometry as OdometryMsg
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, LaserScan
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from m2vae_fusion.perception.readings import CameraImage, Odometry, Pose2D, Scan, Transform
from m2vae_fusion.ros_interface.stamps import from_seconds

MAP_FRAME = "map"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"

# Row-major 6x6 diagonals over (x, y, z, roll, pitch, yaw): a planar robot knows nothing of z, roll
# and pitch from its wheels, so those get a huge variance instead of a false certainty.
UNOBSERVED_VARIANCE = 1e6
POSE_VARIANCE = (1e-3, 1e-3, UNOBSERVED_VARIANCE, UNOBSERVED_VARIANCE, UNOBSERVED_VARIANCE, 3e-3)
TWIST_VARIANCE = (1e-4, 1e-4, UNOBSERVED_VARIANCE, UNOBSERVED_VARIANCE, UNOBSERVED_VARIANCE, 1e-3)


def header(stamp: float, frame_id: str) -> Header:
    return Header(stamp=from_seconds(stamp), frame_id=frame_id)


def yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))


def _diagonal(variances: Sequence[float]) -> np.ndarray:
    return np.diag(np.asarray(variances, dtype=np.float64)).reshape(-1)


def image(frame: CameraImage, stamp: float, frame_prefix: str = "") -> Image:
    """An rgb8 Image. The pixel buffer goes in as array('B'): rclpy's setter checks a numpy array
    element by element, about 1000x slower."""
    rgb = np.ascontiguousarray(frame.rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"camera frame must be H x W x 3, got shape {rgb.shape}")
    return Image(
        header=header(stamp, frame_prefix + frame.frame_id),
        height=frame.height,
        width=frame.width,
        encoding="rgb8",
        is_bigendian=0,
        step=3 * frame.width,
        data=array.array("B", rgb.tobytes()),
    )


def camera_info(frame: CameraImage, stamp: float, frame_prefix: str = "") -> CameraInfo:
    """Pinhole intrinsics of an undistorted camera (plumb_bob with zero coefficients)."""
    fx, fy, cx, cy = frame.fx, frame.fy, frame.cx, frame.cy
    return CameraInfo(
        header=header(stamp, frame_prefix + frame.frame_id),
        height=frame.height,
        width=frame.width,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    )


def laser_scan(scan: Scan, stamp: float, rate_hz: float, frame_prefix: str = "") -> LaserScan:
    """A LaserScan; intensities carry the reflectance.

    time_increment is 0: the simulator samples every beam at the same instant, so there is no
    motion during a sweep for a consumer to undo."""
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    if len(scan.ranges) != len(scan.intensities):
        raise ValueError(f"scan has {len(scan.ranges)} ranges but {len(scan.intensities)} intensities")
    return LaserScan(
        header=header(stamp, frame_prefix + scan.frame_id),
        angle_min=float(scan.angle_min),
        angle_max=float(scan.angle_max),
        angle_increment=float(scan.angle_increment),
        time_increment=0.0,
        scan_time=1.0 / rate_hz,
        range_min=float(scan.range_min),
        range_max=float(scan.range_max),
        ranges=array.array("f", np.asarray(scan.ranges, dtype=np.float32).tobytes()),
        intensities=array.array("f", np.asarray(scan.intensities, dtype=np.float32).tobytes()),
    )


def odometry(
    odom: Odometry, stamp: float, frame_prefix: str = "", odom_frame: str = ODOM_FRAME, base_frame: str = BASE_FRAME
) -> OdometryMsg:
    """odom -> base_link pose and the body-frame twist, with a planar covariance."""
    msg = OdometryMsg(header=header(stamp, frame_prefix + odom_frame), child_frame_id=frame_prefix + base_frame)
    msg.pose.pose.position.x = float(odom.x)
    msg.pose.pose.position.y = float(odom.y)
    msg.pose.pose.orientation = yaw_quaternion(odom.yaw)
    msg.pose.covariance = _diagonal(POSE_VARIANCE)
    msg.twist.twist.linear.x = float(odom.linear)
    msg.twist.twist.angular.z = float(odom.angular)
    msg.twist.covariance = _diagonal(TWIST_VARIANCE)
    return msg


def _planar_transform(parent: str, child: str, pose: Pose2D | Odometry, stamp: float) -> TransformStamped:
    msg = TransformStamped(header=header(stamp, parent), child_frame_id=child)
    msg.transform.translation.x = float(pose.x)
    msg.transform.translation.y = float(pose.y)
    msg.transform.rotation = yaw_quaternion(pose.yaw)
    return msg


def odom_transform(
    odom: Odometry, stamp: float, frame_prefix: str = "", odom_frame: str = ODOM_FRAME, base_frame: str = BASE_FRAME
) -> TransformStamped:
    return _planar_transform(frame_prefix + odom_frame, frame_prefix + base_frame, odom, stamp)


def map_transform(map_to_odom: Pose2D, stamp: float, frame_prefix: str = "", odom_frame: str = ODOM_FRAME) -> TransformStamped:
    """map -> odom: the true offset, standing in for a localisation node."""
    return _planar_transform(MAP_FRAME, frame_prefix + odom_frame, map_to_odom, stamp)


def static_transform(transform: Transform, stamp: float, frame_prefix: str = "") -> TransformStamped:
    msg = TransformStamped(header=header(stamp, frame_prefix + transform.parent), child_frame_id=frame_prefix + transform.child)
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in transform.translation)
    q.x, q.y, q.z, q.w = (float(v) for v in transform.rotation)
    return msg


def tf_message(transforms: Iterable[TransformStamped]) -> TFMessage:
    return TFMessage(transforms=list(transforms))


def static_tf_message(transforms: Iterable[Transform], stamp: float, frame_prefix: str = "") -> TFMessage:
    return tf_message(static_transform(t, stamp, frame_prefix) for t in transforms)


def clock(stamp: float) -> Clock:
    return Clock(clock=from_seconds(stamp))
