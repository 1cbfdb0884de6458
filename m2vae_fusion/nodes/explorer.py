"""explorer: the demo's behaviour. Finds objects in the LiDAR scan and drives the robot to look at each
from a few sides at the distance the perception model was trained on, round after round
(m2vae_fusion.behaviour.explorer holds the rules; this node converts messages around them).

Subscribes: scan (sensor_msgs/LaserScan), odom (nav_msgs/Odometry: the pose and the time base; the
  behaviour runs on the odometry's stamps, so simulated time needs no use_sim_time), /tf_static (the
  LiDAR's mounting on the odometry's child frame). With policy entropy or active also: beliefs
  (m2vae_msgs/ObjectBeliefArray, the fusion node's: class entropy and expected gains per object), /tf
  (map -> odom, to bring beliefs held in map into odom) and /shared/explorer_targets (the other robots'
  targets, which the policies leave to them).
Publishes: cmd_vel (geometry_msgs/Twist) every 1/control_rate_hz while odometry is fresh; a zero twist
  on shutdown. With policy entropy or active: /shared/explorer_targets (m2vae_msgs/ExplorerTarget, on
  every new choice and once a second; in the beliefs' frame), and one log line per choice with the
  reason and the expected gain that drove it.

Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them). Read at start-up only.

Usage: ros2 run m2vae_fusion explorer --ros-args -r __ns:=/robot1 --params-file config/explorer.yaml
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import Point, Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import LaserScan
from tf2_msgs.msg import TFMessage

from m2vae_fusion.behaviour.explorer import Assessment, Choice, Explorer, ExplorerConfig
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.perception import frames
from m2vae_fusion.perception.lidar_objects import detect_objects
from m2vae_fusion.perception.readings import Scan
from m2vae_fusion.perception.ros_messages import stamp_seconds
from m2vae_fusion.ros_interface import topics
from m2vae_fusion.ros_interface.drop_log import DropLog, Dropped
from m2vae_fusion.ros_interface.parameters import Parameter, Parameters, default_robot_id, integer, number, text
from m2vae_fusion.ros_interface.runtime import ParameterError, declare, run_node
from m2vae_fusion.ros_interface.sensor_input import scan_reading
from m2vae_fusion.ros_interface.topics import BELIEF_QOS, CMD_VEL_QOS, ODOM_QOS, SENSOR_QOS, TARGET_QOS, TF_QOS, TF_STATIC_QOS
from m2vae_fusion.ros_interface.transforms import TransformBuffer, TransformException
from m2vae_msgs.msg import ExplorerTarget, ObjectBeliefArray

POSE_HISTORY = 100  # odometry samples kept to find the pose at a scan's stamp (5 s at 20 Hz)
STALE_ODOM_S = 1.0  # wall seconds without odometry after which the node stops commanding

_DESCRIPTIONS = {
    "view_distance": "robot centre to object centre when looking with every sensor [m]; keep it in the model's training range (0.16-0.25 m) and every encoder's min/max_distance",
    "far_view_distance": "the other distance active looks from, where only far_view_modalities see the object [m]; within those encoders' max_distance and beyond the others'; 0: none",
    "far_view_modalities": "the sensors that see an object from far_view_distance, joined by '+' as the fusion node's gain_candidates name them",
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
    "first_look_gain": "the class-entropy reduction active expects of a first look at an object no belief covers [nats]; 0: ln(number of classes), from knowing nothing to sure",
}
# ExplorerConfig's other numbers must be > 0, its integers >= 1
ZERO_ALLOWED = {"dwell_s", "first_look_gain", "far_view_distance"}


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
    "robot_id": text(
        None, "this robot's id on /shared/explorer_targets (default: the namespace without '/', else the host name)"
    ),
}
TARGET_PERIOD_S = 1.0  # the own target is republished this often, so late joiners and lost messages recover


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

        self.tf = TransformBuffer()  # /tf_static: the LiDAR's mounting; /tf (belief-driven policies): map -> odom
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
        self.robot_id = declare(self, PARAMETERS, "robot_id", default_robot_id(self.get_namespace()))
        self.odom_frame = ""
        self.beliefs_frame = ""
        self._choices_seen = 0
        if self.explorer.config.policy != "tour":
            self._follow_beliefs()
        self.get_logger().info(
            f"exploring ({self.explorer.config.policy}): looking at objects from "
            f"{self.explorer.config.views_per_object if self.explorer.config.policy == 'tour' else 1} side(s) at a time at "
            f"{self.explorer.config.view_distance:g} m; commands on {self.resolve_topic_name(topics.CMD_VEL.name)} at {rate:g} Hz"
        )

    def _follow_beliefs(self) -> None:
        """The belief-driven policies: beliefs and map -> odom in, targets out and in."""
        self.create_subscription(ObjectBeliefArray, topics.BELIEFS.name, self._on_beliefs, BELIEF_QOS)
        self.create_subscription(TFMessage, topics.TF.name, self._on_tf, TF_QOS)
        self.create_subscription(ExplorerTarget, topics.EXPLORER_TARGETS.name, self._on_target, TARGET_QOS)
        self.target_pub = self.create_publisher(ExplorerTarget, topics.EXPLORER_TARGETS.name, TARGET_QOS)
        self.others: dict[str, tuple[float, np.ndarray | None]] = {}  # robot id -> (wall s, odom position or None)
        self.create_timer(TARGET_PERIOD_S, self._publish_target)

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
        self.odom_frame = msg.header.frame_id
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
        if len(self.explorer.choices) > self._choices_seen:
            self._choices_seen = len(self.explorer.choices)
            self._on_choice(self.explorer.choices[-1])
        twist = Twist()
        twist.linear.x, twist.angular.z = float(linear), float(angular)
        self.cmd_pub.publish(twist)

    # ------------------------------------------------------------ beliefs and other robots' targets

    def _on_tf(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            self.tf.set_transform(t)

    def _odom_from(self, frame: str) -> np.ndarray:
        """odom <- frame (identity for odom itself); TransformException while map -> odom is unknown."""
        if frame.lstrip("/") == self.odom_frame.lstrip("/"):
            return np.eye(4)
        return frames.inverse(self.tf.lookup_matrix(frame, self.odom_frame, Time()))

    def _on_beliefs(self, msg: ObjectBeliefArray) -> None:
        if not self.odom_frame or not msg.header.frame_id:  # no frame: the fusion node holds no object yet
            return
        try:
            odom_from = self._odom_from(msg.header.frame_id)
        except TransformException as exc:
            self.drops.report(
                Dropped("beliefs", f"no {msg.header.frame_id} -> {self.odom_frame} on /tf yet: {exc.args[0]}", waiting=True)
            )
            return
        self.beliefs_frame = msg.header.frame_id
        assessments = [
            Assessment(
                frames.apply(odom_from, [b.position.x, b.position.y, 0.0])[:2],
                float(b.class_entropy),
                {frozenset(g.modalities): float(g.class_entropy_reduction) for g in b.expected_gains},
            )
            for b in msg.beliefs
        ]
        if msg.beliefs and not any(b.expected_gains for b in msg.beliefs) and self.explorer.config.policy == "active":
            self.drops.report(Dropped("beliefs", "they carry no expected gains (set gain_samples > 0 on the fusion node)"))
        self.explorer.assess(assessments, len(msg.beliefs[0].class_names) if msg.beliefs else 1)

    def _on_target(self, msg: ExplorerTarget) -> None:
        if msg.robot_id == self.robot_id or not self.odom_frame:
            return
        position = None
        if msg.active:
            try:
                position = frames.apply(self._odom_from(msg.header.frame_id), [msg.position.x, msg.position.y, 0.0])[:2]
            except TransformException:
                return
        self.others[msg.robot_id] = (time.monotonic(), position)
        fresh = [p for seen, p in self.others.values() if p is not None and time.monotonic() - seen < 3 * TARGET_PERIOD_S]
        self.explorer.claim(fresh)

    def _publish_target(self) -> None:
        if not self.odom_frame:
            return
        msg = ExplorerTarget(robot_id=self.robot_id, reason="", expected_gain=float("nan"))
        msg.header.stamp = self.get_clock().now().to_msg()
        frame = self.beliefs_frame or self.odom_frame
        target = self.explorer.target
        if target is not None:
            try:
                position = frames.apply(frames.inverse(self._odom_from(frame)), [*target, 0.0])
            except TransformException:
                frame, position = self.odom_frame, np.array([*target, 0.0])
            msg.active, msg.position = True, Point(x=float(position[0]), y=float(position[1]), z=0.0)
            if self.explorer.choices:
                choice = self.explorer.choices[-1]
                msg.reason = choice.reason
                msg.expected_gain = float("nan") if choice.gain is None else float(choice.gain)
        msg.header.frame_id = frame
        self.target_pub.publish(msg)

    def _on_choice(self, choice: Choice) -> None:
        """One line per decision: which object, why, and the gain that drove it."""
        position = self.explorer.landmarks[choice.landmark].position
        gain = "" if choice.gain is None else f", expected gain {choice.gain:.2f} nats"
        entropy = "" if choice.class_entropy is None else f", class entropy {choice.class_entropy:.2f} nats"
        score = "" if choice.score is None else f", {choice.score:.3f} nats/s"
        looks = "" if choice.distance is None else f", from {choice.distance:.2f} m"
        self.get_logger().info(
            f"next: object at ({position[0]:.2f}, {position[1]:.2f}) in odom, {choice.reason}{gain}{entropy}{score}{looks}"
        )
        if self.explorer.config.policy != "tour":
            self._publish_target()

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
