"""What every node of m2vae_fusion shares around rclpy: declaring described, checked parameters, the
error a node raises for a parameter it cannot run with, and `run_node`, the `main` of each console
script (fatal log + exit status 2 for a bad parameter, exit status 0 on SIGINT, SIGTERM or an external
shutdown), spinning the node on the executor its `executor` parameter names (executor_parameter).

Signals: rclpy's own handlers are not installed (m2vae_fusion.ros_interface.stop_signals says why). SIGINT and
SIGTERM set a flag; the spin loop sees it within SPIN_TICK_S, leaves the executor between callbacks,
destroys the node and shuts rclpy down."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from m2vae_fusion.ros_interface.stop_signals import STOP, StopSignals


class ParameterError(ValueError):
    """A parameter has a value the node cannot run with; the message names it."""


EXECUTORS = ("single_threaded", "events")
SPIN_TICK_S = 0.1  # longest time between a stop signal and the spin loop seeing it


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


def node_executor(node: Node) -> Executor:
    """The executor the node's `executor` parameter names (single_threaded for a node without it)."""
    if node.has_parameter("executor") and node.get_parameter("executor").value == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # a system rclpy of an older distribution
            node.get_logger().warning("executor 'events': this rclpy has no rclpy.experimental.EventsExecutor; spinning on single_threaded")
        else:
            return EventsExecutor(context=node.context)
    return SingleThreadedExecutor(context=node.context)


def spin_until_stopped(node: Node, executor: Executor, stop: StopSignals) -> None:
    """Run the node's callbacks until a stop signal or until its context is shut down (a node ending
    itself, e.g. the scoreboard after its duration)."""
    # Not executor.spin(): it would not return to Python to see the signal flag, and the EventsExecutor
    # of rclpy 9.1 spins a core when it waits without a timeout.
    executor.add_node(node)
    try:
        while not stop.requested and executor.context.ok():
            executor.spin_once(timeout_sec=SPIN_TICK_S)
    except ExternalShutdownException:
        pass
    finally:
        executor.remove_node(node)
        executor.shutdown()


def run_node(name: str, factory: Callable[[], Node], args: list[str] | None = None, close: Callable[[Node], None] | None = None) -> None:
    """The `main` of a node's console script: exit status 0 when stopped by a signal or by the node
    itself, 2 for a parameter it cannot run with; any other error propagates (non-zero status)."""
    stop = STOP.install()  # before init (ros_interface.entry: before the imports): a signal while loading is a stop too
    # Not `with rclpy.init()`: Jazzy's rclpy (7.1) returns None there.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        try:
            node = factory()
        except (ParameterError, ParameterException) as exc:
            rclpy.logging.get_logger(name).fatal(str(exc))
            raise SystemExit(2) from None
        try:
            spin_until_stopped(node, node_executor(node), stop)
        finally:
            (close or Node.destroy_node)(node)
    finally:
        rclpy.try_shutdown()
        stop.ignore_from_now()


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
