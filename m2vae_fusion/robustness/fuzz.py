"""`m2vae fuzz`: adversarial messages against the running node graph.

Starts the simulated robots' node graph headless (bringup.graph.sim_description, each node its
own process) on a fresh ROS_DOMAIN_ID with loopback-only DDS, so no other ROS 2 system hears the
garbage. Once every encoder and fusion node reports on /diagnostics, each fusion node publishes its
beliefs in map (it takes latents in map only) and each robot's sensors have sent a scan, an image and
an IR reading to start from, it publishes --messages adversarial messages,
drawn evenly and seeded from CASES, onto the robots' `scan`, `camera/image_raw` and `ir/scan` and
onto /shared/latents, while the graph keeps running on its simulated sensors. Each case breaks one
thing (NaN / negative ranges, empty and huge scans, wrong image encoding / step / size, zero-size and
huge images, unknown frames, out-of-order and future stamps; latents of the wrong size, NaN/inf,
absurd magnitudes, another model, unknown modalities, echoes, other frames, future stamps, replays,
floods from one robot id and from many made-up ones) and names the counter on /diagnostics that the
receiving nodes must raise for it.

Flow control: the nodes publish their counters every FAST_DIAGNOSTICS_S during the run; a message
goes out only while each node it is for has fewer than WINDOW of the fuzz's messages not yet
counted, so the sensor topics' best-effort queues (depth 5) never overflow and a missing count is a
node's fault, not the transport's.

Goals, each checked and printed, exit status 1 when one is missed:
- crashes: every node process still runs at the end;
- non-finite beliefs: every number of every ObjectBelief received (position, mean, log_var, class
  and attribute probabilities) is finite;
- every rejection counted: per node and counter, the rise during the run is at least what was sent
  for it. Floods may be legitimately accepted (a token bucket's burst, the first
  max_foreign_robots made-up robots), so for them `dropped latent: rate | robots` plus
  `accepted latents` must cover what was sent. Sensor topics are best effort: on a machine too
  busy for a node to keep up, a message can be lost before it reaches the node. Such a loss shows
  as an encoder's `received <input>` falling behind what this process (subscribed to the same
  topic) or a sibling encoder (all three take the scans) received; that many missing counts of
  the input are put down to transport, not the node. Latents go reliably: no allowance.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m2vae_fusion.bringup import process_group
from m2vae_fusion.resources import default_model_dir

FAST_DIAGNOSTICS_S = 0.1
WINDOW = {"sensor": 2, "latent": 20}  # uncounted messages per node; sensor queues hold 5 (the sim's share them), latents 50
STARTUP_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 15.0  # after the last message, for the last counts
STALL_TIMEOUT_S = 10.0  # waiting on one node's counts before sending anyway (and failing the count goal)
FAR = (20.0, 40.0)  # m, in map: where accepted fuzz latents put their objects, away from the arena
ENCODERS = ("camera", "lidar", "ir")
FLOOD_RUN = 40  # latents from one robot id back to back: twice the fusion node's default rate limit of 20 / s
INPUTS = {"scan": ("scan", ENCODERS), "image": ("image", ("camera",)), "ir": ("IR reading", ("ir",))}  # topic -> (what, encoders)
ACCEPTED = "accepted latents"


@dataclass
class Scene:
    """What the fuzz knows of the running graph, for messages that look right but for one thing."""

    robots: tuple[str, ...]  # namespaces without '/'
    model_id: str
    latent_dim: int
    now_ns: int = 0  # newest /clock
    bases: dict[tuple[str, str], Any] = field(default_factory=dict)  # (robot, sensor topic) -> a real message
    serial: int = 0  # for unique object and robot ids
    replayable: Any = None  # the first flood latent, sent first: accepted, then replayed

    def next_id(self) -> int:
        self.serial += 1
        return self.serial


@dataclass(frozen=True)
class Case:
    """One kind of adversarial message: `topic` scan | image | ir | latent, the nodes it goes to
    (encoders by modality, or fusion), the counter they must raise (`dropped <what>: <reason>`), and
    whether a node may also legitimately accept it (floods)."""

    name: str
    topic: str
    key: str
    make: Callable[[Scene, np.random.Generator, str], Any]  # (scene, rng, robot) -> message
    may_accept: bool = False

    @property
    def nodes(self) -> tuple[str, ...]:
        return {"scan": tuple(f"{m}_encoder" for m in ENCODERS), "image": ("camera_encoder",), "ir": ("ir_encoder",), "latent": ("fusion",)}[self.topic]


# ---------------------------------------------------------------- message generators


def stamp(ns: int) -> Any:
    from builtin_interfaces.msg import Time

    ns = max(0, int(ns))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_ns(t: Any) -> int:
    return t.sec * 1_000_000_000 + t.nanosec


def _scan(scene: Scene, robot: str, topic: str) -> Any:
    return copy.deepcopy(scene.bases[(robot, topic)])


def _bad_ranges(value: Callable[[np.random.Generator], float], topic: str) -> Callable[[Scene, np.random.Generator, str], Any]:
    def make(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
        msg = _scan(scene, robot, topic)
        ranges = np.asarray(msg.ranges, np.float32)
        for i in rng.choice(len(ranges), size=rng.integers(1, min(20, len(ranges)) + 1), replace=False):
            ranges[i] = value(rng)
        msg.ranges = ranges.tolist()
        return msg

    return make


def _empty(topic: str) -> Callable[[Scene, np.random.Generator, str], Any]:
    def make(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
        msg = _scan(scene, robot, topic)
        msg.ranges, msg.intensities = [], []
        return msg

    return make


def _huge_scan(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    from m2vae_fusion.nodes.encoder import MAX_BEAMS

    msg = _scan(scene, robot, "scan")
    n = int(rng.integers(MAX_BEAMS + 1, MAX_BEAMS + 5000))
    msg.ranges, msg.intensities = [1.0] * n, []
    msg.angle_increment = (msg.angle_max - msg.angle_min) / (n - 1)
    return msg


def _bad_geometry(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    msg = _scan(scene, robot, "scan")
    name = str(rng.choice(["angle_min", "angle_max", "angle_increment", "range_min", "range_max"]))
    setattr(msg, name, float(rng.choice([math.nan, math.inf, -math.inf])))
    return msg


def _short_intensities(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    msg = _scan(scene, robot, "scan")
    msg.intensities = [0.5] * max(1, len(msg.ranges) - int(rng.integers(1, 10)))
    return msg


def _unknown_frame(topic: str) -> Callable[[Scene, np.random.Generator, str], Any]:
    def make(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
        msg = copy.deepcopy(scene.bases[(robot, topic)])
        msg.header.frame_id = str(rng.choice([f"{robot}/nowhere_link", "nowhere", f"{robot}/base_link_", "/"]))
        return msg

    return make


def _out_of_order(topic: str) -> Callable[[Scene, np.random.Generator, str], Any]:
    def make(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
        msg = copy.deepcopy(scene.bases[(robot, topic)])
        # the base came before everything the node accepted since: older than that is out of order
        msg.header.stamp = stamp(rng.uniform(0.0, 0.99) * stamp_ns(msg.header.stamp))
        return msg

    return make


def _future(topic: str) -> Callable[[Scene, np.random.Generator, str], Any]:
    def make(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
        msg = copy.deepcopy(scene.bases[(robot, topic)])
        msg.header.stamp = stamp(scene.now_ns + rng.uniform(10.0, 1e6) * 1e9)
        return msg

    return make


def _image(change: Callable[[Any, np.random.Generator], None]) -> Callable[[Scene, np.random.Generator, str], Any]:
    def make(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
        msg = copy.deepcopy(scene.bases[(robot, "image")])
        change(msg, rng)
        return msg

    return make


def _wrong_encoding(msg: Any, rng: np.random.Generator) -> None:
    msg.encoding = str(rng.choice(["yuv422", "bayer_rggb8", "16UC3", "", "rgb8; DROP TABLE"]))


def _wrong_step(msg: Any, rng: np.random.Generator) -> None:
    msg.step = int(msg.step - rng.integers(1, msg.step))


def _truncated(msg: Any, rng: np.random.Generator) -> None:
    msg.data = bytes(msg.data)[: int(rng.integers(1, len(msg.data)))]


def _other_size(msg: Any, rng: np.random.Generator) -> None:
    # consistent in itself, but not the size camera_info gives
    msg.width = int(msg.width // int(rng.integers(2, 5)))
    msg.step = msg.width * 3
    msg.data = bytes(msg.step * msg.height)


def _zero_size(msg: Any, rng: np.random.Generator) -> None:
    msg.width, msg.height, msg.step, msg.data = 0, 0, 0, b""


def _huge_image(msg: Any, rng: np.random.Generator) -> None:
    msg.width, msg.height = int(rng.integers(5_000, 100_000)), int(rng.integers(5_000, 100_000))
    msg.step = msg.width * 3


def _latent(scene: Scene, robot_id: str, rng: np.random.Generator) -> Any:
    """A latent every check passes: fresh ids, now, in map, far from the arena."""
    from m2vae_msgs.msg import LatentEmbedding

    msg = LatentEmbedding()
    msg.header.stamp, msg.header.frame_id = stamp(scene.now_ns), "map"
    msg.robot_id, msg.object_id, msg.model_id, msg.sequence = robot_id, f"object_{scene.next_id()}", scene.model_id, 1
    msg.modalities = [str(m) for m in rng.permutation(ENCODERS)[: rng.integers(1, len(ENCODERS) + 1)]]
    msg.contributors = [robot_id]
    msg.mean = rng.standard_normal(scene.latent_dim).astype(np.float32).tolist()
    msg.log_var = rng.uniform(-3.0, 0.0, scene.latent_dim).astype(np.float32).tolist()
    msg.position.x, msg.position.y = (float(v) for v in rng.uniform(*FAR, 2))
    return msg


def _latent_with(change: Callable[[Any, Scene, np.random.Generator], None], robot_id: str = "fuzz") -> Callable[[Scene, np.random.Generator, str], Any]:
    def make(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
        msg = _latent(scene, robot_id, rng)
        change(msg, scene, rng)
        return msg

    return make


def _wrong_dimension(msg: Any, scene: Scene, rng: np.random.Generator) -> None:
    size = int(rng.choice([0, 1, scene.latent_dim - 1, scene.latent_dim + 1, 10 * scene.latent_dim]))
    if rng.random() < 0.5:
        msg.mean = [0.0] * size
    else:
        msg.log_var = [0.0] * size


def _non_finite(msg: Any, scene: Scene, rng: np.random.Generator) -> None:
    value = float(rng.choice([math.nan, math.inf, -math.inf]))
    where = rng.integers(3)
    if where == 0:
        msg.mean[int(rng.integers(scene.latent_dim))] = value
    elif where == 1:
        msg.log_var[int(rng.integers(scene.latent_dim))] = value
    else:
        msg.position.x = value


def _absurd(msg: Any, scene: Scene, rng: np.random.Generator) -> None:
    values = msg.mean if rng.random() < 0.5 else msg.log_var
    values[int(rng.integers(scene.latent_dim))] = float(rng.choice([-1, 1]) * 10 ** rng.uniform(3, 38))


def _other_model(msg: Any, scene: Scene, rng: np.random.Generator) -> None:
    msg.model_id = str(rng.choice(["", "m2vae-000000000000", scene.model_id + "x", scene.model_id.upper()]))


def _unknown_modality(msg: Any, scene: Scene, rng: np.random.Generator) -> None:
    msg.modalities = [str(rng.choice(["sonar", "", "CAMERA"]))] if rng.random() < 0.5 else ["lidar", "lidar"]


def _echo(msg: Any, scene: Scene, rng: np.random.Generator) -> None:
    msg.contributors = [msg.robot_id, *scene.robots]  # every fusion node finds itself among them


def _other_frame(msg: Any, scene: Scene, rng: np.random.Generator) -> None:
    msg.header.frame_id = str(rng.choice(["fuzz/odom", "odom", "", "robot9/map"]))


def _future_latent(msg: Any, scene: Scene, rng: np.random.Generator) -> None:
    msg.header.stamp = stamp(scene.now_ns + rng.uniform(10.0, 1e6) * 1e9)


def _flood(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    msg = _latent(scene, "fuzz_flood", rng)
    if scene.replayable is None:
        scene.replayable = copy.deepcopy(msg)
    return msg


def _made_up_robot(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    return _latent(scene, f"fuzz_robot_{scene.next_id()}", rng)


def _replay(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    return copy.deepcopy(scene.replayable)  # sequence 1 of an object already accepted: a duplicate


def _replay_older(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    msg = copy.deepcopy(scene.replayable)
    msg.sequence = int(rng.integers(2, 2**31))  # a new sequence number, but older than the accepted stamp
    msg.header.stamp = stamp(stamp_ns(msg.header.stamp) - rng.uniform(0.001, 1.0) * 1e9)
    return msg


def cases() -> tuple[Case, ...]:
    sensor = []
    for topic, what in (("scan", "scan"), ("ir", "IR reading")):
        sensor += [
            Case(f"{topic}_nan_ranges", topic, f"dropped {what}: nan_ranges", _bad_ranges(lambda rng: math.nan, topic)),
            Case(f"{topic}_negative_ranges", topic, f"dropped {what}: negative_ranges", _bad_ranges(lambda rng: -float(rng.uniform(1e-3, 1e3)), topic)),
            Case(f"{topic}_empty", topic, f"dropped {what}: empty", _empty(topic)),
            Case(f"{topic}_unknown_frame", topic, f"dropped {what}: unknown_frame", _unknown_frame(topic)),
            Case(f"{topic}_out_of_order", topic, f"dropped {what}: out_of_order", _out_of_order(topic)),
            Case(f"{topic}_future", topic, f"dropped {what}: future", _future(topic)),
        ]
    sensor += [
        Case("scan_huge", "scan", "dropped scan: huge", _huge_scan),
        Case("scan_bad_geometry", "scan", "dropped scan: geometry", _bad_geometry),
        Case("scan_intensities", "scan", "dropped scan: intensities", _short_intensities),
        Case("image_encoding", "image", "dropped image: format", _image(_wrong_encoding)),
        Case("image_step", "image", "dropped image: format", _image(_wrong_step)),
        Case("image_truncated", "image", "dropped image: format", _image(_truncated)),
        Case("image_size", "image", "dropped image: size", _image(_other_size)),
        Case("image_zero_size", "image", "dropped image: zero_size", _image(_zero_size)),
        Case("image_huge", "image", "dropped image: huge", _image(_huge_image)),
        Case("image_unknown_frame", "image", "dropped image: unknown_frame", _unknown_frame("image")),
        Case("image_out_of_order", "image", "dropped image: out_of_order", _out_of_order("image")),
        Case("image_future", "image", "dropped image: future", _future("image")),
    ]
    latents = [
        Case("latent_flood", "latent", "dropped latent: rate", _flood, may_accept=True),
        Case("latent_made_up_robots", "latent", "dropped latent: robots", _made_up_robot, may_accept=True),
        Case("latent_wrong_dimension", "latent", "dropped latent: size", _latent_with(_wrong_dimension)),
        Case("latent_non_finite", "latent", "dropped latent: non_finite", _latent_with(_non_finite)),
        Case("latent_absurd_magnitude", "latent", "dropped latent: magnitude", _latent_with(_absurd)),
        Case("latent_other_model", "latent", "dropped latent: model_id", _latent_with(_other_model)),
        Case("latent_unknown_modality", "latent", "dropped latent: modality", _latent_with(_unknown_modality)),
        Case("latent_echo", "latent", "dropped latent: echo", _latent_with(_echo, "fuzz_echo")),
        Case("latent_other_frame", "latent", "dropped latent: frame", _latent_with(_other_frame)),
        Case("latent_future", "latent", "dropped latent: future", _latent_with(_future_latent, "fuzz_future")),
        Case("latent_replayed", "latent", "dropped latent: duplicate", _replay),
        Case("latent_replayed_older", "latent", "dropped latent: stale", _replay_older),
    ]
    return (*sensor, *latents)


CASES = cases()


def schedule(count: int, seed: int, robots: tuple[str, ...]) -> list[tuple[Case, str]]:
    """`count` (case, robot) pairs, seeded; every case sends about as many messages as any other. A
    flood comes as a run of FLOOD_RUN messages back to back (one at a time would stay under the rate
    limit), drawn FLOOD_RUN times less often. The first latent is a flood latent: the replay cases
    copy it, so it must go (and be accepted) first."""
    rng = np.random.default_rng(seed)
    weights = np.array([1.0 / FLOOD_RUN if c.name == "latent_flood" else 1.0 for c in CASES])
    plan: list[tuple[Case, str]] = []
    while len(plan) < count:
        case, robot = CASES[int(rng.choice(len(CASES), p=weights / weights.sum()))], robots[int(rng.integers(len(robots)))]
        plan += [(case, robot)] * (FLOOD_RUN if case.name == "latent_flood" else 1)
    plan = plan[:count]
    first = next((k for k, (case, _) in enumerate(plan) if case.topic == "latent"), None)
    if first is not None:
        plan[first] = (next(c for c in CASES if c.name == "latent_flood"), plan[first][1])
    return plan


# ---------------------------------------------------------------- the run


@dataclass
class Outcome:
    sent: Counter[str] = field(default_factory=Counter)  # case name -> messages
    expected: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, key) -> must have risen by at least
    lenient: dict[str, int] = field(default_factory=dict)  # fusion node -> flood messages (rate | robots | accepted)
    outstanding: Counter[str] = field(default_factory=Counter)  # node -> fuzz messages sent to it
    beliefs_checked: int = 0
    non_finite_beliefs: list[str] = field(default_factory=list)


def belief_problems(msg: Any) -> list[str]:
    """Descriptions of every ObjectBelief in an ObjectBeliefArray with a non-finite number."""
    bad = []
    for b in msg.beliefs:
        numbers = [b.position.x, b.position.y, b.position.z, *b.mean, *b.log_var, *b.class_probabilities]
        numbers += [p for a in b.attributes for p in a.probabilities]
        if not np.all(np.isfinite(np.asarray(numbers, dtype=np.float64))):
            bad.append(f"{b.object_id}: mean {list(b.mean)}, log_var {list(b.log_var)}, p {list(b.class_probabilities)}")
    return bad


class Graph:
    """The node graph as processes in their own process groups, logs in `log_dir`."""

    def __init__(self, robots: int, env: dict[str, str], log_dir: Path) -> None:
        from m2vae_fusion.bringup.graph import sim_description
        from m2vae_fusion.bringup.launcher import resolve_commands

        description = sim_description(robots=robots, simulator="embedded", headless=True, rviz=False)
        nodes = tuple(
            dataclasses.replace(n, parameters={**n.parameters, "diagnostics_period_s": FAST_DIAGNOSTICS_S}) if n.executable in ("encoder", "fusion") else n
            for n in description.nodes
        )
        self.description = dataclasses.replace(description, nodes=nodes)
        commands, problems = resolve_commands(self.description)
        if problems:
            raise FileNotFoundError("cannot start the graph:\n  " + "\n  ".join(problems))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        for spec, argv in commands:
            log = open(log_dir / f"{spec.key.replace('/', '_')}.log", "w", encoding="utf-8")
            self.procs[spec.key] = process_group.start(
                argv, env={**env, **spec.env, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
            log.close()

    def exited(self) -> dict[str, int]:
        return {key: proc.returncode for key, proc in self.procs.items() if proc.poll() is not None}

    def tail(self, key: str, lines: int = 15) -> str:
        path = self.log_dir / f"{key.replace('/', '_')}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"

    def stop(self, grace_s: float = 5.0) -> None:
        process_group.stop(self.procs.values(), grace_s)


class Fuzzer:
    """rclpy in this process: publishes the adversarial messages, reads /clock, the sensors (for the
    bases), the beliefs and /diagnostics."""

    def __init__(self, domain_id: int, scene: Scene) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, LaserScan

        from m2vae_fusion.nodes.latent_monitor import LATENT_QOS
        from m2vae_fusion.ros_interface import diagnostics
        from m2vae_msgs.msg import LatentEmbedding, ObjectBeliefArray

        self.rclpy, self.scene = rclpy, scene
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("m2vae_fuzz", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.counts: dict[str, dict[str, int]] = {}  # node name -> its newest counters
        self.seen: Counter[tuple[str, str]] = Counter()  # (robot, topic) -> messages this process received, the sim's and its own
        self.outcome = Outcome()
        self.belief_frames: dict[str, str] = {}  # robot -> frame of its fusion node's latest beliefs
        self.publishers: dict[tuple[str, str], Any] = {}
        topics = {"scan": (LaserScan, "scan"), "image": (Image, "camera/image_raw"), "ir": (LaserScan, "ir/scan")}
        observer = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)  # deep: it should lose less than the nodes
        for robot in scene.robots:
            for key, (kind, name) in topics.items():
                self.publishers[(robot, key)] = self.node.create_publisher(kind, f"/{robot}/{name}", qos_profile_sensor_data)
                self.node.create_subscription(kind, f"/{robot}/{name}", self._base(robot, key), observer)
            self.node.create_subscription(
                ObjectBeliefArray, f"/{robot}/beliefs", functools.partial(self._on_beliefs, robot), QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            )
        self.latents = self.node.create_publisher(LatentEmbedding, "/shared/latents", LATENT_QOS)
        self.node.create_subscription(Clock, "/clock", self._on_clock, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.node.create_subscription(DiagnosticArray, diagnostics.TOPIC, self._on_diagnostics, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self._read = diagnostics.read

    def _base(self, robot: str, key: str) -> Callable[[Any], None]:
        def take(msg: Any) -> None:
            self.seen[(robot, key)] += 1
            # the first real message only: later ones may be this fuzz's own
            if (robot, key) not in self.scene.bases and stamp_ns(msg.header.stamp) > 0:
                self.scene.bases[(robot, key)] = msg

        return take

    def _on_clock(self, msg: Any) -> None:
        self.scene.now_ns = max(self.scene.now_ns, stamp_ns(msg.clock))

    def _on_diagnostics(self, msg: Any) -> None:
        self.counts.update(self._read(msg.status))

    def _on_beliefs(self, robot: str, msg: Any) -> None:
        self.belief_frames[robot] = msg.header.frame_id
        self.outcome.beliefs_checked += len(msg.beliefs)
        self.outcome.non_finite_beliefs += belief_problems(msg)

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.01, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                return

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():  # Ctrl-C has shut it down already
            self.rclpy.shutdown(context=self.context)


def node_names(robots: tuple[str, ...]) -> dict[str, list[str]]:
    """node name in a robot namespace (camera_encoder, fusion) -> full names, one per robot."""
    return {name: [f"/{r}/{name}" for r in robots] for name in (*(f"{m}_encoder" for m in ENCODERS), "fusion")}


def counted(fuzzer: Fuzzer, start: dict[str, dict[str, int]], node: str, keys: tuple[str, ...]) -> int:
    now, before = fuzzer.counts.get(node, {}), start.get(node, {})
    return sum(now.get(k, 0) - before.get(k, 0) for k in keys)


def run_fuzz(messages: int, seed: int, robots: int, log_dir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the graph, fuzz it with `messages` messages, stop it; the results (see the module docstring)."""
    from m2vae_fusion.bringup.ros_env import isolated_ros_env

    if messages < 1 or robots < 1:
        raise ValueError(f"--messages and --robots must be >= 1, got {messages} and {robots}")
    env = isolated_ros_env()
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION"):
        os.environ[key] = env[key]  # this process's rclpy must join the graph's domain the same way
    manifest = json.loads((default_model_dir() / "perception_model.json").read_text())
    namespaces = tuple(f"robot{k}" for k in range(1, robots + 1))
    scene = Scene(namespaces, manifest["model_id"], int(manifest["config"]["fusion"]["latent_dim"]))
    plan = schedule(messages, seed, namespaces)
    names = node_names(namespaces)
    watched = [n for full in names.values() for n in full]

    started = time.monotonic()
    graph = Graph(robots, env, log_dir)
    fuzzer = None
    try:
        fuzzer = Fuzzer(int(env["ROS_DOMAIN_ID"]), scene)
        progress(f"m2vae fuzz: {len(graph.procs)} nodes on ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}, logs in {log_dir}; waiting for the graph")
        needed = [(r, t) for r in namespaces for t in ("scan", "image", "ir")]

        def ready() -> bool:
            reported = all(fuzzer.counts.get(n, {}).get("received scan", 0) > 0 for full in names.values() for n in full if "encoder" in n)
            # latents are taken in map only: before a fusion node has map -> odom it would drop them all as "frame"
            in_map = all(fuzzer.belief_frames.get(r) == "map" for r in namespaces)
            return reported and in_map and all(n in fuzzer.counts for n in watched) and all(k in scene.bases for k in needed) and scene.now_ns > 2e9

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ready():
            if graph.exited() or time.monotonic() > deadline:
                missing = [n for n in watched if n not in fuzzer.counts] + [f"/{r}/{t}" for r, t in needed if (r, t) not in scene.bases]
                missing += [f"/{r}/beliefs in map" for r in namespaces if fuzzer.belief_frames.get(r) != "map"]
                raise RuntimeError(f"the graph did not come up (exited: {graph.exited() or 'none'}; not heard from: {missing or 'none'})")
            fuzzer.spin(0.1)
        fuzzer.spin(2 * FAST_DIAGNOSTICS_S)  # every node's counters from after the bases
        startup_s = time.monotonic() - started
        start = {n: dict(c) for n, c in fuzzer.counts.items()}
        seen_before = Counter(fuzzer.seen)
        outcome = fuzzer.outcome
        outcome.beliefs_checked, outcome.non_finite_beliefs = 0, []
        rng = np.random.default_rng(seed + 1)
        keys: dict[str, set[str]] = {n: set() for n in watched}  # what counts a node's fuzz messages
        progress(f"m2vae fuzz: graph up after {startup_s:.0f} s; sending {messages} messages (seed {seed})")

        fuzz_start = time.monotonic()
        stalls = 0
        for k, (case, robot) in enumerate(plan):
            # sensor messages go to one robot's encoders, latents to every robot's fusion node
            targets = [n for name in case.nodes for n in names[name] if case.topic == "latent" or n.startswith(f"/{robot}/")]
            for node in targets:
                keys[node].add(case.key)
                if case.may_accept:
                    keys[node].add(ACCEPTED)
            window = WINDOW["latent" if case.topic == "latent" else "sensor"]

            def has_room() -> bool:
                return all(outcome.outstanding[n] - counted(fuzzer, start, n, tuple(keys[n])) < window for n in targets)

            wait_until = time.monotonic() + STALL_TIMEOUT_S
            while not has_room():
                if time.monotonic() > wait_until:
                    stalls += 1
                    break
                fuzzer.spin(0.005)
            msg = case.make(scene, rng, robot)
            (fuzzer.latents if case.topic == "latent" else fuzzer.publishers[(robot, case.topic)]).publish(msg)
            outcome.sent[case.name] += 1
            for node in targets:
                outcome.outstanding[node] += 1
                if case.may_accept:
                    outcome.lenient[node] = outcome.lenient.get(node, 0) + 1
                else:
                    outcome.expected[(node, case.key)] = outcome.expected.get((node, case.key), 0) + 1
            if case.name == "latent_flood" and outcome.sent[case.name] == 1:
                # the replays copy this one: let it be accepted before anything else goes out
                wait_until = time.monotonic() + STALL_TIMEOUT_S
                while any(counted(fuzzer, start, n, (ACCEPTED, "dropped latent: rate")) < 1 for n in targets) and time.monotonic() < wait_until:
                    fuzzer.spin(0.005)
            if (k + 1) % max(1, messages // 10) == 0:
                progress(f"m2vae fuzz: {k + 1} / {messages} sent")
            fuzzer.spin(0.0)
        fuzz_s = time.monotonic() - fuzz_start

        def all_counted() -> bool:
            return all(outcome.outstanding[n] - counted(fuzzer, start, n, tuple(keys[n])) <= 0 for n in watched)

        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not all_counted() and time.monotonic() < deadline:
            fuzzer.spin(0.05)
        fuzzer.spin(2 * FAST_DIAGNOSTICS_S)
        crashed = graph.exited()
        rows = count_rows(outcome, fuzzer, start)
        received = {node: {k: n - start.get(node, {}).get(k, 0) for k, n in fuzzer.counts.get(node, {}).items() if k.startswith("received ")} for node in watched}
        lost = lost_in_transport(received, fuzzer.seen - seen_before, namespaces)
        unexpected = {
            f"{node} {key}": n - start.get(node, {}).get(key, 0)
            for node, counts in fuzzer.counts.items() if node in watched
            for key, n in counts.items()
            if key.startswith("dropped ") and key not in keys[node] and n - start.get(node, {}).get(key, 0) > 0
        }
        fused = {node: sum(v - start.get(node, {}).get(k, 0) for k, v in fuzzer.counts.get(node, {}).items() if k.startswith("fused ")) for node in names["fusion"]}
    finally:
        try:
            if fuzzer is not None:
                fuzzer.close()
        finally:
            graph.stop()  # also on Ctrl-C or an error: no node outlives the run
    goals = {
        "crashes": not crashed,
        "non-finite beliefs": not outcome.non_finite_beliefs,
        "every rejection counted": all_counted_but_lost(rows, lost),
    }
    return {
        "messages": messages, "seed": seed, "robots": robots, "nodes": len(graph.procs),
        "startup_s": round(startup_s, 1), "fuzz_s": round(fuzz_s, 1), "messages_per_s": round(messages / fuzz_s, 1),
        "flow_control_stalls": stalls,
        "crashes": crashed, "crash_logs": {key: graph.tail(key) for key in crashed},
        "beliefs_checked": outcome.beliefs_checked, "non_finite_beliefs": len(outcome.non_finite_beliefs),
        "non_finite_examples": outcome.non_finite_beliefs[:5],
        "sent": dict(sorted(outcome.sent.items())), "counts": rows, "unexpected_drops": unexpected,
        "received": received, "lost_in_transport": lost,
        "encodings_fused_during_run": fused,
        "goals": goals, "met": all(goals.values()),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()})",
        "logs": str(log_dir),
    }


def lost_in_transport(received: dict[str, dict[str, int]], seen: Counter[tuple[str, str]], robots: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """encoder -> input (scan, image, IR reading) -> messages on the input's topic that this process
    or a sibling encoder received and the encoder did not: lost on the way to it."""
    lost: dict[str, dict[str, int]] = {}
    for robot in robots:
        for topic, (what, modalities) in INPUTS.items():
            got = {f"/{robot}/{m}_encoder": received.get(f"/{robot}/{m}_encoder", {}).get(f"received {what}", 0) for m in modalities}
            most = max([*got.values(), seen.get((robot, topic), 0)])
            for node, n in got.items():
                if most > n:
                    lost.setdefault(node, {})[what] = most - n
    return lost


def all_counted_but_lost(rows: list[dict[str, Any]], lost: dict[str, dict[str, int]]) -> bool:
    """Every row counted at least what was sent, but for a node's rows of one input as many as it lost of that input."""
    short: dict[tuple[str, str], int] = {}
    for row in rows:
        what = row["counter"].removeprefix("dropped ").split(":")[0]
        short[(row["node"], what)] = short.get((row["node"], what), 0) + max(0, row["expected"] - row["counted"])
    return all(n <= lost.get(node, {}).get(what, 0) for (node, what), n in short.items())


def count_rows(outcome: Outcome, fuzzer: Fuzzer, start: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Expected vs counted per node and counter; floods per fusion node as one row."""
    rows = [
        {"node": node, "counter": key, "expected": n, "counted": counted(fuzzer, start, node, (key,))}
        for (node, key), n in sorted(outcome.expected.items())
    ]
    flood_keys = ("dropped latent: rate", "dropped latent: robots", ACCEPTED)
    for node, n in sorted(outcome.lenient.items()):
        rows.append({
            "node": node, "counter": " | ".join(flood_keys), "expected": n, "counted": counted(fuzzer, start, node, flood_keys),
            "each": {key: counted(fuzzer, start, node, (key,)) for key in flood_keys},
        })
    return rows


def table(results: dict[str, Any]) -> str:
    lines = [
        f"m2vae fuzz: {results['messages']} messages (seed {results['seed']}) against {results['nodes']} nodes of "
        f"{results['robots']} robot(s) on {results['machine']}",
        f"graph up in {results['startup_s']} s; messages sent in {results['fuzz_s']} s ({results['messages_per_s']} / s, "
        f"{results['flow_control_stalls']} flow-control stalls)",
        "",
        f"{'node':<24} {'counter':<62} {'expected':>8} {'counted':>8}",
    ]
    for row in results["counts"]:
        mark = "" if row["counted"] >= row["expected"] else "  MISSING"
        lines.append(f"{row['node']:<24} {row['counter']:<62} {row['expected']:>8} {row['counted']:>8}{mark}")
        if "each" in row:
            lines.append(f"{'':<24}   ({', '.join(f'{key} {n}' for key, n in row['each'].items())})")
    if results["lost_in_transport"]:
        lines += ["", "lost before they reached the node (this process or a sibling encoder received them): "
                  + ", ".join(f"{node} {n} {what}" for node, lost in results["lost_in_transport"].items() for what, n in lost.items())]
    if results["unexpected_drops"]:
        lines += ["", "other drops during the run (the simulated sensors' own, not the fuzz's):"]
        lines += [f"  {key}: {n}" for key, n in sorted(results["unexpected_drops"].items())]
    lines += ["", f"encodings fused during the run: {', '.join(f'{k} {v}' for k, v in results['encodings_fused_during_run'].items())}"]
    lines += [
        "",
        f"crashes: {len(results['crashes'])}" + (f" ({', '.join(f'{k} status {v}' for k, v in results['crashes'].items())})" if results["crashes"] else ""),
        f"non-finite beliefs: {results['non_finite_beliefs']} of {results['beliefs_checked']} beliefs checked",
        f"every rejection counted: {'yes' if results['goals']['every rejection counted'] else 'NO'}",
        "",
        "goals " + ("met" if results["met"] else "NOT met: " + ", ".join(g for g, ok in results["goals"].items() if not ok)),
    ]
    for key, tail in results["crash_logs"].items():
        lines += ["", f"last lines of {key}:", tail]
    return "\n".join(lines)


# ---------------------------------------------------------------- the `m2vae fuzz` command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0].replace("`m2vae fuzz`: ", "").capitalize() + " " + __doc__.split("\n\n")[1]
    parser.add_argument("--messages", type=int, default=1000, metavar="N", help="adversarial messages to send (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cases, their order and their contents (default: 0)")
    parser.add_argument("--robots", type=int, default=1, help="simulated robots in the graph, sharing latents (default: 1)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--log-dir", type=Path, help="folder for the nodes' logs (default: a temporary folder, removed when the goals are met)")


def run(args: argparse.Namespace) -> int:
    from m2vae_fusion.core.atomic_file import write_text_atomic

    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="m2vae_fuzz_"))
    results = run_fuzz(args.messages, args.seed, args.robots, log_dir)
    print(table(results))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2))
    if results["met"] and args.log_dir is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    elif not results["met"]:
        print(f"node logs: {log_dir}")
    return 0 if results["met"] else 1
