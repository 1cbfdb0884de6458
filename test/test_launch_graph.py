"""sim.launch.py under launch_testing, ROS 2's launch-test framework (its pytest plugin collects this
module): the package's launch file, found through the ament index as `ros2 launch` finds it, runs
one robot with the embedded simulator (headless); while it runs, launch_testing_ros waits for
beliefs and the real `ros2` CLI, as a subprocess, lists the documented topics with their types and
the nodes, echoes one ObjectBeliefArray that holds a belief, and reads a node's parameter. When the
tests are done launch_testing shuts the launch down (SIGINT to every process, as Ctrl-C does) and
every process must have exited with status 0."""

from __future__ import annotations

import os
import time
import unittest
from pathlib import Path

import pytest
import yaml
from ros2_cli import HAVE_ROS2, SKIP_REASON, ros2_command

if not HAVE_ROS2:
    pytest.skip(SKIP_REASON, allow_module_level=True)

import launch_testing
import launch_testing.asserts
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_testing_ros import WaitForTopics

from launch import LaunchDescription
from m2vae_fusion.bringup.ros_env import isolated_ros_env
from m2vae_msgs.msg import ObjectBeliefArray

ENV = isolated_ros_env()  # this module's own domain, for the launch and every ros2 command
ROS_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")
REPO = Path(__file__).resolve().parents[1]
DISCOVERY_S = 30.0  # how long the ros2 CLI may take to see the whole graph

# The README's node graph for one robot: topic -> type, as `ros2 topic list -t` prints them.
DOCUMENTED_TOPICS = {
    "/robot1/camera/image_raw": "sensor_msgs/msg/Image",
    "/robot1/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/robot1/scan": "sensor_msgs/msg/LaserScan",
    "/robot1/ir/scan": "sensor_msgs/msg/LaserScan",
    "/robot1/odom": "nav_msgs/msg/Odometry",
    "/robot1/cmd_vel": "geometry_msgs/msg/Twist",
    "/robot1/ground_truth/objects": "m2vae_msgs/msg/LabelledObjectArray",
    "/robot1/encodings": "m2vae_msgs/msg/ModalityEncoding",
    "/robot1/beliefs": "m2vae_msgs/msg/ObjectBeliefArray",
    "/shared/latents": "m2vae_msgs/msg/LatentEmbedding",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/tf_static": "tf2_msgs/msg/TFMessage",
    "/clock": "rosgraph_msgs/msg/Clock",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
NODES = {f"/robot1/{n}" for n in ("sim", "camera_encoder", "lidar_encoder", "ir_encoder", "fusion", "explorer")} | {"/scoreboard"}


@pytest.mark.launch_test
@pytest.mark.ros
def generate_test_description():
    # the in-process rclpy of launch_testing_ros (WaitForTopics) joins the launch's domain too
    os.environ.update({key: ENV[key] for key in ROS_KEYS})
    sim = Path(get_package_share_directory("m2vae_fusion")) / "launch" / "sim.launch.py"
    return LaunchDescription(
        [
            *(SetEnvironmentVariable(key, ENV[key]) for key in ROS_KEYS),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(sim)),
                launch_arguments={"simulator": "embedded", "headless": "true", "robots": "1"}.items(),
            ),
            launch_testing.actions.ReadyToTest(),
        ]
    )


class TestRunningGraph(unittest.TestCase):
    def test_1_beliefs_are_published(self):
        with WaitForTopics([("/robot1/beliefs", ObjectBeliefArray)], timeout=120.0) as wait:
            self.assertEqual(wait.topics_received(), {"/robot1/beliefs"})

    def test_2_topics_and_nodes_are_listed_with_their_types(self):
        # Discovery is eventually complete: a loaded machine may need more than one listing.
        deadline = time.monotonic() + DISCOVERY_S
        while True:
            listed = ros2_command(ENV, "topic", "list", "-t", "--no-daemon", "--spin-time", "3")
            types = dict(line.replace("]", "").split(" [", 1) for line in listed.splitlines() if " [" in line)
            missing = {topic: kind for topic, kind in DOCUMENTED_TOPICS.items() if types.get(topic) != kind}
            if not missing or time.monotonic() > deadline:
                break
        self.assertFalse(missing, f"documented topics missing or of another type:\n{missing}\nlisted:\n{listed}")
        deadline = time.monotonic() + DISCOVERY_S
        while True:
            nodes = set(ros2_command(ENV, "node", "list", "--no-daemon", "--spin-time", "3").split())
            if NODES <= nodes or time.monotonic() > deadline:
                break
        self.assertLessEqual(NODES, nodes)

    def test_3_echo_gives_a_belief(self):
        shown = ros2_command(
            # the type given: no daemon to ask, and discovery may not have brought it in yet
            ENV,
            "topic",
            "echo",
            "--no-daemon",
            "--once",
            "--timeout",
            "150",
            "--filter",
            "len(m.beliefs) > 0",
            "/robot1/beliefs",
            "m2vae_msgs/msg/ObjectBeliefArray",
            timeout_s=180,
        )
        message = yaml.safe_load(shown.split("\n---")[0])
        belief = message["beliefs"][0]
        self.assertEqual(len(belief["class_names"]), len(belief["class_probabilities"]))
        self.assertAlmostEqual(sum(belief["class_probabilities"]), 1.0, places=3)
        self.assertIn("robot1", belief["contributing_robots"])

    def test_4_a_node_parameter_is_read(self):
        expected = yaml.safe_load((REPO / "config" / "fusion.yaml").read_text())["/**"]["ros__parameters"][
            "gate"
        ]  # the override wins
        shown = ros2_command(ENV, "param", "get", "--no-daemon", "--spin-time", "3", "/robot1/fusion", "gate")
        self.assertEqual(shown.strip(), f"Double value is: {expected}")


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_every_process_exited_with_status_0(self, proc_info, proc_output):
        launch_testing.asserts.assertExitCodes(proc_info)
        for output in proc_output:
            self.assertNotIn("Traceback", output.text.decode(errors="replace"), output.process_name)
