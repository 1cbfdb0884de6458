"""Robustness (issue 9): sensor messages the encoder refuses, counted by reason on /diagnostics and
never fatal; other robots' latents the fusion node refuses (future stamps, floods of made-up robot
ids); how far the worst latent the checks let through moves a belief (bounded influence); a sensor
that drops out and comes back, with the real nodes over DDS; broken bags, kill -9 during a checkpoint
save, and training killed and resumed.

In-process nodes use the shipped model (m2vae_fusion/weights/amiro) and simulator messages of the
robot 18 cm in front of red_cube_matte; their callbacks are called directly (no spinning)."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from dds_probe import DdsProbe
from test_sim import one_object_world

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.model.beliefs import MAX_ABS_LOG_VAR, MAX_ABS_MEAN, BeliefStore, Encoding, Latent
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.nodes.encoder import EncoderNode
from m2vae_fusion.nodes.fusion import FusionNode
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.resources import config_path, default_model_dir, share_dir
from m2vae_fusion.ros_interface import diagnostics
from m2vae_fusion.ros_interface import reading_messages as bridge
from m2vae_fusion.ros_interface.drop_log import Dropped
from m2vae_fusion.ros_interface.sensor_input import MAX_BEAMS, MAX_IMAGE_PIXELS, camera_reading, scan_reading
from m2vae_fusion.ros_interface.stamps import from_seconds
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_msgs.msg import LatentEmbedding, ModalityEncoding

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

REPO = Path(__file__).resolve().parents[1]
T = 2.0  # stamp of the simulator messages [s]
SENSORS = ("camera", "lidar", "ir")


def at(msg, t_s: float):
    """A copy of a sensor message stamped `t_s`."""
    msg = copy.deepcopy(msg)
    msg.header.stamp = from_seconds(t_s)
    return msg


@pytest.fixture(scope="module")
def robot() -> SimpleNamespace:
    """One moment of the simulated /robot1 as messages: 18 cm in front of red_cube_matte (arena.sdf)."""
    sim = Simulator(SimConfig(world=share_dir() / "worlds" / "arena.sdf", seed=1))
    try:
        sim.set_robot_pose(0.0, 0.42, math.pi / 2)
        prefix, odometry, frame = "robot1/", sim.odometry(), sim.camera()
        return SimpleNamespace(
            static=bridge.static_tf_message(sim.static_transforms(), 0.0, prefix),
            odom=lambda stamp: bridge.tf_message(
                [bridge.odom_transform(odometry, stamp, prefix, sim.odom_frame, sim.base_frame)]
            ),
            image=bridge.image(frame, T, prefix),
            info=bridge.camera_info(frame, T, prefix),
            scan=bridge.laser_scan(sim.lidar(), T, 10.0, prefix),
            ir=bridge.laser_scan(sim.ir(), T, 10.0, prefix),
        )
    finally:
        sim.close()


@pytest.fixture(scope="module")
def context(ros_env):
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def make_node(context):
    """In-process EncoderNode / FusionNode with parameter overrides; what they publish is kept in
    `node.sent` instead of going out."""
    from rclpy.parameter import Parameter

    made = []

    def make(kind: type, **parameters):
        node = kind(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
        made.append(node)
        node.sent = []
        for publisher in ("publisher", "beliefs_pub", "latents_pub"):
            if getattr(node, publisher, None) is not None:
                getattr(node, publisher).publish = node.sent.append
        return node

    yield make
    for node in made:
        node.destroy_node()


def ready_encoder(make_node, robot, modality: str, **parameters) -> EncoderNode:
    """An encoder node that has /tf_static, odometry at T and (camera) camera_info."""
    node = make_node(EncoderNode, modality=modality, frame_prefix="robot1", **parameters)
    node._on_tf_static(robot.static)
    node._on_tf(robot.odom(T))
    node._on_camera_info(robot.info)
    return node


def feed(node: EncoderNode, robot, t_s: float) -> None:
    """The node's sensor messages stamped t_s: its partner first, then the scan."""
    if node.modality == "camera":
        node._on_partner(at(robot.image, t_s))
    elif node.modality == "ir":
        node._on_partner(at(robot.ir, t_s))
    node._on_scan(at(robot.scan, t_s))


def dropped(node) -> dict[str, int]:
    return {k: n for k, n in node.counters.counts.items() if k.startswith(diagnostics.DROPPED)}


# ---------------------------------------------------------------- sensor inputs, no DDS


def test_ranges_below_zero_are_refused_but_infinities_and_out_of_range_values_are_kept(robot) -> None:
    msg = copy.deepcopy(robot.scan)
    ranges = np.asarray(msg.ranges, np.float32)
    ranges[:3] = (-math.inf, math.inf, msg.range_max + 5.0)  # REP-117 too close, no return; beyond range_max: ignored
    msg.ranges = ranges.tolist()
    scan = scan_reading(msg)
    assert np.isneginf(scan.ranges[0]) and np.isposinf(scan.ranges[1]) and scan.ranges[2] == pytest.approx(msg.range_max + 5.0)
    ranges[5] = -0.2
    msg.ranges = ranges.tolist()
    with pytest.raises(Dropped, match="1 of 360 ranges are negative") as refused:
        scan_reading(msg)
    assert refused.value.key == "dropped scan: negative_ranges"


def test_huge_and_zero_size_messages_are_refused_by_their_size(robot) -> None:
    msg = copy.deepcopy(robot.scan)
    msg.ranges, msg.intensities = [1.0] * MAX_BEAMS, []
    msg.angle_increment = (msg.angle_max - msg.angle_min) / (MAX_BEAMS - 1)
    assert len(scan_reading(msg).ranges) == MAX_BEAMS  # the limit itself is fine
    msg.ranges = [1.0] * (MAX_BEAMS + 1)
    with pytest.raises(Dropped, match=f"more than {MAX_BEAMS} beams"):
        scan_reading(msg)
    image = copy.deepcopy(robot.image)
    image.width, image.height, image.step, image.data = 0, 0, 0, b""
    with pytest.raises(Dropped, match="zero-size image: 0x0") as refused:
        camera_reading(image, robot.info)
    assert refused.value.kind == "zero_size" and not refused.value.waiting
    image = copy.deepcopy(robot.image)
    image.width = image.height = math.isqrt(MAX_IMAGE_PIXELS) + 1  # with 230 kB of data: the claim alone is refused
    with pytest.raises(Dropped, match=f"more than {MAX_IMAGE_PIXELS} pixels") as refused:
        camera_reading(image, None)  # before camera_info: the size needs no intrinsics
    assert refused.value.kind == "huge"


def test_unknown_frames_out_of_order_and_future_stamps_are_dropped_and_counted(make_node, robot) -> None:
    node = make_node(EncoderNode, modality="lidar", frame_prefix="robot1")
    stranger = at(robot.scan, T)
    stranger.header.frame_id = "robot1/sonar_link"
    node._on_scan(stranger)  # before /tf_static no frame is known yet: it waits, not "unknown"
    node._on_tf_static(robot.static)
    node._on_tf(robot.odom(T))
    node._on_scan(stranger)
    feed(node, robot, T)
    assert len(node.sent) == 1
    feed(node, robot, T)  # the same stamp again is not out of order
    feed(node, robot, T - 0.5)
    node._on_scan(at(robot.scan, time.time() + 100))  # the node's clock is the system clock here
    assert dropped(node) == {
        "dropped transform: tf_static": 1,
        "dropped scan: unknown_frame": 1,
        "dropped scan: out_of_order": 1,
        "dropped scan: future": 1,
    }
    assert node.counters.counts["received scan"] == 6 and node.counters.counts["published encodings"] == 2
    assert len(node.sent) == 2 and all(m.header.stamp.sec == int(T) for m in node.sent)


def test_a_malformed_transform_is_dropped_not_fatal(make_node, robot) -> None:
    node = ready_encoder(make_node, robot, "lidar")
    bad = robot.odom(T + 0.1)
    rotation = bad.transforms[0].transform.rotation
    rotation.x = rotation.y = rotation.z = rotation.w = 0.0  # no rotation at all
    node._on_tf(bad)
    broken = copy.deepcopy(robot.static)
    broken.transforms[0].transform.rotation.w = math.nan
    node._on_tf_static(broken)
    feed(node, robot, T)  # odometry at T still holds; the scan's frame can no longer be placed
    assert dropped(node) == {"dropped transform: malformed": 1, "dropped scan: unknown_frame": 1} and not node.sent


def test_future_is_judged_by_odometry_while_the_sim_clock_has_not_started(make_node, robot) -> None:
    node = make_node(
        EncoderNode, modality="ir", frame_prefix="robot1", use_sim_time=True, future_tolerance_s=0.5
    )  # no /clock: ROS time 0
    node._on_tf_static(robot.static)
    node._on_tf(robot.odom(100.0))
    feed(node, robot, 100.4)  # within the tolerance of odometry at 100 s
    node._on_tf(robot.odom(100.4))
    assert len(node.sent) == 1
    feed(node, robot, 101.0)
    assert dropped(node) == {"dropped IR reading: future": 1, "dropped scan: future": 1}
    # a restarted simulation: odometry jumps back, and the new run's messages are not "out of order"
    node._on_tf(robot.odom(1.0))
    feed(node, robot, 1.0)
    assert len(node.sent) == 2 and len(dropped(node)) == 2


def test_a_camera_node_refuses_every_bad_image_and_still_encodes_the_next_good_one(make_node, robot) -> None:
    node = ready_encoder(make_node, robot, "camera")
    bad = []
    for change in (
        {"encoding": "yuv422"},
        {"step": 5},
        {"data": b"\x00" * 10},
        {"width": 160},
        {"width": 0, "height": 0, "data": b""},
    ):
        image = at(robot.image, T)
        for name, value in change.items():
            setattr(image, name, value)
        bad.append(image)
    for image in bad:
        node._on_partner(image)
    assert dropped(node) == {"dropped image: format": 3, "dropped image: size": 1, "dropped image: zero_size": 1}
    feed(node, robot, T)
    assert len(node.sent) == 1 and np.all(np.isfinite(node.sent[0].mean))


def test_diagnostics_count_by_reason_and_warn_while_drops_come() -> None:
    counters = diagnostics.Counters()
    counters.add("received scan", 3)
    counters.add("dropped scan: nan_ranges", 2)
    status = counters.status("/robot1/lidar_encoder", "robot1")
    assert status.level == diagnostics.DiagnosticStatus.WARN and "2 messages dropped" in status.message
    assert diagnostics.read([status]) == {"/robot1/lidar_encoder": {"dropped scan: nan_ranges": 2, "received scan": 3}}
    counters.add("received scan")
    assert counters.status("/robot1/lidar_encoder", "robot1").level == diagnostics.DiagnosticStatus.OK  # nothing new dropped


# ---------------------------------------------------------------- other robots' latents, no DDS


def latent(
    model_id: str, robot_id: str, object_id: str, sequence: int, t_s: float, x: float = 5.0, seed: int = 0
) -> LatentEmbedding:
    msg = LatentEmbedding()
    msg.header.stamp, msg.header.frame_id = from_seconds(t_s), "map"
    msg.robot_id, msg.object_id, msg.model_id, msg.sequence = robot_id, object_id, model_id, sequence
    msg.modalities, msg.contributors = ["camera"], [robot_id]
    msg.mean = np.random.default_rng(seed).standard_normal(10).tolist()
    msg.log_var = [-1.0] * 10
    msg.position.x, msg.position.y = x, 5.0
    return msg


def encoding(model_id: str, modality: str, t_s: float) -> ModalityEncoding:
    msg = ModalityEncoding(modality=modality, model_id=model_id, confidence=1.0)
    msg.header.stamp, msg.header.frame_id = from_seconds(t_s), "map"
    msg.mean, msg.log_var = [0.1] * 8, [-2.0] * 8
    msg.position.x, msg.position.y = 1.0, 1.0
    return msg


def test_future_stamps_floods_of_robot_ids_and_replays_are_refused_and_counted(make_node) -> None:
    # use_sim_time without /clock: the node's clock reads 0, so the data clock alone decides what is future
    node = make_node(
        FusionNode, fusion_frame="map", robot_id="robot1", max_foreign_robots=3, forget_after_s=1.0, use_sim_time=True
    )
    model_id = node.model.model_id
    node._on_encoding(encoding(model_id, "lidar", 100.0))  # the data clock starts at 100 s
    node._on_batch()
    node._on_encoding(encoding(model_id, "camera", 102.0))  # more than 1 s ahead of it
    first = latent(model_id, "robot2", "object_1", 1, 100.0)
    for msg in (
        first,
        copy.deepcopy(first),  # a replay
        latent(model_id, "robot2", "object_2", 1, 160.0),  # from the future
        *(latent(model_id, f"made_up_{k}", "object_1", 1, 100.0, x=6.0 + k) for k in range(4)),  # robots 2..4 fill the slots
        latent(model_id, "robot1", "object_9", 1, 100.0),  # its own id: ignored, not refused
    ):
        node._on_latent(msg)
    node._on_batch()
    assert dropped(node) == {
        "dropped encoding: future": 1,
        "dropped latent: duplicate": 1,
        "dropped latent: future": 1,
        "dropped latent: robots": 2,
    }
    assert node.counters.counts["accepted latents"] == 3 and node.counters.counts["ignored own latents"] == 1
    assert node.counters.counts["fused lidar"] == 1 and "fused camera" not in node.counters.counts
    assert node.store.latent_rejections == {"duplicate": 1, "future": 1, "robots": 2}
    time.sleep(1.05)  # forget_after_s: the slots free up
    node._on_latent(latent(model_id, "made_up_9", "object_1", 1, 100.5))
    node._on_batch()
    assert node.counters.counts["accepted latents"] == 4
    node._on_publish()
    (beliefs,) = [m for m in node.sent if hasattr(m, "beliefs")]
    assert all(np.all(np.isfinite(b.mean)) and np.all(np.isfinite(b.class_probabilities)) for b in beliefs.beliefs)


# ---------------------------------------------------------------- bounded influence, no DDS


@pytest.fixture(scope="module")
def model() -> PerceptionModel:
    return PerceptionModel.load(default_model_dir())


@pytest.fixture(scope="module")
def sensed(model: PerceptionModel) -> dict[str, dict[str, np.ndarray]]:
    """Standardised features each sensor gives of every class, 0.2 m ahead (arena world)."""
    from test_perception_pipeline import sensed_features

    return {label: sensed_features(model, label, Path()) for label in CLASSES}


def worst_latents(rng: np.random.Generator, count: int, dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mean, log_var) at and inside the magnitude bounds the checks allow."""
    out = []
    for k in range(count):
        scale = MAX_ABS_MEAN if k % 2 else rng.uniform(0, MAX_ABS_MEAN, dim)
        out.append(
            (
                (rng.choice([-1.0, 1.0], dim) * scale).astype(np.float32),
                rng.choice([-MAX_ABS_LOG_VAR, MAX_ABS_LOG_VAR], dim).astype(np.float32),
            )
        )
    return out


def with_foreign(
    model: PerceptionModel, features: dict[str, np.ndarray], own: tuple[str, ...], mean, log_var, claimed: tuple[str, ...]
):
    store = BeliefStore(model, "robot1")
    store.update([Encoding(m, model.model_id, features[m], np.zeros(3), 10**9, "robot1") for m in own])
    (obj,) = store.objects.values()
    before = (obj.belief, obj.class_probabilities.copy())
    result = store.add_latents(
        [Latent("robot2", "o", model.model_id, 1, claimed, ("robot2",), mean, log_var, np.zeros(3), 10**9)], 0.0
    )
    assert not result.rejected
    return before, obj


@pytest.mark.slow
def test_the_worst_allowed_foreign_latent_cannot_touch_an_object_sensed_by_every_own_sensor(model, sensed) -> None:
    rng = np.random.default_rng(0)
    for label, features in sensed.items():
        for mean, log_var in worst_latents(rng, 10, model.config.fusion.latent_dim):
            (belief, p), obj = with_foreign(model, features, SENSORS, mean, log_var, SENSORS)
            assert obj.used is None and obj.fused is obj.belief is belief, label
            assert np.array_equal(obj.class_probabilities, p)


@pytest.mark.slow
def test_with_some_own_sensors_a_foreign_latent_only_fills_the_others(model, sensed) -> None:
    """Measures (and prints) how far the worst allowed latent moves the published class estimate of an
    object this robot sensed with one or two sensors; checks what holds whatever the latent: the own
    belief (what this robot shares) stays bit for bit, the fused belief is finite, and what the latent
    claims about the robot's own modalities is ignored."""
    rng = np.random.default_rng(1)
    dim = model.config.fusion.latent_dim
    own_attribute = {"camera": "colour", "lidar": "shape", "ir": "surface"}
    figures = {}
    for own in (("lidar",), ("camera",), ("camera", "lidar")):
        flipped, moved = 0, []
        for features in sensed.values():
            for mean, log_var in worst_latents(rng, 6, dim):
                missing = tuple(m for m in SENSORS if m not in own)
                (belief, p), obj = with_foreign(model, features, own, mean, log_var, missing)
                _, claims_all = with_foreign(model, features, own, mean, log_var, SENSORS)
                assert obj.belief is belief and obj.fused.sensed == tuple(m for m in SENSORS if m in own or m in missing)
                assert np.all(np.isfinite(obj.fused.mean)) and np.all(np.isfinite(obj.class_probabilities))
                assert np.array_equal(claims_all.fused.mean, obj.fused.mean)  # its claim on own modalities is ignored
                flipped += int(np.argmax(obj.class_probabilities) != np.argmax(p))
                before, after = model.labels.marginals(p), model.labels.marginals(obj.class_probabilities)
                moved += [float(np.abs(after[own_attribute[m]] - before[own_attribute[m]]).max()) for m in own]
        figures["+".join(own)] = (flipped / (6 * len(sensed)), float(np.median(moved)), max(moved))
    for own, (flipped, median, worst) in figures.items():
        print(
            f"own {own}: worst allowed latents change the class in {flipped:.0%} of trials; the own sensors' "
            f"attributes move by {median:.2f} in the median, {worst:.2f} at most"
        )


# ---------------------------------------------------------------- sensor dropout, real nodes over DDS


class Watcher(DdsProbe):
    """rclpy in this process: the fusion node's beliefs and counters."""

    def __init__(self, domain_id: int) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from m2vae_msgs.msg import ObjectBeliefArray

        super().__init__(domain_id, "dropout_watcher", "fusion")
        self.beliefs = []
        self.counts: dict[str, int] = {}
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(ObjectBeliefArray, "/robot1/beliefs", self.beliefs.append, reliable)
        self.node.create_subscription(DiagnosticArray, diagnostics.TOPIC, self._on_diagnostics, reliable)

    def _on_diagnostics(self, msg) -> None:
        self.counts.update(diagnostics.read(msg.status).get("/robot1/fusion", {}))


def last_update(watcher: Watcher) -> float:
    return (
        max((b.last_update.sec + b.last_update.nanosec * 1e-9 for b in watcher.beliefs[-1].beliefs), default=0.0)
        if watcher.beliefs
        else 0.0
    )


def test_a_sensor_that_drops_out_leaves_fusion_on_the_others_and_comes_back(processes, ros_env, tmp_path: Path) -> None:
    world = one_object_world(tmp_path, "green_cube_shiny", distance=0.2)
    ns = ("-r", "__ns:=/robot1")
    fast = ("-p", "diagnostics_period_s:=0.2")

    def encoder(sensor: str) -> subprocess.Popen:
        return processes.start(
            "encoder",
            "--ros-args",
            *ns,
            "-r",
            f"__node:={sensor}_encoder",
            "--params-file",
            str(config_path("encoders.yaml")),
            *fast,
        )

    procs = {"sim": processes.start("sim", "--ros-args", *ns, "-p", f"world:={world}", "-p", "real_time_factor:=1.0")}
    procs.update({sensor: encoder(sensor) for sensor in SENSORS})
    procs["fusion"] = processes.start("fusion", "--ros-args", *ns, "--params-file", str(config_path("fusion.yaml")), *fast)
    watcher = Watcher(int(ros_env["ROS_DOMAIN_ID"]))
    try:

        def fused(sensor: str) -> int:
            return watcher.counts.get(f"fused {sensor}", 0)

        all_three = lambda: (
            all(fused(s) > 0 for s in SENSORS)
            and bool(watcher.beliefs)
            and any(len(b.modalities) == 3 for b in watcher.beliefs[-1].beliefs)
        )
        assert watcher.spin_until(all_three, 60, procs), f"no belief from all three sensors; counters {watcher.counts}"

        camera = procs.pop("camera")
        os.killpg(camera.pid, signal.SIGINT)
        camera.wait(timeout=10)
        watcher.spin_until(lambda: False, 0.5, procs)  # its last encodings land
        before = {s: fused(s) for s in SENSORS}
        stamp = last_update(watcher)
        on = lambda: all(fused(s) >= before[s] + 5 for s in ("lidar", "ir")) and last_update(watcher) > stamp + 0.5
        assert watcher.spin_until(on, 30, procs), f"fusion stopped without the camera: {watcher.counts} (before {before})"
        assert fused("camera") == before["camera"], "camera encodings while its encoder was stopped"

        procs["camera"] = encoder("camera")
        back = fused("camera")
        assert watcher.spin_until(lambda: fused("camera") > back, 60, procs), "camera encodings did not come back into fusion"
        count = len(watcher.beliefs)
        assert watcher.spin_until(lambda: len(watcher.beliefs) > count, 5, procs)
        (belief,) = watcher.beliefs[-1].beliefs
        assert list(belief.modalities) == list(SENSORS) and sum(belief.class_probabilities) == pytest.approx(1.0, abs=1e-4)
    finally:
        watcher.close()
    processes.stop_all()
    assert "Traceback" not in procs["fusion"].stdout.read()


# ---------------------------------------------------------------- files


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from m2vae_fusion.sim.collect import collect

    path = tmp_path_factory.mktemp("bag") / "bag"
    collect(path, 4, seed=5)
    return path


def broken_copy(bag: Path, folder: Path, change) -> Path:
    copy_dir = folder / "broken"
    copy_dir.mkdir()
    for f in bag.iterdir():
        data = f.read_bytes()
        (copy_dir / f.name).write_bytes(change(data) if f.suffix == ".mcap" else data)
    return copy_dir


def flipped(data: bytes, start: int, count: int = 16) -> bytes:
    return data[:start] + bytes(b ^ 0xFF for b in data[start : start + count]) + data[start + count :]


# Structural damage only: bags written by rosbags (m2vae sim collect, m2vae record) carry no chunk CRCs,
# so flipped bits inside a message's payload cannot be told from data (rosbags checks a CRC when the
# writer stored one, as ros2 bag's mcap writer does).
@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-100], id="footer_cut"),
        pytest.param(lambda data: flipped(data, 8), id="header_corrupted"),
        pytest.param(lambda data: flipped(data, len(data) - 30), id="footer_corrupted"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_broken_bag_is_named_by_reading_and_by_m2vae_train(bag: Path, tmp_path: Path, change) -> None:
    from m2vae_fusion.data.bag_frames import read_frames

    assert read_frames([bag]).frames  # the intact bag reads
    broken = broken_copy(bag, tmp_path, change)
    with pytest.raises(DataError) as error:
        read_frames([broken])
    assert str(broken) in str(error.value)
    proc = subprocess.run(
        ["m2vae", "train", "--bag", str(broken), "--out", str(tmp_path / "model")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and str(broken) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


SAVER = textwrap.dedent("""
    import sys, torch
    from m2vae_fusion.core.checkpoint import save_checkpoint
    from m2vae_fusion.core.config import ModalityConfig, ModelConfig, TrainConfig
    from m2vae_fusion.core.model import build_model
    config = ModelConfig(modalities=[ModalityConfig("a", 512, hidden=(1024, 1024)), ModalityConfig("b", 512, hidden=(1024, 1024))], latent_dim=8)
    model = build_model(config)
    for epoch in range(1, 1000):
        save_checkpoint(sys.argv[1], model, model_config=config, train_config=TrainConfig(epochs=1000), dataset_hash="0" * 16, epoch=epoch)
        print(epoch, flush=True)
""")


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_save_leaves_the_previous_one_loadable(tmp_path: Path) -> None:
    from m2vae_fusion.core.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "1", "the first save did not finish"
        # the next save's temp file appears: kill it while that file is being written
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".tmp") and p.stat().st_size > 0 for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline and proc.poll() is None, "never caught a save in progress"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = [int(line) for line in proc.stdout.read().split()]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the kill came after the save: nothing was tested"
    assert load_checkpoint(path).epoch == max([1, *saved])  # the last completed save, whole
    print(f"killed during save {max([1, *saved]) + 1}; left behind: {leftovers}")


def train_big(out: Path):
    """test_training's model on 100 times its data, a checkpoint every epoch: ~0.2 s an epoch."""
    from test_training import CONFIG, make_data

    from m2vae_fusion.core.config import TrainConfig
    from m2vae_fusion.core.training import dataset_fingerprint, train

    data = make_data(4800)
    settings = TrainConfig(epochs=8, batch_size=16, learning_rate=1e-2, seed=3, checkpoint_every=1, threads=1)
    return train(CONFIG, settings, data, out, dataset_hash=dataset_fingerprint(data), progress=False)


TRAINER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from test_robustness import train_big
    train_big(Path(sys.argv[1]))
""")


@pytest.mark.slow
def test_training_killed_mid_run_and_resumed_ends_with_the_same_weights(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(out), str(REPO / "test")], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ((out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, "the training ended or never got going"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = len((out / "metrics.jsonl").read_text().splitlines())
    resumed = train_big(out)
    straight = train_big(tmp_path / "straight")
    assert 0 < resumed.epochs_run < straight.epochs_run, (done, resumed.epochs_run)
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == list(
        range(1, straight.epochs_run + 1)
    )
