"""The whole perception pipeline with the shipped model (m2vae_fusion/weights/amiro): the sim node, the
three encoder nodes and the fusion node as real processes over real DDS classify the object in front
of the robot; and, without DDS, the order in which the sensors arrive barely changes the final class
probabilities, and a missing sensor leaves a valid estimate over the sensed ones."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pytest
from test_sim import one_object_world

from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.model.views import view_vector
from m2vae_fusion.perception import frames
from m2vae_fusion.perception.features import observe
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.resources import config_path, default_model_dir
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_fusion.sim.viewpoints import look_at

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

REPO = Path(__file__).resolve().parents[1]
SENSORS = ("camera", "lidar", "ir")
# The largest change of any class probability between two arrival orders of the three sensors, with the
# shipped model: measured 0.094 at worst and 0.003 in the median over the 8 classes x 3 noise seeds.
ORDER_TOLERANCE = 0.2
# A matte cylinder is the shipped model's least sure class in a wall-less world (p .70-.75 from one view
# per sensor): the first belief holding all three sensors read "matte cube" in one of five full-suite
# runs; later views of the same sensors enter the belief as running means (issue 7: the class
# "converges once all three modalities have been sensed").
CONVERGE_S = 5.0


@pytest.fixture(scope="module")
def model() -> PerceptionModel:
    return PerceptionModel.load(default_model_dir())


def sensed_features(model: PerceptionModel, label: str, folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """The standardised features each sensor gives of a `label` object 0.2 m ahead (arena world)."""
    with Simulator(SimConfig(world=REPO / "worlds" / "arena.sdf", seed=seed)) as sim:
        target = next(o for o in sim.objects if o.label == label)
        pose = look_at(target, 0.2, math.atan2(target.y, target.x))
        sim.set_robot_pose(pose.x, pose.y, pose.yaw)
        static = sim.static_transforms()
        seen = observe(
            sim.camera(),
            sim.lidar(),
            sim.ir(),
            frames.lookup(static, "base_link", "lidar_link"),
            frames.lookup(static, "base_link", "ir_link"),
            frames.lookup(static, "base_link", "camera_optical_frame"),
            model.config.perception,
        )[0]
    return {m: model.features(m, view_vector(m, getattr(seen, m))[None])[0] for m in SENSORS}


@pytest.mark.slow
def test_arrival_order_changes_little(model: PerceptionModel, tmp_path: Path) -> None:
    worst, correct = 0.0, 0
    for label in CLASSES:
        features = sensed_features(model, label, tmp_path)
        finals = []
        for order in itertools.permutations(SENSORS):
            belief = model.belief({order[0]: features[order[0]]})
            for sensor in order[1:]:
                belief = model.fuse(belief, {sensor: features[sensor]})
            assert belief.sensed == SENSORS
            finals.append(model.class_probabilities(belief.mean)[0])
        finals = np.stack(finals)
        worst = max(worst, float((finals.max(axis=0) - finals.min(axis=0)).max()))
        correct += int(np.argmax(finals.mean(axis=0)) == CLASSES.index(label))
    assert worst < ORDER_TOLERANCE, worst
    assert correct >= 7, correct  # one view per class; the reproduction measures accuracy properly


def test_a_missing_sensor_leaves_a_valid_estimate(model: PerceptionModel, tmp_path: Path) -> None:
    features = sensed_features(model, "green_cube_shiny", tmp_path)
    for sensed in [s for k in (1, 2) for s in itertools.combinations(SENSORS, k)]:
        belief = model.belief({m: features[m] for m in sensed})
        p = model.class_probabilities(belief.mean)[0]
        assert belief.sensed == sensed and np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0)
    # the camera alone tells the colour: red classes get almost nothing
    p = model.class_probabilities(model.belief({"camera": features["camera"]}).mean)[0]
    assert sum(p[i] for i, c in enumerate(CLASSES) if c.startswith("green")) > 0.8


@pytest.mark.parametrize("label", ["red_cylinder_matte", "green_cube_shiny"])
def test_nodes_classify_the_object_in_front(label: str, processes, tmp_path: Path) -> None:
    import rclpy
    from dds_probe import BeliefWatch, rclpy_session  # rclpy_session: Jazzy's rclpy.init is no context manager
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from m2vae_msgs.msg import ObjectBeliefArray

    world = one_object_world(tmp_path, label, yaw=0.3, distance=0.2)
    ns = ["-r", "__ns:=/robot1"]
    processes.start("sim", "--ros-args", *ns, "-p", f"world:={world}", "-p", "real_time_factor:=1.0")
    for sensor in SENSORS:
        processes.start(
            "encoder", "--ros-args", *ns, "-r", f"__node:={sensor}_encoder", "--params-file", str(config_path("encoders.yaml"))
        )
    processes.start("fusion", "--ros-args", *ns, "--params-file", str(config_path("fusion.yaml")))
    watch = BeliefWatch(0.2, 0.0, CONVERGE_S)
    with rclpy_session():
        node = rclpy.create_node("pipeline_probe")
        node.create_subscription(
            ObjectBeliefArray, "/robot1/beliefs", watch.take, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not watch.done():
            rclpy.spin_once(node, timeout_sec=0.2)
            for proc in processes.started:
                assert proc.poll() is None, proc.stdout.read()
        node.destroy_node()
    final = watch.final
    assert final is not None, "no belief sensed by all three sensors within 60 s"
    assert final.class_names[int(np.argmax(final.class_probabilities))] == label
    assert sum(final.class_probabilities) == pytest.approx(1.0, abs=1e-4)
