"""`m2vae record`: the split bag writer on its own (no DDS), then the command as a user runs it —
the sim node and two recorders as real processes over isolated DDS, bags read back with rosbags."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import Processes
from rosbags.rosbag2 import Reader

from m2vae_fusion.data.recorder import (
    NS,
    RMW_INFINITE,
    RecordError,
    SplitBag,
    add_arguments,
    bag_qos,
    is_hidden,
    message_class,
    run,
    subscription_qos,
)
from m2vae_fusion.data.rosbag_types import typestore

TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/scan": "sensor_msgs/msg/LaserScan",
    "/ir/scan": "sensor_msgs/msg/LaserScan",
    "/odom": "nav_msgs/msg/Odometry",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/tf_static": "tf2_msgs/msg/TFMessage",
}
PERIOD_S = {"/camera/image_raw": 0.1, "/scan": 0.1, "/ir/scan": 0.1, "/odom": 0.05, "/tf": 0.05}
SPLIT_MB = 1.0


def uint32(value: int) -> bytes:
    store = typestore()
    return store.serialize_cdr(store.types["std_msgs/msg/UInt32"](data=value), "std_msgs/msg/UInt32").tobytes()


def values(path: Path) -> list[tuple[str, int, int]]:
    """(topic, bag time, value) of every std_msgs/UInt32 message in a bag or an .mcap file."""
    store = typestore()
    with Reader(path) as reader:
        return [(c.topic, t, store.deserialize_cdr(raw, c.msgtype).data) for c, t, raw in reader.messages()]


# ---------------------------------------------------------------- the split bag, no DDS


def test_split_by_duration_keeps_every_message_once(tmp_path):
    bag = SplitBag(tmp_path / "bag", max_duration_ns=NS // 4)
    bag.open()
    bag.add_topic("/a", "std_msgs/msg/UInt32", [])
    for i in range(100):  # 10 ms apart: a part spans at most 240 ms
        if i == 60:  # a topic that appears mid-recording (--all) is in this and every later part
            bag.add_topic("/b", "std_msgs/msg/UInt32", [])
        bag.write("/a" if i < 60 else "/b", 10**9 + i * 10**7, uint32(i))
    summary = bag.close()
    assert [p.name for p in summary.parts] == [f"bag_{k}.mcap" for k in range(4)]
    assert sorted(p.name for p in (tmp_path / "bag").iterdir()) == [
        "bag_0.mcap",
        "bag_1.mcap",
        "bag_2.mcap",
        "bag_3.mcap",
        "metadata.yaml",
    ]
    read = values(tmp_path / "bag")
    assert [v for _, _, v in read] == list(range(100))
    assert [t for t, _, _ in read] == ["/a"] * 60 + ["/b"] * 40
    assert summary.counts == {"/a": 60, "/b": 40} and summary.duration_s == pytest.approx(0.99)
    with Reader(tmp_path / "bag") as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {"/a": 60, "/b": 40}
        assert reader.duration == 99 * 10**7 + 1
    for part in summary.parts:
        stamps = [t for _, t, _ in values(tmp_path / "bag" / part.name)]
        assert stamps[-1] - stamps[0] < NS // 4 and part.messages == len(stamps) == 25


def test_split_by_size_never_overfills_a_part(tmp_path):
    size = len(uint32(0))
    bag = SplitBag(tmp_path / "bag", max_bytes=10 * size + size // 2)
    bag.open()
    bag.add_topic("/a", "std_msgs/msg/UInt32", [])
    for i in range(35):
        bag.write("/a", i, uint32(i))
    summary = bag.close()
    assert [p.messages for p in summary.parts] == [10, 10, 10, 5]
    assert [v for _, _, v in values(tmp_path / "bag")] == list(range(35))


def test_a_killed_recording_keeps_its_finished_parts(tmp_path):
    bag = SplitBag(tmp_path / "bag", max_bytes=4 * len(uint32(0)))
    bag.open()
    bag.add_topic("/a", "std_msgs/msg/UInt32", [])
    for i in range(10):
        bag.write("/a", i, uint32(i))
    # never closed (SIGKILL): metadata.yaml lists the two finished parts only
    assert [v for _, _, v in values(tmp_path / "bag")] == list(range(8))
    bag.close()
    assert [v for _, _, v in values(tmp_path / "bag")] == list(range(10))


def test_an_empty_recording_is_a_valid_bag(tmp_path):
    bag = SplitBag(tmp_path / "bag")
    bag.open()
    bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", [])
    summary = bag.close()
    assert summary.start_ns is None and summary.counts == {"/tf_static": 0} and len(summary.parts) == 1
    with Reader(tmp_path / "bag") as reader:
        assert reader.message_count == 0 and [c.topic for c in reader.connections] == ["/tf_static"]
    with pytest.raises(FileExistsError, match="already exists"):
        SplitBag(tmp_path / "bag")


# ---------------------------------------------------------------- QoS, types, arguments


def test_subscription_qos_serves_every_publisher():
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    qos = subscription_qos([latched])
    assert (qos.reliability, qos.durability) == (ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)
    qos = subscription_qos([latched, qos_profile_sensor_data])
    assert (qos.reliability, qos.durability) == (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)


def test_offered_qos_goes_into_the_bag_as_rosbag2_writes_it():
    from rclpy.duration import Duration, Infinite
    from rclpy.qos import DurabilityPolicy, QoSProfile

    profile = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, lifespan=Duration(seconds=10, nanoseconds=5))
    profile.deadline = Infinite
    qos = bag_qos(profile)
    assert qos.durability.name == "TRANSIENT_LOCAL" and qos.depth == 1
    assert (qos.lifespan.sec, qos.lifespan.nsec) == (10, 5)
    assert (qos.deadline.sec, qos.deadline.nsec) == RMW_INFINITE


def test_message_class_by_type_name():
    from sensor_msgs.msg import Image

    assert message_class("sensor_msgs/msg/Image") is Image
    with pytest.raises(RecordError, match="nope_msgs/msg/Thing cannot be imported"):
        message_class("nope_msgs/msg/Thing")
    with pytest.raises(RecordError, match="sensor_msgs/msg/NoSuchType cannot be imported"):
        message_class("sensor_msgs/msg/NoSuchType")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--all", "/scan"], "TOPICs or --all, not both"),
        ([], "nothing to record"),
        (["/scan", "--max-bag-size", "0"], "--max-bag-size must be > 0"),
        (["/scan", "--duration", "-1"], "--duration must be > 0"),
    ],
)
def test_bad_arguments_are_named(tmp_path, argv, message):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(RecordError, match=message):
        run(parser.parse_args(["--out", str(tmp_path / "bag"), *argv]))
    assert not (tmp_path / "bag").exists()


# ---------------------------------------------------------------- real processes over DDS


def m2vae_record(*args: str) -> list[str]:
    return ["m2vae", "record", *args]


@dataclass
class Recording:
    bag: Path
    out: str
    returncode: int
    wall: tuple[float, float]  # when recording started and was stopped, seconds since the epoch


@dataclass
class Live:
    plain: Recording  # one bag, wall-clock stamps, stopped with SIGINT
    split: Recording  # --max-bag-size, use_sim_time, stopped with SIGTERM
    everything: Recording  # --all from before the sim's topics exist, --max-bag-duration


def stop(proc: subprocess.Popen, sig: signal.Signals) -> tuple[str, int]:
    os.killpg(proc.pid, sig)
    out, _ = proc.communicate(timeout=30)
    return out, proc.returncode


@pytest.fixture(scope="module")
def live(ros_env, tmp_path_factory):
    """The sim at real time and three recorders side by side; the sim keeps running for the
    module's later tests."""
    group = Processes(ros_env)
    root = tmp_path_factory.mktemp("record")
    plain, split, everything = root / "plain", root / "split", root / "all"
    topics = ["camera/image_raw", "scan", "ir/scan", "odom", "/tf", "/tf_static"]
    try:
        anything = group.start(
            *m2vae_record("--out", str(everything), "--all", "--max-bag-duration", "1", "--ros-args", "-r", "__node:=record_all")
        )
        sim = group.python("-m", "m2vae_fusion.nodes.sim", "--ros-args", "-p", "real_time_factor:=1", "-p", "seed:=2")
        deadline = time.monotonic() + 90
        # The other two start once the --all recorder (started before the sim) records: a recorder that
        # subscribed while the sim's endpoints were still being discovered now and then received
        # nothing in this test (open question, see the issue notes).
        while not everything.exists():
            assert sim.poll() is None and anything.poll() is None and time.monotonic() < deadline, "the sim never came up"
            time.sleep(0.1)
        time.sleep(1.0)
        one = group.start(*m2vae_record("--out", str(plain), "--wait", "60", *topics))
        parts = group.start(
            *m2vae_record(
                "--out",
                str(split),
                "--max-bag-size",
                str(SPLIT_MB),
                "--wait",
                "60",
                *topics,
                "--ros-args",
                "-p",
                "use_sim_time:=true",
                "-r",
                "__node:=record_split",
            )
        )
        # a bag folder appears once its recorder has found every topic
        while not (plain.exists() and split.exists()):
            for proc in (sim, anything, one, parts):
                if proc.poll() is not None:
                    pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{proc.stdout.read()}")
            assert time.monotonic() < deadline, "the recorders never started recording"
            time.sleep(0.1)
        started = time.time()
        # eight finished parts, ~7 s at 10 images/s: under load a recorder's first message of a best-effort
        # topic has come 3.6 s after the other's (and six parts then left 0.7 s where both recorded)
        while len(finished := list(split.glob("*.mcap"))) < 8:
            if time.time() > started + 40:  # its own log says what it subscribed to and received
                out, _ = stop(parts, signal.SIGTERM)
                pytest.fail(f"the split recorder finished only {len(finished)} parts in 40 s:\n{out}")
            time.sleep(0.1)
        window = (started, time.time())
        yield Live(
            Recording(plain, *stop(one, signal.SIGINT), window),
            Recording(split, *stop(parts, signal.SIGTERM), window),
            Recording(everything, *stop(anything, signal.SIGINT), window),
        )
    finally:
        group.stop_all()


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    store = typestore()
    messages: dict[str, list[tuple[int, object]]] = {}
    with Reader(path) as reader:
        for connection, stamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((stamp, store.deserialize_cdr(raw, connection.msgtype)))
    return messages


def header_stamps(messages: list[tuple[int, object]]) -> np.ndarray:
    def stamp(msg) -> float:
        header = msg.transforms[0].header if hasattr(msg, "transforms") else msg.header
        return header.stamp.sec + header.stamp.nanosec * 1e-9

    return np.array([stamp(msg) for _, msg in messages])


def test_recording_holds_every_topic(live: Live):
    rec = live.plain
    assert rec.returncode == 0, rec.out
    assert "stopped: SIGINT" in rec.out and "recorded " in rec.out and "(1 file," in rec.out
    with Reader(rec.bag) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == TOPICS
        counts = {c.topic: c.msgcount for c in reader.connections}
        offered = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
        definitions = {c.topic: c.msgdef.data for c in reader.connections}
    assert all(n > 0 for n in counts.values()), f"{counts}\n{rec.out}"
    for topic, n in counts.items():
        assert f"{topic} " in rec.out and f" {n} " in rec.out, f"summary lacks {topic}: {rec.out}"
    assert offered["/tf_static"].durability.name == "TRANSIENT_LOCAL"  # `ros2 bag play` latches it again
    assert offered["/scan"].reliability.name == "BEST_EFFORT"
    assert "uint32 height" in definitions["/camera/image_raw"]
    messages = read_bag(rec.bag)  # every message deserializes
    assert {t: len(m) for t, m in messages.items()} == counts
    ((_, static),) = messages["/tf_static"]  # latched: published once, before the recorder subscribed
    assert {(t.header.frame_id, t.child_frame_id) for t in static.transforms} >= {
        ("base_link", "camera_link"),
        ("base_link", "lidar_link"),
    }
    image = messages["/camera/image_raw"][-1][1]
    assert (image.width, image.height, image.encoding, len(image.data)) == (320, 240, "rgb8", 320 * 240 * 3)
    times = np.array([t for m in messages.values() for t, _ in m]) / NS
    assert rec.wall[0] - 5 < times.min() and times.max() < rec.wall[1] + 5, "not stamped with the wall-clock receive time"


def test_split_parts_lose_and_repeat_nothing(live: Live):
    rec, whole = live.split, live.plain
    assert rec.returncode == 0, rec.out
    assert "stopped: SIGTERM" in rec.out
    info = yaml.safe_load((rec.bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    names = info["relative_file_paths"]
    assert len(names) >= 3 and names == [f"split_{k}.mcap" for k in range(len(names))]
    assert sorted(p.name for p in rec.bag.iterdir()) == sorted([*names, "metadata.yaml"])  # no staging folder left
    store = typestore()
    for name in names:  # each part is a complete mcap of its own, at most SPLIT_MB of messages
        with Reader(rec.bag / name) as part:
            assert sum(len(raw) for _, _, raw in part.messages()) <= SPLIT_MB * 1e6
            for connection, _, raw in part.messages():
                store.deserialize_cdr(raw, connection.msgtype)
    split_msgs, plain_msgs = read_bag(rec.bag), read_bag(whole.bag)
    assert set(split_msgs) == set(TOPICS), rec.out
    assert sum(map(len, split_msgs.values())) == info["message_count"]
    assert len(split_msgs["/tf_static"]) == 1
    for topic, period in PERIOD_S.items():
        mine, theirs = header_stamps(split_msgs[topic]), header_stamps(plain_msgs[topic])
        assert np.all(np.diff(mine) > 0), f"{topic}: a message repeated or out of order"
        if topic in ("/odom", "/tf"):  # reliable: any gap is the recorder's loss
            np.testing.assert_allclose(np.diff(mine), period, atol=1e-6, err_msg=f"{topic}: a message lost")
        # where both recorders ran, the split bag holds exactly what the single bag holds
        lo, hi = max(mine[0], theirs[0]), min(mine[-1], theirs[-1])
        assert hi - lo > 0.5  # at least five camera frames and ten odometry messages to compare
        window = lambda s: np.round(s[(s >= lo) & (s <= hi)], 6)  # noqa: E731
        np.testing.assert_array_equal(window(mine), window(theirs), err_msg=f"{topic} differs from the single-bag recording")


def test_use_sim_time_stamps_with_the_simulation_clock(live: Live):
    for topic, messages in read_bag(live.split.bag).items():
        if topic == "/tf_static":
            continue
        received = np.array([t for t, _ in messages]) / NS
        lag = received - header_stamps(messages)
        # /clock (100 Hz) is received in order with the messages sent at the same simulated instant
        assert np.all(lag >= -0.011) and np.all(lag < 1.0), (
            f"{topic}: receive time is not simulated time: {lag.min()}..{lag.max()}"
        )


def test_all_picks_up_topics_that_appear_later(live: Live):
    rec = live.everything
    assert rec.returncode == 0, rec.out
    with Reader(rec.bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    # started before the sim: every sim topic was found while recording
    wanted = {*TOPICS, "/clock", "/camera/camera_info", "/ground_truth/objects"}
    assert wanted <= set(counts) and all(counts[t] > 0 for t in wanted), counts
    info = yaml.safe_load((rec.bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert len(info["files"]) >= 2 and all(f["duration"]["nanoseconds"] < NS for f in info["files"])


def test_duration_stops_the_recording(live: Live, processes, tmp_path):
    proc = processes.start(*m2vae_record("--out", str(tmp_path / "bag"), "--duration", "1", "odom"))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped: --duration 1 s reached" in out
    stamps = header_stamps(read_bag(tmp_path / "bag")["/odom"])
    assert 0.5 <= stamps[-1] - stamps[0] <= 1.2 and len(stamps) >= 10  # the sim publishes in 20 ms bursts


def test_hidden_topics():
    assert is_hidden("/_action/status") and is_hidden("/robot1/_internal")
    assert not is_hidden("/robot_1/scan")


def test_bad_topic_name_is_named(processes, tmp_path):
    proc = processes.start(*m2vae_record("--out", str(tmp_path / "bag"), "scan", "bad name!"))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, out
    assert "invalid topic name 'bad name!'" in out and "alphanumerics" in out
    assert not (tmp_path / "bag").exists()


def test_never_published_topic_times_out(live: Live, processes, tmp_path):
    # long enough for a new participant to discover the running sim on a busy machine
    proc = processes.start(*m2vae_record("--out", str(tmp_path / "bag"), "--wait", "6", "never/published", "scan"))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, out
    assert "no publisher of /never/published appeared within 6 s" in out
    assert "topics with publishers: " in out and "/scan" in out.split("topics with publishers: ")[1]
    assert not (tmp_path / "bag").exists()
