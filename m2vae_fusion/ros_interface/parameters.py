"""A node parameter's one source: default, type, range and description (Parameter), from which the node
declares it (ros_interface.runtime.declare), rclpy describes and range-checks it at run time (its
ParameterDescriptor) and docs/parameters.md is written (m2vae docs parameters)."""

from __future__ import annotations

import math
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from m2vae_fusion.resources import share_dir

TYPE_NAMES = {bool: "bool", int: "integer", float: "double", str: "string", list: "string array"}
ROS_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_STRING_ARRAY,
}
INT64_MAX = 2**63 - 1


class ParameterError(ValueError):
    """A parameter has a value the node cannot run with; the message names it."""


def package_file(name: str, value: str, folder: str) -> Path:
    """The file parameter `name` names: `value` itself, else (relative) the package's <share>/<folder>/value."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    shipped = share_dir() / folder
    if not path.is_absolute() and (shipped / path).is_file():
        return shipped / path
    raise ParameterError(f"parameter '{name}': {value} is not a file (relative names are also looked up in {shipped})")


@dataclass(frozen=True)
class Parameter:
    """One entry of a node's parameter table. `default` None: worked out at start-up (the description
    says how). A range is `minimum` (exclusive when `positive`) to `maximum`, either end open when None."""

    default: object
    description: str
    type: type
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPE_NAMES:
            raise TypeError(f"parameter type must be one of {[t.__name__ for t in TYPE_NAMES]}, got {self.type!r}")

    @property
    def has_range(self) -> bool:
        return self.minimum is not None or self.maximum is not None

    def range_text(self) -> str:
        """The range as docs/parameters.md and the descriptor's additional_constraints show it; '' if none."""
        low = "" if self.minimum is None else f"{'>' if self.positive else '>='} {self.minimum:g}"
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        return ", ".join(part for part in (low, high) if part)

    def check(self, name: str, value: object) -> None:
        """Raise ParameterError naming `name` when `value` is outside the range (or not a finite number)."""
        if not self.has_range:
            return
        if self.type is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ParameterError(f"parameter {name!r} must be a finite number, got {value!r}")
        if self.minimum is not None and (value < self.minimum or (self.positive and value == self.minimum)):
            raise ParameterError(f"parameter {name!r} must be {'>' if self.positive else '>='} {self.minimum:g}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(f"parameter {name!r} must be <= {self.maximum:g}, got {value}")

    def validate(self, name: str, value: object) -> None:
        """check() plus the type rclpy would insist on: what a params-file value must pass (an integer
        is taken for a double, as runtime.declare takes it)."""
        if self.type is list:
            ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        elif self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.type) and (self.type is bool or not isinstance(value, bool))
        if not ok:
            raise ParameterError(f"parameter {name!r} must be of type {self.type_name()}, got {value!r}")
        self.check(name, value)

    def descriptor(self, *, dynamic_typing: bool = False) -> ParameterDescriptor:
        """The rclpy descriptor: description, type and, where there is a range, its FloatingPointRange or
        IntegerRange (rclpy then refuses a value outside it set at run time)."""
        descriptor = ParameterDescriptor(
            description=self.description,
            type=ROS_TYPES[self.type],
            dynamic_typing=dynamic_typing,
            additional_constraints=self.range_text(),
        )
        if self.has_range and self.type is float:
            low = -sys.float_info.max if self.minimum is None else float(self.minimum)
            if self.positive and low == 0.0:
                # rclpy's range is inclusive and takes values close to an end: the smallest double keeps 0 out
                low = sys.float_info.min
            high = sys.float_info.max if self.maximum is None else float(self.maximum)
            descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
        elif self.has_range and self.type is int:
            low = -INT64_MAX - 1 if self.minimum is None else int(self.minimum) + (1 if self.positive else 0)
            high = INT64_MAX if self.maximum is None else int(self.maximum)
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
        return descriptor

    def type_name(self) -> str:
        return TYPE_NAMES[self.type]


Parameters = dict[str, Parameter]  # a node's table: name -> its entry


def number(
    default: float | None, description: str, *, minimum: float | None = 0.0, maximum: float | None = None, positive: bool = False
) -> Parameter:
    """A double parameter; >= 0 unless told otherwise (every rate, distance and period of these nodes)."""
    return Parameter(None if default is None else float(default), description, float, minimum, maximum, positive)


def integer(default: int, description: str, *, minimum: int | None = None, maximum: int | None = None) -> Parameter:
    return Parameter(default, description, int, minimum, maximum)


def text(default: str | None, description: str) -> Parameter:
    return Parameter(default, description, str)


def flag(default: bool, description: str) -> Parameter:
    return Parameter(default, description, bool)


def strings(default: list[str], description: str) -> Parameter:
    return Parameter(default, description, list)


def default_robot_id(namespace: str) -> str:
    """A robot's id where none is set: its namespace without '/', else the host name."""
    return namespace.strip("/") or socket.gethostname()
