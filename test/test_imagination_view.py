"""The imagination picture (viz/imagination.py) with the shipped model: its size and rows, held vs imagined
marking, the imagined crop equal to PerceptionModel.imagine's, the real crop matched to its belief; the viz
node publishing it on `imagination` over real DDS; `m2vae plot imagination` from a bag with sensor data."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from dds_probe import DdsProbe

from m2vae_fusion.cli import main as m2vae
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.resources import config_path, default_model_dir, share_dir
from m2vae_fusion.viz.imagination import (
    FRAME,
    HELD_RGB,
    IMAGINED_RGB,
    REAL_RGB,
    SENSORS,
    ImaginedObject,
    Layout,
    draw_imagination,
    imagination_objects,
)
from m2vae_msgs.msg import ObjectBelief, ObjectBeliefArray

CLASSES = default_labels().classes
PANEL = 64  # px: small panels keep the images of the node test small


@pytest.fixture(scope="module")
def model() -> PerceptionModel:
    return PerceptionModel.load(default_model_dir())


def latents(model: PerceptionModel, count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, model.fusion.latent_dim))


def expected_camera_panel(model: PerceptionModel, z: np.ndarray, panel: int) -> np.ndarray:
    """model.imagine's crop for z, as uint8 HWC, enlarged to panel x panel by nearest neighbour."""
    pixels = model.config.perception.features.crop_pixels
    crop = model.imagine(z[None], "camera").reshape(3, pixels, pixels).transpose(1, 2, 0)
    return cv2.resize(np.round(np.clip(crop, 0, 1) * 255).astype(np.uint8), (panel, panel), interpolation=cv2.INTER_NEAREST)


def frame_colour(image: np.ndarray, layout: Layout, row: int, column: str) -> tuple[int, ...]:
    """The colour of a panel's frame, in the middle of its top edge."""
    y0, _, x0, x1 = layout.box(row, column)
    return tuple(int(c) for c in image[y0 - FRAME // 2 - 1, (x0 + x1) // 2])


def panel_pixels(image: np.ndarray, layout: Layout, row: int, column: str) -> np.ndarray:
    y0, y1, x0, x1 = layout.box(row, column)
    return image[y0:y1, x0:x1]


# ---------------------------------------------------------------- the picture


def test_picture_marks_held_and_imagined_sensors_and_shows_the_imagined_crop(model: PerceptionModel) -> None:
    z = latents(model, 2)
    objects = [
        ImaginedObject("object_1", z[0], ("camera",), CLASSES[0], 0.9),
        ImaginedObject("object_2", z[0], (), CLASSES[0], 0.9),  # the same latent, nothing sensed
        ImaginedObject("object_3", z[1], ("camera", "lidar", "ir"), CLASSES[5], 0.6),
    ]
    image = draw_imagination(model, objects, panel=96)
    layout = Layout(96, SENSORS)
    assert image.dtype == np.uint8 and image.shape == (layout.height(3), layout.width, 3)
    # Held (sensed) and imagined (unsensed) differ in their frame, the panels drawn from one latent do not.
    assert frame_colour(image, layout, 0, "camera") == HELD_RGB
    assert [frame_colour(image, layout, 0, s) for s in ("lidar", "ir")] == [IMAGINED_RGB] * 2
    assert [frame_colour(image, layout, 1, s) for s in SENSORS] == [IMAGINED_RGB] * 3
    assert [frame_colour(image, layout, 2, s) for s in SENSORS] == [HELD_RGB] * 3
    for sensor in SENSORS:
        assert np.array_equal(panel_pixels(image, layout, 0, sensor), panel_pixels(image, layout, 1, sensor))
    # The camera panel is the model's imagined crop, enlarged; another latent imagines another crop.
    assert np.array_equal(panel_pixels(image, layout, 0, "camera"), expected_camera_panel(model, z[0], 96))
    assert np.array_equal(panel_pixels(image, layout, 2, "camera"), expected_camera_panel(model, z[1], 96))
    assert not np.array_equal(panel_pixels(image, layout, 0, "lidar"), panel_pixels(image, layout, 2, "lidar"))
    assert not np.array_equal(panel_pixels(image, layout, 0, "ir"), panel_pixels(image, layout, 2, "ir"))


def test_rows_are_capped_and_a_real_crop_gets_its_own_column(model: PerceptionModel) -> None:
    z = latents(model, 5, seed=1)
    real = np.random.default_rng(2).random((64, 64, 3))
    objects = [ImaginedObject(f"object_{i}", z[i], ("camera",), CLASSES[i], None) for i in range(5)]
    objects[0] = ImaginedObject("object_0", z[0], ("camera",), CLASSES[0], None, real_crop=real)
    image = draw_imagination(model, objects, max_objects=2, panel=PANEL)
    layout = Layout(PANEL, ("real", *SENSORS))
    assert image.shape == (layout.height(2), layout.width, 3)
    real_panel = panel_pixels(image, layout, 0, "real")
    assert np.array_equal(
        real_panel, cv2.resize(np.round(real * 255).astype(np.uint8), (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)
    )
    assert frame_colour(image, layout, 0, "real") == REAL_RGB
    assert np.all(panel_pixels(image, layout, 1, "real") == 255)  # no real crop of object_1: left blank
    without = draw_imagination(model, objects[1:], max_objects=2, panel=PANEL)
    assert without.shape[1] == Layout(PANEL, SENSORS).width < image.shape[1]
    empty = draw_imagination(model, [], panel=PANEL)
    assert empty.shape == (Layout(PANEL, SENSORS).height(0), Layout(PANEL, SENSORS).width, 3)
    with pytest.raises(ValueError, match="max_objects >= 1"):
        draw_imagination(model, objects, max_objects=0)


def belief(object_id: str, z: np.ndarray, sensed: list[str], model_id: str, xy: tuple[float, float] = (0.0, 0.0)) -> ObjectBelief:
    msg = ObjectBelief(object_id=object_id, modalities=sensed, class_names=list(CLASSES), model_id=model_id)
    msg.class_probabilities = [0.65] + [0.05] * (len(CLASSES) - 1)
    msg.mean, msg.log_var = [float(v) for v in z], [-3.0] * len(z)
    msg.position.x, msg.position.y = xy
    return msg


def test_beliefs_of_another_model_or_malformed_are_left_out(model: PerceptionModel) -> None:
    z = latents(model, 3)
    bad = belief("object_3", z[2], [], model.model_id)
    bad.mean = [float("nan")] * len(z[2])
    objects, left_out = imagination_objects(
        [belief("object_1", z[0], ["ir"], model.model_id), belief("object_2", z[1], [], "m2vae-another"), bad],
        model.model_id,
        model.fusion.latent_dim,
    )
    assert [o.object_id for o in objects] == ["object_1"] and left_out == ["object_2", "object_3"]
    assert (objects[0].sensed, objects[0].label, objects[0].confidence) == (("ir",), CLASSES[0], pytest.approx(0.65))
    assert np.allclose(objects[0].mean, z[0])


# ---------------------------------------------------------------- the node over real DDS


class Probe(DdsProbe):
    """rclpy in this process: publishes beliefs, keeps imagination images."""

    def __init__(self, domain_id: int) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        super().__init__(domain_id, "test_imagination_probe", "viz")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.beliefs = self.node.create_publisher(ObjectBeliefArray, "/robot1/beliefs", reliable)
        self.images: list[Image] = []
        self.node.create_subscription(Image, "/robot1/imagination", self.images.append, reliable)


def pixels(image) -> np.ndarray:
    return np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width, 3)


def test_viz_node_publishes_the_imagination(processes, ros_env, model: PerceptionModel) -> None:
    probe = Probe(int(ros_env["ROS_DOMAIN_ID"]))
    try:
        proc = processes.start(
            *(sys.executable, "-m", "m2vae_fusion.nodes.viz", "--ros-args", "--params-file", str(config_path("viz.yaml"))),
            *("-r", "__ns:=/robot1", "-p", "image_size:=200", "-p", "imagination_rate_hz:=10.0"),
            *("-p", "imagination_max_objects:=2", "-p", f"imagination_panel_px:={PANEL}"),
        )
        layout = Layout(PANEL, SENSORS)
        assert probe.spin_until(lambda: probe.beliefs.get_subscription_count() >= 1 and len(probe.images) >= 1, 30, proc)
        first = probe.images[-1]
        assert (first.encoding, first.width, first.height) == ("rgb8", layout.width, layout.height(0))

        z = latents(model, 3, seed=3)
        msg = ObjectBeliefArray(
            beliefs=[
                belief("object_3", z[2], [], model.model_id),
                belief("object_1", z[0], ["camera", "lidar"], model.model_id),
                belief("object_0", z[1], ["camera"], "m2vae-another"),  # another model's: not drawn
                belief("object_2", z[1], [], model.model_id),
            ]
        )
        msg.header.frame_id = "map"
        probe.beliefs.publish(msg)
        assert probe.spin_until(lambda: probe.images[-1].height == layout.height(2), 10, proc), "no rows for the beliefs"
        image = pixels(probe.images[-1])
        # Rows by object id, capped at 2: object_1 (camera and lidar held), then object_2 (all imagined).
        assert np.array_equal(panel_pixels(image, layout, 0, "camera"), expected_camera_panel(model, z[0], PANEL))
        assert np.array_equal(panel_pixels(image, layout, 1, "camera"), expected_camera_panel(model, z[1], PANEL))
        assert [frame_colour(image, layout, 0, s) for s in SENSORS] == [HELD_RGB, HELD_RGB, IMAGINED_RGB]
        assert [frame_colour(image, layout, 1, s) for s in SENSORS] == [IMAGINED_RGB] * 3
        assert proc.poll() is None
    finally:
        probe.close()
    processes.stop_all()
    log = proc.stdout.read()
    assert "/robot1/imagination" in log and "Traceback" not in log, log


# ---------------------------------------------------------------- m2vae plot imagination


def write_sensor_bag(path: Path, model: PerceptionModel) -> tuple[np.ndarray, np.ndarray]:
    """A bag as `m2vae record` of the demo would have it, in the root namespace: the sensors' mountings, one
    frame of camera, scan, IR and /tf looking at an object from 0.2 m, and beliefs about that object (camera
    sensed) and about one far away. Returns the real crop of the object and its belief's latent mean."""
    from m2vae_fusion.data.bags import BagWriter
    from m2vae_fusion.model.views import view_vector
    from m2vae_fusion.perception import frames
    from m2vae_fusion.perception.features import observe
    from m2vae_fusion.ros_interface import reading_messages as messages
    from m2vae_fusion.sim.simulator import SimConfig, Simulator
    from m2vae_fusion.sim.viewpoints import look_at

    stamp, ns = 0.5, 500_000_000
    with Simulator(SimConfig(world=share_dir() / "worlds" / "arena.sdf", seed=0)) as sim:
        static = sim.static_transforms()
        target = sim.objects[0]
        pose = look_at(target, 0.2, math.atan2(target.y, target.x))
        sim.set_robot_pose(pose.x, pose.y, pose.yaw)
        image, scan, ir, odom = sim.camera(), sim.lidar(), sim.ir(), sim.odometry()
        mounts = [frames.lookup(static, "base_link", f) for f in ("lidar_link", "ir_link", "camera_optical_frame")]
        seen = observe(image, scan, ir, *mounts, model.config.perception)[0]
        mean = model.belief({"camera": model.features("camera", view_vector("camera", seen.camera)[None])[0]}).mean
        rates = {kind: spec.rate_hz for kind, spec in sim.sensors.items()}
        with BagWriter(path) as bag:
            bag.write("/tf_static", ns, messages.static_tf_message(static, stamp))
            bag.write("/camera/image_raw", ns, messages.image(image, stamp))
            bag.write("/camera/camera_info", ns, messages.camera_info(image, stamp))
            bag.write("/scan", ns, messages.laser_scan(scan, stamp, rates["lidar"]))
            bag.write("/ir/scan", ns, messages.laser_scan(ir, stamp, rates["ir"]))
            transforms = [messages.map_transform(sim.map_to_odom(), stamp), messages.odom_transform(odom, stamp)]
            bag.write("/tf", ns, messages.tf_message(transforms))
            beliefs = ObjectBeliefArray(
                beliefs=[
                    belief("object_1", mean, ["camera"], model.model_id, (target.x, target.y)),
                    belief("object_2", latents(model, 1)[0], [], model.model_id, (9.0, 9.0)),  # nowhere near the camera
                ]
            )
            beliefs.header.frame_id = "map"
            bag.write("/beliefs", ns, beliefs)
    return seen.camera, mean


@pytest.mark.slow
def test_plot_imagination_draws_the_imagined_and_the_real_crop(tmp_path: Path, model: PerceptionModel, capsys) -> None:
    import matplotlib.image

    crop, mean = write_sensor_bag(tmp_path / "bag", model)
    out = tmp_path / "pictures" / "imagination.png"
    assert m2vae(["plot", "imagination", "--bag", str(tmp_path / "bag"), "--out", str(out), "--panel", str(PANEL)]) == 0
    assert "real camera crops for 1 of 2 objects" in capsys.readouterr().out
    image = np.round(matplotlib.image.imread(out)[:, :, :3] * 255).astype(np.uint8)
    layout = Layout(PANEL, ("real", *SENSORS))
    assert image.shape == (layout.height(2), layout.width, 3)
    real = cv2.resize(np.round(np.clip(crop, 0, 1) * 255).astype(np.uint8), (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(panel_pixels(image, layout, 0, "real"), real)
    assert np.all(panel_pixels(image, layout, 1, "real") == 255)  # object_2 was never in view
    assert np.array_equal(panel_pixels(image, layout, 0, "camera"), expected_camera_panel(model, mean, PANEL))
    assert [frame_colour(image, layout, 0, s) for s in SENSORS] == [HELD_RGB, IMAGINED_RGB, IMAGINED_RGB]

    # With --no-real, or a bag without sensor topics (the reason is printed), there is no real column.
    assert m2vae(["plot", "imagination", "--bag", str(tmp_path / "bag"), "--out", str(out), "--no-real", "--objects", "1"]) == 0
    assert matplotlib.image.imread(out).shape[:2] == (Layout(128, SENSORS).height(1), Layout(128, SENSORS).width)
    from m2vae_fusion.data.bags import BagWriter

    with BagWriter(tmp_path / "beliefs_only") as bag:
        beliefs = ObjectBeliefArray(beliefs=[belief("object_1", mean, ["camera"], model.model_id)])
        beliefs.header.frame_id = "map"
        bag.write("/robot2/beliefs", 1, beliefs)
    assert m2vae(["plot", "imagination", "--bag", str(tmp_path / "beliefs_only"), "--out", str(out)]) == 0
    assert "no real crops: no LaserScan on /robot2/scan" in capsys.readouterr().out
    assert matplotlib.image.imread(out).shape[:2] == (Layout(128, SENSORS).height(1), Layout(128, SENSORS).width)
    assert m2vae(["plot", "imagination", "--bag", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
