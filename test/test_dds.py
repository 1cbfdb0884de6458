"""Real DDS between real processes: a LatentEmbedding published by one process is received
by the latent_monitor node running in another, on this test run's own ROS_DOMAIN_ID."""

from __future__ import annotations

import sys
import time

PUBLISHER = """
import sys, time
import rclpy
from m2vae_msgs.msg import LatentEmbedding
from rclpy.qos import QoSProfile, ReliabilityPolicy
rclpy.init()  # not `with`: Jazzy's rclpy.init returns None
try:
    node = rclpy.create_node("test_latent_talker")
    pub = node.create_publisher(LatentEmbedding, "/shared/latents", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + float(sys.argv[1])
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        pub.publish(LatentEmbedding(robot_id="robot_a", object_id=f"obj{seq}", model_id="m@1",
                                    modalities=["camera"], mean=[3.0, 4.0], log_var=[0.0, 0.0]))
        time.sleep(0.1)
finally:
    rclpy.try_shutdown()
"""


def read_all(proc, timeout_s):
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except Exception:
        proc.kill()
        out, _ = proc.communicate()
    return out


def test_latent_embedding_crosses_processes(processes):
    monitor = processes.start(
        "latent_monitor", "--ros-args", "-r", "latents:=/shared/latents", "-p", "max_messages:=3", "-p", "model_id:=m@1"
    )
    processes.python("-c", PUBLISHER, "30")
    out = read_all(monitor, 40)
    assert monitor.returncode == 0, out
    lines = [line for line in out.splitlines() if "robot=robot_a" in line]
    assert len(lines) == 3, out
    # |mu| of (3, 4) is 5 and sigma of log_var 0 is 1: the values crossed intact
    assert "model=m@1 modalities=[camera] dim=2 |mu|=5.000 mean_sigma=1.000" in lines[0]
    assert "INCOMPATIBLE" not in out


def test_monitor_flags_another_model(processes):
    monitor = processes.start(
        "latent_monitor", "--ros-args", "-r", "latents:=/shared/latents", "-p", "max_messages:=1", "-p", "model_id:=other@2"
    )
    processes.python("-c", PUBLISHER, "30")
    out = read_all(monitor, 40)
    assert monitor.returncode == 0, out
    assert "INCOMPATIBLE robot=robot_a" in out


def test_other_domain_is_not_heard(processes, ros_env):
    """Isolation works: a publisher on another domain id never reaches the monitor."""
    other = dict(ros_env, ROS_DOMAIN_ID=str((int(ros_env["ROS_DOMAIN_ID"]) % 101) + 1))
    monitor = processes.start("latent_monitor", "--ros-args", "-r", "latents:=/shared/latents", "-p", "max_messages:=1")
    processes.start(sys.executable, "-c", PUBLISHER, "8", env=other)
    time.sleep(8)
    assert monitor.poll() is None  # still waiting: heard nothing
