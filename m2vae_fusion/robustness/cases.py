"""The fuzz's catalogue: each Case is one kind of adversarial message, the nodes it goes to and the
counter on /diagnostics they must raise for it; `schedule` draws a seeded run of them.

With a fleet key (the graph's fusion nodes verify latents, Scene.signer), every latent case is signed
with the fleet's key after it is made, so it still reaches the check it is for; the replay of an
older stamp is re-signed too (a fleet member's stale latent: only the store's stale check stops it).
Four cases exist only then (Case.needs_key): unsigned latents, latents signed with a key not in the
file, forged ones (a field or the signature changed after signing) and replays given a new sequence."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from m2vae_fusion.ros_interface.latent_signing import FleetKey

FAR = (20.0, 40.0)  # m, in map: where accepted fuzz latents put their objects, away from the arena
ENCODERS = ("camera", "lidar", "ir")
FLOOD_RUN = 40  # latents from one robot id back to back: twice the fusion node's default rate limit of 20 / s
ACCEPTED = "accepted latents"  # what a fusion node counts for a flood latent it may take


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
    signer: FleetKey | None = None  # the fleet key of the graph's fusion nodes; None: they take unsigned latents
    intruder: FleetKey | None = None  # a key the graph's key file does not list

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
    needs_key: bool = False  # a case of the fleet key's checks: only when the graph runs with one

    @property
    def nodes(self) -> tuple[str, ...]:
        return {
            "scan": tuple(f"{m}_encoder" for m in ENCODERS),
            "image": ("camera_encoder",),
            "ir": ("ir_encoder",),
            "latent": ("fusion",),
        }[self.topic]


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
    from m2vae_fusion.ros_interface.sensor_input import MAX_BEAMS

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


def _signed(scene: Scene, msg: Any) -> Any:
    """`msg` signed with the fleet's key when the graph has one."""
    return scene.signer.sign(msg) if scene.signer is not None else msg


def _latent_with(
    change: Callable[[Any, Scene, np.random.Generator], None], robot_id: str = "fuzz"
) -> Callable[[Scene, np.random.Generator, str], Any]:
    def make(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
        msg = _latent(scene, robot_id, rng)
        change(msg, scene, rng)
        return _signed(scene, msg)

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
    msg = _signed(scene, _latent(scene, "fuzz_flood", rng))
    if scene.replayable is None:
        scene.replayable = copy.deepcopy(msg)
    return msg


def _made_up_robot(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    return _signed(scene, _latent(scene, f"fuzz_robot_{scene.next_id()}", rng))


def _replay(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    # sequence 1 of an object already accepted, its signature intact: a duplicate
    return copy.deepcopy(scene.replayable)


def _replay_older(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    msg = copy.deepcopy(scene.replayable)
    msg.sequence = int(rng.integers(2, 2**31))  # a new sequence number, but older than the accepted stamp
    msg.header.stamp = stamp(stamp_ns(msg.header.stamp) - rng.uniform(0.001, 1.0) * 1e9)
    return _signed(scene, msg)  # re-signed: a key holder's stale latent (unsigned, it is latent_forged's)


def _unsigned(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    return _latent(scene, "fuzz_unsigned", rng)  # valid in every other way


def _wrong_key(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    return scene.intruder.sign(_latent(scene, "fuzz_intruder", rng))  # another fleet's key, or a retired one


def _flip_mean_bit(msg: Any, rng: np.random.Generator) -> None:
    raw = bytearray(np.asarray(msg.mean, np.float32).tobytes())
    raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))  # NaN or huge is fine: the signature is checked first
    msg.mean = np.frombuffer(bytes(raw), np.float32).tolist()


def _other_modalities(modalities: Any) -> list[str]:
    """Another valid list: one more modality, or one fewer when it has them all (a forgery must change something)."""
    missing = [m for m in ENCODERS if m not in modalities]
    return [*modalities, missing[0]] if missing else list(modalities)[:-1]


FORGERIES: tuple[Callable[[Any, np.random.Generator], None], ...] = (
    _flip_mean_bit,
    lambda msg, rng: setattr(msg, "robot_id", "fuzz_forger"),  # speaking for another robot
    lambda msg, rng: setattr(msg, "sequence", msg.sequence + int(rng.integers(1, 1000))),
    lambda msg, rng: setattr(msg.header, "stamp", stamp(stamp_ns(msg.header.stamp) + int(rng.integers(1, 10**9)))),
    lambda msg, rng: setattr(msg.position, "x", msg.position.x + float(rng.uniform(-1.0, 1.0))),
    lambda msg, rng: setattr(msg, "modalities", _other_modalities(msg.modalities)),
    lambda msg, rng: setattr(msg, "log_var", [float(v) + 0.5 for v in msg.log_var]),
    lambda msg, rng: setattr(msg, "signature", bytes(msg.signature[: int(rng.integers(0, 32))]) or b"\0"),
    lambda msg, rng: setattr(msg, "signature", rng.bytes(32)),
)


def _forged(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    """A validly signed latent with one thing changed after signing."""
    msg = _signed(scene, _latent(scene, "fuzz_forged", rng))
    FORGERIES[int(rng.integers(len(FORGERIES)))](msg, rng)
    return msg


def _replay_resequenced(scene: Scene, rng: np.random.Generator, robot: str) -> Any:
    """The accepted latent again with a new sequence and stamp, to pass the replay checks: the
    signature covers both, so it fails there."""
    msg = copy.deepcopy(scene.replayable)
    msg.sequence = int(rng.integers(2, 2**31))
    msg.header.stamp = stamp(max(scene.now_ns, stamp_ns(msg.header.stamp) + 1))
    return msg


def cases() -> tuple[Case, ...]:
    sensor = []
    for topic, what in (("scan", "scan"), ("ir", "IR reading")):
        sensor += [
            Case(f"{topic}_nan_ranges", topic, f"dropped {what}: nan_ranges", _bad_ranges(lambda rng: math.nan, topic)),
            Case(
                f"{topic}_negative_ranges",
                topic,
                f"dropped {what}: negative_ranges",
                _bad_ranges(lambda rng: -float(rng.uniform(1e-3, 1e3)), topic),
            ),
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
        Case("latent_unsigned", "latent", "dropped latent: unsigned", _unsigned, needs_key=True),
        Case("latent_wrong_key", "latent", "dropped latent: unknown_key", _wrong_key, needs_key=True),
        Case("latent_forged", "latent", "dropped latent: signature", _forged, needs_key=True),
        Case("latent_replayed_resequenced", "latent", "dropped latent: signature", _replay_resequenced, needs_key=True),
    ]
    return (*sensor, *latents)


CASES = cases()


def schedule(count: int, seed: int, robots: tuple[str, ...], signed: bool = True) -> list[tuple[Case, str]]:
    """`count` (case, robot) pairs, seeded; every case sends about as many messages as any other
    (`signed` False: a graph without a fleet key, the cases that need one left out). A flood comes as
    a run of FLOOD_RUN messages back to back (one at a time would stay under the rate limit), drawn
    FLOOD_RUN times less often. The first latent is a flood latent: the replay cases copy it, so it
    must go (and be accepted) first."""
    rng = np.random.default_rng(seed)
    drawn = [c for c in CASES if signed or not c.needs_key]
    weights = np.array([1.0 / FLOOD_RUN if c.name == "latent_flood" else 1.0 for c in drawn])
    plan: list[tuple[Case, str]] = []
    while len(plan) < count:
        case, robot = drawn[int(rng.choice(len(drawn), p=weights / weights.sum()))], robots[int(rng.integers(len(robots)))]
        plan += [(case, robot)] * (FLOOD_RUN if case.name == "latent_flood" else 1)
    plan = plan[:count]
    first = next((k for k, (case, _) in enumerate(plan) if case.topic == "latent"), None)
    if first is not None:
        plan[first] = (next(c for c in CASES if c.name == "latent_flood"), plan[first][1])
    return plan
