"""What every node of m2vae_fusion shares around rclpy: declaring described, checked parameters, the
error a node raises for a parameter it cannot run with, and `run_node`, the `main` of each console
script (fatal log + exit status 2 for a bad parameter, exit status 0 on SIGINT, SIGTERM or an external
shutdown), spinning the node on the executor its `executor` parameter names (executor_parameter).

Signals: rclpy's own handlers are not installed (m2vae_fusion.ros_interface.stop_signals says why). SIGINT and
SIGTERM set a flag; the spin loop sees it within SPIN_TICK_S, leaves the executor between callbacks,
destroys the node and shuts rclpy down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, ParameterValue
from rclpy.exceptions import ParameterException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from m2vae_fusion.ros_interface.parameters import Parameter, ParameterError, Parameters, text
from m2vae_fusion.ros_interface.stop_signals import STOP, StopSignals

__all__ = ["Parameter", "ParameterError", "Parameters", "declare", "declare_executor", "executor_parameter", "run_node"]

EXECUTORS = ("single_threaded", "events")
SPIN_TICK_S = 0.1  # longest time between a stop signal and the spin loop seeing it


def executor_parameter(default: str) -> Parameter:
    """The `executor` entry of a node's parameter table, with the node's default."""
    return text(
        default,
        (
            "executor spinning the node: events (rclpy.experimental.EventsExecutor, in C++: takes each message "
            "as it arrives, where single_threaded, rclpy's Python executor, rebuilds a wait set of all the node's "
            "entities per wake-up; measured by `m2vae bench nodes --executor`) | single_threaded"
        ),
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
            node.get_logger().warning(
                "executor 'events': this rclpy has no rclpy.experimental.EventsExecutor; spinning on single_threaded"
            )
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


def run_node(
    name: str, factory: Callable[[], Node], args: list[str] | None = None, close: Callable[[Node], None] | None = None
) -> None:
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


def declare(node: Node, table: Parameters, name: str, default: Any = None) -> Any:
    """The parameter `name` of `table` (`default` replaces a table default of None, worked out at start-up),
    checked against its range with a message naming it; its descriptor then carries type, description and
    range, so `ros2 param describe` shows them and rclpy refuses an out-of-range value set at run time."""
    entry = table[name]
    default = entry.default if default is None else default
    if entry.type is float:
        # Dynamic typing at declaration so `-p rate_hz:=5` (an integer) is taken; the final descriptor is
        # typed double, since rclpy skips the range check of an integer under dynamic typing.
        value = node.declare_parameter(
            name, float(default), ParameterDescriptor(description=entry.description, dynamic_typing=True)
        ).value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"parameter {name!r} must be a finite number, got {value!r}")
        entry.check(name, value)
        node.set_descriptor(
            name, entry.descriptor(), ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
        )
        return float(value)
    # The range is attached after the check: declared with it, rclpy would refuse an override with its own
    # message instead of the one naming the bound.
    unranged = entry.descriptor()
    unranged.integer_range, unranged.floating_point_range = [], []
    value = node.declare_parameter(name, default, unranged).value
    entry.check(name, value)
    if entry.has_range:
        node.set_descriptor(name, entry.descriptor())
    return value
