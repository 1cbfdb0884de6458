"""`m2vae bench nodes`: what running a sensor's encoder as a ROS 2 node costs over the bare work.

For each modality the real `encoder` node runs as its own process (namespace /bench, parameters from
config/encoders.yaml) on a fresh ROS_DOMAIN_ID with loopback-only DDS. This process replays frames
the embedded simulator rendered beforehand (the robot 0.2 m from each object of the world, facing it):
per tick /tf odom -> base_link, then the sensor's messages (camera: camera_info + image; IR: ir/scan)
and the LiDAR scan, all stamped with the current wall time, at --rate-hz (30 Hz: a camera's frame
rate). Node latency = arrival of the frame's last encoding on `encodings` - the moment the first
sensor message of the frame goes out, so it covers the DDS transport both ways, the node's executor,
conversion, object detection and the torch forward. Arrival is the RMW's reception time of the sample
(MessageInfo received_timestamp, the same system clock), not the time this process's Python executor
gets round to the callback: that executor's half millisecond, like the /tf publish before the sensor
messages, is the harness's cost, not the node's.
odom -> base_link goes out with every frame at the frame's stamp: the node holds encodings back until
it has a transform at or after the scan (up to 0.5 s), which here is never the bottleneck measured.

Baseline, interleaved with the node in the same run: once a frame's encodings are back (the node is
idle then), this process times the node's path on the same messages without DDS: the node's
conversion functions -> perception.observe -> the node's object filter -> PerceptionModel.encode_views,
and the torch forward (encode_views) alone. Node p50 / bare p50 is the price of the node (goal <= 1.5).

Encoder CPU: utime + stime of the node's process over the measured window, in cores (goal: under half
a core at 30 Hz camera input). Kept up: every measured frame answered, sent at the requested rate, and
the median latency of the second half at most 1.5x that of the first.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from m2vae_fusion.bringup import process_group
from m2vae_fusion.core.errors import M2VAEError
from m2vae_fusion.ros_interface.runtime import EXECUTORS

MODALITIES = ("camera", "lidar", "ir")
NAMESPACE = "bench"
VIEW_DISTANCE = 0.2  # m, robot centre to object centre, as the shipped model was trained (0.16-0.25 m)
STARTUP_TIMEOUT_S = 60.0  # node start: python, torch, the model, DDS discovery
STRAGGLERS_S = 1.0  # after the last frame, wait this long for late encodings
STOP_GRACE_S = 5.0
DRIFT_LIMIT = 1.5  # "no growing latency": p50 of the second half / p50 of the first half
RATE_SHORTFALL = 0.95  # "sent at the requested rate": at least this fraction of it
TARGETS = {"ratio_p50": 1.5, "camera_cpu_cores": 0.5}


class BenchError(M2VAEError):
    """The benchmark cannot measure: a node that dies or never answers, no usable frames."""


@dataclass
class Frame:
    """One pre-rendered moment: the messages to publish (stamps are set at each send) and the inputs of
    the bare path."""

    odom: Any  # TFMessage with odom -> base_link
    messages: list[tuple[str, Any]]  # (topic, message) in publishing order, the LiDAR scan last
    expected: int  # encodings the node's path makes of it
    views: Any  # np.ndarray (expected, view dim): the torch forward's input


@dataclass
class Timings:
    """Per-modality measurements in nanoseconds."""

    node: list[int] = field(default_factory=list)
    bare: list[int] = field(default_factory=list)
    forward: list[int] = field(default_factory=list)


# ------------------------------------------------------------ environment and processes


@contextmanager
def ros_environment(env: dict[str, str]) -> Iterator[None]:
    """This process's rclpy must see the same DDS settings as the node it measures."""
    keys = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: env[k] for k in keys})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class NodeProcess:
    """A node in its own process group with its output in a temporary file (a pipe nobody reads could
    fill up and stall it); `stop` ends it, SIGKILL after a grace period."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.argv = list(argv)
        self.log: IO[str] = tempfile.TemporaryFile("w+")
        self.proc = process_group.start(self.argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self, lines: int = 15) -> str:
        self.log.flush()
        self.log.seek(0)
        return "\n".join(self.log.read().splitlines()[-lines:]) or "(none)"

    def check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{what} exited with status {self.proc.returncode} ({' '.join(self.argv)}); its last output:\n{self.output()}")

    def cpu_seconds(self) -> float:
        """utime + stime of the process (all its threads) from /proc/<pid>/stat."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may contain spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        process_group.stop([self.proc], STOP_GRACE_S)
        self.log.close()


def encoder_command(modality: str, params_file: Path, model: Path | None, executor: str | None = None) -> list[str]:
    argv = ["encoder", "--ros-args", "-r", f"__ns:=/{NAMESPACE}", "-r", f"__node:={modality}_encoder", "--params-file", str(params_file)]
    if model is not None:
        argv += ["-p", f"model:={model}"]
    if executor is not None:
        argv += ["-p", f"executor:={executor}"]
    return argv


def encoder_parameters(params_file: Path, modality: str) -> dict[str, Any]:
    """The encoder node's parameters for `modality`: PARAMETERS defaults overlaid with its block of the
    params file, so the bare path filters objects as the node does."""
    import yaml

    from m2vae_fusion.nodes.encoder import PARAMETERS

    values = {name: default for name, (default, _) in PARAMETERS.items()}
    data = yaml.safe_load(params_file.read_text()) or {}
    for key in (f"/**/{modality}_encoder", f"{modality}_encoder", f"/{NAMESPACE}/{modality}_encoder"):
        values.update((data.get(key) or {}).get("ros__parameters", {}))
    return values


# ------------------------------------------------------------ frames and the bare path


def bare_views(model: Any, modality: str, messages: dict[str, Any], static: Sequence[Any], params: dict[str, Any]) -> Any:
    """The node's work on one frame up to the torch forward, without DDS: its conversion functions,
    observe() and its object filter; the flat views (N, dim) of the objects it would encode."""
    import numpy as np

    from m2vae_fusion.model.views import view_vector
    from m2vae_fusion.nodes.encoder import camera_reading, scan_reading
    from m2vae_fusion.perception import frames
    from m2vae_fusion.perception.features import observe

    scan_msg = messages["scan"]
    scan = scan_reading(scan_msg)
    partner_msg = {"camera": messages.get("camera/image_raw"), "ir": messages.get("ir/scan")}.get(modality)
    image = camera_reading(partner_msg, messages["camera/camera_info"]) if modality == "camera" else None
    ir = scan_reading(partner_msg, "IR reading") if modality == "ir" else None
    base = f"{NAMESPACE}/base_link"
    # as the node: every mounting is passed, only those of the readings given are used
    mounting = {"lidar": frames.lookup(static, base, scan_msg.header.frame_id), "ir": np.eye(4), "camera": np.eye(4)}
    mounting[modality] = frames.lookup(static, base, (partner_msg or scan_msg).header.frame_id)
    observations = observe(image, scan, ir, mounting["lidar"], mounting["ir"], mounting["camera"], model.config.perception)
    near, far = params["min_distance"], params["max_distance"]
    seen = [
        o for o in observations
        if getattr(o, modality) is not None and near <= o.candidate.distance <= far and abs(o.candidate.bearing) <= params["max_bearing"]
    ][: params["max_objects"]]
    return np.stack([view_vector(modality, getattr(o, modality)) for o in seen]) if seen else np.zeros((0, 0), np.float32)


def bare_path(model: Any, modality: str, messages: dict[str, Any], static: Sequence[Any], params: dict[str, Any]) -> int:
    """bare_views and the torch forward: the node's path without DDS; the number of encodings."""
    views = bare_views(model, modality, messages, static, params)
    if len(views):
        model.encode_views(modality, views)
    return len(views)


def render_frames(
    world: Path, modalities: Sequence[str], model: Any, params: dict[str, dict[str, Any]], rate_hz: float
) -> tuple[Any, list[Any], dict[str, list[Frame]]]:
    """The robot VIEW_DISTANCE from each object of `world`, facing it: the /tf_static message, its
    transforms as the node converts them, and per modality the frames in which the node's path finds
    an object to encode (BenchError when there is none)."""
    from tf2_msgs.msg import TFMessage

    from m2vae_fusion.nodes.encoder import transform_of
    from m2vae_fusion.sim import ros_bridge as bridge
    from m2vae_fusion.sim.simulator import SimConfig, Simulator
    from m2vae_fusion.sim.viewpoints import look_at

    prefix = NAMESPACE + "/"
    with Simulator(SimConfig(world=world)) as sim:
        static_msg = bridge.static_tf_message(sim.static_transforms(), 0.0, prefix)
        readings = []
        for target in sim.objects:
            pose = look_at(target, VIEW_DISTANCE, math.atan2(target.y, target.x))
            sim.set_robot_pose(pose.x, pose.y, pose.yaw)
            readings.append((sim.camera(), sim.lidar(), sim.ir(), sim.odometry()))
    static = [transform_of(t) for t in static_msg.transforms]
    frames: dict[str, list[Frame]] = {}
    for modality in modalities:
        frames[modality] = []
        for camera, lidar, ir, odom in readings:
            messages = {"scan": bridge.laser_scan(lidar, 0.0, rate_hz, prefix)}
            if modality == "camera":
                messages = {"camera/camera_info": bridge.camera_info(camera, 0.0, prefix), "camera/image_raw": bridge.image(camera, 0.0, prefix), **messages}
            elif modality == "ir":
                messages = {"ir/scan": bridge.laser_scan(ir, 0.0, rate_hz, prefix), **messages}
            views = bare_views(model, modality, messages, static, params[modality])
            if len(views):
                odom_msg = TFMessage(transforms=[bridge.odom_transform(odom, 0.0, prefix)])
                frames[modality].append(Frame(odom_msg, list(messages.items()), len(views), views))
        if not frames[modality]:
            raise BenchError(f"the {modality} encoder's path finds no object to encode in any of the {len(readings)} views of {world}")
    return static_msg, static, frames


# ------------------------------------------------------------ replaying frames to a node


class Replay:
    """This process's side of the DDS link to one encoder node: publishes frames, collects the
    arrival times of encodings per sensor stamp."""

    def __init__(self, modality: str, static_msg: Any) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import CameraInfo, Image, LaserScan
        from tf2_msgs.msg import TFMessage

        from m2vae_fusion.nodes.encoder import ENCODING_QOS, TF_QOS, TF_STATIC_QOS
        from m2vae_msgs.msg import ModalityEncoding

        self.context = rclpy.Context()
        # Ctrl-C stays a KeyboardInterrupt, so the caller's cleanup stops the node
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("bench_nodes", namespace=f"/{NAMESPACE}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        types = {"scan": LaserScan, "ir/scan": LaserScan, "camera/image_raw": Image, "camera/camera_info": CameraInfo}
        inputs = ["scan"] + {"camera": ["camera/camera_info", "camera/image_raw"], "ir": ["ir/scan"]}.get(modality, [])
        self.publishers = {topic: self.node.create_publisher(types[topic], topic, qos_profile_sensor_data) for topic in inputs}
        self.tf = self.node.create_publisher(TFMessage, "/tf", TF_QOS)
        self.tf_static = self.node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.tf_static.publish(static_msg)
        self.arrivals: dict[int, list[int]] = {}  # per frame stamp
        self.sent: dict[int, int] = {}  # frame stamp -> when its first sensor message went out
        self.nonfinite = 0
        self.encodings = self.node.create_subscription(ModalityEncoding, "encodings", self._on_encoding, ENCODING_QOS)

    def _on_encoding(self, msg: Any, info: Any) -> None:
        arrived = info.get("received_timestamp") or time.time_ns()  # 0 where the RMW does not fill it in
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.arrivals.setdefault(stamp, []).append(arrived)
        if not all(math.isfinite(v) for v in (*msg.mean, *msg.log_var)):
            self.nonfinite += 1

    def connected(self) -> bool:
        """The node subscribes to every input and publishes encodings."""
        return all(p.get_subscription_count() > 0 for p in (*self.publishers.values(), self.tf)) and self.encodings.get_publisher_count() > 0

    def send(self, frame: Frame) -> int:
        """Publish `frame` stamped now (ROS time = wall time here); returns the stamp in ns."""
        from builtin_interfaces.msg import Time

        stamp_ns = time.time_ns()
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        frame.odom.transforms[0].header.stamp = stamp
        for _, msg in frame.messages:
            msg.header.stamp = stamp
        self.tf.publish(frame.odom)
        self.sent[stamp_ns] = time.time_ns()
        for topic, msg in frame.messages:
            self.publishers[topic].publish(msg)
        return stamp_ns

    def answered(self, stamp_ns: int, expected: int) -> int | None:
        """The latency in ns of the frame stamped `stamp_ns` once its `expected` encodings are in."""
        arrived = self.arrivals.get(stamp_ns, ())
        return max(arrived[:expected]) - self.sent[stamp_ns] if len(arrived) >= expected else None

    def spin_until(self, deadline: float, done: Callable[[], bool] = lambda: False) -> bool:
        """Take messages until `done()` or time.monotonic() reaches `deadline`; returns done()."""
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.executor.spin_once(timeout_sec=left)
        return True

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def percentiles_ms(samples_ns: Sequence[int]) -> dict[str, float]:
    import numpy as np

    p50, p99 = np.percentile(np.asarray(samples_ns, dtype=float) / 1e6, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "samples": len(samples_ns)}


def measure_modality(
    modality: str,
    frames: Sequence[Frame],
    static_msg: Any,
    static: Sequence[Any],
    model: Any,
    params: dict[str, Any],
    env: dict[str, str],
    command: Sequence[str],
    *,
    rate_hz: float,
    messages: int,
    warmup: int,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    answer_timeout_s: float = 10.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start the node with `command`, replay `frames` to it at `rate_hz` and time it against the bare
    path, interleaved; the node is stopped whatever happens."""
    what = f"the {modality} encoder node"
    with ros_environment(env):
        process = NodeProcess(command, env)
        replay = None
        try:
            replay = Replay(modality, static_msg)
            started = time.monotonic()
            while not replay.connected():
                process.check_alive(what)
                if time.monotonic() - started > startup_timeout_s:
                    raise BenchError(
                        f"{what} did not subscribe to /tf and {', '.join(f'/{NAMESPACE}/{t}' for t in replay.publishers)} and publish "
                        f"/{NAMESPACE}/encodings within {startup_timeout_s:g} s; "
                        f"its last output:\n{process.output()}"
                    )
                replay.spin_until(time.monotonic() + 0.1)
            log(f"{modality}: node connected after {time.monotonic() - started:.1f} s")
            return _replay_frames(modality, frames, static, model, params, process, replay, rate_hz, messages, warmup, answer_timeout_s, what)
        finally:
            if replay is not None:
                replay.close()
            process.stop()


def _replay_frames(
    modality: str, frames: Sequence[Frame], static: Sequence[Any], model: Any, params: dict[str, Any], process: NodeProcess,
    replay: Replay, rate_hz: float, messages: int, warmup: int, answer_timeout_s: float, what: str,
) -> dict[str, Any]:
    import numpy as np

    period = 1.0 / rate_hz
    inputs = [dict(f.messages) for f in frames]
    sent = 0
    next_tick = time.monotonic()

    def tick(measure: Timings | None) -> tuple[int, Frame]:
        """Send the next frame on schedule, wait for its encodings until the next tick, and once they
        are in (the node idle again) time the bare path and the torch forward on the same frame."""
        nonlocal sent, next_tick
        replay.spin_until(next_tick)
        i = sent % len(frames)
        frame = frames[i]
        stamp = replay.send(frame)
        sent += 1
        next_tick = max(next_tick + period, time.monotonic())  # behind schedule: go on late, never burst
        if replay.spin_until(next_tick, lambda: replay.answered(stamp, frame.expected) is not None) and measure is not None:
            t0 = time.perf_counter_ns()
            bare_path(model, modality, inputs[i], static, params)
            t1 = time.perf_counter_ns()
            model.encode_views(modality, frame.views)
            t2 = time.perf_counter_ns()
            measure.bare.append(t1 - t0)
            measure.forward.append(t2 - t1)
        process.check_alive(what)
        return stamp, frame

    # until the first answer: the node may still wait for /tf_static or camera_info
    deadline = time.monotonic() + answer_timeout_s
    while True:
        stamp, frame = tick(None)
        if replay.answered(stamp, frame.expected) is not None:
            break
        if time.monotonic() > deadline:
            raise BenchError(
                f"{what} sent no encodings on /{NAMESPACE}/encodings within {answer_timeout_s:g} s of connecting "
                f"({sent} frames sent at {rate_hz:g} Hz, {sum(map(len, replay.arrivals.values()))} encodings received); its last output:\n{process.output()}"
            )
    for _ in range(warmup):
        tick(None)

    timings = Timings()
    measured: list[tuple[int, Frame]] = []
    cpu0, wall0 = process.cpu_seconds(), time.monotonic()
    for _ in range(messages):
        measured.append(tick(timings))
    cpu1, wall1 = process.cpu_seconds(), time.monotonic()
    replay.spin_until(time.monotonic() + STRAGGLERS_S, lambda: all(replay.answered(s, f.expected) is not None for s, f in measured))

    halves: list[list[int]] = [[], []]
    for k, (stamp, frame) in enumerate(measured):
        latency = replay.answered(stamp, frame.expected)
        if latency is not None:
            timings.node.append(latency)
            halves[2 * k >= len(measured)].append(latency)
    if not timings.bare:  # the bare path is timed only after an answer within the frame period
        raise BenchError(
            f"{what} answered none of the {messages} measured frames within a frame period ({period * 1e3:.0f} ms; {len(timings.node)} later); "
            f"its last output:\n{process.output()}"
        )
    node, bare, forward = percentiles_ms(timings.node), percentiles_ms(timings.bare), percentiles_ms(timings.forward)
    # None: a half without answers, which already fails "kept up"
    drift = float(np.median(halves[1]) / np.median(halves[0])) if halves[0] and halves[1] else None
    window = wall1 - wall0
    sent_rate = (messages - 1) / (measured[-1][0] - measured[0][0]) * 1e9
    cpu = (cpu1 - cpu0) / window
    answered = len(timings.node)
    return {
        "node_ms": node,
        "bare_ms": bare,
        "forward_ms": forward,
        "ratio_p50": node["p50"] / bare["p50"],
        "cpu_cores": cpu,
        "cpu_ms_per_message": (cpu1 - cpu0) / messages * 1e3,
        "sent": messages,
        "answered": answered,
        "sent_rate_hz": sent_rate,
        "latency_drift": drift,
        "kept_up": answered == messages and drift is not None and drift <= DRIFT_LIMIT and sent_rate >= RATE_SHORTFALL * rate_hz,
        "encodings_per_message": float(np.mean([f.expected for _, f in measured])),
        "nonfinite_encodings": replay.nonfinite,
        "views": len(frames),
        "cpu_window_s": window,
    }


# ------------------------------------------------------------ the benchmark


def machine() -> dict[str, Any]:
    """Where the figures come from, and how busy it was."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average_1min": os.getloadavg()[0],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
    }


def bench_nodes(
    modalities: Sequence[str],
    *,
    messages: int = 300,
    warmup: int = 30,
    rate_hz: float = 30.0,
    world: Path | None = None,
    model_dir: Path | None = None,
    params_file: Path | None = None,
    domain_id: int | None = None,
    executor: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    import torch

    from m2vae_fusion.bringup.ros_env import MAX_SAFE_DOMAIN_ID, isolated_ros_env
    from m2vae_fusion.model.perception_model import PerceptionModel
    from m2vae_fusion.resources import config_path, default_model_dir, share_dir

    if messages < 2 or warmup < 0 or not rate_hz > 0:
        raise ValueError(f"bench nodes: --messages must be >= 2, --warmup >= 0 and --rate-hz > 0, got {messages}, {warmup}, {rate_hz}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"bench nodes: --modalities must be among {', '.join(MODALITIES)}, got {list(modalities)}")
    if domain_id is not None and not 0 <= domain_id <= MAX_SAFE_DOMAIN_ID:
        raise ValueError(f"bench nodes: --domain-id must be in 0..{MAX_SAFE_DOMAIN_ID}, got {domain_id}")
    world = world or share_dir() / "worlds" / "arena.sdf"
    params_file = params_file or config_path("encoders.yaml")
    for path in (world, params_file):
        if not path.is_file():
            raise FileNotFoundError(f"bench nodes: {path} does not exist")
    model = PerceptionModel.load(model_dir or default_model_dir())
    params = {m: encoder_parameters(params_file, m) for m in modalities}
    if executor is not None:
        for values in params.values():
            values["executor"] = executor
    torch.set_num_threads(int(params[modalities[0]]["threads"]))  # as the node: the bare path gets what it gets
    env = isolated_ros_env(domain_id)
    results: dict[str, Any] = {
        "rate_hz": rate_hz,
        "messages": messages,
        "warmup": warmup,
        "world": str(world),
        "model_id": model.model_id,
        "domain_id": int(env["ROS_DOMAIN_ID"]),
        "machine": machine(),
        "executors": {m: params[m]["executor"] for m in modalities},
        "modalities": {},
        "targets": TARGETS,
    }
    static_msg, static, frames = render_frames(world, modalities, model, params, rate_hz)
    for modality in modalities:
        command = encoder_command(modality, params_file, model_dir, executor)
        log(f"{modality}: {' '.join(command)} on ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}, {len(frames[modality])} views")
        results["modalities"][modality] = measure_modality(
            modality, frames[modality], static_msg, static, model, params[modality], env, command,
            rate_hz=rate_hz, messages=messages, warmup=warmup, log=log,
        )
    return results


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    columns = ("modality", "node p50", "node p99", "bare p50", "bare p99", "ratio p50", "CPU (cores)", "kept up", "torch fwd p50/p99")
    widths = (9, 9, 9, 9, 9, 10, 12, 16, 18)
    lines = [
        f"encoder nodes over DDS vs the bare path in this process: {results['messages']} messages per modality at "
        f"{results['rate_hz']:g} Hz after {results['warmup']} warm-up, model {results['model_id']}, executor "
        f"{'/'.join(sorted(set(results['executors'].values())))}",
        f"machine: {m['cpu']}, {m['usable_cpus']} of {m['cpus']} CPUs usable, load {m['load_average_1min']:.1f} at the start; times in ms",
        " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths))),
    ]
    for modality, r in results["modalities"].items():
        kept = f"{'yes' if r['kept_up'] else 'no'} {r['answered']}/{r['sent']}"
        cells = (
            modality, f"{r['node_ms']['p50']:.2f}", f"{r['node_ms']['p99']:.2f}", f"{r['bare_ms']['p50']:.2f}", f"{r['bare_ms']['p99']:.2f}",
            f"{r['ratio_p50']:.2f}", f"{r['cpu_cores']:.3f}", kept, f"{r['forward_ms']['p50']:.2f}/{r['forward_ms']['p99']:.2f}",
        )
        lines.append(" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    drift = ", ".join(f"{k} {'-' if r['latency_drift'] is None else format(r['latency_drift'], '.2f')}" for k, r in results["modalities"].items())
    lines.append(
        f"goals: ratio p50 <= {TARGETS['ratio_p50']:g}; camera node < {TARGETS['camera_cpu_cores']:g} core at 30 Hz. kept up: all answered, "
        f"sent at >= {RATE_SHORTFALL:.0%} of the rate, second-half p50 <= {DRIFT_LIMIT:g}x first-half "
        f"(drift: {drift})"
    )
    return "\n".join(lines)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=300, help="measured frames per modality (default: 300)")
    parser.add_argument("--warmup", type=int, default=30, help="frames sent after the node's first answer before measuring (default: 30)")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="frames per second sent to each node (default: 30, a camera's frame rate)")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=MODALITIES, help="encoder nodes to measure, one after the other (default: all)")
    parser.add_argument("--world", type=Path, help="world SDF to render the views from (default: the package's worlds/arena.sdf)")
    parser.add_argument("--model", type=Path, help="perception model folder, for the nodes and the bare path (default: the shipped m2vae_fusion/weights/amiro)")
    parser.add_argument("--params-file", type=Path, help="encoder parameters (default: the package's config/encoders.yaml)")
    parser.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID of the measurement (default: a random one, loopback-only discovery)")
    parser.add_argument(
        "--executor", choices=EXECUTORS, help="the nodes' executor parameter (default: the params file's; events in the package's)"
    )


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    results = bench_nodes(
        args.modalities, messages=args.messages, warmup=args.warmup, rate_hz=args.rate_hz, world=args.world,
        model_dir=args.model, params_file=args.params_file, domain_id=args.domain_id, executor=args.executor, log=lambda text: print(text, file=sys.stderr),
    )
    return results, table(results)
