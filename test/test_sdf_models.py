"""The SDF models, the worlds, the world generator and the Gazebo bridge file.

The structural checks run everywhere; the checks with the real SDFormat parser (`ign sdf`, Debian
`ignition-tools` + `libsdformat-dev`) run where it is installed and skip with the reason elsewhere.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from m2vae_fusion.core.errors import ConfigError, M2VAEError
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.sim import world_gen

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
WORLDS = REPO / "worlds"
MODEL_DIRS = sorted(p.parent for p in MODELS.glob("*/model.sdf"))
WORLD_FILES = sorted(WORLDS.glob("*.sdf"))
SDF_FILES = [d / "model.sdf" for d in MODEL_DIRS] + WORLD_FILES

# Checked-in generated worlds and the generator call that must reproduce them byte for byte.
GENERATED_WORLDS = {
    "arena_cluttered.sdf": dict(seed=1, objects=16),
    "arena_two_robots.sdf": dict(seed=2, objects=8, robots=2),
}


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


def _floats(text: str | None) -> list[float]:
    assert text is not None
    return [float(v) for v in text.split()]


def _pose(element: ET.Element) -> list[float]:
    text = element.findtext("pose")
    return _floats(text) if text is not None else [0.0] * 6


def _shape(element: ET.Element) -> tuple:
    """Pose and geometry of a collision or visual, for comparing the two."""
    geometry = element.find("geometry")
    assert geometry is not None, f"<{element.tag} name={element.get('name')!r}> has no geometry"
    return (tuple(_pose(element)), tuple((e.tag, (e.text or "").strip()) for e in geometry.iter()))


@cache
def _root(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def _model(name: str) -> ET.Element:
    model = _root(MODELS / name / "model.sdf").find("model")
    assert model is not None, f"models/{name}/model.sdf has no <model>"
    return model


# --- every file -------------------------------------------------------------------------------


def test_all_expected_files_exist():
    assert {d.name for d in MODEL_DIRS} == {"amiro", *CLASSES}
    assert {p.name for p in WORLD_FILES} >= {"arena.sdf", "arena_cluttered.sdf", "arena_two_robots.sdf"}


@pytest.mark.parametrize("path", SDF_FILES, ids=_ids(SDF_FILES))
def test_sdf_is_well_formed_version_1_9(path):
    root = _root(path)
    assert root.tag == "sdf"
    # sdformat 12 (Debian's validator) reads SDF up to 1.9; Gazebo Harmonic/Ionic convert 1.9 up.
    assert root.get("version") == "1.9", f"{path}: sdf version {root.get('version')!r}"
    assert len(root.findall("model") + root.findall("world")) == 1


@pytest.mark.parametrize("path", SDF_FILES, ids=_ids(SDF_FILES))
def test_poses_have_six_numbers_and_no_relative_to(path):
    for element in _root(path).iter():
        if element.tag == "pose":
            assert len(_floats(element.text)) == 6, f"{path}: bad pose {element.text!r}"
        # The spec keeps poses relative to their parent so simple parsers stay correct.
        if "relative_to" in element.attrib:
            assert element.tag == "frame", f"{path}: relative_to on <{element.tag}>"


@pytest.mark.parametrize("model_dir", MODEL_DIRS, ids=[d.name for d in MODEL_DIRS])
def test_model_config_names_model_sdf(model_dir):
    config = ET.parse(model_dir / "model.config").getroot()
    assert config.tag == "model"
    assert config.findtext("name") == model_dir.name
    sdf = config.find("sdf")
    assert sdf is not None and sdf.text == "model.sdf" and sdf.get("version") == "1.9"
    assert _model(model_dir.name).get("name") == model_dir.name


@pytest.mark.parametrize("model_dir", MODEL_DIRS, ids=[d.name for d in MODEL_DIRS])
def test_every_geometry_has_collision_and_visual_and_dynamic_links_have_inertia(model_dir):
    model = _model(model_dir.name)
    static = model.findtext("static", "false") == "true"
    for link in model.findall("link"):
        collisions = [_shape(c) for c in link.findall("collision")]
        visuals = [_shape(v) for v in link.findall("visual")]
        assert sorted(collisions) == sorted(visuals), f"{model_dir.name}::{link.get('name')}"
        if static:
            continue
        inertial = link.find("inertial")
        assert inertial is not None, f"{model_dir.name}::{link.get('name')} has no <inertial>"
        assert float(inertial.findtext("mass")) > 0
        i = {k: float(inertial.findtext(f"inertia/{k}")) for k in ("ixx", "iyy", "izz")}
        assert all(v > 0 for v in i.values())
        # A physical body's principal moments obey the triangle inequality.
        assert i["ixx"] + i["iyy"] >= i["izz"] and i["iyy"] + i["izz"] >= i["ixx"]
        assert i["ixx"] + i["izz"] >= i["iyy"]


# --- the 8 primitives -------------------------------------------------------------------------


@pytest.mark.parametrize("label", CLASSES)
def test_primitive_geometry_and_surface(label):
    cls = SimpleNamespace(**default_labels().attribute_values(label))
    model = _model(label)
    assert model.findtext("static") == "true"
    (link,) = model.findall("link")
    assert link.get("name") == "link"
    (collision,) = link.findall("collision")
    (visual,) = link.findall("visual")
    for element in (collision, visual):
        assert _pose(element) == [0, 0, 0.06, 0, 0, 0]
        if cls.shape == "cylinder":
            assert float(element.findtext("geometry/cylinder/radius")) == 0.03
            assert float(element.findtext("geometry/cylinder/length")) == 0.12
        else:
            assert _floats(element.findtext("geometry/box/size")) == [0.0532, 0.0532, 0.12]
        retro = float(element.findtext("laser_retro"))
        assert retro == {"matte": 0.25, "shiny": 0.85}[cls.surface]
    colour = {"red": [0.75, 0.08, 0.08, 1], "green": [0.08, 0.6, 0.12, 1]}[cls.colour]
    assert _floats(visual.findtext("material/diffuse")) == colour
    assert _floats(visual.findtext("material/ambient")) == colour
    specular = _floats(visual.findtext("material/specular"))
    metal = visual.find("material/pbr/metal")
    if cls.surface == "matte":
        assert specular == [0.05, 0.05, 0.05, 1]
        assert (float(metal.findtext("metalness")), float(metal.findtext("roughness"))) == (0, 0.9)
    else:
        assert specular == [0.9, 0.9, 0.9, 1]
        assert (float(metal.findtext("metalness")), float(metal.findtext("roughness"))) == (0.3, 0.1)


def test_cube_and_cylinder_share_footprint_area():
    """Size must not give the shape away: equal footprint area, equal height."""
    cylinder = math.pi * 0.03**2
    side = _floats(_model("red_cube_matte").findtext("link/collision/geometry/box/size"))[0]
    assert side * side == pytest.approx(cylinder, rel=0.002)


# --- the AMiRo ----------------------------------------------------------------------------------


def test_amiro_links_joints_and_frames():
    model = _model("amiro")
    links = {link.get("name"): link for link in model.findall("link")}
    assert set(links) == {"base_link", "left_wheel", "right_wheel", "caster", "camera_link", "lidar_link", "ir_link"}
    body = links["base_link"].find("collision")
    assert float(body.findtext("geometry/cylinder/radius")) == 0.05
    assert float(body.findtext("geometry/cylinder/length")) == 0.075
    assert _pose(body)[2] == 0.0425
    assert float(links["base_link"].findtext("inertial/mass")) == 0.25
    assert _pose(links["left_wheel"])[:3] == [0, 0.035, 0.02]
    assert _pose(links["right_wheel"])[:3] == [0, -0.035, 0.02]
    assert _pose(links["camera_link"])[:3] == [0.045, 0, 0.06]
    assert _pose(links["lidar_link"])[:3] == [0, 0, 0.09]
    assert _pose(links["ir_link"])[:3] == [0, 0, 0.015]
    joints = {j.get("name"): j for j in model.findall("joint")}
    for side in ("left", "right"):
        joint = joints[f"{side}_wheel_joint"]
        assert joint.get("type") == "revolute"
        assert (joint.findtext("parent"), joint.findtext("child")) == ("base_link", f"{side}_wheel")
        assert _floats(joint.findtext("axis/xyz")) == [0, 1, 0]
    # Every non-base link hangs off base_link, so the TF tree is base_link -> sensors.
    assert {j.findtext("child") for j in joints.values()} == set(links) - {"base_link"}
    assert {j.findtext("parent") for j in joints.values()} == {"base_link"}
    (frame,) = model.findall("frame")
    assert (frame.get("name"), frame.get("attached_to")) == ("camera_optical_frame", "camera_link")
    assert _pose(frame) == [0, 0, 0, -1.5708, 0, -1.5708]


def test_amiro_sensors():
    model = _model("amiro")
    sensors = {s.get("name"): s for s in model.iter("sensor")}
    assert set(sensors) == {"camera", "lidar", "ir_ring"}
    expected = {
        "camera": ("camera", "camera/image_raw", "camera_optical_frame"),
        "lidar": ("gpu_lidar", "scan", "lidar_link"),
        "ir_ring": ("gpu_lidar", "ir/scan", "ir_link"),
    }
    for name, (kind, topic, frame) in expected.items():
        sensor = sensors[name]
        assert sensor.get("type") == kind
        assert float(sensor.findtext("update_rate")) == 10
        assert sensor.findtext("topic") == topic
        assert sensor.findtext("gz_frame_id") == frame
        noise = sensor.find(f"{'camera' if kind == 'camera' else 'lidar'}/noise")
        assert noise.findtext("type") == "gaussian" and float(noise.findtext("stddev")) > 0
    camera = sensors["camera"].find("camera")
    assert float(camera.findtext("horizontal_fov")) == 1.047
    assert (camera.findtext("image/width"), camera.findtext("image/height")) == ("320", "240")
    assert camera.findtext("image/format") == "R8G8B8"
    assert (float(camera.findtext("clip/near")), float(camera.findtext("clip/far"))) == (0.02, 5)
    lidar = sensors["lidar"].find("lidar")
    assert int(lidar.findtext("scan/horizontal/samples")) == 360
    assert (float(lidar.findtext("range/min")), float(lidar.findtext("range/max"))) == (0.03, 4.0)
    assert sensors["lidar"].findtext("visualize") == "false"
    ir = sensors["ir_ring"].find("lidar")
    samples = int(ir.findtext("scan/horizontal/samples"))
    lo, hi = float(ir.findtext("scan/horizontal/min_angle")), float(ir.findtext("scan/horizontal/max_angle"))
    assert samples == 8 and (hi - lo) / (samples - 1) == pytest.approx(math.pi / 4, abs=1e-5)
    assert (float(ir.findtext("range/min")), float(ir.findtext("range/max"))) == (0.005, 0.25)
    assert float(ir.findtext("noise/stddev")) == 0.003


def test_ir_ring_ignores_the_own_body_but_not_objects():
    """The IR ring sits inside the shell: gz visibility bits keep it from seeing the robot itself."""
    model = _model("amiro")
    mask = int(next(s for s in model.iter("sensor") if s.get("name") == "ir_ring").findtext("lidar/visibility_mask"))
    for link in ("base_link", "left_wheel", "right_wheel", "caster"):
        for visual in model.findall(f"link[@name='{link}']/visual"):
            assert int(visual.findtext("visibility_flags")) & mask == 0, link
    # Objects keep the default flags (all bits), which the mask lets through.
    assert _model("red_cube_shiny").find("link/visual/visibility_flags") is None
    assert 0xFFFFFFFF & mask != 0


def test_amiro_plugins():
    model = _model("amiro")
    plugins = {p.get("name"): p for p in model.findall("plugin")}
    diff = plugins["gz::sim::systems::DiffDrive"]
    assert diff.get("filename") == "gz-sim-diff-drive-system"
    joints = {j.get("name") for j in model.findall("joint")}
    assert diff.findtext("left_joint") in joints and diff.findtext("right_joint") in joints
    values = {child.tag: child.text for child in diff}
    expected = {
        "wheel_separation": "0.07",
        "wheel_radius": "0.02",
        "odom_publish_frequency": "20",
        "topic": "cmd_vel",
        "odom_topic": "odom",
        "tf_topic": "tf",
        "frame_id": "odom",
        "child_frame_id": "base_link",
        "max_linear_velocity": "0.3",
        "max_angular_velocity": "3.0",
    }
    assert {k: values.get(k) for k in expected} == expected
    # The wheel geometry the plugin assumes is the geometry of the model.
    wheel = model.find("link[@name='left_wheel']/collision/geometry/cylinder")
    assert float(wheel.findtext("radius")) == float(values["wheel_radius"])
    assert plugins["gz::sim::systems::JointStatePublisher"].get("filename") == "gz-sim-joint-state-publisher-system"


# --- worlds -------------------------------------------------------------------------------------


def _includes(path: Path) -> list[tuple[str, str, list[float]]]:
    world = _root(path).find("world")
    return [(inc.findtext("uri"), inc.findtext("name"), _floats(inc.findtext("pose"))) for inc in world.findall("include")]


@pytest.mark.parametrize("path", WORLD_FILES, ids=_ids(WORLD_FILES))
def test_world_structure(path):
    world = _root(path).find("world")
    assert float(world.findtext("physics/max_step_size")) == 0.001
    plugins = {p.get("name") for p in world.findall("plugin")}
    assert plugins == {f"gz::sim::systems::{n}" for n in ("Physics", "UserCommands", "SceneBroadcaster", "Sensors")}
    assert world.findtext("plugin[@name='gz::sim::systems::Sensors']/render_engine") == "ogre2"
    sun = world.find("light[@name='sun']")
    assert sun.get("type") == "directional" and sun.findtext("cast_shadows") == "false"
    direction = _floats(sun.findtext("direction"))
    assert direction[2] < 0, "the sun must shine down"
    models = {m.get("name"): m for m in world.findall("model")}
    assert _floats(models["ground_plane"].findtext("link/collision/geometry/plane/size")) == [4, 4]
    walls = models["walls"]
    assert walls.findtext("static") == "true"
    boxes = walls.findall("link/collision")
    assert len(boxes) == 4
    for box in boxes:
        assert float(box.findtext("laser_retro")) == 0.5
        assert _floats(box.findtext("geometry/box/size"))[2] == 0.15
        x, y = _pose(box)[:2]
        assert max(abs(x), abs(y)) == 1.5
    names = [name for _, name, _ in _includes(path)]
    assert len(names) == len(set(names)), f"{path}: duplicate include names"
    for uri, name, pose in _includes(path):
        assert uri.startswith("model://") and (MODELS / uri[len("model://") :] / "model.sdf").is_file(), uri
        assert len(pose) == 6 and max(abs(pose[0]), abs(pose[1])) < 1.45, f"{name} outside the arena"
        model = uri[len("model://") :]
        assert name == model or (name.startswith(model + "_") and name[len(model) + 1 :].isdigit())


def test_arena_has_the_8_classes_on_a_circle():
    objects = [(uri, pose) for uri, _, pose in _includes(WORLDS / "arena.sdf") if uri != "model://amiro"]
    robots = [pose for uri, _, pose in _includes(WORLDS / "arena.sdf") if uri == "model://amiro"]
    assert robots == [[0, 0, 0, 0, 0, 0]]
    assert sorted(uri[len("model://") :] for uri, _ in objects) == sorted(CLASSES)
    bearings = sorted(round(math.degrees(math.atan2(p[1], p[0])) % 360) for _, p in objects)
    assert bearings == list(range(0, 360, 45))
    for _, pose in objects:
        assert math.hypot(pose[0], pose[1]) == pytest.approx(0.6, abs=1e-4)


def test_two_robot_world_names_its_robots():
    robots = [name for uri, name, _ in _includes(WORLDS / "arena_two_robots.sdf") if uri == "model://amiro"]
    assert robots == ["amiro_1", "amiro_2"]


@pytest.mark.parametrize("file, kwargs", GENERATED_WORLDS.items())
def test_checked_in_generated_worlds_are_in_sync(file, kwargs):
    assert (WORLDS / file).read_text() == world_gen.generate_world(**kwargs), (
        f"worlds/{file} is stale: regenerate it with world_gen.write_world(..., **{kwargs})"
    )


# --- world generator ----------------------------------------------------------------------------


def _generated(seed: int, objects: int, robots: int = 1) -> tuple[list, list]:
    root = ET.fromstring(world_gen.generate_world(seed, objects, robots))
    includes = root.find("world").findall("include")
    robot_poses, object_rows = [], []
    for inc in includes:
        model = inc.findtext("uri")[len("model://") :]
        pose = _floats(inc.findtext("pose"))
        (robot_poses if model == "amiro" else object_rows).append((model, inc.findtext("name"), pose))
    return robot_poses, object_rows


def test_generator_is_deterministic_and_seeds_differ():
    assert world_gen.generate_world(7, 12) == world_gen.generate_world(7, 12)
    assert world_gen.generate_world(7, 12) != world_gen.generate_world(8, 12)
    # Not only the positions: the light changes too.
    suns = {ET.fromstring(world_gen.generate_world(s, 3)).findtext("world/light/direction") for s in range(5)}
    assert len(suns) == 5


@pytest.mark.parametrize("seed, objects, robots", [(0, 8, 1), (3, 40, 1), (5, 24, 2), (11, 100, 8)])
def test_generator_spacing_and_balance(seed, objects, robots):
    robot_poses, rows = _generated(seed, objects, robots)
    assert len(robot_poses) == robots and len(rows) == objects
    for i, (_, name, (x, y, z, roll, pitch, yaw)) in enumerate(rows):
        assert (z, roll, pitch) == (0, 0, 0) and -math.pi <= yaw <= math.pi
        # The rules hold for the rounded numbers in the file, not only before rounding.
        # Spec numbers, not the module's constants, so loosening those fails here.
        assert max(abs(x), abs(y)) <= 1.49 - 0.038, f"{name} touches a wall"
        for _, _, r in robot_poses:
            assert math.hypot(x - r[0], y - r[1]) >= 0.25, name
        for _, other, (ox, oy, *_rest) in rows[i + 1 :]:
            assert math.hypot(x - ox, y - oy) >= 0.15, (name, other)
    counts = Counter(model for model, _, _ in rows)
    assert set(counts) <= set(CLASSES)
    assert max(counts.values()) - min(counts.get(c, 0) for c in CLASSES) <= 1
    assert len({name for _, name, _ in rows}) == objects


def test_generator_class_order_is_shuffled_by_seed():
    orders = {tuple(model for model, _, _ in _generated(seed, 8)[1]) for seed in range(6)}
    assert len(orders) > 1
    assert all(sorted(order) == sorted(CLASSES) for order in orders)


def test_generator_multi_robot_names():
    robots, _ = _generated(4, 5, robots=3)
    assert [name for _, name, _ in robots] == ["amiro_1", "amiro_2", "amiro_3"]
    assert [name for _, name, _ in _generated(4, 5)[0]] == ["amiro"]


def test_generator_world_name():
    root = ET.fromstring(world_gen.generate_world(1, 2, name="my_world"))
    assert root.find("world").get("name") == "my_world"
    assert ET.fromstring(world_gen.generate_world(1, 2)).find("world").get("name") == "arena"


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        (dict(seed=0, objects=0), "objects"),
        (dict(seed=0, objects=-3), "objects"),
        (dict(seed=0, objects=world_gen.MAX_OBJECTS + 1), "objects"),
        (dict(seed=0, objects=2.5), "objects"),
        (dict(seed=-1, objects=4), "seed"),
        (dict(seed=0, objects=4, robots=0), "robots"),
        (dict(seed=0, objects=4, robots=world_gen.MAX_ROBOTS + 1), "robots"),
        (dict(seed=0, objects=4, name="bad name<"), "bad name<"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs, bad):
    with pytest.raises(ConfigError, match=bad):
        world_gen.generate_world(**kwargs)


def test_generator_reports_when_objects_do_not_fit(monkeypatch):
    monkeypatch.setattr(world_gen, "MIN_OBJECT_SPACING", 1.0)
    monkeypatch.setattr(world_gen, "MAX_DRAWS_PER_OBJECT", 200)
    with pytest.raises(M2VAEError, match="cannot fit 30 objects"):
        world_gen.generate_world(0, 30)


def test_write_world_and_cli_run(tmp_path, monkeypatch, capsys):
    out = world_gen.write_world(tmp_path / "sub" / "w.sdf", 3, 5)
    assert out.read_text() == world_gen.generate_world(3, 5)
    assert [p.name for p in out.parent.iterdir()] == ["w.sdf"]  # no temp file left behind

    parser = argparse.ArgumentParser()
    world_gen.add_arguments(parser)
    monkeypatch.chdir(tmp_path)
    assert world_gen.run(parser.parse_args(["--seed", "9", "--objects", "4", "--robots", "2"])) == 0
    default = Path("worlds/generated/world_9.sdf")
    assert capsys.readouterr().out.strip() == str(default)
    assert default.read_text() == world_gen.generate_world(9, 4, robots=2)


# --- Gazebo bridge ------------------------------------------------------------------------------


def test_gz_bridge_maps_every_spec_topic():
    entries = yaml.safe_load((REPO / "config" / "gz_bridge.yaml").read_text())
    keys = {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"}
    assert all(set(e) == keys for e in entries)
    by_topic = {e["ros_topic_name"]: e for e in entries}
    expected = {
        "camera/image_raw": ("sensor_msgs/msg/Image", "GZ_TO_ROS"),
        "camera/camera_info": ("sensor_msgs/msg/CameraInfo", "GZ_TO_ROS"),
        "gz/scan": ("sensor_msgs/msg/LaserScan", "GZ_TO_ROS"),  # raw: gz_range_adapter makes scan of it
        "gz/ir/scan": ("sensor_msgs/msg/LaserScan", "GZ_TO_ROS"),
        "odom": ("nav_msgs/msg/Odometry", "GZ_TO_ROS"),
        "/tf": ("tf2_msgs/msg/TFMessage", "GZ_TO_ROS"),
        "/clock": ("rosgraph_msgs/msg/Clock", "GZ_TO_ROS"),
        "cmd_vel": ("geometry_msgs/msg/Twist", "ROS_TO_GZ"),
    }
    assert {t: (e["ros_type_name"], e["direction"]) for t, e in by_topic.items()} == expected
    # The Gazebo side must be where the model publishes: sensor <topic>s and DiffDrive's topics.
    model = _model("amiro")
    gz_topics = {s.findtext("topic") for s in model.iter("sensor")} | {"camera/camera_info"}
    diff = model.find("plugin[@name='gz::sim::systems::DiffDrive']")
    gz_topics |= {diff.findtext(k) for k in ("topic", "odom_topic", "tf_topic")} | {"clock"}
    assert {e["gz_topic_name"].lstrip("/") for e in entries} == gz_topics


# --- the real SDFormat parser -------------------------------------------------------------------


def _ign_sdf_available() -> bool:
    if shutil.which("ign") is None:
        return False
    proc = subprocess.run(["ign", "sdf", "--versions"], capture_output=True, text=True, timeout=60)
    return proc.returncode == 0


needs_ign = pytest.mark.skipif(
    not _ign_sdf_available(),
    reason="`ign sdf` not installed (Debian: apt-get install ignition-tools libsdformat-dev)",
)


def _ign(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # sdformat 12's CLI resolves model:// through SDF_PATH; Gazebo reads the other two.
    for var in ("SDF_PATH", "IGN_GAZEBO_RESOURCE_PATH", "GZ_SIM_RESOURCE_PATH"):
        env[var] = str(MODELS)
    return subprocess.run(["ign", "sdf", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
@needs_ign
@pytest.mark.parametrize("path", SDF_FILES, ids=_ids(SDF_FILES))
def test_ign_sdf_check(path):
    proc = _ign("-k", str(path))
    assert proc.returncode == 0 and "Valid." in proc.stdout, f"{path}:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
@needs_ign
def test_ign_sdf_check_of_the_gazebo_launch_files(tmp_path):
    """What the Gazebo launch writes for 3 robots: the world without its robots and each robot's copy
    (namespaced topics and frames, its visibility bit, OdometryPublisher)."""
    from m2vae_fusion.bringup.gazebo import gazebo_files
    from m2vae_fusion.bringup.worlds import resolve_world, world_robots

    world = resolve_world(None, 3, tmp_path)
    files = gazebo_files(world, world_robots(world, 3)[1], tmp_path)
    for path in (files.world, *(robot.model for robot in files.robots.values())):
        proc = _ign("-k", str(path))
        assert proc.returncode == 0 and "Valid" in proc.stdout, (path, proc.stdout, proc.stderr)


@pytest.mark.slow
@needs_ign
def test_ign_sdf_check_catches_a_broken_model(tmp_path):
    broken = tmp_path / "model.sdf"
    text = (MODELS / "amiro" / "model.sdf").read_text()
    broken.write_text(text.replace("<child>left_wheel</child>", "<child>no_such_link</child>"))
    proc = _ign("-k", str(broken))
    assert proc.returncode != 0 and "no_such_link" in proc.stdout + proc.stderr


# sdformat 12 accepts unknown elements silently, so `-k` misses a misspelt element name. These are
# the only elements outside the SDF 1.9 spec on purpose: gz-sim reads them (gz_frame_id since
# Harmonic, the lidar visibility mask since SDF 1.10) and the validator ignores them.
ALLOWED_EXTENSIONS = {("sensor", "gz_frame_id"), ("lidar", "visibility_mask")}


@cache
def _spec() -> ET.Element:
    proc = _ign("-d", "1.9")
    assert proc.returncode == 0, proc.stderr
    return ET.fromstring(proc.stdout)


def _unknown_elements(node: ET.Element, spec: ET.Element, path: str) -> list[str]:
    """Paths of the elements and attributes under `node` that its `spec` does not define."""
    attributes = {a.get("name") for a in spec.findall("attribute")}
    unknown = [f"{path}@{name}" for name in node.attrib if name not in attributes]
    children = {e.get("name"): e for e in spec.findall("element")}
    for child in node:
        if not isinstance(child.tag, str):  # comments
            continue
        where = f"{path}/{child.tag}"
        if child.tag in children:
            if child.tag != "plugin":  # plugin content belongs to the plugin
                unknown += _unknown_elements(child, children[child.tag], where)
        elif (node.tag, child.tag) not in ALLOWED_EXTENSIONS:
            unknown.append(where)
    return unknown


@needs_ign
@pytest.mark.parametrize("path", SDF_FILES, ids=_ids(SDF_FILES))
def test_every_element_is_in_the_sdf_1_9_spec(path):
    assert _unknown_elements(_root(path), _spec(), "sdf") == []


@needs_ign
def test_spec_check_catches_misspelt_names():
    text = (MODELS / "red_cube_matte" / "model.sdf").read_text().replace("laser_retro", "laser_retor")
    text = text.replace('<link name="link">', '<link nme="link">')
    assert _unknown_elements(ET.fromstring(text), _spec(), "sdf") == [
        "sdf/model/link@nme",
        "sdf/model/link/collision/laser_retor",
        "sdf/model/link/visual/laser_retor",
    ]
