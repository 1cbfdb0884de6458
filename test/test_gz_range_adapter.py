"""The gz_range_adapter node as its own process under /robot1, over real DDS: fed Gazebo-like raw scans
(intensity = laser_retro) and /tf_static, it publishes scan and ir/scan in the AMiRo reading model
(the maths of m2vae_fusion.perception.range_model, tested in test_range_model.py), drops a malformed scan
with a counted reason, and takes its parameters from the table and config/gz_range_adapter.yaml."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from dds_probe import DdsProbe
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import LaserScan
from test_range_model import ANGLES, IR_ANGLES, ir_on_wall, scan_of, wall
from tf2_msgs.msg import TFMessage

from m2vae_fusion.nodes.gz_range_adapter import PARAMETERS
from m2vae_fusion.perception import frames, range_model
from m2vae_fusion.perception.readings import Transform
from m2vae_fusion.resources import config_path
from m2vae_fusion.ros_interface import diagnostics, topics
from m2vae_fusion.ros_interface import reading_messages as bridge
from m2vae_fusion.sim.simulator import SimConfig

BASE_TO_LIDAR = frames.pose_matrix(0.0, 0.0, 0.09, 0, 0, 0)  # models/amiro/model.sdf
BASE_TO_IR = frames.pose_matrix(0.0, 0.0, 0.015, 0, 0, 0)


def test_defaults_have_one_source():
    assert PARAMETERS["ir_reference_distance"].default == SimConfig.ir_reference_distance == range_model.IR_REFERENCE_DISTANCE
    overrides = yaml.safe_load(config_path("gz_range_adapter.yaml").read_text())["/**"]["ros__parameters"]
    for name, value in overrides.items():
        PARAMETERS[name].validate(name, value)


def raw_inputs(retro: float = 0.85) -> tuple:
    """A wall 12 cm from the robot at 25 degrees, as Gazebo's LiDAR and IR ring report it."""
    tilt = math.radians(25)
    lidar_ranges, _ = wall(0.12, tilt)
    ir_ranges, true_ir = ir_on_wall(tilt, 0.12, BASE_TO_IR)
    raw = range_model.gazebo_intensity(retro)
    lidar = scan_of(lidar_ranges, np.where(np.isfinite(lidar_ranges), raw, 0.0), ANGLES, 4.0, "lidar_link")
    ir = scan_of(ir_ranges, np.where(np.isfinite(ir_ranges), raw, 0.0), IR_ANGLES, 0.25, "ir_link")
    return lidar, ir, true_ir


class Probe(DdsProbe):
    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id, "test_gz_range_adapter", "gz_range_adapter")
        self.got: dict[str, LaserScan] = {}
        self.counts: dict[str, dict[str, int]] = {}
        for topic in (topics.SCAN, topics.IR):
            self.node.create_subscription(
                LaserScan, f"/robot1/{topic.name}", lambda msg, t=topic.name: self.got.__setitem__(t, msg), topic.qos
            )
        self.node.create_subscription(
            DiagnosticArray,
            topics.DIAGNOSTICS.name,
            lambda msg: self.counts.update(diagnostics.read(msg.status)),
            topics.DIAGNOSTICS.qos,
        )
        self.scan_in = self.node.create_publisher(LaserScan, "/robot1/gz/scan", topics.SENSOR_QOS)
        self.ir_in = self.node.create_publisher(LaserScan, "/robot1/gz/ir/scan", topics.SENSOR_QOS)
        self.tf_static = self.node.create_publisher(TFMessage, topics.TF_STATIC.name, topics.TF_STATIC.publisher_qos)

    def dropped_nan(self) -> int:
        return sum(c.get("dropped scan: nan_ranges", 0) for c in self.counts.values())


@pytest.fixture
def probe(ros_env):
    probe = Probe(int(ros_env["ROS_DOMAIN_ID"]))
    yield probe
    probe.close()


def test_node_converts_gazebo_scans_over_dds(processes, probe):
    proc = processes.python(
        "-m",
        "m2vae_fusion.nodes.gz_range_adapter",
        "--ros-args",
        "--params-file",
        str(config_path("gz_range_adapter.yaml")),
        "-r",
        "__ns:=/robot1",
        "-p",
        "diagnostics_period_s:=0.2",
    )
    mounts = [
        Transform("base_link", child, *frames.to_translation_quaternion(t))
        for child, t in (("lidar_link", BASE_TO_LIDAR), ("ir_link", BASE_TO_IR))
    ]
    probe.tf_static.publish(bridge.static_tf_message(mounts, 0.0, "robot1/"))
    lidar, ir, true_ir = raw_inputs()
    broken = bridge.laser_scan(lidar, 1.0, 10.0, "robot1/")
    broken.ranges[5] = math.nan

    def feed() -> None:
        probe.scan_in.publish(bridge.laser_scan(lidar, 1.0, 10.0, "robot1/"))
        probe.ir_in.publish(bridge.laser_scan(ir, 1.05, 10.0, "robot1/"))
        probe.scan_in.publish(broken)

    # the IR reading needs /tf_static and a scan first: wait for one converted with the LiDAR's incidence
    expected_ir = range_model.ir_from_gazebo(ir, lidar, frames.inverse(BASE_TO_LIDAR) @ BASE_TO_IR)[0].intensities

    def done() -> bool:
        got = probe.got.get(topics.IR.name)
        return got is not None and np.allclose(got.intensities, expected_ir, atol=1e-6) and probe.dropped_nan() > 0

    probe.spin_until(done, 30, proc, tick=feed)
    scan, ir_out = probe.got.get(topics.SCAN.name), probe.got.get(topics.IR.name)
    assert scan is not None and ir_out is not None, f"received {sorted(probe.got)}"
    assert scan.header.frame_id == "robot1/lidar_link" and (scan.header.stamp.sec, scan.header.stamp.nanosec) == (1, 0)
    np.testing.assert_array_equal(np.asarray(scan.ranges, np.float32), lidar.ranges)
    assert (scan.angle_min, scan.angle_increment) == pytest.approx((lidar.angle_min, lidar.angle_increment))
    np.testing.assert_allclose(scan.intensities, range_model.lidar_from_gazebo(lidar)[0].intensities, atol=1e-6)
    seen = np.isfinite(true_ir)
    np.testing.assert_allclose(
        np.asarray(ir_out.intensities)[seen], range_model.ir_reading(0.85, true_ir[seen], ir.ranges[seen]), atol=0.016
    )
    assert probe.dropped_nan() > 0, probe.counts
