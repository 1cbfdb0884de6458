"""What a node graph is made of: one NodeSpec per process, gathered in a Description, and where the
executables they name are installed. bringup.graph builds the project's graphs from these; the launch
files turn NodeSpecs into launch actions and `m2vae launch` (bringup.launcher) starts them as
processes, so both run the same graph. Nothing here imports launch or launch_ros."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from m2vae_fusion.resources import PACKAGE

SIMULATORS = ("gazebo", "embedded")


class BringupError(ValueError):
    """A world, option or override the description cannot be built from; the message names it."""


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph, everything `ros2 launch` and the launcher need to start it.

    output: `screen` echoes every line, `log` only WARN/ERROR/FATAL. ros=False: not a ROS node (no
    --ros-args). ends_launch: its exit with status 0 is the launch's normal end; one_shot: exits by
    itself when done (a spawner) and the launch goes on; a non-zero status or a kill ends the launch
    with a non-zero status. Another node's status 0 (stopped in order) ends a ros2 launch normally,
    since a terminal's Ctrl-C can reach it first (launch_actions), and is an error for the project's
    launcher, whose nodes only it can stop (launcher)."""

    name: str
    executable: str
    package: str = PACKAGE
    namespace: str = ""  # absolute (/robot1); "" = the root namespace
    params_files: tuple[Path, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    remaps: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    output: str = "log"
    ros: bool = True
    ends_launch: bool = False
    one_shot: bool = False
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """`robot1/fusion`, or `scoreboard` in the root namespace: the name in messages and logs."""
        namespace = self.namespace.strip("/")
        return f"{namespace}/{self.name}" if namespace else self.name

    def command(self, executable_path: str | None = None) -> list[str]:
        """The real argv: `<exe> ARGS --ros-args -r __ns:=/robot1 -r __node:=NAME --params-file F -p k:=v -r from:=to`."""
        argv = [executable_path or self.executable, *self.arguments]
        if not self.ros:
            return argv
        argv.append("--ros-args")
        if self.namespace:
            argv += ["-r", f"__ns:={self.namespace}"]
        argv += ["-r", f"__node:={self.name}"]
        for path in self.params_files:
            argv += ["--params-file", str(path)]
        for name, value in self.parameters.items():
            argv += ["-p", f"{name}:={render_value(value)}"]
        for source, target in self.remaps:
            argv += ["-r", f"{source}:={target}"]
        return argv


@dataclass(frozen=True)
class RobotPlacement:
    """Robot k of a simulated world: its namespace, its model instance in the world and its start pose there."""

    namespace: str  # robot1 (without '/')
    instance: str
    x: float
    y: float
    z: float
    yaw: float


@dataclass(frozen=True)
class Description:
    """A graph's processes; a simulated graph also says which simulator, world and robots."""

    nodes: tuple[NodeSpec, ...]
    notes: tuple[str, ...] = ()  # things worth telling the user (e.g. rviz2 asked for but not found)
    simulator: str | None = None
    world: Path | None = None
    robots: tuple[RobotPlacement, ...] = ()

    def node(self, key: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.key == key:
                return spec
        raise KeyError(f"no node {key!r} in the description (has: {', '.join(s.key for s in self.nodes)})")


def render_value(value: Any) -> str:
    """`value` as the text of `-p name:=TEXT`, which rcl parses as YAML: strings that would read as
    another type are quoted, lists are flow sequences (string arrays stay string arrays)."""
    if isinstance(value, (list, tuple)) and not value:
        raise BringupError("an empty list has no parameter type; leave the parameter out instead")
    text = yaml.safe_dump(list(value) if isinstance(value, tuple) else value, default_flow_style=True, width=math.inf)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _ament_prefixes() -> list[Path]:
    return [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]


def find_executable(package: str, executable: str) -> str | None:
    """A package's executable: <prefix>/lib/<package>/<exe> of an ament prefix (where ros2 run looks),
    else the PATH (console scripts of a pip install, gz)."""
    for prefix in _ament_prefixes():
        candidate = prefix / "lib" / package / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(executable)


def gazebo_available() -> bool:
    """ros_gz_sim is in an ament prefix: the default simulator is then Gazebo."""
    return any((p / "share" / "ament_index" / "resource_index" / "packages" / "ros_gz_sim").is_file() for p in _ament_prefixes())


def default_simulator() -> str:
    return "gazebo" if gazebo_available() else "embedded"
