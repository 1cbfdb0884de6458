"""The embedded simulator: SDF loading, errors and warnings, diff drive, sensor shapes, noise, and
the information each sensor carries about the 8 classes (paper Sec. IV: the classes need fusion)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.perception.readings import ObjectState
from m2vae_fusion.sim.sdf import SdfError, load_world
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_fusion.sim.viewpoints import ViewpointRange, look_at, sample_viewpoint

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

REPO = Path(__file__).resolve().parents[1]
WORLDS = sorted((REPO / "worlds").glob("*.sdf"))
MODELS = REPO / "models"


def one_object_world(tmp_path: Path, label: str, yaw: float = 0.0, extra: str = "", distance: float = 0.5) -> Path:
    """A world with the robot at the origin and one primitive `distance` ahead of it."""
    path = tmp_path / f"{label}.sdf"
    path.write_text(
        f"""<?xml version="1.0"?>
<sdf version="1.9"><world name="one">
  <light type="directional" name="sun"><direction>-0.3 0.2 -0.9</direction><diffuse>0.8 0.8 0.8 1</diffuse></light>
  <include><uri>model://amiro</uri><name>amiro</name></include>
  <include><uri>model://{label}</uri><name>target</name><pose>{distance} 0 0 0 0 {yaw}</pose></include>
  {extra}
</world></sdf>"""
    )
    return path


def simulator(world: Path, **kwargs) -> Simulator:
    return Simulator(SimConfig(world=world, model_paths=(MODELS,), **kwargs))


@pytest.fixture(scope="module")
def arena() -> Simulator:
    sim = simulator(REPO / "worlds" / "arena.sdf")
    yield sim
    sim.close()


@pytest.mark.parametrize("world", WORLDS, ids=lambda p: p.stem)
def test_every_world_builds_a_scene(world: Path) -> None:
    robot = "amiro_1" if "two_robots" in world.stem else "amiro"
    with simulator(world, robot=robot) as sim:
        assert sim.model.ngeom > 0
        assert {o.label for o in sim.objects} <= set(CLASSES)
        assert len(sim.objects) >= 8
        assert set(sim.sensors) == {"camera", "lidar", "ir"}


def test_arena_has_each_class_once(arena: Simulator) -> None:
    assert sorted(o.class_id for o in arena.objects) == list(range(8))


def test_sensor_shapes_units_and_frames(arena: Simulator) -> None:
    image = arena.camera()
    assert image.rgb.shape == (240, 320, 3) and image.rgb.dtype == np.uint8
    assert image.frame_id == "camera_optical_frame"
    assert image.fx == pytest.approx(160 / math.tan(1.047 / 2)) and image.cx == 160 and image.cy == 120
    scan = arena.lidar()
    assert scan.ranges.shape == scan.intensities.shape == (360,) and scan.ranges.dtype == np.float32
    assert scan.frame_id == "lidar_link" and scan.angle_increment == pytest.approx(2 * math.pi / 359, rel=1e-4)
    finite = scan.ranges[np.isfinite(scan.ranges)]
    assert len(finite) > 300  # the walls at 1.5 m surround the robot
    assert np.all((finite >= scan.range_min) & (finite <= scan.range_max))
    ir = arena.ir()
    assert ir.ranges.shape == (8,) and ir.frame_id == "ir_link"
    assert ir.angle_increment == pytest.approx(math.radians(45), rel=1e-4)
    frames = {(t.parent, t.child) for t in arena.static_transforms()}
    assert {
        ("base_link", "camera_link"),
        ("camera_link", "camera_optical_frame"),
        ("base_link", "lidar_link"),
        ("base_link", "ir_link"),
    } <= frames


def test_optical_frame_looks_along_the_camera_axis(arena: Simulator) -> None:
    optical = next(t for t in arena.static_transforms() if t.child == "camera_optical_frame")
    x, y, z, w = optical.rotation
    # rotate the optical z axis (0, 0, 1) into camera_link: it must be camera_link's +x (forward)
    forward = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])
    np.testing.assert_allclose(forward, [1, 0, 0], atol=1e-4)


@pytest.mark.slow
def test_range_noise_matches_the_sdf(tmp_path: Path) -> None:
    world = one_object_world(tmp_path, "red_cube_matte")
    with simulator(world, seed=1) as noisy, simulator(world, noise_scale=0.0) as clean:
        truth = clean.lidar().ranges
        samples = np.stack([noisy.lidar().ranges for _ in range(200)])
    hit = np.isfinite(truth)
    errors = samples[:, hit] - truth[hit]
    assert abs(errors.mean()) < 0.001
    assert errors.std() == pytest.approx(0.005, rel=0.1)  # <stddev> of the SDF's lidar noise
    with simulator(world, noise_scale=0.0) as again:
        np.testing.assert_array_equal(again.camera().rgb, simulator(world, noise_scale=0.0).camera().rgb)


def test_diff_drive_follows_cmd_vel(arena: Simulator) -> None:
    arena.set_robot_pose(0.0, 0.0, 0.0)
    start = arena.odometry()
    arena.set_cmd_vel(0.1, 0.0)
    for _ in range(100):
        arena.step(0.01)
    assert arena.robot_pose.x == pytest.approx(0.1, abs=1e-6) and arena.robot_pose.y == pytest.approx(0.0, abs=1e-9)
    assert arena.odometry().x - start.x == pytest.approx(0.1, abs=0.01)  # odometry drifts by wheel slip only
    arena.set_cmd_vel(0.0, 1.0)
    for _ in range(157):
        arena.step(0.01)
    assert arena.robot_pose.yaw == pytest.approx(1.57, abs=1e-6)
    arena.set_cmd_vel(5.0, 100.0)  # clamped to the DiffDrive plugin's limits
    assert (arena.drive.state.linear, arena.drive.state.angular) == (0.3, 3.0)
    arena.set_cmd_vel(0.0, 0.0)
    arena.set_robot_pose(0.0, 0.0, 0.0)


def test_map_to_odom_composes_to_the_true_pose(arena: Simulator) -> None:
    arena.set_cmd_vel(0.2, 0.5)
    for _ in range(50):
        arena.step(0.02)
    offset, odom, truth = arena.map_to_odom(), arena.odometry(), arena.robot_pose
    x = offset.x + math.cos(offset.yaw) * odom.x - math.sin(offset.yaw) * odom.y
    y = offset.y + math.sin(offset.yaw) * odom.x + math.cos(offset.yaw) * odom.y
    assert (x, y) == (pytest.approx(truth.x, abs=1e-9), pytest.approx(truth.y, abs=1e-9))
    arena.set_cmd_vel(0.0, 0.0)
    arena.set_robot_pose(0.0, 0.0, 0.0)


def test_robot_stops_at_an_obstacle(tmp_path: Path) -> None:
    with simulator(one_object_world(tmp_path, "green_cube_shiny")) as sim:
        sim.set_cmd_vel(0.3, 0.0)
        for _ in range(300):
            sim.step(0.01)
        # the cube's face is at 0.5 - 0.0266 and the body's radius 0.05
        assert 0.4 < sim.robot_pose.x < 0.5 - 0.0266 - 0.05 + 1e-9
        assert sim.odometry().x > 0.8  # the wheels kept turning


def test_step_rejects_bad_input(arena: Simulator) -> None:
    with pytest.raises(ValueError, match="dt"):
        arena.step(0.0)
    with pytest.raises(ValueError, match="finite"):
        arena.set_cmd_vel(float("nan"), 0.0)


# ---------------------------------------------------------------- errors and warnings


def write(tmp_path: Path, text: str, name: str = "bad.sdf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "body, element",
    [
        (
            "<world name='w'><model name='m'><link name='l'><collision name='c'></collision></link></model></world>",
            "collision[c]",
        ),
        (
            "<world name='w'><model name='m'><link name='l'><visual name='v'><geometry><box><size>1 x 1</size></box></geometry></visual></link></model></world>",
            "size",
        ),
        (
            "<world name='w'><model name='m'><link name='l'><visual name='v'><geometry><mesh><uri>a.dae</uri></mesh></geometry></visual></link></model></world>",
            "mesh",
        ),
        ("<world name='w'><include><uri>model://no_such_model</uri></include></world>", "include"),
        ("<world name='w'><model name='m'><pose relative_to='x'>0 0 0 0 0 0</pose></model></world>", "model[m]"),
    ],
)
def test_malformed_sdf_names_file_and_element(tmp_path: Path, body: str, element: str) -> None:
    path = write(tmp_path, f"<?xml version='1.0'?><sdf version='1.9'>{body}</sdf>")
    with pytest.raises(SdfError) as raised:
        load_world(path, [MODELS])
    assert str(path) in str(raised.value) and element in str(raised.value)


def test_broken_xml_and_old_versions_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(SdfError, match="not well-formed"):
        load_world(write(tmp_path, "<sdf version='1.9'><world>"))
    with pytest.raises(SdfError, match="older than"):
        load_world(write(tmp_path, "<sdf version='1.4'><world name='w'/></sdf>"))


def test_unsupported_elements_are_reported_by_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    extra = (
        "<model name='m'><static>true</static><link name='l'><velocity_decay/></link></model>"
        "<plugin filename='gz-sim-wind-effects-system' name='gz::sim::systems::WindEffects'/>"
    )
    with caplog.at_level(logging.WARNING, logger="m2vae_fusion.sim"):
        load_world(one_object_world(tmp_path, "red_cube_matte", extra=extra), [MODELS])
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "model[m]/link[l]/velocity_decay" in messages and "plugin[gz::sim::systems::WindEffects]" in messages
    assert len(caplog.records) == 2  # and nothing about the package's own models


def test_package_models_load_without_warnings(arena: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="m2vae_fusion.sim"):
        load_world(REPO / "worlds" / "arena.sdf", [MODELS])
    assert not caplog.records, [r.getMessage() for r in caplog.records]


# ---------------------------------------------------------------- what each sensor tells about the class


def observe(tmp_path: Path, label: str, distance: float = 0.2, yaw: float = 0.0, seed: int = 0, noise: float = 1.0):
    world = one_object_world(tmp_path, label, yaw=yaw)
    with simulator(world, seed=seed, noise_scale=noise) as sim:
        target = next(o for o in sim.objects if o.name == "target")
        pose = look_at(target, distance, math.pi)
        sim.set_robot_pose(pose.x, pose.y, pose.yaw)
        return sim.camera(), sim.lidar(), sim.ir()


def centre_colour(image) -> np.ndarray:
    h, w = image.rgb.shape[:2]
    return image.rgb[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10].reshape(-1, 3).astype(float).mean(axis=0)


@pytest.mark.slow
def test_camera_tells_red_from_green(tmp_path: Path) -> None:
    for shape in ("cylinder", "cube"):
        for surface in ("matte", "shiny"):
            red = centre_colour(observe(tmp_path, f"red_{shape}_{surface}")[0])
            green = centre_colour(observe(tmp_path, f"green_{shape}_{surface}")[0])
            assert red[0] > 1.5 * red[1] and green[1] > 1.5 * green[0], (shape, surface, red, green)


def front_profile(scan) -> np.ndarray:
    """Ranges of the beams that hit the object ahead, relative to the nearest one."""
    angles = scan.angle_min + scan.angle_increment * np.arange(len(scan.ranges))
    front = (np.abs(angles) < math.radians(30)) & np.isfinite(scan.ranges)
    return scan.ranges[front] - scan.ranges[front].min()


@pytest.mark.slow
def test_lidar_tells_cylinder_from_cube_at_the_same_distance(tmp_path: Path) -> None:
    # a face-on prism is flat, a cylinder curves away: compare the profile's spread at noise 0 and with noise
    for noise in (0.0, 1.0):
        cyl = np.mean([front_profile(observe(tmp_path, "red_cylinder_matte", seed=s, noise=noise)[1]).mean() for s in range(5)])
        cube = np.mean([front_profile(observe(tmp_path, "red_cube_matte", seed=s, noise=noise)[1]).mean() for s in range(5)])
        assert cyl > cube + 0.004, (noise, cyl, cube)


@pytest.mark.slow
def test_reflectivity_tells_matte_from_shiny_but_not_colour(tmp_path: Path) -> None:
    def front(scan) -> float:
        return float(scan.intensities[np.argmin(np.abs(scan.angle_min + scan.angle_increment * np.arange(len(scan.ranges))))])

    for sensor in (1, 2):  # LiDAR, IR
        matte = [front(observe(tmp_path, f"{c}_cube_matte", seed=s)[sensor]) for c in ("red", "green") for s in range(3)]
        shiny = [front(observe(tmp_path, f"{c}_cube_shiny", seed=s)[sensor]) for c in ("red", "green") for s in range(3)]
        assert max(matte) < min(shiny), (sensor, matte, shiny)
    # blind to colour: without noise, red and green give the very same range readings
    for sensor in (1, 2):
        red, green = (
            observe(tmp_path, "red_cylinder_shiny", noise=0)[sensor],
            observe(tmp_path, "green_cylinder_shiny", noise=0)[sensor],
        )
        np.testing.assert_array_equal(red.ranges, green.ranges)
        np.testing.assert_array_equal(red.intensities, green.intensities)


@pytest.mark.slow
def test_ir_reading_falls_with_distance(tmp_path: Path) -> None:
    readings = [observe(tmp_path, "red_cube_shiny", distance=d, noise=0)[2].intensities[3] for d in (0.1, 0.15, 0.2)]
    assert readings[0] > readings[1] > readings[2] > 0


@pytest.mark.slow
def test_camera_alone_is_ambiguous_on_surface_from_some_views(tmp_path: Path) -> None:
    # face-on, the highlight gives a shiny face away; seen on its edge, no highlight reaches the camera
    def colours(yaw: float) -> list[np.ndarray]:
        return [
            centre_colour(observe(tmp_path, label, yaw=yaw, noise=0)[0])
            for label in ("red_cube_matte", "red_cube_shiny", "green_cube_matte")
        ]

    matte, shiny, green = colours(0.0)
    assert np.abs(matte - shiny).sum() > 0.25 * np.abs(matte - green).sum()
    matte, shiny, green = colours(math.pi / 4)
    assert np.abs(matte - shiny).sum() < 0.05 * np.abs(matte - green).sum()


def test_viewpoints_face_the_target_and_keep_it_nearest(arena: Simulator) -> None:
    rng = np.random.default_rng(0)
    spec = ViewpointRange()
    distances = []
    for target in [*arena.objects, *arena.objects]:
        pose = sample_viewpoint(arena, target, rng, spec)
        distance = math.hypot(target.x - pose.x, target.y - pose.y)
        distances.append(distance)
        assert spec.min_distance <= distance <= spec.far_distance
        bearing = math.atan2(target.y - pose.y, target.x - pose.x)
        assert abs((bearing - pose.yaw + math.pi) % (2 * math.pi) - math.pi) <= spec.heading_jitter + 1e-9
        assert not arena.collides(pose)
        others = [math.hypot(o.x - pose.x, o.y - pose.y) for o in arena.objects if o.name != target.name]
        assert min(others) > distance
    arena.set_robot_pose(0.0, 0.0, 0.0)
    near = sum(d <= spec.max_distance for d in distances)
    assert 0 < near < len(distances)  # near views (every sensor) and far ones (beyond the IR's reach), about half each


def test_near_only_viewpoints_keep_their_seeds_draws() -> None:
    # without far views no coin is drawn: a near-only collection's viewpoints are those it had before far views existed
    near = ViewpointRange(far_fraction=0.0)
    rng, plain = np.random.default_rng(3), np.random.default_rng(3)
    assert [near.distance(rng) for _ in range(5)] == [float(plain.uniform(0.16, 0.25)) for _ in range(5)]
    with pytest.raises(ValueError, match="far_distance"):
        ViewpointRange(far_distance=0.2)
    with pytest.raises(ValueError, match="far_fraction"):
        ViewpointRange(far_fraction=1.5)


def test_look_at_places_the_robot_on_the_bearing() -> None:
    target = ObjectState("t", "red", "cube", "matte", 2, "red_cube_matte", 1.0, 2.0, 0.06, 0.0)
    pose = look_at(target, 0.5, math.pi / 2)
    assert (pose.x, pose.y) == (pytest.approx(1.0), pytest.approx(2.5)) and pose.yaw == pytest.approx(-math.pi / 2)
