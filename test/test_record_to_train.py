"""A bag recorded live with `m2vae record` from the running `sim` node trains the perception model the
same way a collected bag does: real processes, real DDS, a real mcap bag, then `m2vae train`."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import yaml
from test_stack import tiny_config

from m2vae_fusion.data.bag_frames import read_frames
from m2vae_fusion.model.config import load_stack_config
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.training.dataset import extract

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

TOPICS = ["camera/image_raw", "camera/camera_info", "scan", "ir/scan", "/tf", "/tf_static", "ground_truth/objects"]
LABELS = ["red_cube_shiny", "green_cylinder_matte", "red_cylinder_matte", "green_cube_shiny"]


def four_object_world(folder: Path) -> Path:
    """The robot at the origin, four objects 0.2 m away in front, left, behind and right of it."""
    includes = "\n".join(
        f"<include><uri>model://{label}</uri><name>{label}</name>"
        f"<pose>{0.2 * np.cos(a):.4f} {0.2 * np.sin(a):.4f} 0 0 0 0</pose></include>"
        for label, a in zip(LABELS, np.arange(4) * np.pi / 2)
    )
    path = folder / "four.sdf"
    path.write_text(
        f"""<?xml version="1.0"?>
<sdf version="1.9"><world name="four">
  <light type="directional" name="sun"><direction>-0.3 0.2 -0.9</direction><diffuse>0.8 0.8 0.8 1</diffuse></light>
  <include><uri>model://amiro</uri><name>amiro</name></include>
  {includes}
</world></sdf>"""
    )
    return path


def turn_once(rate: float = 0.9, timeout_s: float = 60.0) -> None:
    """Turn the robot in place until its odometry has turned a full circle (in simulated time, so a
    busy machine that runs the sim slower than real time still gets every view)."""
    import rclpy
    from dds_probe import rclpy_session  # Jazzy's rclpy.init is no context manager
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry

    yaws: list[float] = []

    def on_odom(msg: Odometry) -> None:
        q = msg.pose.pose.orientation
        yaws.append(2 * np.arctan2(q.z, q.w))

    with rclpy_session():
        node = rclpy.create_node("turner")
        publisher = node.create_publisher(Twist, "cmd_vel", 10)
        node.create_subscription(Odometry, "odom", on_odom, 10)
        command = Twist()
        command.angular.z = rate
        end = time.monotonic() + timeout_s
        turned = 0.0
        while turned < 2 * np.pi + 0.3:
            assert time.monotonic() < end, f"the robot turned only {turned:.2f} rad in {timeout_s} s"
            publisher.publish(command)
            rclpy.spin_once(node, timeout_sec=0.1)
            if len(yaws) > 1:
                turned = float(np.sum(np.abs(np.angle(np.exp(1j * np.diff(yaws))))))
        node.destroy_node()


def test_recorded_bag_trains_like_a_collected_one(processes, tmp_path: Path) -> None:
    sim = processes.start("sim", "--ros-args", "-p", f"world:={four_object_world(tmp_path)}", "-p", "real_time_factor:=1.0")
    bag = tmp_path / "recorded"
    recorder = processes.start("m2vae", "record", "--out", str(bag), *TOPICS, "--wait", "30")
    turn_once()  # the camera faces every object once
    recorder.send_signal(signal.SIGINT)
    out, _ = recorder.communicate(timeout=30)
    assert recorder.returncode == 0, out
    assert sim.poll() is None

    frames = read_frames([bag])
    assert len(frames.frames) >= 20 and sorted(o.label for o in frames.objects) == sorted(LABELS)
    observations = extract(frames, load_stack_config().perception)
    complete = observations.complete()
    # the LiDAR sees all four all the time; the camera the one in front and the IR ring those a beam
    # points at, so as the robot turns, several objects are seen by all three now and then
    every = {CLASSES.index(label) for label in LABELS}
    lidar_labels = set(observations.labels[observations.seen("lidar")])
    # -1: a view placed more than the 6 cm gate from every object (a pose from /tf a few ms off while turning)
    assert every <= lidar_labels <= every | {-1}
    assert complete.sum() >= 4 and len(set(observations.labels[complete])) >= 2 and set(observations.labels[complete]) <= every

    config = tiny_config(tmp_path / "tiny.yaml")
    small_batches = yaml.safe_load(config.read_text())
    small_batches["fusion_train"]["batch_size"] = 4
    small_batches["preprocessors"]["train"]["batch_size"] = 4
    config.write_text(yaml.safe_dump(small_batches))
    trained = subprocess.run(
        ["m2vae", "train", "--bag", str(bag), "--out", str(tmp_path / "model"), "--config", str(config), "--jobs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (tmp_path / "model" / "perception_model.json").is_file()
