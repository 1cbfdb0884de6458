"""builtin_interfaces/Time <-> integer nanoseconds and simulated seconds: the one place the nodes turn
stamps into numbers and back. (A header's stamp as float seconds for the bag reader, which must not
need rclpy, is m2vae_fusion.perception.ros_messages.stamp_seconds.)"""

from __future__ import annotations

from typing import Any

from builtin_interfaces.msg import Time

NS_PER_S = 1_000_000_000


def to_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (or anything with sec and nanosec) in nanoseconds."""
    return stamp.sec * NS_PER_S + stamp.nanosec


def from_ns(ns: int) -> Time:
    """Nanoseconds (>= 0) as builtin_interfaces/Time."""
    if ns < 0:
        raise ValueError(f"stamp must be >= 0 ns, got {ns}")
    return Time(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def from_seconds(seconds: float) -> Time:
    """Seconds (simulated, >= 0) as builtin_interfaces/Time, rounded to the nanosecond: a sum of
    physics steps just below a whole second lands on it."""
    if not seconds >= 0:
        raise ValueError(f"stamp must be >= 0 simulated seconds, got {seconds}")
    return from_ns(round(seconds * 1e9))
