"""What every node of m2vae_fusion shares around rclpy: declaring described, checked parameters, the
error a node raises for a parameter it cannot run with, and `run_node`, the `main` of each console
script (fatal log + exit status 2 for a bad parameter, clean exit on Ctrl-C or an external shutdown),
spinning the node on the executor its `executor` parameter names (executor_parameter)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node


class ParameterError(ValueError):
    """A parameter has a value the node cannot run with; the message names it."""


EXECUTORS = ("single_threaded", "events")


def executor_parameter(default: str) -> tuple[str, str]:
    """The `executor` entry of a node's parameter table, with the node's default."""
    return default, (
        "executor spinning the node: events (rclpy.experimental.EventsExecutor, in C++: takes each message "
        "as it arrives, where single_threaded, rclpy's Python executor, rebuilds a wait set of all the node's "
        "entities per wake-up; measured by `m2vae bench nodes --executor`) | single_threaded"
    )


def declare_executor(node: Node, table: Parameters) -> str:
    """The `executor` parameter (executor_parameter() in the node's `table`), checked; run_node spins on it."""
    kind = declare(node, table, "executor")
    if kind not in EXECUTORS:
        raise ParameterError(f"parameter 'executor' must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    return kind


def node_executor(node: Node) -> Executor | None:
    """The executor the node's `executor` parameter names; None for rclpy's global single-threaded one
    (also for a node without that parameter)."""
    if not node.has_parameter("executor") or node.get_parameter("executor").value == "single_threaded":
        return None
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:  # a system rclpy of an older distribution
        node.get_logger().warning("executor 'events': this rclpy has no rclpy.experimental.EventsExecutor; spinning on single_threaded")
        return None
    return EventsExecutor(context=node.context)


def _spin(node: Node, executor: Executor | None) -> None:
    if executor is None:
        rclpy.spin(node)
        return
    # Not executor.spin() nor rclpy.spin(): the EventsExecutor of this rclpy (9.1) waits without a
    # timeout by spinning a core and running no callbacks; with one it sleeps and works. The timeout
    # only bounds how long a shutdown takes to be seen, as the executor wakes on shutdown anyway.
    executor.add_node(node)
    try:
        while executor.context.ok():
            executor.spin_once(timeout_sec=1.0)
    finally:
        executor.remove_node(node)


def run_node(name: str, factory: Callable[[], Node], args: list[str] | None = None, close: Callable[[Node], None] | None = None) -> None:
    try:
        with rclpy.init(args=args):
            try:
                node = factory()
            except (ParameterError, ParameterException) as exc:
                rclpy.logging.get_logger(name).fatal(str(exc))
                raise SystemExit(2) from None
            try:
                _spin(node, node_executor(node))
            except RuntimeError:
                # Ctrl-C shuts the context down from rclpy's signal handler; a message being taken at that
                # moment fails inside rclpy. That is the shutdown, not an error of the node.
                if rclpy.ok():
                    raise
            finally:
                (close or Node.destroy_node)(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


Parameters = dict[str, tuple[object, str]]  # name -> (default, description)


def declare(node: Node, table: Parameters, name: str, default: Any = None) -> Any:
    """A typed parameter described in `table` (rclpy rejects a value of another type, naming it)."""
    default = table[name][0] if default is None else default
    return node.declare_parameter(name, default, ParameterDescriptor(description=table[name][1])).value


def declare_number(node: Node, table: Parameters, name: str, *, positive: bool, default: float | None = None) -> float:
    """A float parameter that also takes integers (`-p rate_hz:=5`), which rclpy's typed declaration
    would refuse; > 0 if `positive`, else >= 0."""
    descriptor = ParameterDescriptor(description=table[name][1], dynamic_typing=True)
    value = node.declare_parameter(name, table[name][0] if default is None else default, descriptor).value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"parameter {name!r} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ParameterError(f"parameter {name!r} must be {'> 0' if positive else '>= 0'}, got {value}")
    return float(value)
