"""The AMiRo reading model (m2vae_fusion.perception.range_model): its formulas, Gazebo's quantisation, the
incidence estimated from a scan's profile (flat wall, cylinder, cube; noise-free and with Gazebo's 5 mm
range noise), the IR ring's incidence through the LiDAR, and the key claim of the Gazebo adapter: the
embedded simulator's own scans and its Gazebo-like raw scans, converted, give the encoders the same
features within the spread of the sensors' own noise (where they do not, the test says so)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from m2vae_fusion.perception import frames, range_model
from m2vae_fusion.perception.features import observe
from m2vae_fusion.perception.readings import Scan

REPO = Path(__file__).resolve().parents[1]
STEP = math.radians(1.0)
ANGLES = -math.pi + STEP * np.arange(360)  # the AMiRo LiDAR: 360 beams, 1 degree apart
DIRECTIONS = range_model.beam_directions(ANGLES)
GZ_RANGE_NOISE = 0.005  # models/amiro/model.sdf, the LiDAR's <noise><stddev>


# ---------------------------------------------------------------- the formulas


def test_reading_model_formulas():
    assert range_model.lidar_intensity(0.85, 0.5) == pytest.approx(0.425)
    d_ref = range_model.IR_REFERENCE_DISTANCE
    falloff = range_model.ir_falloff(np.array([0.01, d_ref, 2 * d_ref, np.inf, -np.inf]))
    np.testing.assert_allclose(falloff, [1.0, 1.0, 0.25, 0.0, 0.0])
    assert range_model.ir_reading(0.8, 0.5, 3 * d_ref) == pytest.approx(0.8 * 0.5 / 9)
    assert range_model.ir_reading(0.8, 1.0, 0.1, d_ref=0.05) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="d_ref"):
        range_model.ir_falloff(0.1, d_ref=0.0)


def test_gazebo_quantises_retro_in_16_bit_steps_of_2000():
    step = 2000 / 65535
    retro = np.array([0.25, 0.4, 0.5, 0.85])
    reported = range_model.gazebo_intensity(retro)
    np.testing.assert_allclose(reported / step, np.round(reported / step), atol=1e-9)  # on the grid
    assert np.all(np.abs(reported - retro) <= step / 2)
    assert np.all(reported != retro)  # none of the SDF's values lies on the grid
    np.testing.assert_allclose(range_model.gazebo_intensity([-1.0, 5000.0]), [0.0, 2000.0])


# ---------------------------------------------------------------- incidence from a scan's profile


def wall(distance: float, tilt: float) -> tuple[np.ndarray, np.ndarray]:
    """Ranges to the line n . p = distance (n at angle `tilt`) out to 4 m, and the true cos(incidence)."""
    c = np.cos(ANGLES - tilt)
    ranges = np.where(c > 0.05, distance / np.maximum(c, 1e-9), np.inf)
    ranges[ranges > 4.0] = np.inf
    return ranges, np.where(np.isfinite(ranges), np.abs(c), np.nan)


def cylinder(distance: float, radius: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Ranges to a cylinder centred `distance` ahead, and the true cos(incidence)."""
    b = -2 * distance * np.cos(ANGLES)
    disc = b * b - 4 * (distance**2 - radius**2)
    ranges = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0.0))) / 2, np.inf)
    ranges[ranges <= 0] = np.inf
    points = DIRECTIONS * np.where(np.isfinite(ranges), ranges, 0.0)[:, None]
    normals = points - (distance, 0.0)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return ranges, np.where(np.isfinite(ranges), range_model.incidence_cosines(normals, DIRECTIONS), np.nan)


def estimated(ranges: np.ndarray) -> np.ndarray:
    return range_model.incidence_cosines(range_model.surface_normals(ranges, ANGLES, closed=True), DIRECTIONS)


@pytest.mark.parametrize("tilt_deg", [0, 30, 60])
def test_flat_wall_incidence_noise_free_is_exact(tilt_deg):
    ranges, true = wall(0.5, math.radians(tilt_deg))
    est = estimated(ranges)
    near = np.isfinite(true) & (true > 0.3)  # steeper beams lie farther apart than a surface's jump
    np.testing.assert_allclose(est[near], true[near], atol=1e-6)


@pytest.mark.parametrize("distance", [0.16, 0.25, 0.5])
def test_cylinder_incidence_noise_free_is_exact(distance):
    ranges, true = cylinder(distance)
    est = estimated(ranges)
    seen = np.isfinite(true)
    assert seen.sum() >= 5
    np.testing.assert_allclose(est[seen], true[seen], atol=1e-6)  # the arc is fitted as an arc, even at its ends


def rms_errors(make, trials: int = 40) -> tuple[float, float, float]:
    """RMS error of the estimate and of assuming head-on (cos 1) under Gazebo's range noise, and the
    fraction of returns without an estimate."""
    rng = np.random.default_rng(7)
    errors, head_on, missing = [], [], []
    for _ in range(trials):
        ranges, true = make(rng)
        est = estimated(ranges + GZ_RANGE_NOISE * rng.standard_normal(len(ranges)))
        seen = np.isfinite(true)
        missing.append(~np.isfinite(est[seen]))
        ok = seen & np.isfinite(est)
        errors.append(est[ok] - true[ok])
        head_on.append(1.0 - true[seen])
    rms = [float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for v in (errors, head_on)]
    return rms[0], rms[1], float(np.mean(np.concatenate(missing)))


def test_incidence_under_gazebo_range_noise():
    """Measured (seed 7): wall 0.5-1 m at 0-60 degrees RMS 0.033 in cos (4 % of returns, grazing ones
    farther apart than GRAZING_SPACING beam steps, get no estimate); cylinder at 0.16-0.5 m RMS
    0.17, where assuming head-on errs by 0.30: a 3 cm radius carries few beams against 5 mm of noise."""
    wall_rms, wall_head_on, wall_missing = rms_errors(lambda rng: wall(rng.uniform(0.5, 1.0), rng.uniform(0, math.radians(60))))
    assert wall_rms < 0.05 and wall_rms < 0.2 * wall_head_on and wall_missing < 0.05, (wall_rms, wall_head_on, wall_missing)
    cyl_rms, cyl_head_on, cyl_missing = rms_errors(lambda rng: cylinder(rng.uniform(0.16, 0.5)))
    assert cyl_rms < 0.2 and cyl_rms < 0.6 * cyl_head_on and cyl_missing < 0.05, (cyl_rms, cyl_head_on, cyl_missing)


def test_surfaces_split_at_range_jumps():
    # a cylinder 0.3 m ahead in front of a wall 1 m away: no beam's fit may mix the two
    cyl, cyl_true = cylinder(0.3)
    back, back_true = wall(1.0, 0.0)
    ranges = np.where(np.isfinite(cyl), cyl, back)
    true = np.where(np.isfinite(cyl), cyl_true, back_true)
    est = estimated(ranges)
    seen = np.isfinite(true) & (true > 0.3)
    np.testing.assert_allclose(est[seen], true[seen], atol=1e-6)


def test_too_few_points_give_no_normal():
    ranges = np.full(360, np.inf)
    ranges[180:182] = 0.5  # two beams: a direction would be noise
    assert np.isnan(range_model.surface_normals(ranges, ANGLES)).all()


# ---------------------------------------------------------------- Gazebo scans converted


def scan_of(ranges: np.ndarray, intensities: np.ndarray, angles: np.ndarray, range_max: float, frame: str) -> Scan:
    step = float(angles[1] - angles[0])
    return Scan(
        ranges.astype(np.float32),
        intensities.astype(np.float32),
        float(angles[0]),
        float(angles[-1]),
        step,
        0.005,
        range_max,
        frame,
    )


def test_lidar_from_gazebo_restores_retro_times_cos():
    ranges, true = wall(0.5, math.radians(40))
    retro = 0.85
    raw = np.where(np.isfinite(ranges), range_model.gazebo_intensity(retro), 0.0)
    converted, fallbacks = range_model.lidar_from_gazebo(scan_of(ranges, raw, ANGLES, 4.0, "lidar_link"))
    near = np.isfinite(true) & (true > 0.3)
    np.testing.assert_allclose(converted.intensities[near], retro * true[near], atol=0.016)  # Gazebo's half step
    np.testing.assert_array_equal(converted.ranges, ranges.astype(np.float32))
    assert np.all(converted.intensities[~np.isfinite(ranges)] == 0)
    assert fallbacks == int((np.isfinite(ranges) & ~np.isfinite(estimated(ranges))).sum())


IR_ANGLES = np.radians(np.arange(-135, 181, 45))


def ir_on_wall(tilt: float, distance: float, base_to_ir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IR ranges from the ring (pose base_to_ir) to the wall n . p = distance in base_link, and the true cos."""
    n = np.array([math.cos(tilt), math.sin(tilt)])
    origin = base_to_ir[:2, 3]
    directions = range_model.beam_directions(IR_ANGLES) @ base_to_ir[:2, :2].T
    along = directions @ n
    ranges = np.where(along > 0.05, (distance - origin @ n) / np.maximum(along, 1e-9), np.inf)
    ranges[ranges > 0.25] = np.inf
    return ranges, np.where(np.isfinite(ranges), np.abs(along), np.nan)


def test_ir_incidence_comes_from_the_lidar_through_the_mountings():
    # mounted off-centre and turned, so that a transform left out shows
    base_to_lidar = frames.pose_matrix(0.02, 0.0, 0.09, 0, 0, 0.0)
    base_to_ir = frames.pose_matrix(-0.01, 0.005, 0.015, 0, 0, 0.4)
    tilt, distance = math.radians(25), 0.12
    lidar_ranges, _ = wall(distance - 0.02 * math.cos(tilt), tilt)  # the same wall, from the LiDAR's origin
    lidar = scan_of(lidar_ranges, np.zeros(360), ANGLES, 4.0, "lidar_link")
    ir_ranges, true = ir_on_wall(tilt, distance, base_to_ir)
    ir = scan_of(ir_ranges, np.zeros(8), IR_ANGLES, 0.25, "ir_link")
    assert np.isfinite(ir_ranges).sum() >= 3
    lidar_from_ir = frames.inverse(base_to_lidar) @ base_to_ir
    cosines = range_model.ir_incidence_cosines(ir, lidar, range_model.scan_normals(lidar), lidar_from_ir)
    seen = np.isfinite(true)
    np.testing.assert_allclose(cosines[seen], true[seen], atol=1e-6)
    assert np.isnan(cosines[~seen]).all()
    # without the mountings the hit points miss the LiDAR's surface: no estimate rather than a wrong one
    wrong = range_model.ir_incidence_cosines(ir, lidar, range_model.scan_normals(lidar), np.eye(4))
    assert not np.allclose(np.nan_to_num(wrong[seen]), true[seen], atol=1e-3)


def test_ir_points_the_lidar_does_not_see_fall_back_to_head_on():
    base_to_ir = frames.pose_matrix(0.0, 0.0, 0.015, 0, 0, 0.0)
    ir_ranges, true = ir_on_wall(0.3, 0.1, base_to_ir)
    retro = range_model.gazebo_intensity(0.4)
    ir = scan_of(ir_ranges, np.where(np.isfinite(ir_ranges), retro, 0.0), IR_ANGLES, 0.25, "ir_link")
    # low, like another robot's body: below the LiDAR's plane, which sees nothing there
    empty = scan_of(np.full(360, np.inf), np.zeros(360), ANGLES, 4.0, "lidar_link")
    lidar_from_ir = frames.pose_matrix(0, 0, -0.075, 0, 0, 0)
    for lidar in (empty, None):
        converted, fallbacks = range_model.ir_from_gazebo(ir, lidar, lidar_from_ir)
        seen = np.isfinite(ir_ranges)
        assert fallbacks == seen.sum() > 0
        expected = range_model.ir_reading(retro, range_model.FALLBACK_COS, ir_ranges[seen])
        np.testing.assert_allclose(converted.intensities[seen], expected, rtol=1e-6)


# ---------------------------------------------------------------- both simulators, the same features


def features(sim_scan: Scan, sim_ir: Scan, target, pose, base_to_lidar, base_to_ir):
    """The target's observation as the encoders cut it (perception.observe), or None if not found."""
    found = observe(None, sim_scan, sim_ir, base_to_lidar, base_to_ir, np.eye(4))
    where = frames.apply(frames.inverse(frames.planar(pose.x, pose.y, pose.yaw)), (target.x, target.y, 0.0))[:2]
    best = min(found, key=lambda o: float(np.hypot(*(o.position[:2] - where))), default=None)
    return best if best is not None and np.hypot(*(best.position[:2] - where)) < 0.03 else None


PARTS = {
    "lidar depth": lambda o: o.lidar[0],
    "lidar intensity": lambda o: o.lidar[1],
    "lidar view": lambda o: o.lidar.reshape(-1),
    "ir readings": lambda o: None if o.ir is None else o.ir[0::2],
    "ir view": lambda o: o.ir,
}


def both_simulators():
    """The arena in the embedded simulator twice: its own readings, and Gazebo's raw ones (range_output
    gazebo); with base -> LiDAR, base -> IR and the IR frame in the LiDAR's."""
    from m2vae_fusion.sim.simulator import SimConfig, Simulator

    world, models, small = REPO / "worlds" / "arena.sdf", (REPO / "models",), (8, 8)
    amiro = Simulator(SimConfig(world=world, seed=1, camera_size=small, model_paths=models))
    gazebo = Simulator(SimConfig(world=world, seed=2, camera_size=small, model_paths=models, range_output="gazebo"))
    mounts = amiro.static_transforms()
    base_to_lidar, base_to_ir = frames.lookup(mounts, "base_link", "lidar_link"), frames.lookup(mounts, "base_link", "ir_link")
    return amiro, gazebo, base_to_lidar, base_to_ir, frames.inverse(base_to_lidar) @ base_to_ir


@pytest.fixture(scope="module")
def feature_spread() -> dict[str, dict[str, float]]:
    """Per feature part: RMS deviation from the mean of N embedded (AMiRo model) scans of the embedded
    scans themselves (their noise spread, unbiased), of Gazebo-like raw scans converted by the adapter's
    maths, and of the raw scans unconverted; over every class at the collection distances."""
    from m2vae_fusion.sim.viewpoints import ViewpointRange, sample_viewpoint

    amiro, gazebo, base_to_lidar, base_to_ir, lidar_from_ir = both_simulators()
    rng, n_embedded, n_gazebo = np.random.default_rng(0), 6, 3
    squares: dict[str, dict[str, list[float]]] = {part: {"embedded": [], "adapter": [], "raw": []} for part in PARTS}
    with amiro, gazebo:
        for target in amiro.objects:
            for distance in (0.16, 0.2, 0.25, 0.35, 0.5):  # sim.collect's near (IR) and far ranges
                pose = sample_viewpoint(amiro, target, rng, ViewpointRange(distance, distance, 0.1, far_fraction=0.0))
                for sim in (amiro, gazebo):
                    sim.set_robot_pose(pose.x, pose.y, pose.yaw)
                embedded = [
                    features(amiro.lidar(), amiro.ir(), target, pose, base_to_lidar, base_to_ir) for _ in range(n_embedded)
                ]
                adapted, raw = [], []
                for _ in range(n_gazebo):
                    scan, ir = gazebo.lidar(), gazebo.ir()
                    converted_ir = range_model.ir_from_gazebo(ir, scan, lidar_from_ir)[0]
                    adapted.append(
                        features(range_model.lidar_from_gazebo(scan)[0], converted_ir, target, pose, base_to_lidar, base_to_ir)
                    )
                    raw.append(features(scan, ir, target, pose, base_to_lidar, base_to_ir))
                assert all(o is not None for o in embedded + adapted + raw), (target.label, distance)
                for part, take in PARTS.items():
                    views = {
                        name: [take(o) for o in obs] for name, obs in (("embedded", embedded), ("adapter", adapted), ("raw", raw))
                    }
                    if any(v is None for vs in views.values() for v in vs):
                        continue  # beyond the IR ring's reach
                    mean = np.mean(views["embedded"], axis=0)
                    for name, vs in views.items():
                        unbiased = n_embedded / (n_embedded - 1) if name == "embedded" else 1.0
                        squares[part][name].append(float(np.mean((np.asarray(vs) - mean) ** 2)) * unbiased)
    return {
        part: {name: math.sqrt(np.mean(v)) for name, v in by.items()} | {"views": len(by["embedded"])}
        for part, by in squares.items()
    }


def test_ir_features_agree_within_the_sensor_noise(feature_spread):
    """Measured: IR readings RMS 0.015 adapter vs 0.015 noise spread (raw Gazebo 0.29); the whole IR
    view 0.011 vs 0.011."""
    for part in ("ir readings", "ir view"):
        figures = feature_spread[part]
        assert figures["views"] >= 20, figures  # 8 classes at the three near distances
        assert figures["adapter"] <= 1.3 * figures["embedded"], (part, figures)
        assert figures["raw"] > 3 * figures["embedded"], (part, figures)  # the check can tell


def test_lidar_geometry_agrees_and_intensity_is_closer_than_raw(feature_spread):
    """Measured: depth row RMS 0.049 adapter vs 0.051 noise spread; intensity row 0.077 adapter vs 0.126
    raw Gazebo, against a noise spread of 0.019: closer, but not within the noise (next test)."""
    depth, intensity = feature_spread["lidar depth"], feature_spread["lidar intensity"]
    assert depth["views"] == 40
    assert depth["adapter"] <= 1.2 * depth["embedded"], depth
    assert intensity["adapter"] < 0.75 * intensity["raw"], intensity


@pytest.mark.xfail(
    strict=True,
    reason="the LiDAR intensity row errs ~4x beyond the noise spread: cos(incidence) from 5 mm-noisy ranges over "
    "a 3 cm object (docs/gazebo.md); record and train on Gazebo data instead",
)
def test_lidar_intensity_agrees_within_the_sensor_noise(feature_spread):
    intensity = feature_spread["lidar intensity"]
    assert intensity["adapter"] <= 1.5 * intensity["embedded"], intensity


# ---------------------------------------------------------------- what the shipped model decides


def attribute_accuracy(repeats: int = 3) -> dict[tuple[str, str, str], float]:
    """(scans, band, attribute) -> rate at which the shipped model's LiDAR (+ IR, near) belief names the
    object's shape and surface right, over every class of the arena at the collection distances: from
    the embedded scans, from Gazebo-like raw scans converted by the adapter's maths, and raw."""
    from m2vae_fusion.model.perception_model import PerceptionModel
    from m2vae_fusion.resources import default_model_dir
    from m2vae_fusion.sim.viewpoints import ViewpointRange, sample_viewpoint

    model = PerceptionModel.load(default_model_dir())
    attributes = dict(model.labels.attributes)
    amiro, gazebo, base_to_lidar, base_to_ir, lidar_from_ir = both_simulators()
    rng = np.random.default_rng(0)
    right: dict[tuple[str, str, str], list[bool]] = {}
    with amiro, gazebo:
        for target in amiro.objects:
            truth = model.labels.attribute_values(target.label)
            for distance in (0.16, 0.2, 0.25, 0.35, 0.5):
                band = "near" if distance <= 0.25 else "far"  # near: the IR ring reaches it
                for _ in range(repeats):
                    pose = sample_viewpoint(amiro, target, rng, ViewpointRange(distance, distance, 0.1, far_fraction=0.0))
                    for sim in (amiro, gazebo):
                        sim.set_robot_pose(pose.x, pose.y, pose.yaw)
                    scan, ir = gazebo.lidar(), gazebo.ir()
                    adapted = (range_model.lidar_from_gazebo(scan)[0], range_model.ir_from_gazebo(ir, scan, lidar_from_ir)[0])
                    scans = {"embedded": (amiro.lidar(), amiro.ir()), "adapter": adapted, "raw": (scan, ir)}
                    for name, (lidar, ring) in scans.items():
                        o = features(lidar, ring, target, pose, base_to_lidar, base_to_ir)
                        if o is None:  # the object not found in the scan: no decision, none right
                            for attribute in attributes:
                                right.setdefault((name, band, attribute), []).append(False)
                            continue
                        sensed = {"lidar": model.features("lidar", o.lidar.reshape(1, -1))}
                        if band == "near" and o.ir is not None:
                            sensed["ir"] = model.features("ir", np.asarray(o.ir).reshape(1, -1))
                        p = model.class_probabilities(model.encode(sensed).mean.numpy())[0]
                        for attribute, marginal in model.labels.marginals(p).items():
                            named = attributes[attribute][int(np.argmax(marginal))]
                            right.setdefault((name, band, attribute), []).append(named == truth[attribute])
    return {key: float(np.mean(v)) for key, v in right.items() if key[2] in ("shape", "surface")}


def test_the_shipped_model_reads_adapted_gazebo_scans_about_as_it_reads_its_own():
    """The figure a user cares about (24 repeats, docs/gazebo.md): shape / surface right .97 / 1.00 near
    and .89 / 1.00 far from embedded scans, .93 / .98 and .78 / .98 from adapted ones, .71 / .60 and
    .66 / 1.00 from raw Gazebo scans. Surface comes through, and shape near the object, where the IR
    ring helps; shape from the LiDAR alone (far) loses about .1, through the intensity row (above),
    which is not asserted here."""
    rate = attribute_accuracy(repeats=6)
    print({"/".join(k): round(v, 3) for k, v in sorted(rate.items())})
    for band in ("near", "far"):
        assert rate[("adapter", band, "surface")] >= rate[("embedded", band, "surface")] - 0.05, rate
    assert rate[("adapter", "near", "shape")] >= rate[("embedded", "near", "shape")] - 0.1, rate
    # without the adapter the IR ring's readings mislead near surface and shape (the checks can tell)
    assert rate[("raw", "near", "surface")] < rate[("embedded", "near", "surface")] - 0.2, rate
    assert rate[("raw", "near", "shape")] < rate[("adapter", "near", "shape")] - 0.1, rate
