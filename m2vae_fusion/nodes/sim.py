"""sim: the embedded simulator (m2vae_fusion.sim.simulator) as a ROS 2 node, the stand-in for Gazebo
plus ros_gz_bridge with the same topics and frames.

Publishes (relative names, so `__ns:=/robot1` namespaces them; frames get `frame_prefix`):
  camera/image_raw (sensor_msgs/Image rgb8), camera/camera_info, scan, ir/scan (sensor_msgs/LaserScan),
  odom (nav_msgs/Odometry), /tf (odom -> base_link, map -> odom), /tf_static (base_link -> sensors),
  /clock (rosgraph_msgs/Clock, every physics step), ground_truth/objects (m2vae_msgs/LabelledObjectArray,
  GROUND TRUTH in `map`: for labels and evaluation only).
Subscribes: cmd_vel (geometry_msgs/Twist); the robot stops when no command came for 0.5 s of sim time.

Parameters are read once at start-up; see PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them).
A steady wall-clock timer advances the simulation in physics steps, paced by real_time_factor
(0: as fast as possible); each stream is published when its period has elapsed in simulated time.

Usage: ros2 run m2vae_fusion sim --ros-args -r __ns:=/robot1 -p real_time_factor:=0
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock as WallClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, LaserScan
from tf2_msgs.msg import TFMessage

from m2vae_fusion.perception.frames import default_frame_prefix as frame_prefix_of
from m2vae_fusion.resources import share_dir
from m2vae_fusion.ros_interface import reading_messages as messages
from m2vae_fusion.ros_interface import topics
from m2vae_fusion.ros_interface.parameters import Parameters, flag, integer, number, package_file, text
from m2vae_fusion.ros_interface.runtime import ParameterError, declare, run_node
from m2vae_fusion.sim.ros_bridge import labelled_objects
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_fusion.sim.truth import GROUND_TRUTH_RATE_HZ
from m2vae_msgs.msg import LabelledObjectArray

CMD_VEL_TIMEOUT_S = 0.5  # of simulated time, so a paused or fast simulation behaves the same
# Real time: when the simulation falls this far (wall seconds) behind, re-anchor instead of bursting.
MAX_LAG_S = 0.25
# As fast as possible: return to the executor this often (wall seconds) so cmd_vel gets through.
BURST_S = 0.02

# None: computed at start-up (see the description)
PARAMETERS: Parameters = {
    "world": text(None, "SDF world file; a relative name is also looked up in the package's worlds/ (default: worlds/arena.sdf)"),
    "robot": text("amiro", "name of the robot model instance in the world"),
    "seed": integer(0, "seed of every noise source"),
    "noise_scale": number(1.0, "multiplies every sensor and odometry noise level (0: noise-free)"),
    "real_time_factor": number(1.0, "simulated seconds per wall-clock second; 0 runs as fast as possible"),
    "physics_rate_hz": number(100.0, "simulation steps per simulated second; /clock is published every step", positive=True),
    "camera_rate_hz": number(None, "camera frames per simulated second (default: the SDF sensor's update_rate)", positive=True),
    "lidar_rate_hz": number(None, "LiDAR scans per simulated second (default: the SDF sensor's update_rate)", positive=True),
    "ir_rate_hz": number(None, "IR ring readings per simulated second (default: the SDF sensor's update_rate)", positive=True),
    "odom_rate_hz": number(20.0, "odom and /tf messages per simulated second", positive=True),
    "ground_truth_rate_hz": number(GROUND_TRUTH_RATE_HZ, "ground_truth/objects messages per simulated second", positive=True),
    "frame_prefix": text(None, "put in front of every robot frame (default: the namespace without its leading '/', plus '/')"),
    "publish_map_tf": flag(True, "publish map -> odom (the true odometry drift, standing in for localisation)"),
}
SENSOR_RATE_PARAMETERS = {"camera": "camera_rate_hz", "lidar": "lidar_rate_hz", "ir": "ir_rate_hz"}


class Schedule:
    """Due once per period of `rate_hz`, counted in physics steps (an integer, unlike a sum of float
    step lengths, never drifts); step 0 is due."""

    def __init__(self, rate_hz: float, physics_rate_hz: float) -> None:
        self.period_steps = physics_rate_hz / rate_hz
        self._next = 0

    def due(self, step: int) -> bool:
        # the tolerance keeps e.g. 100 Hz / 30 Hz from slipping a step through rounding
        if step < self._next * self.period_steps - 1e-6:
            return False
        self._next = math.floor(step / self.period_steps + 1e-6) + 1
        return True


@dataclass(frozen=True)
class Rates:
    physics: float
    odom: float
    ground_truth: float
    sensors: dict[str, float]  # by sensor kind


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__("sim")
        world = package_file("world", self._declare("world", str(share_dir() / "worlds" / "arena.sdf")), "worlds")
        robot = self._declare("robot")
        seed = self._declare("seed")
        noise_scale = self._declare("noise_scale")
        self.real_time_factor = self._declare("real_time_factor")
        prefix = self._declare("frame_prefix", frame_prefix_of(self.get_namespace())).strip("/")
        self.frame_prefix = prefix + "/" if prefix else ""
        self.publish_map_tf = self._declare("publish_map_tf")
        try:
            self.sim = Simulator(SimConfig(world=world, robot=robot, seed=seed, noise_scale=noise_scale))
        except (ValueError, OSError) as exc:  # SdfError is a ValueError and names file and element
            raise ParameterError(f"parameters 'world' / 'robot': cannot simulate robot {robot!r} in {world}: {exc}") from exc
        try:
            self.rates = self._read_rates()
            self._create_interfaces()
        except BaseException:
            self.sim.close()
            raise
        self.add_on_set_parameters_callback(
            lambda _: SetParametersResult(successful=False, reason="sim reads its parameters at start-up only: restart it")
        )
        self.get_logger().info(
            f"simulating {robot!r} in {world} (seed {seed}, noise x{noise_scale:g}, "
            f"real-time factor {self.real_time_factor:g}{' = as fast as possible' if self.real_time_factor == 0 else ''}), "
            f"frame prefix {self.frame_prefix!r}, physics {self.rates.physics:g} Hz, "
            + ", ".join(f"{kind} {rate:g} Hz" for kind, rate in self.rates.sensors.items())
        )

    # ------------------------------------------------------------ parameters

    def _declare(self, name: str, default: Any = None) -> Any:
        return declare(self, PARAMETERS, name, default)

    def _read_rates(self) -> Rates:
        physics = self._declare("physics_rate_hz")
        sensors = {}
        for kind, spec in self.sim.sensors.items():
            sensors[kind] = self._declare(SENSOR_RATE_PARAMETERS[kind], spec.rate_hz)
        rates = Rates(physics, self._declare("odom_rate_hz"), self._declare("ground_truth_rate_hz"), sensors)
        limited = {"odom_rate_hz": rates.odom, "ground_truth_rate_hz": rates.ground_truth}
        limited.update({SENSOR_RATE_PARAMETERS[k]: r for k, r in sensors.items()})
        for name, rate in limited.items():
            if rate > physics + 1e-9:
                raise ParameterError(
                    f"parameter {name!r} ({rate:g} Hz) exceeds physics_rate_hz ({physics:g} Hz): streams are published between physics steps"
                )
        return rates

    # ------------------------------------------------------------ interfaces

    def _create_interfaces(self) -> None:
        sensors = self.rates.sensors
        physics = self.rates.physics
        self.schedules = {kind: Schedule(rate, physics) for kind, rate in sensors.items()}
        self.schedules["odom"] = Schedule(self.rates.odom, physics)
        self.schedules["ground_truth"] = Schedule(self.rates.ground_truth, physics)
        self.steps = 0
        if "camera" in sensors:
            self.image_pub = self._publisher(Image, topics.IMAGE)
            self.info_pub = self._publisher(CameraInfo, topics.CAMERA_INFO)
        if "lidar" in sensors:
            self.scan_pub = self._publisher(LaserScan, topics.SCAN)
        if "ir" in sensors:
            self.ir_pub = self._publisher(LaserScan, topics.IR)
        for kind in set(SENSOR_RATE_PARAMETERS) - set(sensors):
            self.get_logger().warning(f"robot has no {kind} sensor: not publishing it")
        self.odom_pub = self._publisher(Odometry, topics.ODOM)
        self.tf_pub = self._publisher(TFMessage, topics.TF)
        self.tf_static_pub = self._publisher(TFMessage, topics.TF_STATIC)
        self.clock_pub = self._publisher(Clock, topics.CLOCK)
        self.truth_pub = self._publisher(LabelledObjectArray, topics.GROUND_TRUTH)
        self.create_subscription(Twist, topics.CMD_VEL.name, self._on_cmd_vel, topics.CMD_VEL.qos)
        self.last_cmd_time: float | None = None

        self.tf_static_pub.publish(messages.static_tf_message(self.sim.static_transforms(), self.sim.time, self.frame_prefix))
        self.dt = 1.0 / self.rates.physics
        # Pacing must not follow /clock, which only this node drives, even if use_sim_time is set.
        wall = WallClock(clock_type=ClockType.STEADY_TIME)
        period = 0.0 if self.real_time_factor == 0 else max(self.dt / self.real_time_factor, 1e-3)
        self._anchor()
        self.create_timer(period, self._on_timer, clock=wall)

    def _publisher(self, msg_type: type, topic: topics.Topic) -> Any:
        return self.create_publisher(msg_type, topic.name, topic.publisher_qos)

    def _anchor(self) -> None:
        self.wall_anchor = time.monotonic()
        self.sim_anchor = self.sim.time

    def _on_cmd_vel(self, msg: Twist) -> None:
        linear, angular = msg.linear.x, msg.angular.z
        if not (math.isfinite(linear) and math.isfinite(angular)):
            self.get_logger().warning(
                f"ignoring cmd_vel with a non-finite velocity ({linear}, {angular})", throttle_duration_sec=5.0
            )
            return
        self.sim.set_cmd_vel(linear, angular)
        self.last_cmd_time = self.sim.time

    # ------------------------------------------------------------ stepping

    def _on_timer(self) -> None:
        if self.real_time_factor == 0:
            deadline = time.monotonic() + BURST_S
            while time.monotonic() < deadline:
                self.step()
            return
        target = self.sim_anchor + (time.monotonic() - self.wall_anchor) * self.real_time_factor
        if target - self.sim.time > MAX_LAG_S * self.real_time_factor:
            self.get_logger().warning(
                f"cannot keep real_time_factor {self.real_time_factor:g}: simulation runs slower", throttle_duration_sec=10.0
            )
            self._anchor()
            target = self.sim.time + self.dt
        while self.sim.time + self.dt / 2 <= target:
            self.step()

    def step(self) -> None:
        """Publish /clock and every stream whose period has come in simulated time, then one physics step."""
        t = self.sim.time
        self.clock_pub.publish(messages.clock(t))
        prefix, due = self.frame_prefix, lambda stream: self.schedules[stream].due(self.steps)
        if "camera" in self.schedules and due("camera"):
            frame = self.sim.camera()
            self.image_pub.publish(messages.image(frame, t, prefix))
            self.info_pub.publish(messages.camera_info(frame, t, prefix))
        if "lidar" in self.schedules and due("lidar"):
            self.scan_pub.publish(messages.laser_scan(self.sim.lidar(), t, self.rates.sensors["lidar"], prefix))
        if "ir" in self.schedules and due("ir"):
            self.ir_pub.publish(messages.laser_scan(self.sim.ir(), t, self.rates.sensors["ir"], prefix))
        if due("odom"):
            odom, frames = self.sim.odometry(), (self.sim.odom_frame, self.sim.base_frame)
            self.odom_pub.publish(messages.odometry(odom, t, prefix, *frames))
            transforms = [messages.odom_transform(odom, t, prefix, *frames)]
            if self.publish_map_tf:
                transforms.append(messages.map_transform(self.sim.map_to_odom(), t, prefix, self.sim.odom_frame))
            self.tf_pub.publish(messages.tf_message(transforms))
        if due("ground_truth"):
            self.truth_pub.publish(labelled_objects(self.sim.objects, t))
        if self.last_cmd_time is not None and t - self.last_cmd_time > CMD_VEL_TIMEOUT_S:
            self.sim.set_cmd_vel(0.0, 0.0)
            self.last_cmd_time = None
        self.sim.step(self.dt)
        self.steps += 1

    def close(self) -> None:
        self.sim.close()
        self.destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node("sim", SimNode, args, close=SimNode.close)


if __name__ == "__main__":
    main()
