"""Perception (issue 7): LiDAR object candidates, per-sensor features and image decoding, checked
against the embedded simulator's ground truth and against hand-built readings."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from m2vae_fusion.core.config import from_dict, load_yaml
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.perception import frames
from m2vae_fusion.perception.config import DetectionConfig, FeatureConfig, PerceptionConfig
from m2vae_fusion.perception.features import camera_crop, ir_features, lidar_sector, observe
from m2vae_fusion.perception.image_encodings import ImageFormatError, to_rgb
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.perception.lidar_objects import detect_objects
from m2vae_fusion.perception.readings import CameraImage, ObjectState, Scan
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_fusion.sim.viewpoints import ViewpointRange, look_at, sample_viewpoint

REPO = Path(__file__).resolve().parents[1]
ARENA = REPO / "worlds" / "arena.sdf"
MODELS = REPO / "models"


def simulator(world: Path, **kwargs) -> Simulator:
    return Simulator(SimConfig(world=world, model_paths=(MODELS,), **kwargs))


@pytest.fixture(scope="module")
def arena() -> Simulator:
    sim = simulator(ARENA, seed=3)
    yield sim
    sim.close()


@pytest.fixture(scope="module")
def quiet_arena() -> Simulator:
    """Noise-free: equal geometry must give equal readings."""
    sim = simulator(ARENA, noise_scale=0.0)
    yield sim
    sim.close()


@pytest.fixture(scope="module")
def empty_arena(tmp_path_factory: pytest.TempPathFactory) -> Simulator:
    """The arena's walls, ground and robot without any primitive."""
    tree = ET.parse(ARENA)
    world = tree.getroot().find("world")
    for include in world.findall("include"):
        if include.findtext("uri").removeprefix("model://") in default_labels().classes:
            world.remove(include)
    path = tmp_path_factory.mktemp("worlds") / "empty.sdf"
    tree.write(path)
    sim = simulator(path, seed=5)
    assert not sim.objects
    yield sim
    sim.close()


def sensor_frames(sim: Simulator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    static = sim.static_transforms()
    return tuple(frames.lookup(static, "base_link", child) for child in ("lidar_link", "ir_link", "camera_optical_frame"))


def in_base(sim: Simulator, target: ObjectState) -> np.ndarray:
    """The target's centre in base_link (objects are centred 6 cm above their model origin)."""
    pose = sim.robot_pose
    return frames.apply(frames.inverse(frames.planar(pose.x, pose.y, pose.yaw)), (target.x, target.y, target.z + 0.06))


def observe_sim(sim: Simulator, config: PerceptionConfig | None = None):
    return observe(sim.camera(), sim.lidar(), sim.ir(), *sensor_frames(sim), config)


def target(sim: Simulator, name: str) -> ObjectState:
    return next(o for o in sim.objects if o.name == name)


def outward(sim: Simulator, name: str, distance: float, heading: float = 0.0) -> ObjectState:
    """Put the robot `distance` outside the ring of objects, looking at `name` (nothing behind the robot)."""
    t = target(sim, name)
    pose = look_at(t, distance, math.atan2(t.y, t.x), heading)
    sim.set_robot_pose(pose.x, pose.y, pose.yaw)
    return t


def synthetic_scan(
    ranges: np.ndarray, intensities: np.ndarray | None = None, angle_min: float = -math.pi, increment: float | None = None
) -> Scan:
    n = len(ranges)
    increment = increment if increment is not None else 2 * math.pi / (n - 1)  # Gazebo style: -pi..pi inclusive
    ranges = np.asarray(ranges, dtype=np.float32)
    intensities = np.full(n, 0.5, np.float32) if intensities is None else np.asarray(intensities, np.float32)
    return Scan(ranges, intensities, angle_min, angle_min + increment * (n - 1), increment, 0.03, 4.0, "lidar_link")


def circle_ranges(angles: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """Exact ranges from the origin to a circle (inf where a ray misses)."""
    d = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    b = d @ np.array([cx, cy])
    disc = b**2 - (cx * cx + cy * cy - radius * radius)
    with np.errstate(invalid="ignore"):
        return np.where(disc >= 0, b - np.sqrt(disc), np.inf)


# ---------------------------------------------------------------- frames


def test_transform_round_trip_compose_and_inverse() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    t = frames.from_translation_quaternion((1.0, -2.0, 0.5), q)
    translation, quaternion = frames.to_translation_quaternion(t)
    assert translation == pytest.approx((1.0, -2.0, 0.5))
    assert np.allclose(quaternion, q) or np.allclose(quaternion, -q)  # q and -q are one rotation
    assert np.allclose(frames.compose(t, frames.inverse(t)), np.eye(4))
    points = rng.normal(size=(5, 3))
    assert np.allclose(frames.apply(frames.inverse(t), frames.apply(t, points)), points)
    yaw90 = frames.planar(1.0, 0.0, math.pi / 2)
    assert frames.apply(yaw90, (1.0, 0.0, 0.0)) == pytest.approx((1.0, 1.0, 0.0))
    with pytest.raises(ValueError, match="quaternion"):
        frames.from_translation_quaternion((0, 0, 0), (0, 0, 0, 0))
    with pytest.raises(ValueError, match="translation"):
        frames.from_translation_quaternion((0, 0), (0, 0, 0, 1))


def test_lookup_chains_the_robot_frames(arena: Simulator) -> None:
    base_to_lidar, base_to_ir, base_to_optical = sensor_frames(arena)
    assert base_to_lidar[:3, 3] == pytest.approx((0, 0, 0.09))
    assert base_to_ir[:3, 3] == pytest.approx((0, 0, 0.015))
    # optical frame: z forward (base +x), x right (base -y), y down (base -z)
    assert base_to_optical[:3, 3] == pytest.approx((0.045, 0, 0.06))
    assert np.allclose(base_to_optical[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-5)
    with pytest.raises(KeyError, match="no transform chain"):
        frames.lookup(arena.static_transforms(), "base_link", "wheel_link")


# ---------------------------------------------------------------- detection


def test_nearest_candidate_is_the_target(arena: Simulator) -> None:
    """Random viewpoints at 0.12-0.25 m (paper-style captures): centre within 1.5 cm."""
    rng = np.random.default_rng(1)
    spec = ViewpointRange(min_distance=0.12, max_distance=0.25)
    errors = []
    for i in range(48):
        t = arena.objects[i % 8]
        pose = sample_viewpoint(arena, t, rng, spec)
        arena.set_robot_pose(pose.x, pose.y, pose.yaw)
        candidates = detect_objects(arena.lidar())
        assert candidates, f"nothing detected looking at {t.name} from {pose}"
        truth = in_base(arena, t)
        c = candidates[0]
        errors.append(math.hypot(c.x - truth[0], c.y - truth[1]))  # lidar_link sits on base_link's z axis
        assert c.width <= 0.1 and c.beams >= 3 and 0 <= c.intensity <= 1
    assert max(errors) < 0.015, f"centre errors (m): max {max(errors):.4f}, mean {np.mean(errors):.4f}"


def test_walls_give_no_candidates(empty_arena: Simulator) -> None:
    rng = np.random.default_rng(2)
    for _ in range(150):
        x, y = rng.uniform(-1.4, 1.4, 2)
        empty_arena.set_robot_pose(x, y, rng.uniform(-math.pi, math.pi))
        assert detect_objects(empty_arena.lidar()) == [], f"wall taken for an object at {empty_arena.robot_pose}"


def test_object_across_the_scan_seam_is_found_once() -> None:
    """An object straight behind the sensor spans the last and first beams of a 360-degree scan."""
    angles = -math.pi + 2 * math.pi / 359 * np.arange(360)
    scan = synthetic_scan(circle_ranges(angles, -0.3, 0.004, 0.03))
    (c,) = detect_objects(scan)
    assert c.first_beam > c.last_beam  # wraps
    assert math.hypot(c.x + 0.3, c.y - 0.004) < 0.003
    assert abs(abs(c.bearing) - math.pi) < math.radians(2)


def test_segments_are_filtered_by_beams_and_width() -> None:
    angles = -math.pi + 2 * math.pi / 359 * np.arange(360)
    ranges = np.full(360, np.inf)
    ranges[100:102] = 0.5  # two beams: too few
    big = circle_ranges(angles, 0.0, 0.8, 0.1)  # 20 cm across: too wide
    ranges = np.minimum(ranges, big)
    assert detect_objects(synthetic_scan(ranges)) == []
    small = circle_ranges(angles, 0.8, 0.0, 0.03)
    (c,) = detect_objects(synthetic_scan(np.minimum(ranges, small)))
    assert c.distance == pytest.approx(0.8, abs=1e-3)
    assert detect_objects(synthetic_scan(np.minimum(ranges, small)), DetectionConfig(min_beams=10)) == []


def test_a_room_corner_is_no_object_but_a_bulge_is() -> None:
    """Four beams 1 m out whose middle lies 2 cm behind (a corner seen from inside) or before (convex)."""
    ranges = np.full(360, np.inf)
    ranges[100:104] = [1.0, 1.02, 1.02, 1.0]
    assert detect_objects(synthetic_scan(ranges)) == []
    ranges[100:104] = [1.02, 1.0, 1.0, 1.02]
    (c,) = detect_objects(synthetic_scan(ranges))
    assert (c.first_beam, c.last_beam, c.beams) == (100, 103, 4)


# ---------------------------------------------------------------- features


def test_observe_features_are_in_range_and_shaped(arena: Simulator) -> None:
    config = PerceptionConfig()
    for name in ("red_cylinder_shiny", "green_cube_matte"):
        t = outward(arena, name, 0.2)
        observations = observe_sim(arena, config)
        o = observations[0]
        assert np.linalg.norm(o.position[:2] - in_base(arena, t)[:2]) < 0.015
        assert o.position[2] == pytest.approx(0.06)
        for value, shape in ((o.lidar, (2, 32)), (o.camera, (64, 64, 3)), (o.ir, (6,))):
            assert value is not None and value.shape == shape and value.dtype == np.float32
            assert value.min() >= 0 and value.max() <= 1
        assert [x.candidate.distance for x in observations] == sorted(x.candidate.distance for x in observations)


def test_crops_are_centred_on_the_object(arena: Simulator) -> None:
    """Turned 0.3 rad away, the object is far off the image centre yet fills the crop's centre."""
    _, _, base_to_optical = sensor_frames(arena)
    for name in ("red_cylinder_matte", "red_cube_shiny", "green_cylinder_shiny", "green_cube_matte"):
        t = outward(arena, name, 0.25, heading=0.3)
        image = arena.camera()
        point = frames.apply(frames.inverse(base_to_optical), in_base(arena, t))
        crop = camera_crop(image, point)
        assert crop is not None and crop.shape == (64, 64, 3)
        centre = crop[24:40, 24:40].reshape(-1, 3).mean(axis=0)
        image_centre = image.rgb[110:130, 150:170].reshape(-1, 3).mean(axis=0) / 255
        own, other = (0, 1) if t.colour == "red" else (1, 0)
        assert centre[own] > 2 * centre[other] and centre[own] > 1.5 * centre[2], f"{name}: crop centre RGB {centre}"
        assert not image_centre[own] > 2 * image_centre[other], f"{name}: the object is at the image centre too, test is void"
        beyond = crop[:, -1] if point[0] > 0 else crop[:, 0]
        assert beyond.max() == 0  # the edge beyond the image border is zero-filled


def test_crop_is_none_when_too_near_or_mostly_outside() -> None:
    image = CameraImage(np.full((240, 320, 3), 200, np.uint8), 277.2, 277.2, 160.0, 120.0, "camera_optical_frame")
    assert camera_crop(image, (0.0, 0.0, 0.05)) is None
    assert camera_crop(image, (0.0, 0.0, -1.0)) is None
    assert camera_crop(image, (0.0, 0.0, 0.3)) is not None
    # centre 0.3 m to the side at 0.5 m depth: projects far right of the 320 px image
    assert camera_crop(image, (0.3, 0.0, 0.5)) is None
    # at the right border: about half the square inside
    edge = camera_crop(image, ((160 - 5) * 0.5 / 277.2, 0.0, 0.5))
    assert edge is not None and edge[:, :30].min() > 0.7 and edge[:, -20:].max() == 0


def test_sector_is_shape_specific_and_blind_to_colour(quiet_arena: Simulator) -> None:
    def sector(name: str, **window: float) -> np.ndarray:
        outward(quiet_arena, name, 0.2)
        c = detect_objects(quiet_arena.lidar())[0]
        return lidar_sector(quiet_arena.lidar(), c.bearing, c.distance, **window)

    # the arena is point-symmetric: a half turn maps each red primitive onto its green twin
    wide = {"depth_window": 0.1}
    red, green = sector("red_cylinder_matte", **wide), sector("green_cylinder_matte", **wide)
    cube = sector("red_cube_matte", **wide)
    assert np.abs(red - green).max() < 1e-3
    assert np.abs(red[0] - cube[0]).sum() > 1.0, "depth profiles of a cylinder and a cube should differ"
    # the matte surface reflects 0.25 where it faces the sensor; the background (walls) reads as no return
    # the centre is the nearest surface + 3 cm: in a 10 cm window that surface reads (-3 + 5) / 10;
    # a 5 cm window clips it and spends its range on the flanks, where cube and cylinder differ
    assert red[1, 16] == pytest.approx(0.25, abs=0.01) and red[0, 16] == pytest.approx(0.2, abs=0.01)
    narrow = sector("red_cylinder_matte")  # the default 5 cm
    assert narrow[0, 16] == 0.0 and 0.05 < narrow[0, 8] < 0.95 and 0.05 < narrow[0, 24] < 0.95


def test_sector_formula_on_hand_built_scans() -> None:
    n = 360
    flat = synthetic_scan(np.full(n, 0.47), np.full(n, 1.7))  # a surrounding surface 3 cm before 0.5 m
    s = lidar_sector(flat, 0.3, 0.5, depth_window=0.1)
    assert s.shape == (2, 32) and np.allclose(s[0], 0.2, atol=1e-5) and np.allclose(s[1], 1.0)  # intensity clipped
    assert np.allclose(lidar_sector(flat, 0.3, 0.5, depth_window=0.05)[0], 0.0)  # (-3 + 2.5) / 5 cm, clipped
    nearer = synthetic_scan(np.full(n, 0.49), np.full(n, 0.5))
    assert np.allclose(lidar_sector(nearer, 0.3, 0.5, depth_window=0.05)[0], 0.3, atol=1e-5)  # (-1 + 2.5) / 5
    empty = synthetic_scan(np.full(n, np.inf), np.zeros(n))
    assert np.all(lidar_sector(empty, 0.0, 0.5) == [[1.0], [0.0]])
    # beyond the window the background reads as no return, whatever reflects there
    wall = synthetic_scan(np.full(n, 1.3), np.full(n, 0.8))
    assert np.all(lidar_sector(wall, 0.0, 0.5) == [[1.0], [0.0]])
    edge = synthetic_scan(np.full(n, 0.54), np.full(n, 0.8))  # near the window's far edge: still the object
    assert np.allclose(lidar_sector(edge, 0.0, 0.5, depth_window=0.1), [[0.9], [0.8]])
    assert np.all(lidar_sector(edge, 0.0, 0.5, depth_window=0.05) == [[1.0], [0.0]])  # beyond a 5 cm one
    # a 90-degree scan does not see behind itself
    front = synthetic_scan(np.full(91, 0.47), angle_min=-math.pi / 4, increment=math.radians(1))
    assert lidar_sector(front, math.pi, 0.5) is None and lidar_sector(front, 0.0, 0.5) is not None


def test_ir_features_need_a_return_from_the_facing_beam(arena: Simulator) -> None:
    outward(arena, "green_cube_shiny", 0.18)
    ir = arena.ir()
    facing = ir_features(ir, 0.0)
    assert facing is not None and facing.shape == (6,) and facing.dtype == np.float32
    # the flat face 18 - 2.66 cm away: sqrt(0.85 retro * (0.06 / 0.153)^2) and range / 0.25; the beams
    # 45 degrees to either side pass the object by
    assert facing == pytest.approx([0.0, 1.0, 0.36, (0.18 - 0.0266) / 0.25, 0.0, 1.0], abs=0.04)
    assert ir_features(ir, math.pi) is None  # facing away: nothing within reach behind the robot
    # the object out of the ring's reach: observe gives no IR features, the other two still
    outward(arena, "green_cube_shiny", 0.5)
    o = observe_sim(arena)[0]
    assert o.ir is None and o.lidar is not None and o.camera is not None


def test_ir_features_wrap_around_the_ring() -> None:
    angles = -3 * math.pi / 4 + math.pi / 4 * np.arange(8)
    ranges = np.full(8, np.inf)
    ranges[7] = 0.1  # the beam at 180 degrees
    intensities = np.where(np.isfinite(ranges), 0.25, 0.0)
    ring = Scan(
        ranges.astype(np.float32), intensities.astype(np.float32), angles[0], angles[-1], math.pi / 4, 0.005, 0.25, "ir_link"
    )
    f = ir_features(ring, -math.pi + 0.1)  # just past -180 deg: still the 180-degree beam
    assert f == pytest.approx([0.0, 1.0, 0.5, 0.4, 0.0, 1.0])
    ranges[0] = 0.2  # beam 0 (-135 deg) neighbours beam 7 across the wrap
    ring = Scan(
        ranges.astype(np.float32), np.full(8, 0.25, np.float32), angles[0], angles[-1], math.pi / 4, 0.005, 0.25, "ir_link"
    )
    assert ir_features(ring, math.pi)[4:] == pytest.approx([0.5, 0.8])


# ---------------------------------------------------------------- config


def test_config_from_yaml_and_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "perception.yaml"
    path.write_text(yaml.safe_dump({"detection": {"jump": 0.05}, "features": {"crop_pixels": 32}}))
    config = load_yaml(PerceptionConfig, path)
    assert config.detection.jump == 0.05 and config.features.crop_pixels == 32 and config.detection.min_beams == 3
    with pytest.raises(ConfigError, match="detection.jump"):
        DetectionConfig(jump=0)
    with pytest.raises(ConfigError, match="min_width"):
        DetectionConfig(min_width=0.2)
    with pytest.raises(ConfigError, match="features.lidar_samples"):
        FeatureConfig(lidar_samples=1)
    with pytest.raises(ConfigError, match="crop_min_inside"):
        FeatureConfig(crop_min_inside=1.5)
    with pytest.raises(ConfigError, match="jumps"):
        from_dict(PerceptionConfig, {"detection": {"jumps": 0.05}})


# ---------------------------------------------------------------- image encodings


def encode(rgb: np.ndarray, encoding: str, pad: int) -> tuple[int, bytes]:
    """Hand-built sensor_msgs/Image data with `pad` bytes at the end of every row."""
    if encoding in ("rgb8", "bgr8", "rgba8", "bgra8"):
        pixels = rgb[:, :, ::-1] if encoding.startswith("bgr") else rgb
        if encoding.endswith("a8"):
            pixels = np.concatenate([pixels, np.full(rgb.shape[:2] + (1,), 77, np.uint8)], axis=2)
        rows = pixels.reshape(rgb.shape[0], -1)
    elif encoding == "mono8":
        rows = rgb[:, :, 0]
    else:  # 32FC1
        rows = (rgb[:, :, 0].astype("<f4") / 255).view(np.uint8).reshape(rgb.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return padded.shape[1], padded.tobytes()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "32FC1"])
@pytest.mark.parametrize("pad", [0, 3])
def test_every_encoding_round_trips(encoding: str, pad: int) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    if encoding in ("mono8", "32FC1"):
        rgb[:] = rgb[:, :, :1]  # grey
    step, data = encode(rgb, encoding, pad)
    out = to_rgb(encoding, 7, 5, step, data)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert np.array_equal(out, rgb)


def test_float_images_are_clipped_and_honour_endianness() -> None:
    values = np.array([[-1.0, 0.0, 0.5, 1.0, 7.0, np.nan]])
    big = to_rgb("32FC1", 6, 1, 24, values.astype(">f4").tobytes(), is_bigendian=True)
    little = to_rgb("32FC1", 6, 1, 24, values.astype("<f4").tobytes())
    assert big[0, :, 0].tolist() == little[0, :, 0].tolist() == [0, 0, 128, 255, 255, 0]


@pytest.mark.parametrize(
    "fields, named",
    [
        (("yuv422", 2, 2, 4, bytes(8)), "encoding"),
        (("rgb8", 0, 2, 0, b""), "width"),
        (("rgb8", 2, 0, 6, b""), "height"),
        (("rgb8", 2, 2, 5, bytes(10)), "step"),
        (("rgb8", 2, 2, 6, bytes(11)), "data"),
        (("32FC1", 2, 2, 8, bytes(17)), "data"),
        (("mono8", 2, 2, 2, "abcd"), "data"),
    ],
)
def test_malformed_images_raise_naming_the_field(fields: tuple, named: str) -> None:
    with pytest.raises(ImageFormatError, match=named) as info:
        to_rgb(*fields)
    assert isinstance(info.value, ValueError)
