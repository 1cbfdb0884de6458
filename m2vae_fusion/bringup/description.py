"""The simulated demo's node graph as data: `sim_description` reads config/graph_sim.yaml (or another
graph file of the same form; its header documents the keys) and returns one NodeSpec per process.
launch/sim.launch.py turns the specs into launch actions and `m2vae launch` (bringup.launcher) starts
them as processes, so both run the same graph. Nothing here imports launch or launch_ros.

Worlds: robots=1 -> worlds/arena.sdf (robot instance `amiro`), 2 -> worlds/arena_two_robots.sdf
(amiro_1, amiro_2), 3..8 -> world_gen.generate_world(GENERATED_SEED, GENERATED_OBJECTS, robots=N)
written to the cache folder (the same N gives the same file). In a given world the robots are the
models with a DiffDrive plugin, in file order; robot k drives the k-th, and fewer than N is an error.

Embedded simulator with several robots: each robot's `sim` process simulates the whole world and
drives only its own robot; the other robots stand still at their start poses in that process's world
(its sensors see them there, not where they have driven to). Robot 1's sim publishes /clock; robots
2..N remap /clock to /robotK/clock for all their nodes, so every node follows the simulator that
stamps its robot's sensor data.

Gazebo (for the launch file; not runnable without gz): one `gz sim -r` of the world with its robots
taken out; per robot, ros_gz_sim `create` spawns models/amiro renamed robotK at the robot's pose in
the world, its Gazebo topics moved under /robotK and its frames prefixed robotK/ (one shared model
would put every robot on /scan, /odom, ...); a parameter_bridge in the namespace with
config/gz_bridge.yaml's entries pointed at those topics (robot 1 alone bridges /clock); and the
transforms the embedded sim publishes itself: map -> robotK/odom at the start pose (where Gazebo's
odometry starts) and base_link -> every sensor frame of the SDF. Generated files go to the cache
folder (ROS_HOME/m2vae_fusion, default ~/.ros/m2vae_fusion).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from m2vae_fusion.core.atomic_file import write_text_atomic
from m2vae_fusion.resources import PACKAGE, share_dir

SIMULATORS = ("gazebo", "embedded")
OUTPUTS = ("screen", "log")
CONDITIONS = ("embedded", "gazebo", "gui", "rviz")
DEFAULT_GRAPH = "graph_sim.yaml"
DEFAULT_WORLDS = {1: "arena.sdf", 2: "arena_two_robots.sdf"}
GENERATED_SEED = 2  # the seed of worlds/arena_two_robots.sdf
GENERATED_OBJECTS = 8
ROBOT_MODEL = "amiro"
CLOCK = "/clock"

GRAPH_KEYS = {"namespace", "robot_remaps", "robot_nodes", "global_nodes", "robot_overrides"}
NODE_KEYS = {
    "name", "executable", "package", "params_files", "parameters", "remaps", "arguments", "output",
    "if", "ros", "clock_source", "ends_launch", "one_shot", "env",
}
OVERRIDE_KEYS = {"enabled", "parameters"}
_VARIABLE = re.compile(r"\$\{(\w+)\}")


class BringupError(ValueError):
    """A graph file, world or option the description cannot be built from; the message names it."""


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph, everything `ros2 launch` and the launcher need to start it."""

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
    """Robot k: its namespace, its model instance in the world and its start pose there."""

    namespace: str  # robot1 (without '/')
    instance: str
    x: float
    y: float
    z: float
    yaw: float


@dataclass(frozen=True)
class Description:
    simulator: str
    world: Path
    robots: tuple[RobotPlacement, ...]
    nodes: tuple[NodeSpec, ...]
    notes: tuple[str, ...] = ()  # things worth telling the user (e.g. rviz2 asked for but not found)

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


def cache_folder() -> Path:
    return Path(os.environ.get("ROS_HOME") or "~/.ros").expanduser() / PACKAGE


def find_executable(package: str, executable: str) -> str | None:
    """A package's executable: <prefix>/lib/<package>/<exe> of an ament prefix (where ros2 run looks),
    else the PATH (console scripts of a pip install, gz)."""
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidate = Path(prefix) / "lib" / package / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(executable)


def gazebo_available() -> bool:
    """ros_gz_sim is in an ament prefix: the default simulator is then Gazebo."""
    return any(
        (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / "ros_gz_sim").is_file()
        for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))
    )


def default_simulator() -> str:
    return "gazebo" if gazebo_available() else "embedded"


# ---------------------------------------------------------------- worlds


def resolve_world(world: str | Path | None, robots: int, cache: Path) -> Path:
    """The world file: a given path (relative names also in the package's worlds/), else the default for N robots."""
    from m2vae_fusion.sim import world_gen

    worlds = share_dir() / "worlds"
    if world is not None and str(world) != "":
        path = Path(world).expanduser()
        if path.is_file():
            return path.resolve()
        if not path.is_absolute() and (worlds / path).is_file():
            return worlds / path
        raise BringupError(f"world {world}: no such file (relative names are also looked up in {worlds})")
    if robots in DEFAULT_WORLDS:
        return worlds / DEFAULT_WORLDS[robots]
    path = cache / "worlds" / f"arena_{robots}_robots.sdf"
    try:
        text = world_gen.generate_world(GENERATED_SEED, GENERATED_OBJECTS, robots=robots)
    except ValueError as exc:  # ConfigError: robots out of range
        raise BringupError(f"robots={robots}: {exc}") from None
    _write_if_changed(path, text)
    return path


def world_robots(world: Path, robots: int, namespace: str = "robot{k}") -> tuple[str, tuple[RobotPlacement, ...]]:
    """The world's name and its first `robots` drivable models (DiffDrive) as robots k = 1..N in
    `namespace` (a pattern with {k})."""
    from m2vae_fusion.sim.sdf import load_world, matrix_yaw

    try:
        loaded = load_world(world, [share_dir() / "models"])
    except (ValueError, OSError) as exc:  # SdfError names file and element
        raise BringupError(f"world {world}: {exc}") from None
    drivable = [m for m in loaded.models if m.diff_drive is not None]
    if len(drivable) < robots:
        found = ", ".join(m.name for m in drivable) or "none"
        raise BringupError(
            f"world {world} has {len(drivable)} robot(s) ({found}) but {robots} were asked for: pick a world with "
            f"more robots, e.g. `m2vae sim world --seed 0 --objects 8 --robots {robots} --out my_world.sdf`, or leave "
            "the world out to get a generated one"
        )
    return loaded.name, tuple(
        RobotPlacement(namespace.format(k=k), m.name, float(m.pose[0, 3]), float(m.pose[1, 3]), float(m.pose[2, 3]), matrix_yaw(m.pose))
        for k, m in enumerate(drivable[:robots], start=1)
    )


def _write_if_changed(path: Path, text: str) -> Path:
    # unchanged files keep their mtime and never appear half-written to a second launch reading them
    if not (path.is_file() and path.read_text() == text):
        write_text_atomic(path, text)
    return path


# ---------------------------------------------------------------- Gazebo


def gazebo_world(world: Path, robots: tuple[RobotPlacement, ...]) -> str:
    """The world's SDF without the robots (they are spawned one by one); relative URIs made absolute
    because the copy lives elsewhere."""
    tree = ET.parse(world)
    element = tree.getroot().find("world")
    if element is None:
        raise BringupError(f"world {world}: no <world> element")
    instances = {r.instance for r in robots}
    for include in element.findall("include"):
        uri = (include.findtext("uri") or "").strip()
        name = (include.findtext("name") or "").strip() or uri.rstrip("/").rsplit("/", 1)[-1]
        if name in instances:
            element.remove(include)
        elif uri and "://" not in uri and not Path(uri).is_absolute():
            include.find("uri").text = str((world.parent / uri).resolve())
    for model in element.findall("model"):
        if model.get("name") in instances:
            element.remove(model)
    return ET.tostring(tree.getroot(), encoding="unicode", xml_declaration=True)


def gazebo_robot_model(model_sdf: Path, namespace: str) -> str:
    """The robot's SDF with its Gazebo topics under /<namespace> and its frame ids prefixed <namespace>/."""
    tree = ET.parse(model_sdf)
    for element in tree.getroot().iter():
        text = (element.text or "").strip()
        if not text:
            continue
        if element.tag in ("topic", "odom_topic", "tf_topic"):
            element.text = f"/{namespace}/{text.lstrip('/')}"
        elif element.tag in ("gz_frame_id", "frame_id", "child_frame_id"):
            element.text = f"{namespace}/{text}"
    return ET.tostring(tree.getroot(), encoding="unicode", xml_declaration=True)


def gazebo_bridge_config(entries: list[dict[str, Any]], namespace: str, clock: bool) -> list[dict[str, Any]]:
    """config/gz_bridge.yaml's entries for one robot: Gazebo topics under /<namespace>; /clock only if `clock`."""
    bridged = []
    for entry in entries:
        if entry["gz_topic_name"] == CLOCK:
            if clock:
                bridged.append(dict(entry))
            continue
        bridged.append({**entry, "gz_topic_name": f"/{namespace}/{entry['gz_topic_name'].lstrip('/')}"})
    return bridged


def sensor_frames(model_sdf: Path) -> list[tuple[str, str, np.ndarray]]:
    """(parent, child, 4x4) of base -> every sensor link and of every <frame> -> its parent, as the
    embedded sim publishes on /tf_static."""
    from m2vae_fusion.sim.sdf import load_model

    model = load_model(model_sdf)
    if model.diff_drive is None:
        raise BringupError(f"robot model {model_sdf} has no DiffDrive plugin")
    base = model.diff_drive.base_frame
    base_inv = np.linalg.inv(model.frame_in_model(base))
    frames = [(base, link.name, base_inv @ link.pose) for link in model.links if link.sensors and link.name != base]
    frames += [(f.attached_to, f.name, f.pose) for f in model.frames]
    return frames


def static_transform(name: str, namespace: str, parent: str, child: str, t: np.ndarray) -> NodeSpec:
    from m2vae_fusion.sim.sdf import matrix_quaternion

    qx, qy, qz, qw = matrix_quaternion(t)
    numbers = {"--x": t[0, 3], "--y": t[1, 3], "--z": t[2, 3], "--qx": qx, "--qy": qy, "--qz": qz, "--qw": qw}
    arguments = [item for flag, value in numbers.items() for item in (flag, f"{float(value):.6g}")]
    return NodeSpec(
        name=name, executable="static_transform_publisher", package="tf2_ros", namespace=f"/{namespace}",
        arguments=(*arguments, "--frame-id", parent, "--child-frame-id", child),
    )


def _yaw_matrix(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    t = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    t[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    t[:3, 3] = (x, y, z)
    return t


def gazebo_extras(world: Path, robots: tuple[RobotPlacement, ...], cache: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[NodeSpec]]:
    """Write the Gazebo files; return the global and per-robot variables and the static transform nodes."""
    folder = cache / "gazebo"
    gz_world = _write_if_changed(folder / f"{world.stem}_without_robots.sdf", gazebo_world(world, robots))
    model_sdf = share_dir() / "models" / ROBOT_MODEL / "model.sdf"
    entries = yaml.safe_load(Path(share_dir() / "config" / "gz_bridge.yaml").read_text())
    per_robot: dict[str, dict[str, Any]] = {}
    transforms: list[NodeSpec] = []
    frames = sensor_frames(model_sdf)
    for k, robot in enumerate(robots):
        ns = robot.namespace
        per_robot[ns] = {
            "robot_model": str(_write_if_changed(folder / ns / "model.sdf", gazebo_robot_model(model_sdf, ns))),
            "bridge_config": str(
                _write_if_changed(folder / ns / "gz_bridge.yaml", yaml.safe_dump(gazebo_bridge_config(entries, ns, clock=k == 0), sort_keys=False))
            ),
        }
        start = _yaw_matrix(robot.x, robot.y, 0.0, robot.yaw)
        transforms.append(static_transform("map_to_odom", ns, "map", f"{ns}/odom", start))
        transforms += [
            static_transform(f"static_tf_{child}", ns, f"{ns}/{parent}", f"{ns}/{child}", t) for parent, child, t in frames
        ]
    return {"gz_world": str(gz_world)}, per_robot, transforms


# ---------------------------------------------------------------- the graph file


def graph_path(graph: str | Path | None) -> Path:
    """A graph file: a path, or a name in config/ (`sim` -> config/graph_sim.yaml)."""
    if graph is None:
        return share_dir() / "config" / DEFAULT_GRAPH
    path = Path(graph).expanduser()
    if path.is_file():
        return path
    named = share_dir() / "config" / f"graph_{graph}.yaml"
    if named.is_file():
        return named
    raise BringupError(f"graph {graph}: neither a file nor a graph in {share_dir() / 'config'} (graph_<name>.yaml)")


def load_graph(path: Path) -> dict[str, Any]:
    try:
        graph = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BringupError(f"graph {path}: not valid YAML: {exc}") from None
    if not isinstance(graph, dict):
        raise BringupError(f"graph {path}: expected a mapping with robot_nodes / global_nodes")
    unknown = set(graph) - GRAPH_KEYS
    if unknown:
        raise BringupError(f"graph {path}: unknown key(s) {sorted(unknown)} (known: {sorted(GRAPH_KEYS)})")
    for section in ("robot_nodes", "global_nodes"):
        entries = graph.get(section) or []
        if not isinstance(entries, list):
            raise BringupError(f"graph {path}: {section} must be a list of nodes")
        for index, entry in enumerate(entries):
            where = f"graph {path}: {section}[{index}]"
            if not isinstance(entry, dict) or not entry.get("name") or not entry.get("executable"):
                raise BringupError(f"{where}: every node needs a name and an executable")
            unknown = set(entry) - NODE_KEYS
            if unknown:
                raise BringupError(f"{where} ({entry['name']}): unknown key(s) {sorted(unknown)} (known: {sorted(NODE_KEYS)})")
            if entry.get("output", "log") not in OUTPUTS:
                raise BringupError(f"{where} ({entry['name']}): output must be one of {OUTPUTS}, got {entry['output']!r}")
            if entry.get("if") is not None and entry["if"] not in CONDITIONS:
                raise BringupError(f"{where} ({entry['name']}): `if` must be one of {CONDITIONS}, got {entry['if']!r}")
    return graph


def substitute(value: Any, variables: Mapping[str, Any], where: str, splice: bool = False) -> Any:
    """Fill ${NAME}: a value that is exactly ${NAME} takes the variable with its type; `splice`
    (argument lists) spreads a list variable into the list."""

    def lookup(name: str) -> Any:
        if name not in variables:
            raise BringupError(f"{where}: unknown variable ${{{name}}} (known: {', '.join(sorted(variables))})")
        return variables[name]

    if isinstance(value, str):
        whole = _VARIABLE.fullmatch(value)
        if whole:
            return lookup(whole[1])
        return _VARIABLE.sub(lambda m: str(lookup(m[1])), value)
    if isinstance(value, list):
        items: list[Any] = []
        for item in value:
            filled = substitute(item, variables, where)
            if splice and isinstance(filled, list) and isinstance(item, str) and _VARIABLE.fullmatch(item):
                items += filled
            else:
                items.append(filled)
        return items
    if isinstance(value, dict):
        return {key: substitute(item, variables, where) for key, item in value.items()}
    return value


def _argument_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def node_spec(
    entry: dict[str, Any], where: str, variables: Mapping[str, Any], namespace: str, extra_remaps: Mapping[str, str],
    use_sim_time: bool, folder: Path, overrides: Mapping[str, Any] | None = None,
) -> NodeSpec:
    where = f"{where} ({entry['name']})"
    ros = bool(entry.get("ros", True))
    parameters = dict(substitute(entry.get("parameters") or {}, variables, where))
    parameters.update(substitute((overrides or {}).get("parameters") or {}, variables, where))
    if ros and not entry.get("clock_source", False):
        parameters["use_sim_time"] = use_sim_time
    remaps = {**extra_remaps, **substitute(entry.get("remaps") or {}, variables, where)}
    env = {str(k): str(v) for k, v in substitute(entry.get("env") or {}, variables, where).items()}
    for name, value in env.items():
        # a search path keeps what the user already has on it
        if name.endswith("_PATH") and os.environ.get(name):
            env[name] = f"{value}{os.pathsep}{os.environ[name]}"
    return NodeSpec(
        name=str(entry["name"]),
        executable=str(entry["executable"]),
        package=str(entry.get("package", PACKAGE)),
        namespace=f"/{namespace}" if namespace else "",
        params_files=tuple((folder / str(f)).resolve() for f in entry.get("params_files") or ()),
        parameters=parameters,
        remaps=tuple((str(a), str(b)) for a, b in remaps.items() if a != b),
        arguments=tuple(_argument_text(a) for a in substitute(list(entry.get("arguments") or []), variables, where, splice=True)),
        output=str(entry.get("output", "log")),
        ros=ros,
        ends_launch=bool(entry.get("ends_launch", False)),
        one_shot=bool(entry.get("one_shot", False)),
        env=env,
    )


# ---------------------------------------------------------------- the description


def sim_description(
    robots: int = 1,
    world: str | Path | None = None,
    simulator: str | None = None,
    *,
    headless: bool = False,
    rviz: bool = True,
    use_sim_time: bool = True,
    duration_s: float = 0.0,
    graph: str | Path | None = None,
    cache_dir: Path | None = None,
) -> Description:
    """The node graph of the simulated demo for `robots` robots in `world` (default: by the number of
    robots), with the `embedded` or `gazebo` simulator (default: gazebo when ros_gz_sim is installed).
    `headless` leaves out viz and rviz2; rviz2 also needs `rviz` and an installed rviz2. `duration_s`:
    simulated seconds until the scoreboard ends the run, 0 = forever."""
    if isinstance(robots, bool) or not isinstance(robots, int) or robots < 1:
        raise BringupError(f"robots must be a positive integer, got {robots!r}")
    simulator = simulator or default_simulator()
    if simulator not in SIMULATORS:
        raise BringupError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not math.isfinite(duration_s) or duration_s < 0:
        raise BringupError(f"duration must be a number of seconds >= 0 (0 = run until stopped), got {duration_s!r}")
    cache = Path(cache_dir) if cache_dir is not None else cache_folder()
    path = graph_path(graph)
    spec = load_graph(path)
    pattern = str(spec.get("namespace", "robot{k}"))
    world_path = resolve_world(world, robots, cache)
    world_name, placements = world_robots(world_path, robots, pattern)

    notes = []
    rviz_found = find_executable("rviz2", "rviz2") is not None
    if rviz and not headless and not rviz_found:
        notes.append("rviz2 not found: not starting it (install ros-<distro>-rviz2 to see markers and the latent image)")
    flags = {"embedded": simulator == "embedded", "gazebo": simulator == "gazebo", "gui": not headless, "rviz": rviz and not headless and rviz_found}

    variables: dict[str, Any] = {
        "world": str(world_path),
        "world_name": world_name,
        "robots": [r.namespace for r in placements],
        "duration_s": float(duration_s),
        "config": str(share_dir() / "config"),
        "models": str(share_dir() / "models"),
        "gz_world": "",
        "gz_args": [],
    }
    per_robot: dict[str, dict[str, Any]] = {r.namespace: {"robot_model": "", "bridge_config": ""} for r in placements}
    extra_nodes: list[NodeSpec] = []
    if simulator == "gazebo":
        global_vars, per_robot, extra_nodes = gazebo_extras(world_path, placements, cache)
        variables.update(global_vars)
        variables["gz_args"] = ["-r", *(["-s"] if headless else []), global_vars["gz_world"]]

    overrides = spec.get("robot_overrides") or {}
    robot_entries = spec.get("robot_nodes") or []
    names = {entry["name"] for entry in robot_entries}
    for namespace, block in overrides.items():
        for name, override in (block or {}).items():
            if name not in names:
                raise BringupError(f"graph {path}: robot_overrides.{namespace}: no robot node {name!r} (has: {', '.join(sorted(names))})")
            unknown = set(override or {}) - OVERRIDE_KEYS
            if unknown:
                raise BringupError(f"graph {path}: robot_overrides.{namespace}.{name}: unknown key(s) {sorted(unknown)} (known: {sorted(OVERRIDE_KEYS)})")

    nodes: list[NodeSpec] = []
    for k, robot in enumerate(placements, start=1):
        namespace = robot.namespace
        clock = CLOCK if k == 1 or simulator == "gazebo" else f"/{namespace}{CLOCK}"
        robot_vars = {
            **variables, **per_robot[robot.namespace], "namespace": namespace, "robot_instance": robot.instance,
            "x": robot.x, "y": robot.y, "z": robot.z, "yaw": robot.yaw, "clock": clock,
        }
        where = f"graph {path}: robot_nodes"
        remaps = {str(a): str(b) for a, b in substitute(spec.get("robot_remaps") or {}, robot_vars, f"graph {path}: robot_remaps").items()}
        for entry in robot_entries:
            override = (overrides.get(namespace) or {}).get(entry["name"]) or {}
            if not override.get("enabled", True) or (entry.get("if") and not flags[entry["if"]]):
                continue
            nodes.append(node_spec(entry, where, robot_vars, namespace, remaps, use_sim_time, path.parent, override))
    for entry in spec.get("global_nodes") or []:
        if entry.get("if") and not flags[entry["if"]]:
            continue
        nodes.append(node_spec(entry, f"graph {path}: global_nodes", variables, "", {}, use_sim_time, path.parent))
    nodes += [replace(n, parameters={**n.parameters, "use_sim_time": use_sim_time}) for n in extra_nodes]
    keys = [n.key for n in nodes]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise BringupError(f"graph {path}: node names must be unique per namespace, repeated: {', '.join(duplicates)}")
    return Description(simulator, world_path, placements, tuple(nodes), tuple(notes))

