"""gz_range_adapter: Gazebo's LiDAR and IR ring readings in the AMiRo reading model the encoders were trained on.

Gazebo's gpu_lidar reports the hit surface's laser_retro itself as the intensity (quantised to ~1/33):
no cos(incidence), no inverse-square fall-off of the IR ring. The shipped model would see intensities
far outside its training data and misclassify without a word. This node converts them with
m2vae_fusion.perception.range_model, the model the embedded simulator computes its readings with:
LiDAR intensity = retro * cos(incidence), the incidence taken from the scan's own range profile; IR
reading = retro * cos(incidence) * (d_ref / max(d, d_ref))^2, the incidence taken from the latest LiDAR
scan of the same surface (the IR ring's 8 beams lie 45 degrees apart), its hit point moved into the
LiDAR frame through /tf_static. Where no incidence can be estimated (a surface of one or two LiDAR
beams; an IR point the LiDAR does not see, e.g. another robot's body below the LiDAR's plane) the
beam is converted as hit head-on (range_model.FALLBACK_COS); such beams are counted on /diagnostics.
Ranges, header and angles pass through unchanged. docs/gazebo.md says how close this comes.

Subscribes (sensor-data QoS): gz_scan_topic, gz_ir_topic (sensor_msgs/LaserScan, as ros_gz_bridge
gives them), /tf_static (base_link -> the LiDAR and IR frames). Publishes (sensor-data QoS): scan,
ir/scan. An IR reading waits for nothing: before the first LiDAR scan, or when the newest is more than
max_scan_age_s older than the reading, or while /tf_static lacks the two sensor frames, every return
falls back. Scans that cannot be read (m2vae_fusion.ros_interface.sensor_input: empty, NaN ranges,
intensities of another length, ...) are dropped with a warning and counted
(m2vae_fusion.ros_interface.drop_log, /diagnostics every diagnostics_period_s).

Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them).

Usage: ros2 run m2vae_fusion gz_range_adapter --ros-args -r __ns:=/robot1
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import LaserScan
from tf2_msgs.msg import TFMessage

from m2vae_fusion.perception import frames, range_model
from m2vae_fusion.perception.readings import Scan
from m2vae_fusion.perception.ros_messages import stamp_seconds
from m2vae_fusion.ros_interface import diagnostics, topics
from m2vae_fusion.ros_interface.drop_log import DropLog, Dropped
from m2vae_fusion.ros_interface.parameters import Parameters, number, text
from m2vae_fusion.ros_interface.runtime import declare, declare_executor, executor_parameter, run_node
from m2vae_fusion.ros_interface.sensor_input import scan_reading
from m2vae_fusion.ros_interface.topics import SENSOR_QOS, TF_STATIC_QOS
from m2vae_fusion.ros_interface.transforms import TransformBuffer, TransformException

PARAMETERS: Parameters = {
    "gz_scan_topic": text(
        "gz/scan", "Gazebo's LiDAR scan (sensor_msgs/LaserScan, intensities = laser_retro), from ros_gz_bridge"
    ),
    "gz_ir_topic": text("gz/ir/scan", "Gazebo's IR ring reading (sensor_msgs/LaserScan, intensities = laser_retro)"),
    "ir_reference_distance": number(
        range_model.IR_REFERENCE_DISTANCE,
        "IR reads the bare reflectivity at this range [m] (the embedded simulator's SimConfig.ir_reference_distance: keep them equal)",
        positive=True,
    ),
    "max_scan_age_s": number(
        0.25, "take an IR reading's incidence from a LiDAR scan at most this much older or newer (message stamps) [s]"
    ),
    "frame_prefix": text(None, "robot frame prefix (default: the namespace without its leading '/', plus '/')"),
    "diagnostics_period_s": number(
        1.0, "publish the counts of scans taken, converted and dropped on /diagnostics this often [s]", positive=True
    ),
    "executor": executor_parameter("events"),
}


class GzRangeAdapterNode(Node):
    def __init__(self, **node_options: Any) -> None:
        """`node_options`: rclpy Node keyword arguments (context, parameter_overrides, ...)."""
        super().__init__("gz_range_adapter", **node_options)
        self.d_ref = declare(self, PARAMETERS, "ir_reference_distance")
        self.max_age = declare(self, PARAMETERS, "max_scan_age_s")
        prefix = declare(self, PARAMETERS, "frame_prefix", frames.default_frame_prefix(self.get_namespace())).strip("/")
        self.base_frame = (prefix + "/" if prefix else "") + "base_link"
        declare_executor(self, PARAMETERS)
        self.counters = diagnostics.Counters()
        self.drops = DropLog(self.get_logger().warning, self.get_logger().info, counters=self.counters)
        self.tf = TransformBuffer()
        # the newest LiDAR scan, its frame and normals: where the IR ring's incidence comes from
        self.lidar: tuple[float, str, Scan, np.ndarray] | None = None

        self.scan_out = self.create_publisher(LaserScan, topics.SCAN.name, topics.SCAN.publisher_qos)
        self.ir_out = self.create_publisher(LaserScan, topics.IR.name, topics.IR.publisher_qos)
        self.create_subscription(TFMessage, topics.TF_STATIC.name, self._on_tf_static, TF_STATIC_QOS)
        inputs = [declare(self, PARAMETERS, "gz_scan_topic"), declare(self, PARAMETERS, "gz_ir_topic")]
        self.create_subscription(LaserScan, inputs[0], self._on_scan, SENSOR_QOS)
        self.create_subscription(LaserScan, inputs[1], self._on_ir, SENSOR_QOS)
        diagnostics.attach(self, self.counters, declare(self, PARAMETERS, "diagnostics_period_s"))
        names = [self.resolve_topic_name(t) for t in (*inputs, topics.SCAN.name, topics.IR.name)]
        self.get_logger().info(
            f"converting Gazebo's range readings {names[0]}, {names[1]} to the AMiRo reading model on {names[2]}, {names[3]} "
            f"(IR reference distance {self.d_ref:g} m)"
        )

    def _on_tf_static(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            self.tf.set_transform_static(t)

    def _on_scan(self, msg: LaserScan) -> None:
        self.counters.add("received scan")
        try:
            scan = scan_reading(msg)
        except Dropped as exc:
            self.drops.report(exc)
            return
        normals = range_model.scan_normals(scan)
        self.lidar = (stamp_seconds(msg.header), msg.header.frame_id, scan, normals)
        converted, fallbacks = range_model.lidar_from_gazebo(scan, normals)
        self.counters.add("scan beams converted head-on", fallbacks)
        self.scan_out.publish(_with_intensities(msg, converted.intensities))
        self.counters.add("published scans")

    def _on_ir(self, msg: LaserScan) -> None:
        self.counters.add("received IR reading")
        try:
            ir = scan_reading(msg, "IR reading")
        except Dropped as exc:
            self.drops.report(exc)
            return
        lidar, normals, lidar_from_ir = None, None, np.eye(4)
        if self.lidar is None or abs(self.lidar[0] - stamp_seconds(msg.header)) > self.max_age:
            self.counters.add("IR readings converted head-on: no LiDAR scan within max_scan_age_s")
        else:
            _, lidar_frame, lidar, normals = self.lidar
            try:
                lidar_from_ir = frames.inverse(self._mounting(lidar_frame)) @ self._mounting(msg.header.frame_id)
            except TransformException:
                self.counters.add(f"IR readings converted head-on: no {self.base_frame} -> sensor frames on /tf_static")
                lidar = None
        converted, fallbacks = range_model.ir_from_gazebo(ir, lidar, lidar_from_ir, self.d_ref, normals)
        self.counters.add("IR beams converted head-on", fallbacks)
        self.ir_out.publish(_with_intensities(msg, converted.intensities))
        self.counters.add("published IR readings")

    def _mounting(self, sensor_frame: str) -> np.ndarray:
        """base_link -> sensor from /tf_static (TransformException until it arrives)."""
        return self.tf.lookup_matrix(self.base_frame, sensor_frame, Time())


def _with_intensities(msg: LaserScan, intensities: np.ndarray) -> LaserScan:
    """The incoming message (this callback's own) with other intensities: header, angles and ranges stay Gazebo's."""
    # from bytes: rclpy's setter checks a numpy array element by element
    msg.intensities = array.array("f", np.ascontiguousarray(intensities, dtype=np.float32).tobytes())
    return msg


def main(args: list[str] | None = None) -> None:
    run_node("gz_range_adapter", GzRangeAdapterNode, args)


if __name__ == "__main__":
    main()
