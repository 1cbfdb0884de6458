"""explorer: the demo's behaviour. Finds objects in the LiDAR scan and drives the robot to look at each
from a few sides at the distance the perception model was trained on, round after round
(m2vae_fusion.behaviour.explorer holds the rules; this node converts messages around them).

Subscribes: scan (sensor_msgs/LaserScan), odom (nav_msgs/Odometry: the pose and the time base; the
  behaviour runs on the odometry's stamps, so simulated time needs no use_sim_time), /tf_static (the
  LiDAR's mounting on the odometry's child frame).
Publishes: cmd_vel (geometry_msgs/Twist) every 1/control_rate_hz while odometry is fresh; a zero twist
  on shutdown.

Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them). Read at start-up only.

Usage: ros2 run m2vae_fusion explorer --ros-args -r __ns:=/robot1 --params-file config/explorer.yaml
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import LaserScan
from tf2_msgs.msg import TFMessage

from m2vae_fusion.behaviour.explorer import Explorer, ExplorerConfig
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.perception import frames
from m2vae_fusion.perception.lidar_objects import detect_objects
from m2vae_fusion.perception.readings import Scan
from m2vae_fusion.perception.ros_messages import stamp_seconds
from m2vae_fusion.ros_interface import topics
from m2vae_fusion.ros_interface.drop_log import DropLog, Dropped
from m2vae_fusion.ros_interface.parameters import Parameter, Parameters, integer, number, text
from m2vae_fusion.ros_interface.runtime import ParameterError, declare, run_node
from m2vae_fusion.ros_interface.sensor_input import scan_reading
from m2vae_fusion.ros_interface.topics import CMD_VEL_QOS, ODOM_QOS, SENSOR_QOS, TF_STATIC_QOS
from m2vae_fusion.ros_interface.transforms import TransformBuffer, TransformException

POSE_HISTORY = 100  # odometry samples kept to find the pose at a scan's stamp (5 s at 20 Hz)
STALE_ODOM_S = 1.0  # wall seconds without odometry after which the node stops commanding

_DESCRIPTIONS = {
    "view_distance": "robot centre to object centre when looking [m]; keep it in the model's training range (0.16-0.25 m)",
    "views_per_object": "sides each object is looked at from per round",
    "view_spacing": "angle between neighbouring sides [rad]",
    "dwell_s": "seconds standing still at each side so every sensor sends a few views",
    "linear_speed": "forward speed [m/s]",
    "angular_speed": "turn rate [rad/s]",
    "goal_tolerance": "a viewpoint is reached within this distance [m]",
    "heading_tolerance": "facing the object within this angle [rad]",
    "clearance": "paths keep at least this distance from every object's centre [m]",
    "merge_distance": "LiDAR candidates this close to a known object are that object [m]",
    "min_sightings": "scans that must have seen an object before it is visited",
    "max_range": "LiDAR candidates farther than this are ignored [m]",
    "stuck_timeout_s": "a viewpoint that got no closer for this many seconds is given up",
    "robot_radius": "a viewpoint needs this much free space around it in the scans [m]",
    "policy": "which object to look at next: tour (every object from views_per_object sides per round), entropy (unsure objects first, no model), active (the largest expected gain per second; docs/active-perception.md)",
    "entropy_threshold": "entropy and active revisit objects whose class entropy is above this [nats]",
    "gain_threshold": "active leaves an object once one more look is expected to reduce its class entropy by less than this [nats]",
    "revisit_after_s": "entropy and active wait this long before choosing a just-viewed object again [s]",
}
ZERO_ALLOWED = {"dwell_s"}  # ExplorerConfig's other numbers must be > 0, its integers >= 1


def config_parameter(field: dataclasses.Field) -> Parameter:
    """The table entry of an ExplorerConfig field: its default, and the range ExplorerConfig checks."""
    if field.type in (int, "int"):
        return integer(field.default, _DESCRIPTIONS[field.name], minimum=1)
    if field.type in (str, "str"):
        return text(field.default, _DESCRIPTIONS[field.name])
    return number(field.default, _DESCRIPTIONS[field.name], positive=field.name not in ZERO_ALLOWED)


PARAMETERS: Parameters = {
    **{f.name: config_parameter(f) for f in dataclasses.fields(ExplorerConfig)},
    "control_rate_hz": number(20.0, "velocity commands per second", positive=True),
}


def scan_returns(scan: Scan, mounting: np.ndarray) -> np.ndarray:
    """Every finite return of a scan as (M, 2) points in the robot's frame."""
    angles = scan.angle_min + np.arange(len(scan.ranges)) * scan.angle_increment
    hit = np.isfinite(scan.ranges)
    points = np.stack(
        [scan.ranges[hit] * np.cos(angles[hit]), scan.ranges[hit] * np.sin(angles[hit]), np.zeros(int(hit.sum()))], axis=1
    )
    return frames.apply(mounting, points)[:, :2] if len(points) else np.zeros((0, 2))


class ExplorerNode(Node):
    def __init__(self) -> None:
        super().__init__("explorer")
        values: dict[str, Any] = {f.name: declare(self, PARAMETERS, f.name) for f in dataclasses.fields(ExplorerConfig)}
        try:
            self.explorer = Explorer(ExplorerConfig(**values))
        except ConfigError as exc:
            raise ParameterError(f"parameter {str(exc).removeprefix('explorer.')}") from None
        rate = declare(self, PARAMETERS, "control_rate_hz")

        self.tf = TransformBuffer()  # /tf_static only: the LiDAR's mounting
        self.stamps: list[float] = []
        self.poses: list[tuple[float, float, float]] = []
        self.base_frame = ""
        self.odom_wall = -float("inf")
        self.drops = DropLog(self.get_logger().warning, self.get_logger().info)
        self.cmd_pub = self.create_publisher(Twist, topics.CMD_VEL.name, CMD_VEL_QOS)
        self.create_subscription(Odometry, topics.ODOM.name, self._on_odom, ODOM_QOS)
        self.create_subscription(LaserScan, topics.SCAN.name, self._on_scan, SENSOR_QOS)
        self.create_subscription(TFMessage, topics.TF_STATIC.name, self._on_tf_static, TF_STATIC_QOS)
        self.create_timer(1.0 / rate, self._on_control)
        self.get_logger().info(
            f"exploring: looking at objects from {self.explorer.config.views_per_object} sides at "
            f"{self.explorer.config.view_distance:g} m; commands on {self.resolve_topic_name(topics.CMD_VEL.name)} at {rate:g} Hz"
        )

    def _on_tf_static(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            self.tf.set_transform_static(t)

    def _on_odom(self, msg: Odometry) -> None:
        stamp = stamp_seconds(msg.header)
        if self.stamps and stamp < self.stamps[-1]:  # a restarted simulation: forget the old run
            self.stamps.clear()
            self.poses.clear()
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        yaw = float(np.arctan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z)))
        self.stamps.append(stamp)
        self.poses.append((p.x, p.y, yaw))
        del self.stamps[:-POSE_HISTORY], self.poses[:-POSE_HISTORY]
        self.base_frame = msg.child_frame_id
        self.odom_wall = time.monotonic()

    def _on_scan(self, msg: LaserScan) -> None:
        if not self.stamps:
            return
        try:
            scan = scan_reading(msg)
            mounting = self.tf.lookup_matrix(self.base_frame, msg.header.frame_id, Time())
        except Dropped as exc:
            self.drops.report(exc)
            return
        except TransformException as exc:
            self.drops.report(Dropped("transform", f"/tf_static: {exc.args[0]}", waiting=True))
            return
        stamp = stamp_seconds(msg.header)
        i = min(bisect.bisect_left(self.stamps, stamp), len(self.stamps) - 1)
        if i > 0 and abs(self.stamps[i - 1] - stamp) < abs(self.stamps[i] - stamp):
            i -= 1
        candidates = [frames.apply(mounting, [c.x, c.y, 0.0])[:2] for c in detect_objects(scan)]
        self.explorer.observe(*self.poses[i], np.array(candidates).reshape(-1, 2), scan_returns(scan, mounting))

    def _on_control(self) -> None:
        if not self.stamps or time.monotonic() - self.odom_wall > STALE_ODOM_S:
            return
        linear, angular = self.explorer.step(*self.poses[-1], self.stamps[-1])
        twist = Twist()
        twist.linear.x, twist.angular.z = float(linear), float(angular)
        self.cmd_pub.publish(twist)

    def stop(self) -> None:
        """A zero twist, so the robot does not drive on until the base's command timeout."""
        try:
            self.cmd_pub.publish(Twist())
        except RuntimeError:  # the context may already be shut down by Ctrl-C; the base's timeout stops it then
            pass
        self.destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node("explorer", ExplorerNode, args, close=ExplorerNode.stop)


if __name__ == "__main__":
    main()
