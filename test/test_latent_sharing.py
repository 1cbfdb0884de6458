"""Latent sharing between robots (issue 8) with the shipped model (m2vae_fusion/weights/amiro): the
size of a shared latent on the wire, and two robots as real processes over real DDS - robot1 with
camera, LiDAR and IR, robot2 without a camera, each with its own sim, encoders and fusion node in its
own namespace, both facing the same red cube. robot2 has no sensor that sees colour; with robot1's
latent fused in place it knows the colour, and so the class, while what it shares stays its own."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from test_sim import one_object_world

from m2vae_fusion.model.beliefs import BeliefStore, Encoding
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.nodes.fusion import latent_message
from m2vae_fusion.resources import config_path, default_model_dir

LABEL = "red_cube_shiny"  # its colour is only in the camera; from LiDAR + IR alone the model guesses green
MAX_LATENT_BYTES = 256  # issue 8's goal per shared latent message
SENSORS = {"robot1": ("camera", "lidar", "ir"), "robot2": ("lidar", "ir")}
OBJECT_IN_MAP = (0.2, 0.0)  # one_object_world's object at distance 0.2, both robots at the origin


@pytest.fixture(scope="module")
def model() -> PerceptionModel:
    return PerceptionModel.load(default_model_dir())


def test_a_shared_latent_fits_in_256_bytes(model: PerceptionModel) -> None:
    """CDR size as the node sends it: D_z = 10, every modality, realistic ids."""
    store = BeliefStore(model, "robot1")
    encodings = [
        Encoding(
            m,
            model.model_id,
            np.zeros(model.config.feature_dim, np.float32),
            np.array([1.5, -2.25, 0.03]),
            1_234_567_890_123,
            "robot1",
        )
        for m in store.modalities
    ]
    (obj,) = store.update(encodings).updated
    obj.object_id = "object_123"
    obj.sequence = 4567
    msg = latent_message(obj, "robot1", model.model_id, "map")
    size = len(serialize_message(msg))
    print(f"LatentEmbedding with D_z = {len(msg.mean)}, {len(msg.modalities)} modalities, model {msg.model_id}: {size} bytes")
    assert len(msg.mean) == model.config.fusion.latent_dim == 10
    assert size <= MAX_LATENT_BYTES


def colour_red(model: PerceptionModel, mean) -> float:
    return float(model.labels.marginals(model.class_probabilities(np.asarray(mean, np.float32)[None])[0])["colour"][0])


def near_object(belief) -> bool:
    return abs(belief.position.x - OBJECT_IN_MAP[0]) < 0.05 and abs(belief.position.y - OBJECT_IN_MAP[1]) < 0.05


def test_a_robot_without_camera_learns_the_colour_from_another(model: PerceptionModel, processes, tmp_path: Path) -> None:
    import rclpy
    from dds_probe import rclpy_session  # Jazzy's rclpy.init is no context manager
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from m2vae_msgs.msg import LatentEmbedding, ObjectBeliefArray

    world = one_object_world(tmp_path, LABEL, yaw=0.3, distance=OBJECT_IN_MAP[0])
    for seed, (robot, sensors) in enumerate(SENSORS.items()):
        ns = ["-r", f"__ns:=/{robot}"]
        processes.start("sim", "--ros-args", *ns, "-p", f"world:={world}", "-p", "real_time_factor:=1.0", "-p", f"seed:={seed}")
        for sensor in sensors:
            processes.start(
                "encoder",
                "--ros-args",
                *ns,
                "-r",
                f"__node:={sensor}_encoder",
                "--params-file",
                str(config_path("encoders.yaml")),
            )
        processes.start("fusion", "--ros-args", *ns, "--params-file", str(config_path("fusion.yaml")))

    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    beliefs: dict[str, list] = {robot: [] for robot in SENSORS}
    latents: list = []
    with rclpy_session():
        node = rclpy.create_node("sharing_probe")
        for robot in SENSORS:
            node.create_subscription(ObjectBeliefArray, f"/{robot}/beliefs", beliefs[robot].append, reliable)
        node.create_subscription(LatentEmbedding, "/shared/latents", lambda m: latents.append((time.monotonic(), m)), reliable)

        def done() -> bool:
            """robot2 has shared its own sensing of the object and published a belief at least a second
            after both that and robot1's latent of all three modalities (on a busy machine robot2's
            encoders may take a while to see the object)."""
            complete = [t for t, m in latents if m.robot_id == "robot1" and len(m.modalities) == 3 and near_object(m)]
            own = [t for t, m in latents if m.robot_id == "robot2" and near_object(m)]
            return bool(complete and own) and any(t > max(complete[0], own[0]) + 1.0 for t, _ in arrivals["robot2"])

        arrivals: dict[str, list] = {robot: [] for robot in SENSORS}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not done():
            rclpy.spin_once(node, timeout_sec=0.1)
            for robot, received in beliefs.items():
                arrivals[robot] += [(time.monotonic(), msg) for msg in received]
                received.clear()
            for proc in processes.started:
                assert proc.poll() is None, proc.stdout.read()
        node.destroy_node()
    assert done(), (
        f"robot1 never shared all three modalities, robot2 its own sensing, or robot2 published nothing after both; latents: {[m for _, m in latents][-3:]}"
    )

    def final(robot: str):
        found = [b for _, msg in arrivals[robot] for b in msg.beliefs if near_object(b)]
        assert found, f"{robot} has no belief of the object"
        return found[-1]

    b2 = final("robot2")
    red = colour_red(model, b2.mean)
    own2 = [m for _, m in latents if m.robot_id == "robot2" and near_object(m)]
    assert own2, "robot2 never shared its own latent of the object"
    alone = colour_red(model, own2[-1].mean)  # robot2's belief from its own sensing: what fuse_foreign:=false would give
    print(
        f"robot2 p(red): {alone:.2f} alone (LiDAR + IR), {red:.2f} with robot1's latent; class {b2.class_names[int(np.argmax(b2.class_probabilities))]}"
    )
    # the camera in robot2's belief can only be robot1's: without sharing this fails
    assert list(b2.modalities) == ["camera", "lidar", "ir"] and list(b2.contributing_robots) == ["robot2", "robot1"]
    # LiDAR and IR sense a red and a green cube alike, so robot2's own guess of the colour is the model's
    # prior for what they see (measured .09 to .67 over runs, whatever the noise gave); with robot1's
    # latent it is sure, and right
    assert red > 0.9 and b2.class_names[int(np.argmax(b2.class_probabilities))] == LABEL
    # no echo: robot2 shares its own sensing only, and robot1, which sensed everything itself, uses none of it
    assert all(list(m.modalities) in (["lidar"], ["ir"], ["lidar", "ir"]) and list(m.contributors) == ["robot2"] for m in own2)
    b1 = final("robot1")
    assert list(b1.contributing_robots) == ["robot1"] and b1.class_names[int(np.argmax(b1.class_probabilities))] == LABEL
    sizes = [len(serialize_message(m)) for _, m in latents]
    print(f"{len(latents)} latents shared in the run: {min(sizes)}-{max(sizes)} bytes each")
    assert max(sizes) <= MAX_LATENT_BYTES
