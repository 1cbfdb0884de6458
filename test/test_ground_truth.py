"""Ground truth without the embedded simulator: the world's labelled objects read from the SDF alone
(m2vae_fusion.sim.truth) against what the simulator reports and an independent read of the file, and
the ground_truth node (Gazebo's stand-in for labels) as its own process following a /clock this test
publishes, over real DDS."""

from __future__ import annotations

import math
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.resources import config_path
from m2vae_fusion.sim import world_gen
from m2vae_fusion.sim.sdf import load_world
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_fusion.sim.truth import world_objects

CLASSES = default_labels().classes
REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
SHIPPED = sorted((REPO / "worlds").glob("*.sdf"))


def generated_world(tmp_path: Path) -> Path:
    # two robots and more objects than classes: repeated classes get instance names of their own
    return world_gen.write_world(tmp_path / "generated.sdf", seed=5, objects=12, robots=2)


def sdf_objects(path: Path) -> dict[str, tuple[str, float, float, float, float]]:
    """Name -> (class, x, y, z, yaw) of every class-named include, read from the XML without the loader."""
    found = {}
    for include in ET.parse(path).getroot().iter("include"):
        source = include.findtext("uri").removeprefix("model://")
        if source in CLASSES:
            x, y, z, roll, pitch, yaw = map(float, (include.findtext("pose") or "0 0 0 0 0 0").split())
            assert roll == pitch == 0.0, "objects stand upright"
            found[include.findtext("name") or source] = (source, x, y, z, yaw)
    return found


def robots_in(path: Path) -> set[str]:
    return {i.findtext("name") for i in ET.parse(path).getroot().iter("include") if i.findtext("uri") == "model://amiro"}


# ---------------------------------------------------------------- the objects of a world, no DDS


@pytest.mark.parametrize("world", [*SHIPPED, "generated"], ids=lambda w: getattr(w, "stem", w))
def test_world_objects_are_what_the_simulator_reports(world, tmp_path: Path) -> None:
    path = generated_world(tmp_path) if world == "generated" else world
    objects = world_objects(load_world(path, [MODELS]))
    robot = sorted(robots_in(path))[0]
    with Simulator(SimConfig(world=path, robot=robot, model_paths=(MODELS,), camera_size=(8, 8))) as sim:
        assert objects == sim.objects

    expected = sdf_objects(path)
    assert len(expected) >= 8 and len(objects) == len(expected)
    for o in objects:
        label, x, y, z, yaw = expected[o.name]
        assert (o.label, o.class_id) == (label, CLASSES.index(label))
        assert (o.colour, o.shape, o.surface) == tuple(
            default_labels().attribute_values(label)[k] for k in ("colour", "shape", "surface")
        )
        # the include's pose is the model's origin; z and yaw as the file says (yaw wrapped to (-pi, pi])
        assert (o.x, o.y, o.z) == pytest.approx((x, y, z), abs=1e-9)
        assert math.remainder(o.yaw - yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-9)
    # robots are in the world but not in the label space
    robots = robots_in(path)
    assert robots and not robots & {o.name for o in objects}


def test_repeated_classes_keep_their_instance_names(tmp_path: Path) -> None:
    objects = world_objects(load_world(generated_world(tmp_path), [MODELS]))
    names = [o.name for o in objects]
    assert len(set(names)) == len(names) == 12
    assert any(o.name != o.label for o in objects), "12 objects over 8 classes repeat a class"


def test_rate_default_is_the_sim_nodes() -> None:
    from m2vae_fusion.nodes.ground_truth import PARAMETERS
    from m2vae_fusion.nodes.sim import PARAMETERS as SIM_PARAMETERS

    assert PARAMETERS["rate_hz"].default == SIM_PARAMETERS["ground_truth_rate_hz"].default


def test_parameter_file_holds_known_valid_overrides() -> None:
    from m2vae_fusion.nodes.ground_truth import PARAMETERS

    params = yaml.safe_load(config_path("ground_truth.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) <= set(PARAMETERS), f"not parameters of ground_truth: {set(params) - set(PARAMETERS)}"
    for name, value in params.items():
        PARAMETERS[name].validate(name, value)


# ---------------------------------------------------------------- the node over real DDS

RATE_HZ = 4.0  # a short period keeps the test short; the schedule is the same at 1 Hz
CLOCK_STEP_S = 0.05  # simulated seconds per /clock message


def ground_truth_argv(world: Path | str, *ros_args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "m2vae_fusion.nodes.ground_truth",
        "--ros-args",
        "--params-file",
        str(config_path("ground_truth.yaml")),
        "-r",
        "__ns:=/robot1",
        "-p",
        "use_sim_time:=true",
        "-p",
        f"world:={world}",
        *ros_args,
    ]


class SimClock:
    """rclpy in this process: publishes /clock like a simulator and keeps every ground truth message."""

    def __init__(self, domain_id: int) -> None:
        from dds_probe import DdsProbe
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        from m2vae_fusion.ros_interface import topics
        from m2vae_msgs.msg import LabelledObjectArray

        self.probe = DdsProbe(domain_id, "test_ground_truth_clock", "ground_truth")
        node = self.probe.node
        self.topic = f"/robot1/{topics.GROUND_TRUTH.name}"
        self.Clock = Clock
        self.clock_pub = node.create_publisher(Clock, topics.CLOCK.name, topics.CLOCK.publisher_qos)
        # deeper than the latched depth 1 so no message is lost between spins
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.received: list = []
        node.create_subscription(LabelledObjectArray, self.topic, self.received.append, qos)
        self.now = 0.0

    def stamps(self) -> list[float]:
        return [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in self.received]

    def publish(self, t: float) -> None:
        from m2vae_fusion.ros_interface.stamps import from_seconds

        self.now = t
        self.clock_pub.publish(self.Clock(clock=from_seconds(t)))

    def run_until(self, end_s: float, proc, start_s: float | None = None) -> None:
        """Publish /clock from start_s (default: where it stands) up to end_s in CLOCK_STEP_S steps, a few
        wall milliseconds apart, spinning in between."""
        t = self.now if start_s is None else start_s
        self.publish(t)
        while t < end_s - 1e-9:
            t = round(t + CLOCK_STEP_S, 6)
            self.probe.spin_until(lambda: False, 0.01, proc, tick=lambda t=t: self.publish(t))
        self.probe.spin_until(lambda: False, 0.3, proc)  # the last messages arrive

    def close(self) -> None:
        self.probe.close()


@pytest.fixture
def sim_clock(ros_env):
    clock = SimClock(int(ros_env["ROS_DOMAIN_ID"]))
    yield clock
    clock.close()


def check_schedule(stamps: list[float], start: float, end: float) -> None:
    """One message per period of simulated time within [start, end]; each stamped from the clock, so on
    or just after its period's boundary."""
    period = 1.0 / RATE_HZ
    assert stamps, f"no ground truth while /clock ran from {start} to {end}"
    assert all(start - 1e-9 <= s <= end + 1e-9 for s in stamps), stamps
    assert all(b > a for a, b in zip(stamps, stamps[1:])), f"stamps not increasing: {stamps}"
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    # a callback may run a /clock message or two after its boundary on a loaded machine
    assert all(abs(g - period) <= 2 * CLOCK_STEP_S + 1e-6 for g in gaps), gaps
    assert abs(len(stamps) - (end - start) / period) <= 1.5, (len(stamps), stamps)


def test_node_follows_the_clock_and_survives_a_reset(processes, sim_clock) -> None:
    world = REPO / "worlds" / "arena_two_robots.sdf"
    proc = processes.start(*ground_truth_argv(world, "-p", f"rate_hz:={RATE_HZ}"))
    node = sim_clock.probe.node
    assert sim_clock.probe.spin_until(lambda: node.count_publishers(sim_clock.topic) > 0, 60, proc), "ground_truth never came up"
    # no /clock yet: time stands at zero, so several wall periods pass without a message
    sim_clock.probe.spin_until(lambda: False, 3 / RATE_HZ, proc)
    assert sim_clock.received == [], "published before the first /clock"

    sim_clock.run_until(3.0, proc, start_s=0.0)
    check_schedule(sim_clock.stamps(), 0.0, 3.0)
    msg = sim_clock.received[-1]
    assert msg.header.frame_id == "map"
    expected = world_objects(load_world(world, [MODELS]))
    got = [(o.name, o.label, o.class_id, o.colour, o.shape, o.surface) for o in msg.objects]
    assert got == [(o.name, o.label, o.class_id, o.colour, o.shape, o.surface) for o in expected]
    for o, e in zip(msg.objects, expected):
        q = o.pose.orientation
        yaw = math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))
        assert (o.pose.position.x, o.pose.position.y, o.pose.position.z, yaw) == pytest.approx((e.x, e.y, e.z, e.yaw), abs=1e-6)

    # the simulation is reset: /clock starts over from zero, and the node keeps publishing on it
    before = len(sim_clock.received)
    sim_clock.run_until(1.5, proc, start_s=0.0)
    check_schedule(sim_clock.stamps()[before:], 0.0, 1.5)
    assert proc.poll() is None


def test_scoreboard_ends_on_the_nodes_clock(processes, sim_clock) -> None:
    """The issue this node closes: beside a simulator without ground truth, `duration_s` ends the scoreboard."""
    world = REPO / "worlds" / "arena.sdf"
    truth = processes.start(*ground_truth_argv(world))
    scoreboard = processes.python(
        "-m", "m2vae_fusion.nodes.scoreboard", "--ros-args", "-p", "robots:=[robot1]", "-p", "duration_s:=3.0"
    )
    node = sim_clock.probe.node
    both = {"ground_truth": truth, "scoreboard": scoreboard}
    # publisher: the node; subscribers: this test and the scoreboard
    up = sim_clock.probe.spin_until(
        lambda: node.count_publishers(sim_clock.topic) and node.count_subscribers(sim_clock.topic) > 1, 60, both
    )
    assert up, "ground_truth or scoreboard never came up"
    deadline = time.monotonic() + 30
    while scoreboard.poll() is None and time.monotonic() < deadline:
        sim_clock.run_until(sim_clock.now + 1.0, truth)
    out = scoreboard.stdout.read() if scoreboard.poll() is not None else ""
    assert scoreboard.returncode == 0, f"scoreboard did not finish: {out}"
    assert "SUMMARY robot1: 0/8 objects classified correctly" in out


@pytest.mark.parametrize("case", ["missing", "malformed"])
def test_bad_world_is_named(processes, tmp_path: Path, case: str) -> None:
    if case == "missing":
        world, message = tmp_path / "no_such_world.sdf", "no_such_world.sdf is not a file"
    else:
        world = tmp_path / "broken.sdf"
        world.write_text('<sdf version="1.9"><world name="w"><include><uri>model://no_such_model</uri></include></world></sdf>')
        message = "model://no_such_model not found"
    proc = processes.start(*ground_truth_argv(world))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "parameter 'world'" in out and str(world.name) in out and message in out
