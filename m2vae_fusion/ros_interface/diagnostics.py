"""Counted outcomes of a node's input messages on /diagnostics (diagnostic_msgs/DiagnosticArray, the
ROS convention): one DiagnosticStatus per node, named by the node's full name, with one KeyValue per
counter. Counters only grow, so a reader takes differences.

Keys: `received <input>` for every message taken from a topic, `dropped <what>: <reason>` for every
message refused (the reasons are the nodes' own short names), and what the node made of the rest
(`published encodings`, `fused camera`, `accepted latents`, ...). The status is WARN while
messages are being dropped (some since the previous status), OK otherwise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from m2vae_fusion.ros_interface.topics import DIAGNOSTICS

TOPIC = DIAGNOSTICS.name
QOS = DIAGNOSTICS.qos
DROPPED = "dropped "


class Counters:
    """Counts by key, published by `attach` every period."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._dropped_before = 0

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def dropped(self) -> int:
        return sum(n for key, n in self.counts.items() if key.startswith(DROPPED))

    def status(self, name: str, hardware_id: str) -> DiagnosticStatus:
        dropped = self.dropped()
        new, self._dropped_before = dropped - self._dropped_before, dropped
        level = DiagnosticStatus.WARN if new else DiagnosticStatus.OK
        message = f"{dropped} messages dropped since start, {new} since the last status" if dropped else "no message dropped"
        values = [KeyValue(key=key, value=str(n)) for key, n in sorted(self.counts.items())]
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=values)


def attach(node: Node, counters: Counters, period_s: float) -> None:
    """Publish `counters` as the node's status on /diagnostics every `period_s` wall-clock seconds
    (a steady timer: also while a simulation is paused)."""
    publisher = node.create_publisher(DiagnosticArray, TOPIC, QOS)
    name = node.get_fully_qualified_name()
    hardware_id = node.get_namespace().strip("/") or name.strip("/")

    def publish() -> None:
        msg = DiagnosticArray(status=[counters.status(name, hardware_id)])
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)

    node.create_timer(period_s, publish, clock=Clock(clock_type=ClockType.STEADY_TIME))


def read(statuses: Iterable[DiagnosticStatus]) -> dict[str, dict[str, int]]:
    """node name -> counters of the statuses (values that are not integers are left out)."""
    counts = {}
    for status in statuses:
        values = {}
        for kv in status.values:
            try:
                values[kv.key] = int(kv.value)
            except ValueError:
                continue
        counts[status.name] = values
    return counts
