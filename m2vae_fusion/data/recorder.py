"""`m2vae record`: record live ROS 2 topics into a bag (mcap) without `ros2 bag`. rclpy subscribes
with `raw=True`, so the CDR bytes go to disk as they came off the wire; `rosbags` writes them with
the type definitions of m2vae_fusion.data.rosbag_types.typestore().

Bag layout (the one rosbag2 writes for split bags; rosbags' Reader reads every part as one bag):
  BAG/metadata.yaml            every part, topic and count
  BAG/BAG_0.mcap, BAG_1.mcap   parts in time order; a part is closed before it would hold more than
                               --max-bag-size of message data or span --max-bag-duration
metadata.yaml is rewritten after every finished part, so a recording killed hard (SIGKILL, power)
still reads up to its last finished part; the unfinished one stays behind in BAG/BAG_<n>/.

Times: each message is stamped with its receive time on the node's ROS clock. With
`--ros-args -p use_sim_time:=true` that is the simulation's /clock: recording waits for the first
/clock message, and --duration / --max-bag-duration count simulated seconds.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # rosbags and rclpy load lazily so that `m2vae --help` answers at once
    from rosbags.interfaces import Connection, Qos
    from rosbags.rosbag2 import Writer

# Default wait for requested topics (and for /clock under use_sim_time): discovering a node that is
# still starting (the sim loads its world first) takes seconds.
DEFAULT_WAIT_S = 15.0
# Subscription queue: deep enough to ride out a slow disk write without dropping best-effort images.
QUEUE_DEPTH = 100
GRAPH_POLL_S = 0.5  # --all: how often to look at the ROS graph for new topics
LOOK_S = 0.1  # while waiting for topics or /clock: how often to look
PROGRESS_S = 0.5
SPIN_S = 0.1  # bounds how long a stop signal waits for the loop to notice it
MB = 1_000_000
NS = 1_000_000_000
# rmw's "infinite" duration (seconds, nanoseconds), written the way rosbag2 records it
RMW_INFINITE = (0x7FFFFFFF, 0xFFFFFFFF)


class RecordError(ValueError):
    """A request the recorder cannot carry out; the message names the topic or option."""


# ---------------------------------------------------------------- the bag


@dataclass(frozen=True)
class PartInfo:
    name: str
    size: int  # bytes on disk
    messages: int


@dataclass(frozen=True)
class BagSummary:
    path: Path
    parts: list[PartInfo]
    counts: dict[str, int]  # topic -> messages
    types: dict[str, str]  # topic -> message type
    start_ns: int | None  # None: no message
    end_ns: int | None

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def duration_s(self) -> float:
        return 0.0 if self.start_ns is None else (self.end_ns - self.start_ns) / NS

    def text(self) -> str:
        files = len(self.parts)
        lines = [
            f"recorded {sum(self.counts.values())} messages over {self.duration_s:.1f} s to {self.path} "
            f"({files} file{'s' if files != 1 else ''}, {self.size / MB:.1f} MB)"
        ]
        width = max((len(t) for t in self.counts), default=0)
        lines += [f"  {t:<{width}}  {self.counts[t]:>7}  {self.types[t]}" for t in sorted(self.counts)]
        shown = self.parts if len(self.parts) <= 6 else [*self.parts[:3], None, *self.parts[-2:]]
        lines += [f"  {p.name}: {p.messages} messages, {p.size / MB:.1f} MB" if p else "  ..." for p in shown]
        return "\n".join(lines)


@dataclass
class _Topic:
    msgtype: str
    offered: list[Qos]
    count: int = 0


@dataclass
class _Part:
    writer: Writer
    connections: dict[str, Connection] = field(default_factory=dict)
    data_bytes: int = 0
    messages: int = 0
    first_ns: int = 0


class SplitBag:
    """A rosbag2 folder of mcap parts. Each part is written by a rosbags Writer into its own staging
    folder BAG/BAG_<n>/; once closed, its mcap moves up into BAG/ and BAG/metadata.yaml is rewritten
    from the finished parts' metadata."""

    def __init__(self, path: Path, max_bytes: int | None = None, max_duration_ns: int | None = None) -> None:
        if path.exists():
            raise FileExistsError(f"bag {path} already exists; choose another --out or remove it")
        if not path.resolve().name:
            raise RecordError(f"--out {path}: the bag folder needs a name")
        self.path = path
        self.max_bytes = max_bytes
        self.max_duration_ns = max_duration_ns
        self.topics: dict[str, _Topic] = {}
        self.finished: list[dict[str, Any]] = []  # each part's rosbag2_bagfile_information
        self.finished_bytes = 0
        self.part: _Part | None = None

    def open(self) -> None:
        self.path.mkdir(parents=True)
        self._open_part()

    def add_topic(self, topic: str, msgtype: str, offered: list[Qos]) -> None:
        """Register a topic of a type the typestore knows; every later part lists it too."""
        self.topics[topic] = _Topic(msgtype, offered)
        self._add_connection(topic)

    def write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        if self.part.messages and self._full(stamp_ns, len(data)):
            self._finish_part()
            self._open_part()
        part = self.part
        part.writer.write(part.connections[topic], stamp_ns, data)
        if not part.messages:
            part.first_ns = stamp_ns
        part.data_bytes += len(data)
        part.messages += 1
        self.topics[topic].count += 1

    def close(self) -> BagSummary:
        if self.part is not None:
            self._finish_part()
        info = merged_metadata(self.finished)
        parts = [PartInfo(f["path"], (self.path / f["path"]).stat().st_size, f["message_count"]) for f in info["files"]]
        start, empty = info["starting_time"]["nanoseconds_since_epoch"], info["message_count"] == 0
        return BagSummary(
            self.path,
            parts,
            {t: s.count for t, s in self.topics.items()},
            {t: s.msgtype for t, s in self.topics.items()},
            None if empty else start,
            None if empty else start + info["duration"]["nanoseconds"],
        )

    @property
    def parts_started(self) -> int:
        return len(self.finished) + (self.part is not None)

    @property
    def data_bytes(self) -> int:
        return self.finished_bytes + (self.part.data_bytes if self.part else 0)

    @property
    def messages(self) -> int:
        return sum(t.count for t in self.topics.values())

    def _full(self, stamp_ns: int, size: int) -> bool:
        part = self.part
        too_big = self.max_bytes is not None and part.data_bytes + size > self.max_bytes
        too_long = self.max_duration_ns is not None and stamp_ns - part.first_ns >= self.max_duration_ns
        return too_big or too_long

    def _open_part(self) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        writer = Writer(
            self.path / f"{self.path.resolve().name}_{len(self.finished)}", version=9, storage_plugin=StoragePlugin.MCAP
        )
        writer.open()
        self.part = _Part(writer)
        for topic in self.topics:
            self._add_connection(topic)

    def _add_connection(self, topic: str) -> None:
        from m2vae_fusion.data.rosbag_types import typestore

        spec = self.topics[topic]
        self.part.connections[topic] = self.part.writer.add_connection(
            topic, spec.msgtype, typestore=typestore(), offered_qos_profiles=spec.offered
        )

    def _finish_part(self) -> None:
        part, self.part = self.part, None
        part.writer.close()
        stage = part.writer.path
        info = yaml.safe_load((stage / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        for name in info["relative_file_paths"]:
            (stage / name).replace(self.path / name)
        shutil.rmtree(stage)
        self.finished.append(info)
        self.finished_bytes += part.data_bytes
        text = yaml.safe_dump({"rosbag2_bagfile_information": merged_metadata(self.finished)}, sort_keys=False)
        write_atomic(self.path / "metadata.yaml", text)


def merged_metadata(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One rosbag2_bagfile_information for a bag made of parts, each described by its own (as the
    rosbags Writer wrote it): files in order, counts summed per topic, times spanning all parts."""
    timed = [p for p in parts if p["message_count"]]
    merged = dict(parts[0])
    if timed:
        start = min(p["starting_time"]["nanoseconds_since_epoch"] for p in timed)
        end = max(p["starting_time"]["nanoseconds_since_epoch"] + p["duration"]["nanoseconds"] for p in timed)
        merged["starting_time"] = {"nanoseconds_since_epoch": start}
        merged["duration"] = {"nanoseconds": end - start}
    topics: dict[tuple[str, str], dict[str, Any]] = {}
    for part in parts:
        for entry in part["topics_with_message_count"]:
            key = (entry["topic_metadata"]["name"], entry["topic_metadata"]["type"])
            if key in topics:
                topics[key]["message_count"] += entry["message_count"]
            else:
                topics[key] = {"topic_metadata": entry["topic_metadata"], "message_count": entry["message_count"]}
    merged["relative_file_paths"] = [name for p in parts for name in p["relative_file_paths"]]
    merged["files"] = [f for p in parts for f in p["files"]]
    merged["message_count"] = sum(p["message_count"] for p in parts)
    merged["topics_with_message_count"] = list(topics.values())
    return merged


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


# ---------------------------------------------------------------- ROS graph -> subscriptions


def bag_qos(profile: Any) -> Qos:
    """A publisher's offered rclpy QoSProfile as rosbags writes it into the bag (for `ros2 bag play`)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    def duration(d: Any) -> QosTime:
        ns = d.nanoseconds
        return QosTime(*RMW_INFINITE) if ns >= 2**63 - 1 else QosTime(ns // NS, ns % NS)

    return Qos(
        QosHistory(int(profile.history)),
        profile.depth,
        QosReliability(int(profile.reliability)),
        QosDurability(int(profile.durability)),
        duration(profile.deadline),
        duration(profile.lifespan),
        QosLiveliness(int(profile.liveliness)),
        duration(profile.liveliness_lease_duration),
        profile.avoid_ros_namespace_conventions,
    )


def subscription_qos(offered: list[Any]) -> Any:
    """A subscription QoS every offered publisher QoS can serve: reliable / transient-local only if
    all publishers offer it (a reliable subscription gets nothing from a best-effort publisher)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliable = all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    latched = all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=QUEUE_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def message_class(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image; RecordError naming the type if not importable."""
    try:
        package, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise RecordError(f"message type {msgtype} cannot be imported ({exc})") from None


def type_problem(publishers: list[Any]) -> str | None:
    """Why a topic with these publishers (rclpy TopicEndpointInfo) cannot be recorded, or None: its
    type must be one, importable, and known to the typestore with the publishers' type hash (else
    the bag would describe the bytes with another definition)."""
    from m2vae_fusion.data.rosbag_types import typestore

    types = sorted({info.topic_type for info in publishers})
    if not types:
        return "its publishers are gone"
    if len(types) > 1:
        return f"it is published with several types ({', '.join(types)})"
    msgtype, store = types[0], typestore()
    try:
        message_class(msgtype)
    except RecordError as exc:
        return str(exc)
    if msgtype not in store.fielddefs:
        return f"the rosbags typestore has no definition of {msgtype}"
    ours = store.hash_rihs01(msgtype)
    theirs = {str(info.topic_type_hash) for info in publishers} - {"INVALID"}  # INVALID: rmw gave none
    if theirs - {ours}:
        return f"the publishers' {msgtype} (hash {', '.join(sorted(theirs))}) differs from the typestore's ({ours})"
    return None


def is_hidden(topic: str) -> bool:
    return any(token.startswith("_") for token in topic.split("/"))


@dataclass(frozen=True)
class Plan:
    """What to record: topics named by the user (resolved) or every topic (`everything`)."""

    topics: tuple[str, ...]
    everything: bool
    include_hidden: bool
    wait_s: float
    duration_ns: int | None


class Recorder:
    """An rclpy node whose raw subscriptions write into a SplitBag; single-threaded, so the bag needs
    no lock."""

    def __init__(self, node: Any, bag: SplitBag, plan: Plan) -> None:
        self.node = node
        self.bag = bag
        self.plan = plan
        self.log = node.get_logger()
        self.subscriptions: dict[str, Any] = {}
        self.rejected: set[str] = set()  # topics warned about once and not recorded
        self.stop_reason: str | None = None

    # ------------------------------------------------------------ graph

    def publishers(self, topic: str) -> list[Any]:
        return [
            info
            for info in self.node.get_publishers_info_by_topic(topic)
            if info.node_name != self.node.get_name() or info.node_namespace != self.node.get_namespace()
        ]

    def visible_topics(self) -> list[str]:
        """Topics of --all: every one with a publisher other than this node."""
        return [
            name
            for name, _ in self.node.get_topic_names_and_types()
            if (self.plan.include_hidden or not is_hidden(name)) and self.publishers(name)
        ]

    def recordable(self, topic: str) -> tuple[str, list[Any]] | None:
        """(message type, publishers' QoS) if `topic` can be recorded, else None after a warning."""
        infos = self.publishers(topic)
        problem = type_problem(infos)
        if problem is None:
            return infos[0].topic_type, [info.qos_profile for info in infos]
        if topic not in self.rejected:
            self.rejected.add(topic)
            self.log.warning(f"not recording {topic}: {problem}")
        return None

    def subscribe(self, topic: str, msgtype: str, offered: list[Any]) -> None:
        from rclpy.event_handler import SubscriptionEventCallbacks

        qos = subscription_qos(offered)
        unique = list(dict.fromkeys(bag_qos(q) for q in offered))
        self.bag.add_topic(topic, msgtype, unique)
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda event: self.log.warning(
                f"{topic}: a publisher's QoS is incompatible with the recorder's ({getattr(event.last_policy_kind, 'name', event.last_policy_kind)}); its messages are not recorded"
            )
        )
        clock = self.node.get_clock()

        def receive(data: bytes) -> None:
            self.bag.write(topic, clock.now().nanoseconds, data)

        self.subscriptions[topic] = self.node.create_subscription(
            message_class(msgtype), topic, receive, qos, raw=True, event_callbacks=events
        )
        self.log.info(f"recording {topic} ({msgtype}, {qos.reliability.name.lower()}, {qos.durability.name.lower()})")

    def pick_up_new_topics(self) -> None:
        for topic in self.visible_topics():
            if topic not in self.subscriptions and topic not in self.rejected:
                found = self.recordable(topic)
                if found:
                    self.subscribe(topic, *found)

    # ------------------------------------------------------------ phases

    def spin_until(self, done: Callable[[], bool], timeout_s: float, stop: Callable[[], bool]) -> bool:
        """Spin until `done()`, asked every LOOK_S (graph queries are not free); False on timeout or
        stop request."""
        import rclpy

        deadline = time.monotonic() + timeout_s
        next_look = 0.0
        while not stop():
            now = time.monotonic()
            if now >= next_look:
                if done():
                    return True
                next_look = now + LOOK_S
            if now > deadline:
                return False
            rclpy.spin_once(self.node, timeout_sec=LOOK_S)
        return False

    def wait_for_clock(self, stop: Callable[[], bool]) -> None:
        clock = self.node.get_clock()
        if not self.spin_until(lambda: clock.now().nanoseconds > 0, self.plan.wait_s, stop) and not stop():
            raise RecordError(f"use_sim_time is set but no /clock message arrived within {self.plan.wait_s:g} s (--wait)")

    def wait_for_topics(self, stop: Callable[[], bool]) -> None:
        def missing() -> list[str]:
            return [t for t in self.plan.topics if not self.publishers(t)]

        if not self.spin_until(lambda: not missing(), self.plan.wait_s, stop) and not stop():
            known = sorted(name for name, _ in self.node.get_topic_names_and_types() if self.publishers(name))
            raise RecordError(
                f"no publisher of {', '.join(missing())} appeared within {self.plan.wait_s:g} s (--wait); "
                f"topics with publishers: {', '.join(known) or 'none'}"
            )

    def record(self, stop: Callable[[], bool], progress: bool) -> None:
        import rclpy

        for topic in self.plan.topics:
            found = self.recordable(topic)
            if found:
                self.subscribe(topic, *found)
        if self.plan.topics and not self.subscriptions:
            raise RecordError(f"none of the requested topics can be recorded: {', '.join(self.plan.topics)}")
        if self.plan.everything:
            self.pick_up_new_topics()
        clock = self.node.get_clock()
        start_ns = clock.now().nanoseconds
        next_poll = next_progress = time.monotonic()
        while not stop():
            rclpy.spin_once(self.node, timeout_sec=SPIN_S)
            now = time.monotonic()
            if self.plan.everything and now >= next_poll:
                self.pick_up_new_topics()
                next_poll = now + GRAPH_POLL_S
            elapsed_ns = clock.now().nanoseconds - start_ns
            if self.plan.duration_ns is not None and elapsed_ns >= self.plan.duration_ns:
                self.stop_reason = f"--duration {self.plan.duration_ns / NS:g} s reached"
                break
            if progress and now >= next_progress:
                next_progress = now + PROGRESS_S
                print(
                    f"\rrecording {elapsed_ns / NS:7.1f} s  {self.bag.messages:>8} msgs  "
                    f"{self.bag.data_bytes / MB:8.1f} MB  part {self.bag.parts_started - 1}",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        if progress:
            print(file=sys.stderr)


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "topics",
        nargs="*",
        metavar="TOPIC",
        help="topics to record; relative names resolve in the node's namespace (--ros-args -r __ns:=/robot1)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="BAG",
        help="bag folder to create (rosbag2: metadata.yaml + BAG_0.mcap, BAG_1.mcap, ...); must not exist",
    )
    parser.add_argument(
        "--all", action="store_true", help="record every topic that has a publisher, including ones that appear later"
    )
    parser.add_argument(
        "--include-hidden", action="store_true", help="with --all, also record hidden topics (a name part starting with '_')"
    )
    parser.add_argument(
        "--max-bag-size",
        type=float,
        metavar="MB",
        help="start a new part before one would hold more than MB megabytes (10^6 bytes) of messages",
    )
    parser.add_argument(
        "--max-bag-duration", type=float, metavar="S", help="start a new part when one spans S seconds of receive time"
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds of recording (default: until Ctrl-C / SIGTERM)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help="how long to wait for the TOPICs' publishers (default: %(default)g)",
    )
    parser.add_argument(
        "--ros-args",
        nargs=argparse.REMAINDER,
        default=[],
        dest="ros_args",
        metavar="ARG",
        help="the rest goes to rclpy, e.g. --ros-args -p use_sim_time:=true -r __ns:=/robot1",
    )


def _positive(value: float | None, option: str) -> None:
    if value is not None and not value > 0:
        raise RecordError(f"{option} must be > 0, got {value:g}")


def _check_arguments(args: argparse.Namespace) -> None:
    if args.topics and args.all:
        raise RecordError("give TOPICs or --all, not both")
    if not args.topics and not args.all:
        raise RecordError("nothing to record: give TOPICs or --all")
    for value, option in (
        (args.max_bag_size, "--max-bag-size"),
        (args.max_bag_duration, "--max-bag-duration"),
        (args.duration, "--duration"),
        (args.wait, "--wait"),
    ):
        _positive(value, option)


def _resolved_topics(node: Any, names: list[str]) -> list[str]:
    """`names` as full topic names in the node's namespace and remappings."""
    topics = []
    for topic in names:
        try:
            topics.append(node.resolve_topic_name(topic))
        except RuntimeError as exc:  # rclpy's RCLError: "failed to resolve name: <why>, at <file:line>"
            why = str(exc).removeprefix("failed to resolve name: ").split(", at ")[0]
            raise RecordError(f"invalid topic name {topic!r}: {why}") from None
    return topics


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    _check_arguments(args)
    bag = SplitBag(
        args.out,
        None if args.max_bag_size is None else int(args.max_bag_size * MB),
        None if args.max_bag_duration is None else int(args.max_bag_duration * NS),
    )
    stopped: list[str] = []

    def request_stop(signum: int, _frame: Any) -> None:
        stopped.append(signal.Signals(signum).name)

    try:
        rclpy.init(args=["m2vae record", "--ros-args", *args.ros_args], signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rclpy's RCLError names the argument it could not parse
        raise RecordError(f"--ros-args {' '.join(args.ros_args)}: {str(exc).split(', at ')[0]}") from None
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    node = None
    try:
        node = rclpy.create_node("m2vae_record")
        return _record(node, args, bag, stopped)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record(node: Any, args: argparse.Namespace, bag: SplitBag, stopped: list[str]) -> int:
    """Wait for the clock and topics, then record until a stop; the exit status (130: stopped before recording)."""
    topics = _resolved_topics(node, args.topics)
    plan = Plan(
        tuple(dict.fromkeys(topics)),
        args.all,
        args.include_hidden,
        args.wait,
        None if args.duration is None else int(args.duration * NS),
    )
    recorder = Recorder(node, bag, plan)

    def stop() -> bool:
        return bool(stopped)

    if node.get_parameter("use_sim_time").value:
        node.get_logger().info("use_sim_time: stamping with /clock; waiting for it")
        recorder.wait_for_clock(stop)
    recorder.wait_for_topics(stop)
    if stopped:
        node.get_logger().info(f"{stopped[0]} before recording started: no bag written")
        return 130
    bag.open()
    limits = [
        f"{args.max_bag_size:g} MB" if args.max_bag_size else "",
        f"{args.max_bag_duration:g} s" if args.max_bag_duration else "",
    ]
    node.get_logger().info(
        f"writing {bag.path}" + (f", a new part every {' or '.join(filter(None, limits))}" if any(limits) else "")
    )
    try:
        recorder.record(stop, progress=sys.stderr.isatty())
    finally:
        summary = bag.close()
    node.get_logger().info(f"stopped: {recorder.stop_reason or stopped[0]}")
    print(summary.text(), flush=True)
    return 0
