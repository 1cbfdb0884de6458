"""ground_truth: the labelled objects of an SDF world, for a simulator that has no labels (Gazebo).

The embedded simulator (nodes/sim.py) publishes ground truth itself; Gazebo knows poses but not the
paper's classes, so beside Gazebo this node reads the world file Gazebo runs (its objects are static)
and publishes the same message the embedded simulator would for that world. The scoreboard takes
these stamps as its time base: without them it never prints a table and `duration:=S` never ends a run.

Publishes (relative name, so `__ns:=/robot1` namespaces it): ground_truth/objects
  (m2vae_msgs/LabelledObjectArray, latched, in `map`: GROUND TRUTH, for labels and evaluation only),
  once per 1/rate_hz of the node's clock, stamped from it. Under Gazebo run it with use_sim_time:=true:
  it then follows /clock, publishes nothing before the first /clock message, and keeps publishing after
  the clock jumps back (a simulation reset). Objects are the world's models named after a class of the
  label space (config/labels.yaml); robots and scenery are not objects.
Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them). Read at start-up only.

Usage: ros2 run m2vae_fusion ground_truth --ros-args -r __ns:=/robot1 -p use_sim_time:=true -p world:=arena.sdf
"""

from __future__ import annotations

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node

from m2vae_fusion.resources import share_dir
from m2vae_fusion.ros_interface import topics
from m2vae_fusion.ros_interface.parameters import Parameters, number, package_file, text
from m2vae_fusion.ros_interface.runtime import ParameterError, declare, run_node
from m2vae_fusion.sim.ros_bridge import labelled_objects
from m2vae_fusion.sim.sdf import load_world
from m2vae_fusion.sim.simulator import default_model_paths
from m2vae_fusion.sim.truth import GROUND_TRUTH_RATE_HZ, world_objects
from m2vae_msgs.msg import LabelledObjectArray

# None: computed at start-up (see the description)
PARAMETERS: Parameters = {
    "world": text(
        None,
        "SDF world file the simulator runs; a relative name is also looked up in the package's worlds/, model:// URIs in "
        "the package's models/ and GZ_SIM_RESOURCE_PATH (default: worlds/arena.sdf)",
    ),
    "rate_hz": number(
        GROUND_TRUTH_RATE_HZ,
        "ground_truth/objects messages per second of the node's clock (simulated seconds with use_sim_time)",
        positive=True,
    ),
}


class GroundTruthNode(Node):
    def __init__(self) -> None:
        super().__init__("ground_truth")
        world = package_file("world", declare(self, PARAMETERS, "world", str(share_dir() / "worlds" / "arena.sdf")), "worlds")
        try:
            objects = world_objects(load_world(world, list(default_model_paths())))
        except (ValueError, OSError) as exc:  # SdfError is a ValueError and names file and element
            raise ParameterError(f"parameter 'world': cannot read the objects of {world}: {exc}") from exc
        rate = declare(self, PARAMETERS, "rate_hz")
        self.objects = objects
        self.publisher = self.create_publisher(LabelledObjectArray, topics.GROUND_TRUTH.name, topics.GROUND_TRUTH.publisher_qos)
        # A timer on the node's clock: under use_sim_time it is not due while /clock is silent (time 0), rcl
        # catches it up after a forward jump and restarts it one period after a backward one (a reset).
        self.create_timer(1.0 / rate, self._publish)
        self.add_on_set_parameters_callback(
            lambda _: SetParametersResult(
                successful=False, reason="ground_truth reads its parameters at start-up only: restart it"
            )
        )
        clock = "simulated time from /clock" if self.get_parameter("use_sim_time").value else "the system clock"
        self.get_logger().info(f"publishing the {len(objects)} objects of {world} at {rate:g} Hz of {clock}")
        if not objects:
            self.get_logger().warning(f"{world} has no model named after a class of the label space: publishing no objects")

    def _publish(self) -> None:
        self.publisher.publish(labelled_objects(self.objects, self.get_clock().now().nanoseconds / 1e9))


def main(args: list[str] | None = None) -> None:
    run_node("ground_truth", GroundTruthNode, args)


if __name__ == "__main__":
    main()
