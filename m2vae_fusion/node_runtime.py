"""What every node of m2vae_fusion shares around rclpy: declaring described, checked parameters, the
error a node raises for a parameter it cannot run with, and `run_node`, the `main` of each console
script (fatal log + exit status 2 for a bad parameter, clean exit on Ctrl-C or an external shutdown)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


class ParameterError(ValueError):
    """A parameter has a value the node cannot run with; the message names it."""


def run_node(name: str, factory: Callable[[], Node], args: list[str] | None = None, close: Callable[[Node], None] | None = None) -> None:
    try:
        with rclpy.init(args=args):
            try:
                node = factory()
            except (ParameterError, ParameterException) as exc:
                rclpy.logging.get_logger(name).fatal(str(exc))
                raise SystemExit(2) from None
            try:
                rclpy.spin(node)
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
