"""`m2vae sim world`, `m2vae sim collect` and `m2vae bench sim` as a user runs them: real processes,
a real mcap bag read back with `rosbags` (all topics, types, frames, balanced labels)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from m2vae_fusion.data.rosbag_types import typestore
from m2vae_fusion.perception.labels import default_labels

pytestmark = pytest.mark.slow  # simulated data collection, m2vae sim in subprocesses

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/scan": "sensor_msgs/msg/LaserScan",
    "/ir/scan": "sensor_msgs/msg/LaserScan",
    "/odom": "nav_msgs/msg/Odometry",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/tf_static": "tf2_msgs/msg/TFMessage",
    "/ground_truth/objects": "m2vae_msgs/msg/LabelledObjectArray",
    "/ground_truth/observed": "m2vae_msgs/msg/LabelledObjectArray",
}


def m2vae(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["m2vae", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("collect") / "bag"
    proc = m2vae("sim", "collect", "--out", str(out), "--samples", "40", "--seed", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wrote 40 labelled observations" in proc.stdout
    return out


def read_all(path: Path) -> dict[str, list]:
    store = typestore()
    messages: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, stamp, raw in reader.messages():
            msg = store.deserialize_cdr(raw, connection.msgtype)
            messages.setdefault(connection.topic, []).append((stamp, msg))
    return messages


def test_bag_has_every_topic_with_standard_types(bag: Path) -> None:
    with Reader(bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert reader.message_count == 40 * 8 + 1
        static_qos = next(c for c in reader.connections if c.topic == "/tf_static").ext.offered_qos_profiles
    assert types == TOPICS
    assert static_qos[0].durability.name == "TRANSIENT_LOCAL"
    assert next(bag.glob("*.mcap")).stat().st_size > 0


def test_observations_are_labelled_balanced_and_consistent(bag: Path) -> None:
    messages = read_all(bag)
    observed = [m.objects[0].label for _, m in messages["/ground_truth/observed"]]
    counts = Counter(observed)
    assert set(counts) == set(CLASSES) and max(counts.values()) - min(counts.values()) <= 1
    stamps = [s for s, _ in messages["/camera/image_raw"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 40
    for topic in TOPICS:
        if topic != "/tf_static":
            assert [s for s, _ in messages[topic]] == stamps, topic  # every sensor fires at the observation's instant
    stamp, image = messages["/camera/image_raw"][0]
    assert (image.width, image.height, image.encoding, image.step) == (320, 240, "rgb8", 960)
    assert image.header.frame_id == "camera_optical_frame" and len(image.data) == 320 * 240 * 3
    assert image.header.stamp.sec * 10**9 + image.header.stamp.nanosec == stamp
    scan = messages["/scan"][0][1]
    assert len(scan.ranges) == len(scan.intensities) == 360 and scan.header.frame_id == "lidar_link"
    ir = messages["/ir/scan"][0][1]
    assert len(ir.ranges) == 8 and ir.header.frame_id == "ir_link"
    frames = {(t.header.frame_id, t.child_frame_id) for _, m in messages["/tf"] for t in m.transforms}
    assert frames == {("map", "odom"), ("odom", "base_link")}
    static = {(t.header.frame_id, t.child_frame_id) for t in messages["/tf_static"][0][1].transforms}
    assert ("camera_link", "camera_optical_frame") in static and ("base_link", "lidar_link") in static
    everything = messages["/ground_truth/objects"][0][1]
    assert everything.header.frame_id == "map" and sorted(o.class_id for o in everything.objects) == list(range(8))


def test_the_observed_object_is_in_front_of_the_robot(bag: Path) -> None:
    """The LiDAR's nearest return straight ahead is the labelled object's surface, within its radius."""
    messages = read_all(bag)
    for (_, scan), (_, observed), (_, tf) in zip(messages["/scan"], messages["/ground_truth/observed"], messages["/tf"]):
        target = observed.objects[0].pose.position
        map_odom, odom_base = (t.transform for t in tf.transforms)
        # base pose in map = map->odom * odom->base (planar)
        yaw_mo = 2 * np.arctan2(map_odom.rotation.z, map_odom.rotation.w)
        yaw_ob = 2 * np.arctan2(odom_base.rotation.z, odom_base.rotation.w)
        c, s = np.cos(yaw_mo), np.sin(yaw_mo)
        x = map_odom.translation.x + c * odom_base.translation.x - s * odom_base.translation.y
        y = map_odom.translation.y + s * odom_base.translation.x + c * odom_base.translation.y
        distance = np.hypot(target.x - x, target.y - y)
        bearing = np.arctan2(target.y - y, target.x - x) - (yaw_mo + yaw_ob)
        bearing = (bearing + np.pi) % (2 * np.pi) - np.pi
        beam = int(round((bearing - scan.angle_min) / scan.angle_increment))
        assert 0.16 <= distance <= 0.5  # near views and, by default, half from beyond the IR's reach
        assert abs(scan.ranges[beam] - distance) < 0.045, (distance, scan.ranges[beam])


def test_sim_world_writes_a_loadable_world(tmp_path: Path) -> None:
    proc = m2vae("sim", "world", "--seed", "5", "--objects", "9", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    world = tmp_path / proc.stdout.strip().splitlines()[-1]
    assert world.is_file()
    out = tmp_path / "bag"
    proc = m2vae("sim", "collect", "--out", str(out), "--samples", "8", "--world", str(world))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_collect_errors_name_the_bad_input(tmp_path: Path, bag: Path) -> None:
    proc = m2vae("sim", "collect", "--out", str(bag), "--samples", "2")
    assert proc.returncode == 2 and "already exists" in proc.stderr
    proc = m2vae("sim", "collect", "--out", str(tmp_path / "x"), "--samples", "0")
    assert proc.returncode == 2 and "--samples" in proc.stderr
    one = tmp_path / "one.sdf"
    assert m2vae("sim", "world", "--seed", "1", "--objects", "3", "--out", str(one)).returncode == 0
    proc = m2vae("sim", "collect", "--out", str(tmp_path / "y"), "--samples", "2", "--world", str(one))
    assert proc.returncode == 2 and "lacks objects of class" in proc.stderr


def test_bench_sim_reports_ratios(tmp_path: Path) -> None:
    proc = m2vae("bench", "sim", "--seconds", "1", "--samples", "10", "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "real-time factor" in proc.stdout and "observations/s" in proc.stdout
    results = json.loads((tmp_path / "b.json").read_text())
    assert results["simulation"]["real_time_factor"] > 0 and results["collection"]["observations_per_second"] > 0
    assert results["simulation"]["readings"] == {"camera": 10, "lidar": 10, "ir": 10}
