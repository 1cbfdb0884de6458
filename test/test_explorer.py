"""The demo's exploration behaviour: in the embedded simulator (no DDS) it looks at every object of the
arena from several sides at the model's training distance without pushing into anything; its geometry
rules on their own; config/explorer.yaml holds only valid overrides of the node's parameter table."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from m2vae_fusion.behaviour.explorer import REMEMBERED_SCANS, Assessment, Explorer, ExplorerConfig
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.nodes.explorer import scan_returns
from m2vae_fusion.perception import frames
from m2vae_fusion.perception.lidar_objects import detect_objects
from m2vae_fusion.resources import config_path
from m2vae_fusion.sim.simulator import SimConfig, Simulator

REPO = Path(__file__).resolve().parents[1]


def explore(world: Path, seconds: float, robot: str = "amiro", dt: float = 0.05) -> tuple[dict[str, set[int]], int, Explorer]:
    """Run the explorer on the simulator's odometry and LiDAR; returns per object the sides (30-degree
    bins of the angle object -> robot) it was looked at from at 0.16-0.25 m, facing it within 0.15 rad;
    and how many control steps a command to move was blocked by an obstacle."""
    with Simulator(SimConfig(world=world, robot=robot, seed=0)) as sim:
        mounting = frames.lookup(sim.static_transforms(), "base_link", "lidar_link")
        explorer = Explorer()
        sides: dict[str, set[int]] = {o.name: set() for o in sim.objects}
        blocked = 0
        for k in range(round(seconds / dt)):
            odometry = sim.odometry()
            if k % 2 == 0:  # the LiDAR's 10 Hz
                scan = sim.lidar()
                points = [frames.apply(mounting, [c.x, c.y, 0.0])[:2] for c in detect_objects(scan)]
                explorer.observe(
                    odometry.x, odometry.y, odometry.yaw, np.array(points).reshape(-1, 2), scan_returns(scan, mounting)
                )
                pose = sim.robot_pose
                for o in sim.objects:
                    distance = math.hypot(o.x - pose.x, o.y - pose.y)
                    bearing = (math.atan2(o.y - pose.y, o.x - pose.x) - pose.yaw + math.pi) % (2 * math.pi) - math.pi
                    if 0.16 <= distance <= 0.25 and abs(bearing) < 0.15:
                        sides[o.name].add(round(math.degrees(math.atan2(pose.y - o.y, pose.x - o.x)) / 30) % 12)
            linear, angular = explorer.step(odometry.x, odometry.y, odometry.yaw, k * dt)
            before = sim.robot_pose
            sim.set_cmd_vel(linear, angular)
            sim.step(dt)
            blocked += int(linear != 0 and sim.robot_pose == before)
    return sides, blocked, explorer


@pytest.mark.slow
def test_looks_at_every_object_from_several_sides() -> None:
    sides, blocked, explorer = explore(REPO / "worlds" / "arena.sdf", seconds=150.0)
    assert blocked == 0
    assert {name: len(s) for name, s in sides.items()} == {name: len(s) for name, s in sides.items() if len(s) >= 2}, sides
    assert len(sides) == 8 and explorer.views_taken >= 8 * 3


@pytest.mark.slow
def test_two_robots_between_them_look_at_every_object_of_a_wider_arena() -> None:
    # arena_two_robots: objects up to 1.4 m out, some 10 cm from a wall, the other robot standing in the way
    sides = [explore(REPO / "worlds" / "arena_two_robots.sdf", seconds=180.0, robot=robot)[0] for robot in ("amiro_1", "amiro_2")]
    assert all(sides[0][name] or sides[1][name] for name in sides[0]), sides


def test_a_candidate_on_a_wall_is_not_visited() -> None:
    explorer = Explorer()
    wall = np.stack([np.full(61, 0.8), np.linspace(-0.6, 0.6, 61)], axis=1)  # a wall 0.8 m ahead
    for _ in range(5):
        explorer.observe(0.0, 0.0, 0.0, np.array([[0.83, 0.1]]), wall)  # a piece of it taken for an object
    assert explorer.step(0.0, 0.0, 0.0, 0.0) == (0.0, pytest.approx(0.5)) and explorer.landmarks[0].wall is True
    free = Explorer()
    for _ in range(5):
        free.observe(0.0, 0.0, 0.0, np.array([[0.83, 0.1]]), np.array([[0.80, 0.1], [0.81, 0.12], [0.81, 0.08]]))
    free.step(0.0, 0.0, 0.0, 0.0)
    assert free.landmarks[0].wall is False and free.plan


@pytest.mark.parametrize("gap", [0.08, 0.09, 0.1])
@pytest.mark.parametrize("along", [0.0, 0.01, 0.017])
def test_an_object_next_to_a_wall_is_still_visited(gap: float, along: float) -> None:
    # world_gen leaves 5-9 cm between an object's centre estimate and a wall's inner face (the demo's red
    # cube: 9 cm); that wall crosses the ring on one side only, unlike a piece of the wall itself
    explorer = Explorer()
    wall = np.stack([np.full(121, 0.6 + gap), np.linspace(-0.6, 0.6, 121) + along], axis=1)
    surface = 0.6 - 0.03 * np.stack([np.cos(np.linspace(-1, 1, 9)), -np.sin(np.linspace(-1, 1, 9))], axis=1)
    for _ in range(5):
        explorer.observe(0.0, 0.0, 0.0, np.array([[0.6, along]]), np.concatenate([wall, surface + (0, along)]))
    explorer.step(0.0, 0.0, 0.0, 0.0)
    assert explorer.landmarks[0].wall is False and explorer.plan


@pytest.mark.parametrize("behind", [0.02, 0.03, 0.04])
@pytest.mark.parametrize("seen", ["both sides", "one side"])
def test_a_piece_of_wall_is_a_wall_however_far_behind_it_the_centre_is_put(behind: float, seen: str) -> None:
    # the grid holds the newest scans only: they may have seen the wall on one side of the candidate
    explorer = Explorer()
    wall = np.stack([np.full(121, 0.8), np.linspace(-0.6, 0.6, 121)], axis=1)
    if seen == "one side":
        wall = wall[wall[:, 1] > 0.03]
    for _ in range(5):
        explorer.observe(0.0, 0.0, 0.0, np.array([[0.8 + behind, 0.013]]), wall)
    explorer.step(0.0, 0.0, 0.0, 0.0)
    assert explorer.landmarks[0].wall is True and not explorer.plan


def test_a_jammed_robot_backs_off_and_gives_no_object_up() -> None:
    # pushed against a wall 4 cm ahead, with the only object behind that wall: no path starts from here
    explorer = Explorer()
    wall = np.stack([np.full(41, 0.04), np.linspace(-0.4, 0.4, 41)], axis=1)
    for _ in range(5):
        explorer.observe(0.0, 0.0, 0.0, np.array([[0.5, 0.0]]), wall)
    linear, angular = explorer.step(0.0, 0.0, 0.0, 0.0)
    assert not explorer.plan and explorer.landmarks[0].failed_rounds == 0
    assert linear == 0.0 and abs(angular) == pytest.approx(explorer.config.angular_speed)  # turning away first
    linear, angular = explorer.step(0.0, 0.0, math.pi, 0.1)
    assert linear > 0 and abs(angular) < 0.5  # then off, away from the wall


def test_waits_and_turns_while_nothing_is_known() -> None:
    explorer = Explorer()
    assert explorer.step(0.0, 0.0, 0.0, 0.0) == (0.0, pytest.approx(0.5))
    explorer.observe(0.0, 0.0, 0.0, np.array([[0.5, 0.0]]))
    assert explorer.step(0.0, 0.0, 0.0, 0.1)[0] == 0.0  # seen once: not yet a target (min_sightings 3)


def test_goes_to_the_near_side_then_faces_the_object_and_dwells() -> None:
    explorer = Explorer(ExplorerConfig(dwell_s=1.0))
    for _ in range(3):
        explorer.observe(0.0, 0.0, 0.0, np.array([[0.6, 0.0]]))
    linear, angular = explorer.step(0.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(explorer.plan[0].position, [0.4, 0.0], atol=1e-12)  # the side facing the robot first
    assert linear > 0 and angular == pytest.approx(0.0)
    # at the viewpoint, facing away: turn on the spot toward the object
    linear, angular = explorer.step(0.4, 0.0, math.pi, 1.0)
    assert linear == 0.0 and abs(angular) == pytest.approx(explorer.config.angular_speed)
    assert explorer.step(0.4, 0.0, 0.0, 2.0) == (0.0, 0.0) and explorer.dwell_until == pytest.approx(3.0)
    assert explorer.step(0.4, 0.0, 0.0, 2.5) == (0.0, 0.0) and explorer.views_taken == 0
    explorer.step(0.4, 0.0, 0.0, 3.1)
    assert explorer.views_taken == 1 and len(explorer.plan) == 2


def test_a_path_through_an_object_gets_a_detour_beside_it() -> None:
    explorer = Explorer()
    for _ in range(3):
        explorer.observe(0.0, 0.0, 0.0, np.array([[0.5, 0.0], [1.0, 0.0]]))
    (waypoint,) = explorer._detours(np.array([0.0, 0.0]), np.array([0.8, 0.0]))
    assert math.hypot(*(waypoint - np.array([0.5, 0.0]))) == pytest.approx(explorer.config.view_distance)
    assert abs(waypoint[1]) > explorer.config.clearance
    assert explorer._detours(np.array([0.0, 0.3]), np.array([0.8, 0.3])) == []


def test_an_unreachable_viewpoint_is_given_up() -> None:
    explorer = Explorer(ExplorerConfig(stuck_timeout_s=2.0))
    for _ in range(3):
        explorer.observe(0.0, 0.0, 0.0, np.array([[0.6, 0.0]]))
    explorer.step(0.0, 0.0, 0.0, 0.0)
    first = explorer.plan[0]
    for t in np.arange(0.1, 2.6, 0.1):  # the robot does not move
        explorer.step(0.0, 0.0, 0.0, float(t))
    assert explorer.plan and explorer.plan[0] is not first and explorer.landmarks[0].failed_rounds == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"view_distance": 0.0}, "view_distance"),
        ({"views_per_object": 0}, "views_per_object"),
        ({"dwell_s": -1.0}, "dwell_s"),
        ({"clearance": 0.3}, "clearance"),
        ({"linear_speed": math.nan}, "linear_speed"),
        ({"policy": "greedy"}, "policy"),
        ({"gain_threshold": 0.0}, "gain_threshold"),
    ],
)
def test_bad_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"explorer.{field}"):
        ExplorerConfig(**changes)


def test_yaml_holds_known_valid_overrides() -> None:
    from m2vae_fusion.nodes.explorer import PARAMETERS

    params = yaml.safe_load(config_path("explorer.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) <= set(PARAMETERS), f"not parameters of explorer: {set(params) - set(PARAMETERS)}"
    for name, value in params.items():
        PARAMETERS[name].validate(name, value)


def test_the_explorers_views_yield_what_it_expects_of_them() -> None:
    # the demo's encoders (config/encoders.yaml) must see an object from view_distance with every sensor,
    # and from far_view_distance with far_view_modalities alone; and the fusion node must estimate both
    from m2vae_fusion.benchmarks.explore_episode import EncoderGates
    from m2vae_fusion.model.config import MODALITIES
    from m2vae_fusion.nodes.fusion import PARAMETERS as FUSION
    from m2vae_fusion.perception.lidar_objects import Candidate

    params = yaml.safe_load(config_path("explorer.yaml").read_text())["/**"]["ros__parameters"]
    config = ExplorerConfig(**params)
    gates = {m: EncoderGates.of(m) for m in MODALITIES}

    def seen_from(distance: float) -> frozenset[str]:
        ahead = Candidate(0.0, distance, distance, 0.0, 0.06, 0, 8, 9, 0.5)
        return frozenset(m for m, gate in gates.items() if gate.admits(ahead))

    assert seen_from(config.view_distance) == frozenset(MODALITIES)
    assert seen_from(config.far_view_distance) == config.far_modalities == {"camera"}
    candidates = {frozenset(c.split("+")) for c in FUSION["gain_candidates"].default}
    assert {frozenset(MODALITIES), config.far_modalities} <= candidates


def test_table_takes_defaults_and_ranges_from_explorer_config() -> None:
    from m2vae_fusion.nodes.explorer import PARAMETERS

    config = ExplorerConfig()
    assert all(PARAMETERS[f.name].default == getattr(config, f.name) for f in dataclasses.fields(ExplorerConfig))
    assert (
        PARAMETERS["dwell_s"].range_text(),
        PARAMETERS["clearance"].range_text(),
        PARAMETERS["min_sightings"].range_text(),
    ) == (">= 0", "> 0", ">= 1")


# --- the policies, on hand-built situations: objects known from the scans, beliefs given as assessments ---


def _known(policy: str, *objects: tuple[float, float], **config) -> Explorer:
    """An explorer that has seen each object (odom x, y) often enough to visit it, in an empty room."""
    explorer = Explorer(ExplorerConfig(policy=policy, **config))
    centres = np.array(objects, float).reshape(-1, 2)
    # the LiDAR's returns of each object's face toward the robot at the origin, 3 cm before its centre
    toward = -centres / np.linalg.norm(centres, axis=1, keepdims=True)
    across = np.stack([-toward[:, 1], toward[:, 0]], axis=1)
    surface = np.concatenate([centres + 0.03 * toward + k * 0.01 * across for k in (-1, 0, 1)])
    for _ in range(3):
        explorer.observe(0.0, 0.0, 0.0, centres, surface)
    return explorer


def _assessment(x: float, y: float, entropy: float, gain: float) -> Assessment:
    """A belief whose look with every sensor is expected to gain `gain`."""
    return Assessment(np.array([x, y]), entropy, {frozenset({"camera", "lidar", "ir"}): gain})


def _chosen(explorer: Explorer, now: float = 0.0) -> tuple[int, str]:
    explorer.step(0.0, 0.0, 0.0, now)
    choice = explorer.choices[-1]
    assert explorer.plan and explorer.plan[0].landmark == choice.landmark
    return choice.landmark, choice.reason


def test_tour_looks_from_every_side_whatever_the_beliefs_say() -> None:
    explorer = _known("tour", (0.5, 0.0), (1.0, 0.5))
    explorer.assess([_assessment(0.5, 0.0, 0.0, 0.0)], classes=8)  # sure of the near one: tour does not care
    assert _chosen(explorer) == (0, "tour") and len(explorer.plan) == explorer.config.views_per_object


def test_entropy_takes_unseen_objects_first_then_unsure_ones_and_skips_sure_ones() -> None:
    explorer = _known("entropy", (0.5, 0.0), (1.0, 0.5), (-0.8, 0.0))
    explorer.assess([_assessment(0.5, 0.0, 0.05, 0.0), _assessment(-0.8, 0.0, 1.2, 0.0)], classes=8)
    assert _chosen(explorer) == (1, "unseen") and len(explorer.plan) == 1  # farther, but never sensed; one side
    explorer.plan.clear()
    explorer.assess([_assessment(0.5, 0.0, 0.05, 0.0), _assessment(-0.8, 0.0, 1.2, 0.0), _assessment(1.0, 0.5, 0.1, 0.0)], 8)
    assert _chosen(explorer) == (2, "unsure")  # the near one is sure: left alone


def test_active_takes_the_largest_gain_per_second_and_leaves_objects_with_none() -> None:
    explorer = _known("active", (0.5, 0.0), (1.5, 0.0))
    explorer.assess([_assessment(0.5, 0.0, 0.7, 0.5), _assessment(1.5, 0.0, 0.7, 0.6)], classes=8)
    assert _chosen(explorer) == (0, "gain")  # a little less gain, much less travel
    choice = explorer.choices[-1]
    expected = 0.5 / ((0.5 - explorer.config.view_distance) / explorer.config.linear_speed + explorer.config.dwell_s)
    assert choice.gain == 0.5 and choice.score == pytest.approx(expected) and choice.class_entropy == 0.7
    assert choice.distance == explorer.config.view_distance  # these beliefs name no far sensing: no far look
    explorer.plan.clear()
    explorer.assess([_assessment(0.5, 0.0, 0.7, 0.5), _assessment(1.5, 0.0, 0.7, 3.0)], classes=8)
    assert _chosen(explorer) == (1, "gain")  # worth the trip
    explorer.plan.clear()
    explorer.assess([_assessment(0.5, 0.0, 0.7, 0.01), _assessment(1.5, 0.0, 0.1, 0.02)], classes=8)
    assert _chosen(explorer) == (0, "unsure")  # no gain left anywhere: an unsure belief is looked at again
    explorer.plan.clear()
    explorer.assess([_assessment(0.5, 0.0, 0.1, 0.01), _assessment(1.5, 0.0, 0.1, 0.02)], classes=8)
    assert _chosen(explorer)[1] == "tour"  # nothing left to learn: the tour goes on, the robot never idles


def test_active_values_an_unseen_object_by_the_first_look_gain() -> None:
    explorer = _known("active", (0.5, 0.0), (1.0, 0.0))
    explorer.assess([_assessment(0.5, 0.0, 0.9, 0.2)], classes=8)
    assert _chosen(explorer) == (1, "unseen") and explorer.choices[-1].gain == pytest.approx(math.log(8))
    explorer = _known("active", (0.5, 0.0), (1.0, 0.0), first_look_gain=0.1)
    explorer.assess([_assessment(0.5, 0.0, 0.9, 0.2)], classes=8)
    assert _chosen(explorer) == (0, "gain")  # a first look is set to be worth less than what is left to learn here


def _far(x: float, y: float, entropy: float, near: float, far: float) -> Assessment:
    """A belief with the gains of a look by every sensor (near) and by the camera alone (far)."""
    gains = {frozenset({"camera", "lidar", "ir"}): near, frozenset({"camera"}): far}
    return Assessment(np.array([x, y]), entropy, gains)


def test_active_looks_from_afar_when_the_camera_is_expected_to_do_and_goes_near_when_only_the_lidar_can_tell() -> None:
    explorer = _known("active", (1.0, 0.0))
    config = explorer.config
    # the colour is what the belief is unsure of: the camera from afar tells it nearly as well
    explorer.assess([_far(1.0, 0.0, 0.7, near=0.65, far=0.6)], classes=8)
    assert _chosen(explorer) == (0, "gain") and explorer.choices[-1].distance == config.far_view_distance
    np.testing.assert_allclose(explorer.plan[0].position, [1.0 - config.far_view_distance, 0.0], atol=1e-12)
    explorer.plan.clear()
    # colour known, the shape (cube or cylinder) not: only the LiDAR, close up, can tell
    explorer.assess([_far(1.0, 0.0, 0.69, near=0.6, far=0.01)], classes=8)
    assert _chosen(explorer) == (0, "gain") and explorer.choices[-1].distance == config.view_distance
    # from the next side round the object (the tour's rule: new sides first)
    assert np.linalg.norm(explorer.plan[0].position - [1.0, 0.0]) == pytest.approx(config.view_distance)


def test_active_takes_a_first_look_from_near_and_no_far_look_past_another_object() -> None:
    explorer = _known("active", (1.0, 0.0))
    explorer.assess([], classes=8)
    assert _chosen(explorer) == (0, "unseen") and explorer.choices[-1].distance == explorer.config.view_distance
    # another object in the far viewpoint's line of sight: from the near side then, and no failure counted
    hidden = _known("active", (1.0, 0.0), (0.75, 0.0))
    hidden.assess([_far(1.0, 0.0, 0.7, near=0.65, far=0.6), _assessment(0.75, 0.0, 0.0, 0.0)], classes=8)
    assert _chosen(hidden) == (0, "gain") and hidden.choices[-1].distance == hidden.config.view_distance
    assert hidden.landmarks[0].failed_rounds == 0


def test_far_views_are_validated() -> None:
    with pytest.raises(ConfigError, match="far_view_distance"):
        ExplorerConfig(far_view_distance=0.1)
    with pytest.raises(ConfigError, match="far_view_modalities"):
        ExplorerConfig(far_view_modalities=" + ")
    assert ExplorerConfig(far_view_distance=0.0, far_view_modalities="").far_view_distance == 0


def test_belief_driven_policies_leave_claimed_and_just_viewed_objects() -> None:
    for policy in ("entropy", "active"):
        explorer = _known(policy, (0.5, 0.0), (1.0, 0.5))
        explorer.claim([np.array([0.52, 0.01])])  # another robot is heading to the near one
        assert _chosen(explorer)[0] == 1, policy
        explorer.plan.clear()
        explorer.claim([])
        explorer.landmarks[0].viewed_at = 9.0
        assert _chosen(explorer, now=10.0)[0] == 1, policy  # viewed a second ago
        explorer.plan.clear()
        assert _chosen(explorer, now=9.0 + explorer.config.revisit_after_s)[0] == 0, policy


def test_belief_driven_policies_stop_looking_at_what_never_gets_a_belief() -> None:
    # another robot standing still, say: the LiDAR takes it for an object, the encoders never send a belief
    for policy in ("entropy", "active"):
        explorer = _known(policy, (0.5, 0.0), (1.5, 0.0))
        explorer.assess([], classes=8)
        explorer.landmarks[0].looks = 1
        assert _chosen(explorer) == (1, "unseen"), policy
        explorer.plan.clear()
        explorer.landmarks[1].looks = 1
        assert _chosen(explorer)[1] == "tour", policy  # nothing left but the tour


def test_belief_driven_policies_skip_an_unseen_object_the_scans_no_longer_show_where_it_should_be() -> None:
    surface = np.array([[0.47, 0.0], [0.475, 0.01], [0.475, -0.01]])
    for policy in ("entropy", "active"):
        explorer = _known(policy, (0.5, 0.0), (0.9, 0.0))
        for _ in range(REMEMBERED_SCANS):  # the newest scans show the far one's surface, nothing at the near one
            explorer.observe(0.0, 0.0, 0.0, np.zeros((0, 2)), surface + (0.4, 0.0))
        explorer.assess([], classes=8)
        assert _chosen(explorer) == (1, "unseen"), policy
        explorer.plan.clear()
        for _ in range(3):
            explorer.observe(0.0, 0.0, 0.0, np.zeros((0, 2)), np.concatenate([surface, surface + (0.4, 0.0)]))
        assert _chosen(explorer) == (0, "unseen"), policy  # there again: the nearer first


def test_target_is_the_object_being_visited() -> None:
    explorer = _known("active", (0.5, 0.0))
    assert explorer.target is None
    explorer.step(0.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(explorer.target, [0.5, 0.0])


def test_non_finite_beliefs_and_claims_are_ignored() -> None:
    explorer = _known("active", (0.5, 0.0), (1.0, 0.5))
    nan = float("nan")
    explorer.claim([np.array([nan, nan]), np.array([1.0, 0.5])])  # a broken robot's target blocks nothing
    explorer.assess([_assessment(0.5, 0.0, nan, 0.5), _assessment(nan, 0.0, 0.5, 0.5), _assessment(0.5, 0.0, 0.4, math.inf)], 8)
    assert len(explorer.claims) == 1 and explorer.landmarks[0].assessment is None
    assert _chosen(explorer) == (0, "unseen")
