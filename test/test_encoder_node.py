"""The sensor encoder node: message conversion and the reasons for dropping a message (no DDS), the
node fed with simulator messages in this process, and the three encoders as real processes beside the
sim node over DDS, checked against the simulator's ground truth; the camera encoder also fed JPEG and PNG
CompressedImages (image_transport:=compressed) over DDS. A tiny model is trained once."""

from __future__ import annotations

import array
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from dds_probe import DdsProbe
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan
from test_stack import tiny_config
from tf2_msgs.msg import TFMessage

from m2vae_fusion.model.config import MODALITIES
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.model.views import view_vector
from m2vae_fusion.nodes import encoder
from m2vae_fusion.nodes.encoder import EncoderNode, ParameterError, detection_confidence
from m2vae_fusion.perception import frames
from m2vae_fusion.perception.lidar_objects import Candidate
from m2vae_fusion.perception.readings import CameraImage, Scan
from m2vae_fusion.resources import config_path, share_dir
from m2vae_fusion.ros_interface import reading_messages as bridge
from m2vae_fusion.ros_interface.drop_log import Dropped
from m2vae_fusion.ros_interface.sensor_input import camera_reading, scan_reading
from m2vae_fusion.sim.collect import collect
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_msgs.msg import LabelledObjectArray, ModalityEncoding

FEATURE_DIM = 4  # tiny_config
# the robot 18 cm in front of red_cylinder_matte (arena.sdf puts it at (0.6, 0)), as the training views
NEAR = (0.42, 0.0, 0.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("encoder_model")
    collect(folder / "bag", 32, seed=3)
    out = folder / "model"
    proc = subprocess.run(
        [
            "m2vae",
            "train",
            "--bag",
            str(folder / "bag"),
            "--out",
            str(out),
            "--config",
            str(tiny_config(folder / "tiny.yaml")),
            "--jobs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def near_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """arena.sdf with the robot at NEAR instead of the origin."""
    text = (share_dir() / "worlds" / "arena.sdf").read_text()
    start = "<uri>model://amiro</uri>\n      <name>amiro</name>\n      <pose>0.0000 0.0000 0 0 0 0.0000</pose>"
    assert start in text, "arena.sdf no longer puts the robot at the origin"
    path = tmp_path_factory.mktemp("world") / "near.sdf"
    path.write_text(text.replace(start, start.replace("0.0000 0.0000 0 0 0 0.0000", "{:.4f} {:.4f} 0 0 0 {:.4f}".format(*NEAR))))
    return path


# ---------------------------------------------------------------- conversion, no DDS


def sim_scan(n: int = 360) -> LaserScan:
    ranges = np.full(n, np.inf, np.float32)
    ranges[10:14] = 0.5
    step = 2 * math.pi / (n - 1)
    return bridge.laser_scan(
        Scan(
            ranges, np.where(np.isfinite(ranges), 0.8, 0.0).astype(np.float32), -math.pi, math.pi, step, 0.03, 4.0, "lidar_link"
        ),
        1.5,
        10.0,
    )


def test_scan_reading_keeps_inf_as_no_return():
    scan = scan_reading(sim_scan())
    assert len(scan.ranges) == 360 and np.isinf(scan.ranges).sum() == 356 and scan.intensities[10] == pytest.approx(0.8)
    assert scan.frame_id == "lidar_link"
    msg = sim_scan()
    msg.intensities = []  # LaserScan allows a scan without intensities
    assert len(scan_reading(msg).intensities) == 0


def _with(**fields) -> LaserScan:
    msg = sim_scan()
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def _nan_ranges() -> LaserScan:
    msg = sim_scan()
    msg.ranges[20] = math.nan
    return msg


@pytest.mark.parametrize(
    "msg, reason",
    [
        (_with(ranges=[], intensities=[]), "empty scan"),
        (_with(intensities=[0.5] * 359), "360 ranges but 359 intensities"),
        (_with(ranges=[0.5] * 200, intensities=[]), "200 ranges, but angle_min..angle_max"),
        (_nan_ranges(), "1 of 360 ranges are NaN"),
        (_with(ranges=[math.nan] * 360), "360 of 360 ranges are NaN"),
        (_with(intensities=[math.inf] * 360), "360 of 360 intensities are NaN or inf"),
        (_with(angle_increment=math.nan), "non-finite angle_increment=nan"),
        (_with(angle_increment=0.0), "angle_increment is 0"),
        (_with(range_min=5.0), "need 0 <= range_min < range_max"),
    ],
)
def test_malformed_scan_is_dropped_with_its_reason(msg, reason):
    with pytest.raises(Dropped, match=reason.replace(".", r"\.")) as dropped:
        scan_reading(msg, "IR reading")
    assert dropped.value.what == "IR reading" and not dropped.value.waiting


def camera_messages(width: int = 8, height: int = 6) -> tuple[Image, CameraInfo]:
    frame = CameraImage(
        np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3),
        10.0,
        10.0,
        width / 2,
        height / 2,
        "camera_optical_frame",
    )
    return bridge.image(frame, 1.0), bridge.camera_info(frame, 1.0)


def test_camera_reading_converts_every_claimed_encoding():
    image, info = camera_messages()
    rgb = np.frombuffer(bytes(image.data), np.uint8).reshape(6, 8, 3)
    assert np.array_equal(camera_reading(image, info).rgb, rgb)
    image.encoding, image.data = "bgr8", rgb[:, :, ::-1].tobytes()
    assert np.array_equal(camera_reading(image, info).rgb, rgb)
    image.encoding, image.step, image.data = (
        "bgra8",
        8 * 4 + 4,
        np.pad(np.dstack([rgb[:, :, ::-1], rgb[:, :, :1]]).reshape(6, 32), ((0, 0), (0, 4))).tobytes(),
    )
    assert np.array_equal(camera_reading(image, info).rgb, rgb)  # row padding skipped
    image.encoding, image.step, image.data = "32FC1", 8 * 4, np.full((6, 8), 0.5, np.float32).tobytes()
    assert np.all(camera_reading(image, info).rgb == 128)


def _image(**fields) -> Image:
    image, _ = camera_messages()
    for name, value in fields.items():
        setattr(image, name, value)
    return image


@pytest.mark.parametrize(
    "image, reason",
    [
        (_image(encoding="yuv422"), "encoding 'yuv422' is not supported"),
        (_image(step=20), "step 20 is less than a row of 8 rgb8 pixels"),
        (_image(data=bytes(100)), "data has 100 bytes, expected step \\* height = 24 \\* 6 = 144"),
        (_image(width=4, step=12, data=bytes(72)), "image is 4x6 but camera_info says 8x6"),
    ],
)
def test_malformed_image_is_dropped_with_its_reason(image, reason):
    _, info = camera_messages()
    with pytest.raises(Dropped, match=reason) as dropped:
        camera_reading(image, info)
    assert dropped.value.what == "image" and not dropped.value.waiting


def test_image_without_intrinsics_waits():
    image, info = camera_messages()
    with pytest.raises(Dropped, match="no camera_info") as dropped:
        camera_reading(image, None)
    assert dropped.value.waiting
    info.k = [0.0] * 9
    with pytest.raises(Dropped, match="no usable intrinsics"):
        camera_reading(image, info)


def test_detection_confidence_is_the_share_of_the_outline_seen():
    scan = Scan(np.zeros(360, np.float32), np.zeros(0, np.float32), -math.pi, math.pi, math.radians(1.0), 0.03, 4.0, "lidar_link")
    span = math.degrees(2 * math.asin(0.03 / 0.5))  # beams across a 3 cm radius object 0.5 m away: ~6.9
    whole = Candidate(0.0, 0.5, 0.5, 0.0, 0.06, 0, 6, 7, 0.5)
    assert detection_confidence(whole, scan, 0.03) == 1.0
    half = Candidate(0.0, 0.5, 0.5, 0.0, 0.03, 0, 3, 4, 0.5)  # the rest hidden behind something nearer
    assert detection_confidence(half, scan, 0.03) == pytest.approx(4 / span)


@pytest.mark.slow
def test_model_encodes_views_with_standardised_log_variances(model_dir):
    model = PerceptionModel.load(model_dir)
    rng = np.random.default_rng(0)
    crops = rng.random((2, 16, 16, 3), dtype=np.float32)
    views = np.stack([view_vector("camera", c) for c in crops])
    assert np.array_equal(views[0].reshape(3, 16, 16)[1], crops[0][:, :, 1])  # CHW, as training lays them out
    features, log_var = model.encode_views("camera", views)
    assert features.shape == log_var.shape == (2, FEATURE_DIM)
    np.testing.assert_allclose(features, model.features("camera", views), rtol=1e-5)
    raw = model.preprocessors["camera"].encode({"camera": torch.from_numpy(views)}).log_var.detach().numpy()
    std = np.asarray(model.manifest["standardiser"]["camera"]["std"])
    np.testing.assert_allclose(np.exp(log_var), np.exp(raw) / std**2, rtol=1e-4)  # variance of (mean - m) / std


# ---------------------------------------------------------------- the node in this process, fed by the simulator


@pytest.fixture
def node_in_process(model_dir, ros_env):
    """Make an EncoderNode in a private rclpy context, never spun: the test calls its callbacks and
    collects what it publishes and logs."""
    import rclpy
    from rclpy.parameter import Parameter

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    made = []

    def make(modality: str, **parameters) -> tuple[EncoderNode, list, list]:
        overrides = [Parameter(k, value=v) for k, v in {"modality": modality, "model": str(model_dir), **parameters}.items()]
        node = EncoderNode(context=context, parameter_overrides=overrides)
        made.append(node)
        published, logged = [], []
        node.publisher.publish = published.append
        node.drops.warn = node.drops.info = logged.append
        return node, published, logged

    yield make
    for node in made:
        node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.fixture(scope="module")
def sim_messages() -> SimpleNamespace:
    """One moment of the simulated robot /robot1 as messages, 18 cm in front of red_cube_matte."""
    sim = Simulator(SimConfig(world=share_dir() / "worlds" / "arena.sdf", seed=1))
    try:
        sim.set_cmd_vel(0.1, 1.0)  # drive an arc, so odom -> base_link is far from the identity
        for _ in range(100):
            sim.step(0.01)
        sim.set_cmd_vel(0.0, 0.0)
        sim.set_robot_pose(0.0, 0.42, math.pi / 2)  # facing red_cube_matte at (0, 0.6); odometry misses the jump
        odometry = sim.odometry()
        assert math.hypot(odometry.x, odometry.y) > 0.05 and abs(odometry.yaw) > 0.5
        t, prefix = 2.0, "robot1/"
        frame = sim.camera()
        offset = sim.map_to_odom()
        return SimpleNamespace(
            static=bridge.static_tf_message(sim.static_transforms(), 0.0, prefix),
            odom=lambda stamp: bridge.tf_message(
                [bridge.odom_transform(odometry, stamp, prefix, sim.odom_frame, sim.base_frame)]
            ),
            image=bridge.image(frame, t, prefix),
            info=bridge.camera_info(frame, t, prefix),
            scan=bridge.laser_scan(sim.lidar(), t, 10.0, prefix),
            ir=bridge.laser_scan(sim.ir(), t, 10.0, prefix),
            map_to_odom=frames.planar(offset.x, offset.y, offset.yaw),
            target=next(o for o in sim.objects if o.label == "red_cube_matte"),
        )
    finally:
        sim.close()


def test_node_encodes_the_object_in_front_at_its_true_position(node_in_process, sim_messages):
    m = sim_messages
    for modality, partner in (("camera", m.image), ("lidar", None), ("ir", m.ir)):
        node, published, logged = node_in_process(modality, frame_prefix="robot1", max_objects=1)
        node._on_scan(m.scan)  # before /tf_static: the LiDAR node cannot place it, the others wait for their partner
        node._on_tf_static(m.static)
        node._on_camera_info(m.info)
        if partner is not None:
            node._on_partner(partner)  # pairs the waiting scan
        else:
            node._on_scan(m.scan)
        assert published == [], "published before odom -> base_link at the scan's stamp was known"
        node._on_tf(m.odom(2.0))
        assert len(published) == 1, f"{modality}: {logged}"
        assert [line.split(":")[0] for line in logged] == (["dropped transform"] if modality == "lidar" else [])
        msg = published[0]
        assert (msg.modality, msg.header.frame_id, msg.header.stamp.sec) == (modality, "robot1/odom", 2)
        assert len(msg.mean) == len(msg.log_var) == FEATURE_DIM and 0.8 < msg.confidence <= 1  # in full view
        x, y, _ = frames.apply(m.map_to_odom, (msg.position.x, msg.position.y, msg.position.z))
        assert math.hypot(x - m.target.x, y - m.target.y) < 0.05, (modality, x, y)


def test_node_limits_objects_and_rate_and_waits_for_odom(node_in_process, sim_messages, monkeypatch):
    m = sim_messages
    node, published, logged = node_in_process(
        "lidar", frame_prefix="robot1", max_objects=2, rate_limit_hz=0.5, max_distance=1.0, max_bearing=math.pi
    )
    node._on_tf_static(m.static)
    node._on_tf(m.odom(1.9))
    for _ in range(3):
        node._on_scan(m.scan)  # stamped 2.0: waits for odom at 2.0; the 2nd and 3rd are over the rate limit
    assert published == [] and len(node.pending) == 1
    monkeypatch.setattr(encoder, "TF_WAIT_S", 0.0)
    node._on_tf(m.odom(1.95))  # still before the scan; once the wait is over, the latest before it serves
    assert len(published) == 2 and logged == []
    odom_from_map = frames.inverse(m.map_to_odom)
    target, robot = (frames.apply(odom_from_map, (x, y, 0.06))[:2] for x, y in ((m.target.x, m.target.y), (0.0, 0.42)))
    positions = [(msg.position.x, msg.position.y) for msg in published]
    assert math.dist(positions[0], target) < 0.05  # nearest first: the object in front
    assert math.dist(positions[0], robot) < math.dist(positions[1], robot)


def test_node_encodes_only_objects_within_its_distances_and_bearing(node_in_process, sim_messages):
    m = sim_messages
    everywhere = {"max_bearing": math.pi}
    # objects at 0.18 m (ahead), then 0.42 m (both 90 degrees to the side), 0.73 m, ...
    cases = (
        ({}, 1),
        ({"max_distance": 1.0, **everywhere}, 3),
        ({"min_distance": 0.2, "max_distance": 0.5, **everywhere}, 2),
        ({"max_distance": 1.0}, 1),
    )
    for limits, expected in cases:
        node, published, _ = node_in_process("lidar", frame_prefix="robot1", max_objects=3, **limits)
        node._on_tf_static(m.static)
        node._on_tf(m.odom(2.0))
        node._on_scan(m.scan)
        assert len(published) == expected, limits


def test_node_drops_bad_messages_and_goes_on(node_in_process):
    node, published, logged = node_in_process("camera")
    node.drops.period_s = 0.0
    image, info = camera_messages()
    node._on_camera_info(info)
    node._on_scan(_with(ranges=[], intensities=[]))
    node._on_scan(_with(ranges=[math.nan] * 360))
    node._on_partner(_image(encoding="yuv422"))
    node._on_partner(_image(width=4, step=12, data=bytes(72)))
    node._on_partner(image)
    scan = sim_scan()
    scan.header.stamp = image.header.stamp
    node._on_scan(scan)  # a good pair: goes as far as the missing /tf_static
    assert logged == [
        "dropped scan: empty scan (no ranges)",
        "dropped scan: 360 of 360 ranges are NaN (invalid measurements)",
        "dropped image: encoding 'yuv422' is not supported; supported: rgb8, bgr8, rgba8, bgra8, mono8, 32FC1",
        "dropped image: image is 4x6 but camera_info says 8x6",
        "dropped transform: /tf_static: no transform chain from 'base_link' to 'lidar_link': 'lidar_link' has no parent among the transforms",
    ]
    assert published == [] and node.drops.total == 5


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"modality": "sonar"}, "parameter 'modality' must be one of camera, lidar, ir, got 'sonar'"),
        ({"modality": "lidar", "model_id": "m2vae-000000000000"}, "parameter 'model_id' is 'm2vae-000000000000' but"),
        ({"modality": "ir", "max_objects": 0}, "parameter 'max_objects' must be >= 1"),
        (
            {"modality": "lidar", "executor": "multi_threaded"},
            "parameter 'executor' must be one of single_threaded, events, got 'multi_threaded'",
        ),
    ],
)
def test_bad_parameters_are_named(node_in_process, overrides, message):
    with pytest.raises(ParameterError, match=message):
        node_in_process(**overrides)


# ---------------------------------------------------------------- real processes over DDS


def encoder_argv(modality: str, *ros_args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "m2vae_fusion.nodes.encoder",
        "--ros-args",
        "-r",
        f"__node:={modality}_encoder",
        "--params-file",
        str(config_path("encoders.yaml")),
        *ros_args,
    ]


class Listener(DdsProbe):
    """rclpy in this process: encodings, map -> odom and the ground truth of /robot1."""

    def __init__(self, domain_id: int) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        super().__init__(domain_id, "test_encoder_listener", "encoder")
        self.encodings: dict[str, list[ModalityEncoding]] = {m: [] for m in MODALITIES}
        self.map_to_odom: np.ndarray | None = None
        self.truth: LabelledObjectArray | None = None
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(ModalityEncoding, "/robot1/encodings", self._on_encoding, reliable)
        self.node.create_subscription(TFMessage, "/tf", self._on_tf, reliable)
        self.node.create_subscription(
            LabelledObjectArray, "/robot1/ground_truth/objects", lambda m: setattr(self, "truth", m), latched
        )
        self.scan_pub = self.node.create_publisher(LaserScan, "/robot1/scan", 10)

    def _on_encoding(self, msg: ModalityEncoding) -> None:
        self.encodings.setdefault(msg.modality, []).append(msg)

    def _on_tf(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            if (t.header.frame_id, t.child_frame_id) == ("map", "robot1/odom"):
                r, p = t.transform.rotation, t.transform.translation
                self.map_to_odom = frames.from_translation_quaternion((p.x, p.y, p.z), (r.x, r.y, r.z, r.w))


@pytest.fixture
def listener(ros_env):
    listener = Listener(int(ros_env["ROS_DOMAIN_ID"]))
    yield listener
    listener.close()


def test_three_encoders_beside_the_sim_node(processes, listener, model_dir, near_world):
    model = PerceptionModel.load(model_dir)
    ns = ("-r", "__ns:=/robot1")
    procs = {
        "sim": processes.python("-m", "m2vae_fusion.nodes.sim", "--ros-args", *ns, "-p", f"world:={near_world}", "-p", "seed:=2")
    }
    for m in MODALITIES:
        procs[m] = processes.start(*encoder_argv(m, *ns, "-p", f"model:={model_dir}"))

    enough = lambda: (
        all(len(listener.encodings[m]) >= 5 for m in MODALITIES)
        and listener.map_to_odom is not None
        and listener.truth is not None
    )
    listener.spin_until(enough, 60, procs)
    assert enough(), f"encodings per modality: { {m: len(v) for m, v in listener.encodings.items()} }"

    # a malformed scan reaches every encoder; none of them may stop encoding
    bad = sim_scan()
    bad.header.frame_id = "robot1/lidar_link"
    bad.ranges[5] = math.nan
    for _ in range(3):
        listener.scan_pub.publish(bad)
    counts = {m: len(v) for m, v in listener.encodings.items()}
    listener.spin_until(lambda: all(len(listener.encodings[m]) >= counts[m] + 3 for m in MODALITIES), 20, procs)

    truth = {o.name: (o.pose.position.x, o.pose.position.y) for o in listener.truth.objects}
    for modality in MODALITIES:
        received = listener.encodings[modality]
        assert len(received) >= counts[modality] + 3, f"{modality} stopped encoding after the malformed scan"
        for msg in received:
            assert (msg.modality, msg.model_id, msg.header.frame_id) == (modality, model.model_id, "robot1/odom")
            assert len(msg.mean) == len(msg.log_var) == model.config.feature_dim
            assert np.all(np.isfinite(msg.mean)) and np.all(np.isfinite(msg.log_var)) and 0 <= msg.confidence <= 1
            x, y, _ = frames.apply(listener.map_to_odom, (msg.position.x, msg.position.y, msg.position.z))
            name, (ox, oy) = min(truth.items(), key=lambda item: math.hypot(item[1][0] - x, item[1][1] - y))
            assert math.hypot(ox - x, oy - y) < 0.05, (
                f"{modality}: ({x:.3f}, {y:.3f}) is {math.hypot(ox - x, oy - y):.3f} m from {name}"
            )
            if modality != "lidar":  # only the object in front is in the camera crop's and the IR ring's reach
                assert name == "red_cylinder_matte"

    processes.stop_all()
    for modality in MODALITIES:
        out = procs[modality].stdout.read()
        assert "dropped scan: 1 of 360 ranges are NaN" in out, out
        assert "Traceback" not in out, out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_events_executor_idles_quietly_encodes_and_stops_on_ctrl_c(processes, listener, model_dir, near_world):
    """executor:=events spins the node on rclpy's EventsExecutor: no busy loop while nothing arrives
    (its own spin() is one in this rclpy), encodings flow, and Ctrl-C ends it cleanly."""
    ns = ("-r", "__ns:=/robot1")
    encoder = processes.start(*encoder_argv("lidar", *ns, "-p", f"model:={model_dir}", "-p", "executor:=events"))
    up = lambda: listener.node.count_publishers("/robot1/encodings") > 0
    assert listener.spin_until(up, 60, encoder), "the encoder never advertised /robot1/encodings"
    listener.spin_until(lambda: False, 1.0, encoder)  # past start-up's own work
    before = cpu_seconds(encoder.pid)
    listener.spin_until(lambda: False, 2.0, encoder)
    idle = cpu_seconds(encoder.pid) - before
    assert idle < 0.5, f"the idle encoder used {idle:.2f} s of CPU in 2 s: a busy loop"

    sim = processes.python("-m", "m2vae_fusion.nodes.sim", "--ros-args", *ns, "-p", f"world:={near_world}", "-p", "seed:=2")
    enough = lambda: len(listener.encodings["lidar"]) >= 5
    assert listener.spin_until(enough, 60, {"encoder": encoder, "sim": sim}), f"{len(listener.encodings['lidar'])} encodings"

    os.killpg(encoder.pid, signal.SIGINT)
    out, _ = encoder.communicate(timeout=10)
    assert encoder.returncode == 0, out
    assert "Traceback" not in out, out


def test_missing_model_is_fatal(processes, tmp_path):
    proc = processes.start(*encoder_argv("lidar", "-p", f"model:={tmp_path / 'nowhere'}"))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert f"parameter 'model': no perception model at {tmp_path / 'nowhere'}" in out


def restamped(msg, stamp: float):
    """A copy of `msg` with its header stamped `stamp` (a serialization round trip copies any message)."""
    from rclpy.serialization import deserialize_message, serialize_message

    copy = deserialize_message(serialize_message(msg), type(msg))
    copy.header.stamp.sec, copy.header.stamp.nanosec = int(stamp), int(round(stamp % 1 * 1e9))
    return copy


def compressed_image(image: Image, codec: str) -> CompressedImage:
    """An rgb8 Image as image_transport's compressed transport publishes it: OpenCV compresses bgr8."""
    rgb = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width, 3)
    ok, data = cv2.imencode(".jpg" if codec == "jpeg" else ".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return CompressedImage(header=image.header, format=f"rgb8; {codec} compressed bgr8", data=array.array("B", data.tobytes()))


def test_camera_encoder_takes_jpeg_and_png_compressed_images(processes, listener, node_in_process, model_dir, sim_messages):
    """image_transport:=compressed: the camera encoder process subscribes to camera/image_raw/compressed
    and encodes a rendered view sent as JPEG and as PNG like the same view sent raw."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    m = sim_messages
    # the raw view, through the node in this process: the features to compare with
    node, published, logged = node_in_process("camera", frame_prefix="robot1", max_objects=1)
    for callback, msg in (
        (node._on_tf_static, m.static),
        (node._on_camera_info, m.info),
        (node._on_scan, m.scan),
        (node._on_partner, m.image),
        (node._on_tf, m.odom(2.0)),
    ):
        callback(msg)
    assert len(published) == 1, logged
    raw = published[0]

    encoder = processes.start(
        *encoder_argv(
            "camera",
            "-r",
            "__ns:=/robot1",
            "-p",
            f"model:={model_dir}",
            "-p",
            "image_transport:=compressed",
            "-p",
            "max_objects:=1",
        )
    )
    probe = listener.node
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.create_publisher(TFMessage, "/tf_static", latched).publish(m.static)
    tf_pub = probe.create_publisher(TFMessage, "/tf", 10)
    info_pub = probe.create_publisher(CameraInfo, "/robot1/camera/camera_info", 10)
    image_pub = probe.create_publisher(CompressedImage, "/robot1/camera/image_raw/compressed", 10)
    publishers = (tf_pub, info_pub, image_pub, listener.scan_pub)
    assert listener.spin_until(lambda: all(p.get_subscription_count() > 0 for p in publishers), 60, encoder), (
        "the encoder never subscribed"
    )

    def encoded(codec: str, stamp: int) -> ModalityEncoding:
        """The moment at `stamp` with its image as `codec`, sent again every 0.3 s until encoded:
        sensor data is best effort, and the encoder may still be matching the publishers."""
        moment = [
            (tf_pub, m.odom(stamp)),
            (info_pub, restamped(m.info, stamp)),
            (listener.scan_pub, restamped(m.scan, stamp)),
            (image_pub, compressed_image(restamped(m.image, stamp), codec)),
        ]
        sent = [-math.inf]

        def resend() -> None:
            if time.monotonic() - sent[0] > 0.3:
                sent[0] = time.monotonic()
                for publisher, msg in moment:
                    publisher.publish(msg)

        ours = lambda: [e for e in listener.encodings["camera"] if e.header.stamp.sec == stamp]
        assert listener.spin_until(lambda: bool(ours()), 30, encoder, tick=resend), f"no encoding of the {codec} image"
        return ours()[0]

    got = {"jpeg": encoded("jpeg", 2), "png": encoded("png", 3)}  # later stamps: the encoder drops out-of-order messages

    for msg in got.values():
        assert (msg.modality, msg.model_id, msg.header.frame_id) == ("camera", raw.model_id, "robot1/odom")
        assert np.allclose((msg.position.x, msg.position.y), (raw.position.x, raw.position.y), atol=1e-6)  # from the same scan
    # PNG is lossless: the raw view's features; JPEG loses a little of the image, and of the features
    np.testing.assert_allclose(got["png"].mean, raw.mean, atol=1e-5)
    np.testing.assert_allclose(got["png"].log_var, raw.log_var, atol=1e-5)
    jpeg_error = np.abs(np.asarray(got["jpeg"].mean) - raw.mean).max()
    print(f"JPEG feature error {jpeg_error:.4f}, raw features {np.round(raw.mean, 3)}")
    assert jpeg_error < 0.1, (got["jpeg"].mean, raw.mean)

    processes.stop_all()
    out = encoder.stdout.read()
    assert "/robot1/camera/image_raw/compressed" in out and "JPEG / PNG images decoded by OpenCV" in out, out
    assert "Traceback" not in out, out
