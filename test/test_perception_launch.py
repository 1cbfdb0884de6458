"""launch/perception.launch.py attached to somebody else's robot, under the real `ros2 launch`: the
embedded simulator's node on its own stands in for a robot that already publishes its sensors and
transforms in /robot1 (nothing of ours drives it); the launch file adds the three encoders and fusion
on its topics. The beliefs must appear, carry the robot id given, and name the object in front; with
latent sharing off nothing is published on /shared/latents; Ctrl-C then ends the launch with 0."""

from __future__ import annotations

import numpy as np
import pytest
from ros2_cli import LaunchRun, needs_ros2
from test_sim import one_object_world

pytestmark = [needs_ros2, pytest.mark.timeout(300)]

LABEL = "green_cube_shiny"
CONVERGE_S = 5.0  # judged on the belief this long after all three sensors entered it (as test_perception_pipeline)


def test_perception_launch_on_a_running_robot(processes, ros_env, tmp_path):
    from dds_probe import BeliefWatch, DdsProbe
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from m2vae_msgs.msg import ObjectBeliefArray

    world = one_object_world(tmp_path, LABEL, yaw=0.3, distance=0.2)
    robot = processes.start("sim", "--ros-args", "-r", "__ns:=/robot1", "-p", f"world:={world}", "-p", "real_time_factor:=1.0")
    run = LaunchRun(
        processes,
        "m2vae_fusion",
        "perception.launch.py",
        "namespace:=robot1",
        "headless:=true",
        "use_sim_time:=true",
        "robot_id:=amiro_7",
        "share_latents:=false",
    )
    probe = DdsProbe(int(ros_env["ROS_DOMAIN_ID"]), "perception_launch_probe", "ros2 launch")
    try:
        watch = BeliefWatch(0.2, 0.0, CONVERGE_S)
        probe.node.create_subscription(
            ObjectBeliefArray, "/robot1/beliefs", watch.take, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        probe.spin_until(watch.done, timeout_s=150, proc={"ros2 launch": run.proc, "sim": robot})
        final = watch.final
        assert final is not None, f"no belief sensed by all three sensors:\n{run.output}"
        assert final.class_names[int(np.argmax(final.class_probabilities))] == LABEL
        assert list(final.contributing_robots) == ["amiro_7"]
        assert probe.node.count_publishers("/shared/latents") == 0  # share_latents:=false reached fusion
    finally:
        probe.close()
    run.ctrl_c()
    run.assert_ended_well(run.finish(timeout_s=60))
    assert {label.rsplit("-", 1)[0] for label in run.pids()} == {
        f"robot1.{n}" for n in ("camera_encoder", "lidar_encoder", "ir_encoder", "fusion")
    }
