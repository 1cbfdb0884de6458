"""The fusion node as its own process under /robot1, fed ModalityEncodings, /tf and other robots'
LatentEmbeddings by rclpy in this process over real DDS: one object sensed by all three sensors, its
beliefs in map and its latents; encodings of another model or with NaN are dropped with a logged
reason and the node runs on; a foreign latent makes an object of its own, fuses into the object once
sensed here, and bad or foreign-frame latents are dropped with a logged reason."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from dds_probe import DdsProbe
from geometry_msgs.msg import TransformStamped
from test_beliefs import FEATURE_DIM, train_tiny_model
from tf2_msgs.msg import TFMessage

from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.nodes.fusion import PARAMETERS
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.resources import config_path
from m2vae_fusion.ros_interface.parameters import default_robot_id
from m2vae_fusion.ros_interface.stamps import from_ns as to_stamp
from m2vae_fusion.ros_interface.stamps import to_ns as stamp_ns
from m2vae_msgs.msg import LatentEmbedding, ModalityEncoding, ObjectBeliefArray

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

MAP_TO_ODOM = (1.0, -0.5, 0.0)  # odom's origin in map; no rotation


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("fusion_node"))


# ---------------------------------------------------------------- no DDS


def test_parameter_file_holds_known_valid_overrides() -> None:
    params = yaml.safe_load(config_path("fusion.yaml").read_text())["/**"]["ros__parameters"]
    assert params, "fusion.yaml lists the values every robot must agree on"
    for name, value in params.items():
        PARAMETERS[name].validate(name, value)  # a KeyError: no such parameter


def test_default_robot_id_is_the_namespace_or_the_host() -> None:
    assert default_robot_id("/robot1") == "robot1" and default_robot_id("/") != ""


# ---------------------------------------------------------------- the node over real DDS


def transform(parent: str, child: str, xyz: tuple[float, float, float], t_s: float) -> TransformStamped:
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.header.stamp = to_stamp(round(t_s * 1e9))
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = xyz
    t.transform.rotation.w = 1.0
    return t


def modality_encoding(
    modality: str, model_id: str, position: tuple[float, float, float], t_s: float, seed: int
) -> ModalityEncoding:
    msg = ModalityEncoding()
    msg.header.stamp = to_stamp(round(t_s * 1e9))
    msg.header.frame_id = "robot1/odom"
    msg.modality, msg.model_id = modality, model_id
    msg.mean = np.random.default_rng(seed).standard_normal(FEATURE_DIM).tolist()
    msg.log_var = [-2.0] * FEATURE_DIM
    msg.position.x, msg.position.y, msg.position.z = position
    msg.confidence = 0.9
    return msg


class Peer(DdsProbe):
    """rclpy in this process: publishes encodings and /tf, keeps every belief array and latent."""

    def __init__(self, domain_id: int) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        super().__init__(domain_id, "test_fusion_peer", "fusion")
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.encodings = self.node.create_publisher(ModalityEncoding, "/robot1/encodings", reliable)
        self.tf = self.node.create_publisher(TFMessage, "/tf", reliable)
        self.shared = self.node.create_publisher(LatentEmbedding, "/shared/latents", reliable)
        self.beliefs: list[ObjectBeliefArray] = []
        self.latents: list[tuple[float, LatentEmbedding]] = []  # (arrival, message)
        self.node.create_subscription(ObjectBeliefArray, "/robot1/beliefs", self.beliefs.append, reliable)
        self.node.create_subscription(
            LatentEmbedding, "/shared/latents", lambda m: self.latents.append((time.perf_counter(), m)), reliable
        )


@pytest.fixture
def peer(ros_env):
    peer = Peer(int(ros_env["ROS_DOMAIN_ID"]))
    yield peer
    peer.close()


def lidar_only_beliefs(peer: Peer) -> list:
    return [m.beliefs[0] for m in peer.beliefs if m.beliefs and list(m.beliefs[0].modalities) == ["lidar"]]


def fusion_argv(*ros_args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "m2vae_fusion.nodes.fusion",
        "--ros-args",
        "--params-file",
        str(config_path("fusion.yaml")),
        *ros_args,
    ]


def test_fusion_node_fuses_one_object_and_drops_bad_encodings(processes, peer: Peer, model_dir: Path) -> None:
    model_id = PerceptionModel.load(model_dir).model_id
    proc = processes.start(
        *fusion_argv(
            "-r", "__ns:=/robot1", "-p", f"model:={model_dir}", "-p", "publish_rate_hz:=20.0", "-p", "latent_rate_hz:=20.0"
        )
    )

    def matched() -> bool:
        subscribed = peer.encodings.get_subscription_count() >= 1 and peer.tf.get_subscription_count() >= 1
        # the peer's own publisher and subscriber are on /shared/latents too: the node's make it two
        return (
            subscribed
            and peer.node.count_publishers("/shared/latents") >= 2
            and peer.node.count_subscribers("/shared/latents") >= 2
        )

    assert peer.spin_until(matched, 30, proc), "fusion node never subscribed to encodings and /tf"
    assert peer.node.count_subscribers("/shared/latents") == 2  # this test's and the node's, for other robots' latents
    peer.tf.publish(TFMessage(transforms=[transform("map", "robot1/odom", MAP_TO_ODOM, 0.0)]))
    peer.spin_until(lambda: False, 0.2, proc)  # let /tf land first: the object is then in map from its first sensing

    object_odom = (0.40, 0.25, 0.03)
    sent = []
    for k, modality in enumerate(("lidar", "camera", "ir")):
        count = len(peer.latents)
        sent.append(time.perf_counter())
        peer.encodings.publish(modality_encoding(modality, model_id, object_odom, 5.0 + 0.1 * k, seed=k))
        assert peer.spin_until(lambda: len(peer.latents) > count, 10, proc), f"no latent after the {modality} encoding"
        if modality == "lidar":  # a beliefs message of the LiDAR-only belief, before the next sensing changes it
            assert peer.spin_until(lambda: bool(lidar_only_beliefs(peer)), 5, proc), "no beliefs message of the LiDAR-only belief"
    latents = [m for _, m in peer.latents]
    assert [m.sequence for m in latents] == [1, 2, 3]
    assert [list(m.modalities) for m in latents] == [["lidar"], ["camera", "lidar"], ["camera", "lidar", "ir"]]
    last = latents[-1]
    assert (last.robot_id, last.header.frame_id, last.model_id, list(last.contributors)) == (
        "robot1",
        "map",
        model_id,
        ["robot1"],
    )
    assert len({m.object_id for m in latents}) == 1 and len(last.mean) == len(last.log_var) == 3
    assert stamp_ns(last.header.stamp) == round(5.2e9)
    expected = np.add(object_odom, MAP_TO_ODOM)
    assert (last.position.x, last.position.y, last.position.z) == pytest.approx(tuple(expected))
    latency_ms = [1e3 * (arrival - s) for s, (arrival, _) in zip(sent, peer.latents)]
    print(f"encoding -> latent over DDS: {', '.join(f'{v:.1f}' for v in latency_ms)} ms")

    def complete_belief() -> bool:
        return bool(peer.beliefs) and len(peer.beliefs[-1].beliefs) == 1 and len(peer.beliefs[-1].beliefs[0].modalities) == 3

    assert peer.spin_until(complete_belief, 5, proc), "no beliefs message with the object sensed by all three sensors"
    array = peer.beliefs[-1]
    (belief,) = array.beliefs
    assert array.header.frame_id == "map" and belief.object_id == last.object_id
    assert list(belief.modalities) == ["camera", "lidar", "ir"] and list(belief.class_names) == list(CLASSES)
    assert sum(belief.class_probabilities) == pytest.approx(1.0, abs=1e-5)
    assert [a.name for a in belief.attributes] == ["colour", "shape", "surface"]
    assert all(sum(a.probabilities) == pytest.approx(1.0, abs=1e-5) for a in belief.attributes)
    assert list(belief.mean) == pytest.approx(list(last.mean)) and belief.model_id == model_id
    assert (belief.position.x, belief.position.y) == pytest.approx(tuple(expected[:2]))
    assert list(belief.contributing_robots) == ["robot1"] and stamp_ns(belief.last_update) == round(5.2e9)
    p = np.asarray(belief.class_probabilities, np.float64)
    assert belief.class_entropy == pytest.approx(float(-(p * np.log(np.clip(p, 1e-12, None))).sum()), abs=1e-5)
    # the expected gains of gain_candidates' default, a look with every sensor and one with the camera from
    # afar: nothing left for a complete belief, something for the LiDAR-only belief that came before it
    gains = {tuple(g.modalities): g for g in belief.expected_gains}
    assert set(gains) == {("camera", "lidar", "ir"), ("camera",)} and all(g.kl == 0.0 for g in gains.values())
    (lidar_only, *_) = lidar_only_beliefs(peer)
    before = {tuple(g.modalities): g.kl for g in lidar_only.expected_gains}
    # imagining the camera and the IR moves the belief more than imagining the camera alone
    assert before[("camera", "lidar", "ir")] > 0.1 and 0 < before[("camera",)] < before[("camera", "lidar", "ir")], before

    # another model's encoding and a NaN one, each where no object is yet: no object, no latent
    elsewhere = (2.0, 2.0, 0.03)
    peer.encodings.publish(modality_encoding("camera", "m2vae-someoneelse", elsewhere, 6.0, seed=5))
    nan = modality_encoding("lidar", model_id, elsewhere, 6.1, seed=6)
    nan.mean[1] = float("nan")
    peer.encodings.publish(nan)
    count = len(peer.latents)
    # the node runs on: a good encoding after them is fused into a second object
    peer.encodings.publish(modality_encoding("ir", model_id, elsewhere, 6.2, seed=7))
    assert peer.spin_until(lambda: len(peer.latents) > count, 10, proc), "node stopped fusing after the bad encodings"
    (_, good), *more = peer.latents[count:]
    assert not more and list(good.modalities) == ["ir"] and good.sequence == 1 and good.object_id != last.object_id
    assert peer.spin_until(lambda: len(peer.beliefs[-1].beliefs) == 2, 5, proc)
    assert proc.poll() is None

    processes.stop_all()
    log = proc.stdout.read()
    assert "dropped a 'camera' encoding (stamp 6.000 s): model_id 'm2vae-someoneelse' is not the fusion model's" in log, log
    assert "dropped a 'lidar' encoding (stamp 6.100 s): features contain NaN or inf" in log, log
    assert "new object" in log and "Traceback" not in log, log


def latent_embedding(
    robot_id: str,
    object_id: str,
    model_id: str,
    sequence: int,
    modalities: list[str],
    position: tuple[float, float, float],
    t_s: float,
    frame: str = "map",
    seed: int = 0,
) -> LatentEmbedding:
    msg = LatentEmbedding()
    msg.header.stamp, msg.header.frame_id = to_stamp(round(t_s * 1e9)), frame
    msg.robot_id, msg.object_id, msg.model_id, msg.sequence = robot_id, object_id, model_id, sequence
    msg.modalities, msg.contributors = modalities, [robot_id]
    msg.mean = np.random.default_rng(seed).standard_normal(3).tolist()  # the tiny model's D_z
    msg.log_var = [-1.0] * 3
    msg.position.x, msg.position.y, msg.position.z = position
    return msg


def test_foreign_latents_are_fused_and_bad_ones_dropped(processes, peer: Peer, model_dir: Path) -> None:
    model_id = PerceptionModel.load(model_dir).model_id
    proc = processes.start(*fusion_argv("-r", "__ns:=/robot1", "-p", f"model:={model_dir}", "-p", "publish_rate_hz:=20.0"))
    # the peer hears its own /shared/latents: only a second subscription is the node's
    assert peer.spin_until(lambda: peer.shared.get_subscription_count() >= 2 and peer.tf.get_subscription_count() >= 1, 30, proc)
    peer.tf.publish(TFMessage(transforms=[transform("map", "robot1/odom", MAP_TO_ODOM, 0.0)]))
    peer.spin_until(lambda: False, 0.2, proc)
    where = (2.0, 2.0, 0.03)  # in map
    good = latent_embedding("robot2", "object_7", model_id, 1, ["ir", "camera"], where, 5.0)
    nan = latent_embedding("robot2", "object_8", model_id, 1, ["camera"], (3.0, 3.0, 0.03), 5.0)
    nan.log_var[2] = float("nan")
    for msg in (
        latent_embedding("robot3", "object_1", "m2vae-someoneelse", 1, ["camera"], (3.0, 3.0, 0.03), 5.0),
        nan,
        latent_embedding("robot2", "object_9", model_id, 1, ["camera"], (3.0, 3.0, 0.03), 5.0, frame="robot2/odom"),
        latent_embedding("robot1", "replayed", model_id, 1, ["camera"], (3.0, 3.0, 0.03), 5.0),  # its own id: ignored
        good,
        good,  # a duplicate
    ):
        peer.shared.publish(msg)

    def beliefs(count: int) -> bool:
        return bool(peer.beliefs) and len(peer.beliefs[-1].beliefs) == count

    assert peer.spin_until(lambda: beliefs(1), 10, proc), "no belief from the foreign latent"
    (belief,) = peer.beliefs[-1].beliefs
    assert peer.beliefs[-1].header.frame_id == "map" and list(belief.modalities) == ["camera", "ir"]
    assert list(belief.contributing_robots) == ["robot2"] and list(belief.mean) == pytest.approx(list(good.mean))
    assert (belief.position.x, belief.position.y) == pytest.approx(where[:2]) and stamp_ns(belief.last_update) == round(5e9)

    def own_latents() -> list[LatentEmbedding]:  # the peer hears its own publications too
        return [m for _, m in peer.latents if m.robot_id == "robot1" and m.object_id != "replayed"]

    assert not own_latents()  # nothing of its own to share
    # sensed here (LiDAR, in odom): the same object; robot1 shares its LiDAR only, publishes all three
    odom = tuple(np.subtract(where, MAP_TO_ODOM))
    peer.encodings.publish(modality_encoding("lidar", model_id, odom, 6.0, seed=1))
    assert peer.spin_until(lambda: bool(own_latents()), 10, proc), "no own latent after the own sensing"
    (own,) = own_latents()
    assert (own.robot_id, list(own.modalities), list(own.contributors), own.sequence) == ("robot1", ["lidar"], ["robot1"], 1)
    assert peer.spin_until(lambda: beliefs(1) and len(peer.beliefs[-1].beliefs[0].modalities) == 3, 5, proc)
    (belief,) = peer.beliefs[-1].beliefs
    assert belief.object_id == own.object_id and list(belief.contributing_robots) == ["robot1", "robot2"]
    assert stamp_ns(belief.last_update) == round(6e9)

    processes.stop_all()
    log = proc.stdout.read()
    assert "dropped latent robot3/object_1 #1 (stamp 5.000 s): model_id 'm2vae-someoneelse' is not the fusion model's" in log, log
    assert "dropped latent robot2/object_8 #1 (stamp 5.000 s): mean or log_var contain NaN or inf" in log, log
    assert "dropped latent robot2/object_9 #1 (stamp 5.000 s): its frame 'robot2/odom' is not the fusion frame 'map'" in log, log
    assert "dropped latent robot2/object_7 #1 (stamp 5.000 s): sequence 1 is not above 1" in log, log
    assert "robot1/replayed" not in log and "from robot robot2's object_7 (camera, ir)" in log and "Traceback" not in log, log


def test_sharing_and_fusing_other_robots_can_be_switched_off(processes, peer: Peer, model_dir: Path) -> None:
    argv = fusion_argv(
        "-r", "__ns:=/robot1", "-p", f"model:={model_dir}", "-p", "share_latents:=false", "-p", "fuse_foreign:=false"
    )
    proc = processes.start(*argv)
    assert peer.spin_until(lambda: peer.encodings.get_subscription_count() >= 1, 30, proc)
    # only this test's own subscriber and publisher are on the shared topic
    assert peer.node.count_subscribers("/shared/latents") == 1 and peer.node.count_publishers("/shared/latents") == 1
    peer.encodings.publish(modality_encoding("lidar", PerceptionModel.load(model_dir).model_id, (0.4, 0.25, 0.03), 5.0, seed=1))
    assert peer.spin_until(lambda: bool(peer.beliefs) and len(peer.beliefs[-1].beliefs) == 1, 10, proc)
    assert not peer.latents


def test_objects_sensed_before_the_map_is_known_move_to_map(processes, peer: Peer, model_dir: Path) -> None:
    model_id = PerceptionModel.load(model_dir).model_id
    proc = processes.start(*fusion_argv("-r", "__ns:=/robot1", "-p", f"model:={model_dir}", "-p", "publish_rate_hz:=20.0"))
    assert peer.spin_until(
        lambda: peer.encodings.get_subscription_count() >= 1 and peer.tf.get_subscription_count() >= 1, 30, proc
    )
    peer.encodings.publish(modality_encoding("lidar", model_id, (0.4, 0.25, 0.03), 5.0, seed=1))
    assert peer.spin_until(lambda: bool(peer.latents), 10, proc)
    assert peer.latents[-1][1].header.frame_id == "robot1/odom"
    assert peer.spin_until(lambda: bool(peer.beliefs) and len(peer.beliefs[-1].beliefs) == 1, 5, proc)
    assert peer.beliefs[-1].header.frame_id == "robot1/odom" and peer.beliefs[-1].beliefs[0].position.x == pytest.approx(0.4)
    peer.tf.publish(TFMessage(transforms=[transform("map", "robot1/odom", MAP_TO_ODOM, 5.0)]))
    assert peer.spin_until(lambda: peer.beliefs[-1].header.frame_id == "map", 5, proc), "beliefs stayed in odom"
    (belief,) = peer.beliefs[-1].beliefs
    assert (belief.position.x, belief.position.y) == pytest.approx((1.4, -0.25))
    # the next sensing of the object, still in odom coordinates, lands on it in map
    peer.encodings.publish(modality_encoding("camera", model_id, (0.42, 0.25, 0.03), 5.1, seed=2))
    assert peer.spin_until(lambda: len(peer.latents) == 2, 10, proc)
    latent = peer.latents[-1][1]
    assert latent.header.frame_id == "map" and list(latent.modalities) == ["camera", "lidar"] and latent.sequence == 2


def test_bad_model_is_named(processes, tmp_path: Path) -> None:
    proc = processes.start(*fusion_argv("-p", f"model:={tmp_path / 'nothing'}"))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "parameter 'model': no perception model at" in out
