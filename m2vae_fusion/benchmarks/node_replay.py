"""Replaying frames to one encoder node over DDS at a fixed rate and timing it against the bare path,
interleaved: latency, CPU and whether it kept up."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from m2vae_fusion.benchmarks.node_frames import Frame, bare_path
from m2vae_fusion.benchmarks.node_process import NAMESPACE, BenchError, NodeProcess, ros_environment

STARTUP_TIMEOUT_S = 60.0  # node start: python, torch, the model, DDS discovery
STRAGGLERS_S = 1.0  # after the last frame, wait this long for late encodings
DRIFT_LIMIT = 1.5  # "no growing latency": p50 of the second half / p50 of the first half
RATE_SHORTFALL = 0.95  # "sent at the requested rate": at least this fraction of it


@dataclass
class Timings:
    """Per-modality measurements in nanoseconds."""

    node: list[int] = field(default_factory=list)
    bare: list[int] = field(default_factory=list)
    forward: list[int] = field(default_factory=list)


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

        from m2vae_fusion.ros_interface.topics import ENCODING_QOS, TF_QOS, TF_STATIC_QOS
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
        return (
            all(p.get_subscription_count() > 0 for p in (*self.publishers.values(), self.tf))
            and self.encodings.get_publisher_count() > 0
        )

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
            return _replay_frames(
                modality, frames, static, model, params, process, replay, rate_hz, messages, warmup, answer_timeout_s, what
            )
        finally:
            if replay is not None:
                replay.close()
            process.stop()


class Ticker:
    """Sends the frames round and round at `rate_hz`; once a frame's encodings are in (the node idle
    again) it times the bare path and the torch forward on the same frame."""

    def __init__(
        self,
        modality: str,
        frames: Sequence[Frame],
        static: Sequence[Any],
        model: Any,
        params: dict[str, Any],
        process: NodeProcess,
        replay: Replay,
        rate_hz: float,
        what: str,
    ) -> None:
        self.modality, self.frames, self.static, self.model, self.params = modality, frames, static, model, params
        self.process, self.replay, self.what = process, replay, what
        self.period = 1.0 / rate_hz
        self.inputs = [dict(f.messages) for f in frames]
        self.sent = 0
        self.next_tick = time.monotonic()

    def tick(self, measure: Timings | None) -> tuple[int, Frame]:
        """Send the next frame on schedule, wait for its encodings until the next tick, and once they
        are in time the bare path and the torch forward into `measure`."""
        replay = self.replay
        replay.spin_until(self.next_tick)
        i = self.sent % len(self.frames)
        frame = self.frames[i]
        stamp = replay.send(frame)
        self.sent += 1
        self.next_tick = max(self.next_tick + self.period, time.monotonic())  # behind schedule: go on late, never burst
        if replay.spin_until(self.next_tick, lambda: replay.answered(stamp, frame.expected) is not None) and measure is not None:
            t0 = time.perf_counter_ns()
            bare_path(self.model, self.modality, self.inputs[i], self.static, self.params)
            t1 = time.perf_counter_ns()
            self.model.encode_views(self.modality, frame.views)
            t2 = time.perf_counter_ns()
            measure.bare.append(t1 - t0)
            measure.forward.append(t2 - t1)
        self.process.check_alive(self.what)
        return stamp, frame


def _replay_frames(
    modality: str,
    frames: Sequence[Frame],
    static: Sequence[Any],
    model: Any,
    params: dict[str, Any],
    process: NodeProcess,
    replay: Replay,
    rate_hz: float,
    messages: int,
    warmup: int,
    answer_timeout_s: float,
    what: str,
) -> dict[str, Any]:
    ticker = Ticker(modality, frames, static, model, params, process, replay, rate_hz, what)
    _until_first_answer(ticker, rate_hz, answer_timeout_s)
    for _ in range(warmup):
        ticker.tick(None)

    timings = Timings()
    measured: list[tuple[int, Frame]] = []
    cpu0, wall0 = process.cpu_seconds(), time.monotonic()
    for _ in range(messages):
        measured.append(ticker.tick(timings))
    cpu1, wall1 = process.cpu_seconds(), time.monotonic()
    replay.spin_until(
        time.monotonic() + STRAGGLERS_S, lambda: all(replay.answered(s, f.expected) is not None for s, f in measured)
    )
    return _summary(ticker, timings, measured, cpu1 - cpu0, wall1 - wall0, rate_hz, messages)


def _until_first_answer(ticker: Ticker, rate_hz: float, answer_timeout_s: float) -> None:
    """Send frames until the node answers one: it may still wait for /tf_static or camera_info."""
    replay = ticker.replay
    deadline = time.monotonic() + answer_timeout_s
    while True:
        stamp, frame = ticker.tick(None)
        if replay.answered(stamp, frame.expected) is not None:
            break
        if time.monotonic() > deadline:
            raise BenchError(
                f"{ticker.what} sent no encodings on /{NAMESPACE}/encodings within {answer_timeout_s:g} s of connecting "
                f"({ticker.sent} frames sent at {rate_hz:g} Hz, {sum(map(len, replay.arrivals.values()))} encodings received); "
                f"its last output:\n{ticker.process.output()}"
            )


def _summary(
    ticker: Ticker,
    timings: Timings,
    measured: list[tuple[int, Frame]],
    cpu_s: float,
    window: float,
    rate_hz: float,
    messages: int,
) -> dict[str, Any]:
    """Latency percentiles of node, bare path and forward, drift between the halves, CPU and whether the node kept up."""
    import numpy as np

    halves: list[list[int]] = [[], []]
    for k, (stamp, frame) in enumerate(measured):
        latency = ticker.replay.answered(stamp, frame.expected)
        if latency is not None:
            timings.node.append(latency)
            halves[2 * k >= len(measured)].append(latency)
    if not timings.bare:  # the bare path is timed only after an answer within the frame period
        raise BenchError(
            f"{ticker.what} answered none of the {messages} measured frames within a frame period ({ticker.period * 1e3:.0f} ms; {len(timings.node)} later); "
            f"its last output:\n{ticker.process.output()}"
        )
    node, bare, forward = percentiles_ms(timings.node), percentiles_ms(timings.bare), percentiles_ms(timings.forward)
    # None: a half without answers, which already fails "kept up"
    drift = float(np.median(halves[1]) / np.median(halves[0])) if halves[0] and halves[1] else None
    sent_rate = (messages - 1) / (measured[-1][0] - measured[0][0]) * 1e9
    answered = len(timings.node)
    return {
        "node_ms": node,
        "bare_ms": bare,
        "forward_ms": forward,
        "ratio_p50": node["p50"] / bare["p50"],
        "cpu_cores": cpu_s / window,
        "cpu_ms_per_message": cpu_s / messages * 1e3,
        "sent": messages,
        "answered": answered,
        "sent_rate_hz": sent_rate,
        "latency_drift": drift,
        "kept_up": answered == messages and drift is not None and drift <= DRIFT_LIMIT and sent_rate >= RATE_SHORTFALL * rate_hz,
        "encodings_per_message": float(np.mean([f.expected for _, f in measured])),
        "nonfinite_encodings": ticker.replay.nonfinite,
        "views": len(ticker.frames),
        "cpu_window_s": window,
    }
