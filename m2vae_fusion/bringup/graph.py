"""The project's node graphs as plain Python, one NodeSpec per process; the parameters stay in
config/*.yaml (each node's params file) and only what a graph decides is set here.

- `sim_description`: the simulated demo, what `m2vae launch sim`, `m2vae demo` and
  launch/sim.launch.py run. Per robot k = 1..N in namespace robotK: the embedded simulator (or, with
  Gazebo, a spawner, a topic bridge, the range adapter that turns Gazebo's raw LiDAR and IR scans
  into the AMiRo reading model, and the world's ground truth), the three encoders, fusion, the
  explorer and (not headless) viz; once, in the root namespace: Gazebo's `gz sim`, the scoreboard
  and rviz2 (asked for, not headless and installed; for more than one robot its configuration shows
  each robot's topics: m2vae_fusion.bringup.rviz_config). Every ROS node except the embedded sim
  (which publishes the clock) gets use_sim_time. With the embedded simulator each robot's `sim`
  process simulates the whole world and drives only its own robot; the other robots stand still at
  their start poses in that process's world (its sensors see them there, not where they have driven
  to). Robot 1's sim publishes /clock;
  robots 2..N remap /clock to /robotK/clock for all their nodes, so every node follows the simulator
  that stamps its robot's sensor data. Per-robot overrides (NAMESPACE -> NODE -> {enabled,
  parameters}) switch nodes off or merge parameters over the node's. A fleet key file, given once,
  goes to every robot's fusion node: all of them sign what they share and verify what they take.
- `perception_description`: a real robot's perception, attached to its existing sensor topics: the
  three encoders and fusion, and (not headless) viz and rviz2.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from m2vae_fusion.bringup.description import (
    SIMULATORS,
    BringupError,
    Description,
    NodeSpec,
    RobotPlacement,
    default_simulator,
    find_executable,
)
from m2vae_fusion.bringup.gazebo import CLOCK, GazeboRobot, gazebo_files
from m2vae_fusion.bringup.rviz_config import SHOWN_ROBOT, rviz_config, shipped_rviz_config
from m2vae_fusion.bringup.worlds import cache_folder, resolve_world, world_robots
from m2vae_fusion.resources import share_dir
from m2vae_fusion.ros_interface.latent_signing import FleetKey, FleetKeyError

MODALITIES = ("camera", "lidar", "ir")
GAZEBO_ROBOT_NODES = ("spawn", "gz_bridge", "gz_range_adapter", "ground_truth")
# every node a robot can have in the simulated graph, for checking overrides whatever the options
ROBOT_NODES = (
    "sim",
    *GAZEBO_ROBOT_NODES,
    *(f"{m}_encoder" for m in MODALITIES),
    "fusion",
    "explorer",
    "viz",
)
OVERRIDE_KEYS = ("enabled", "parameters")
ROBOT_NAMESPACE = re.compile(r"robot[1-9][0-9]*")
SNAPSHOT_RUNS_KEPT_S = 7 * 24 * 3600.0
RVIZ_ROBOT = f"/{SHOWN_ROBOT}"  # config/m2vae.rviz shows this robot's topics
RVIZ_TOPICS = ("scan", "camera/image_raw", "markers", "latent_image", "imagination")

Overrides = Mapping[str, Mapping[str, Mapping[str, Any]]]


def _config(name: str) -> Path:
    return (share_dir() / "config" / name).resolve()


@dataclass(frozen=True)
class _Namespace:
    """Makes the nodes of one namespace: the same clock setting and remaps for each."""

    namespace: str  # absolute, "" = the root namespace
    use_sim_time: bool
    remaps: tuple[tuple[str, str], ...] = ()

    def node(
        self,
        name: str,
        executable: str,
        params_file: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        *,
        clock_source: bool = False,
        **fields: Any,
    ) -> NodeSpec:
        parameters = dict(parameters or {})
        if not clock_source:  # a clock source following its own clock would wait for itself
            parameters["use_sim_time"] = self.use_sim_time
        return NodeSpec(
            name=name,
            executable=executable,
            namespace=self.namespace,
            params_files=(_config(params_file),) if params_file else (),
            parameters=parameters,
            remaps=self.remaps,
            **fields,
        )

    def perception(self, encoders: Mapping[str, Mapping[str, Any]], fusion: Mapping[str, Any]) -> list[NodeSpec]:
        """The three encoders (`encoders`: extra parameters by modality) and fusion."""
        nodes = [self.node(f"{m}_encoder", "encoder", "encoders.yaml", encoders.get(m)) for m in MODALITIES]
        return [*nodes, self.node("fusion", "fusion", "fusion.yaml", fusion)]

    def viz(self, parameters: Mapping[str, Any] | None = None) -> NodeSpec:
        return self.node("viz", "viz", "viz.yaml", parameters)

    def rviz(self, config: Path | None = None) -> NodeSpec:
        config = config or shipped_rviz_config()
        return self.node("rviz2", "rviz2", package="rviz2", ends_launch=True, arguments=("-d", str(config)))


def _rviz_wanted(asked: bool) -> tuple[bool, tuple[str, ...]]:
    """Whether to start rviz2, and the note when it was asked for but is not installed."""
    if not asked:
        return False, ()
    if find_executable("rviz2", "rviz2") is None:
        return False, ("rviz2 not found: not starting it (install ros-<distro>-rviz2 to see markers and the latent image)",)
    return True, ()


def fleet_key_parameters(fleet_key: str | Path | None) -> dict[str, str]:
    """The fusion node's fleet_key parameter for a key file (checked now, so a bad file stops the
    launch before any node starts, with the same message the node would give), or none for None / ""."""
    if not fleet_key:
        return {}
    path = Path(fleet_key).expanduser().absolute()  # the nodes may run in another folder
    try:
        FleetKey.load(path)
    except FleetKeyError as exc:
        raise BringupError(str(exc)) from None
    return {"fleet_key": str(path)}


# ---------------------------------------------------------------- the simulated demo


def sim_description(
    robots: int = 1,
    world: str | Path | None = None,
    simulator: str | None = None,
    *,
    headless: bool = False,
    rviz: bool = True,
    use_sim_time: bool = True,
    duration_s: float = 0.0,
    cache_dir: Path | None = None,
    overrides: Overrides | None = None,
    fleet_key: str | Path | None = None,
    model: str | Path | None = None,
) -> Description:
    """The node graph of the simulated demo for `robots` robots in `world` (default: by the number of
    robots), with the `embedded` or `gazebo` simulator (default: gazebo when ros_gz_sim is installed).
    `headless` leaves out viz and rviz2; rviz2 also needs `rviz` and an installed rviz2. `duration_s`:
    simulated seconds until the scoreboard ends the run, 0 = forever. `overrides`: see check_overrides.
    `fleet_key`: a fleet key file every fusion node signs and verifies latents with (None / "": off).
    `model`: a perception model folder for every encoder, fusion and viz node (None / "": the shipped one),
    e.g. one trained on Gazebo's own recordings."""
    simulator = _checked_simulator(robots, simulator, duration_s)
    overrides = check_overrides(overrides or {}, "overrides")
    chosen = {"model": str(Path(model).expanduser().absolute())} if model else {}
    fusion = {**chosen, **fleet_key_parameters(fleet_key)}
    cache = Path(cache_dir) if cache_dir is not None else cache_folder()
    world_path = resolve_world(world, robots, cache)
    world_name, placements = world_robots(world_path, robots)
    snapshots = sim_snapshot_folder(cache)
    show_rviz, notes = _rviz_wanted(rviz and not headless)
    gazebo = gazebo_files(world_path, placements, cache) if simulator == "gazebo" else None

    nodes: list[NodeSpec] = []
    for k, placement in enumerate(placements, start=1):
        ns = placement.namespace
        own_clock = gazebo is None and k > 1
        robot = _Namespace(f"/{ns}", use_sim_time, remaps=((CLOCK, f"/{ns}{CLOCK}"),) if own_clock else ())
        if gazebo is None:
            simulation = [_embedded_sim_node(robot, world_path, placement)]
        else:
            simulation = _gazebo_robot_nodes(robot, gazebo.robots[ns], world_path, world_name, placement)
        beliefs = {**fusion, "snapshot_path": str(snapshots / f"{ns}.beliefs")}
        encoders = {m: chosen for m in MODALITIES}
        robot_nodes = [*simulation, *robot.perception(encoders, beliefs), robot.node("explorer", "explorer", "explorer.yaml")]
        if not headless:
            robot_nodes.append(robot.viz(chosen))
        nodes += _overridden(robot_nodes, overrides.get(ns, {}))

    root = _Namespace("", use_sim_time)
    if gazebo is not None:
        nodes.append(_gz_sim_node(gazebo.world, headless))
    nodes.append(
        root.node(
            "scoreboard",
            "scoreboard",
            "scoreboard.yaml",
            {"robots": [p.namespace for p in placements], "duration_s": float(duration_s)},
            output="screen",
            ends_launch=True,  # the demo is over after duration_s of simulated time
        )
    )
    if show_rviz:
        nodes.append(root.rviz(rviz_config(tuple(p.namespace for p in placements), cache)))
    if gazebo is not None:
        nodes += [replace(t, parameters={"use_sim_time": use_sim_time}) for r in gazebo.robots.values() for t in r.transforms]
    return Description(tuple(nodes), notes, simulator=simulator, world=world_path, robots=placements)


def _embedded_sim_node(robot: _Namespace, world: Path, placement: RobotPlacement) -> NodeSpec:
    """The embedded simulator of one robot: the whole world, driving only `placement`'s robot."""
    parameters = {"world": str(world), "robot": placement.instance, "real_time_factor": 1.0}
    return robot.node("sim", "sim", "sim.yaml", parameters, clock_source=True)


def sim_snapshot_folder(cache: Path) -> Path:
    """Where this launch's fusion nodes keep their belief snapshots: a folder per launch, so a node
    restarted within the run resumes and the next run (another world, perhaps) starts empty. Folders
    of runs more than a week old go."""
    runs = cache / "beliefs" / "sim"
    if runs.is_dir():
        for old in runs.iterdir():
            if old.is_dir() and time.time() - old.stat().st_mtime > SNAPSHOT_RUNS_KEPT_S:
                shutil.rmtree(old, ignore_errors=True)
    runs.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))


def _gz_sim_node(world: Path, headless: bool) -> NodeSpec:
    """Gazebo itself (`gz sim`, not a ROS node), finding the package's models; closing it ends the launch."""
    models = str(share_dir() / "models")
    # a search path keeps what the user already has on it
    resource_path = os.pathsep.join(filter(None, (models, os.environ.get("GZ_SIM_RESOURCE_PATH"))))
    return NodeSpec(
        name="gz_sim",
        executable="gz",
        ros=False,
        ends_launch=True,  # closing Gazebo ends the launch
        # a server without a GUI has no display to render the camera and gpu_lidar on
        arguments=("sim", "-r", *(("-s", "--headless-rendering") if headless else ()), str(world)),
        env={"GZ_SIM_RESOURCE_PATH": resource_path},
    )


def _checked_simulator(robots: int, simulator: str | None, duration_s: float) -> str:
    """The simulator to use (the default when None), once the robot count and duration are valid."""
    if isinstance(robots, bool) or not isinstance(robots, int) or robots < 1:
        raise BringupError(f"robots must be a positive integer, got {robots!r}")
    simulator = simulator or default_simulator()
    if simulator not in SIMULATORS:
        raise BringupError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    if (
        isinstance(duration_s, bool)
        or not isinstance(duration_s, (int, float))
        or not math.isfinite(duration_s)
        or duration_s < 0
    ):
        raise BringupError(f"duration must be a number of seconds >= 0 (0 = run until stopped), got {duration_s!r}")
    return simulator


def _gazebo_robot_nodes(
    robot: _Namespace, files: GazeboRobot, world: Path, world_name: str, placement: RobotPlacement
) -> list[NodeSpec]:
    """Spawn the robot (its topics namespaced), bridge its topics into the namespace, turn its raw range
    scans into the AMiRo reading model and publish the world's ground truth, as the embedded sim does."""
    ns = placement.namespace
    pose = {"x": placement.x, "y": placement.y, "z": placement.z, "Y": placement.yaw}
    # ros_gz_sim create's ROS parameters (its gflags are on the way out); x..Y must be doubles
    spawned = {"world": world_name, "name": ns, "file": str(files.model), **{k: float(v) for k, v in pose.items()}}
    spawn = robot.node("spawn", "create", parameters=spawned, package="ros_gz_sim", one_shot=True)
    bridge = robot.node(
        "gz_bridge", "parameter_bridge", parameters={"config_file": str(files.bridge_config)}, package="ros_gz_bridge"
    )
    ranges = robot.node("gz_range_adapter", "gz_range_adapter", "gz_range_adapter.yaml")
    truth = robot.node("ground_truth", "ground_truth", "ground_truth.yaml", {"world": str(world)})
    return [spawn, bridge, ranges, truth]


def check_overrides(overrides: Any, where: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per-robot overrides, NAMESPACE -> NODE -> {enabled: false} and/or {parameters: {...}} (merged
    over the node's), checked: robotK namespaces, nodes a robot can have, known keys."""
    if not isinstance(overrides, Mapping):
        raise BringupError(f"{where}: expected NAMESPACE -> NODE -> {{enabled, parameters}}, got {type(overrides).__name__}")
    checked: dict[str, dict[str, dict[str, Any]]] = {}
    for namespace, block in overrides.items():
        if not isinstance(namespace, str) or not ROBOT_NAMESPACE.fullmatch(namespace):
            raise BringupError(f"{where}: {namespace!r} is not a robot namespace (robot1, robot2, ...)")
        if not isinstance(block or {}, Mapping):
            raise BringupError(f"{where}: {namespace}: expected NODE -> {{enabled, parameters}}")
        checked[namespace] = {}
        for name, override in (block or {}).items():
            if name not in ROBOT_NODES:
                raise BringupError(f"{where}: {namespace}: no robot node {name!r} (has: {', '.join(ROBOT_NODES)})")
            override = override or {}
            unknown = set(override) - set(OVERRIDE_KEYS) if isinstance(override, Mapping) else {"(not a mapping)"}
            if unknown:
                raise BringupError(
                    f"{where}: {namespace}.{name}: unknown key(s) {sorted(unknown)} (known: {list(OVERRIDE_KEYS)})"
                )
            if not isinstance(override.get("enabled", True), bool) or not isinstance(override.get("parameters") or {}, Mapping):
                raise BringupError(f"{where}: {namespace}.{name}: `enabled` must be true or false and `parameters` a mapping")
            checked[namespace][name] = dict(override)
    return checked


def load_overrides(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """A YAML file of per-robot overrides (see check_overrides)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise BringupError(f"overrides {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BringupError(f"overrides {path}: not valid YAML: {exc}") from None
    return check_overrides(data or {}, f"overrides {path}")


def _overridden(nodes: list[NodeSpec], overrides: Mapping[str, Mapping[str, Any]]) -> list[NodeSpec]:
    kept = []
    for spec in nodes:
        override = overrides.get(spec.name, {})
        if override.get("enabled", True):
            kept.append(replace(spec, parameters={**spec.parameters, **(override.get("parameters") or {})}))
    return kept


# ---------------------------------------------------------------- a real robot's perception


def perception_description(
    namespace: str = "",
    *,
    image_topic: str | None = None,
    image_transport: str | None = None,
    camera_info_topic: str | None = None,
    scan_topic: str | None = None,
    ir_topic: str | None = None,
    frame_prefix: str | None = None,
    model: str | Path | None = None,
    robot_id: str | None = None,
    share_latents: bool | None = None,
    fleet_key: str | Path | None = None,
    headless: bool = False,
    rviz: bool = True,
    use_sim_time: bool = False,
) -> Description:
    """The perception nodes for a robot that already publishes its sensors, in `namespace` (robot1 or
    /robot1; "" the root namespace): camera, LiDAR and IR encoders on the given topics (relative
    names resolve in the namespace; `image_transport` compressed: the camera's JPEG/PNG stream
    image_topic/compressed), fusion, and unless `headless` viz and (`rviz`, installed) rviz2
    showing this namespace's topics. `frame_prefix`: the robot's frames' prefix (default: the
    namespace plus '/'). `model`: a perception model folder for all of them. `share_latents`: exchange
    latents with other robots on the shared topic, publishing own and fusing theirs. `fleet_key`: a
    fleet key file to sign and verify latents with. None / "" leaves a parameter at its params file's
    value."""
    ns = f"/{namespace.strip('/')}" if namespace.strip("/") else ""
    model = str(Path(model).expanduser()) if model else None
    chosen = {"scan_topic": scan_topic, "frame_prefix": frame_prefix, "model": model}
    encoders = {
        "camera": {
            **chosen,
            "image_topic": image_topic,
            "image_transport": image_transport,
            "camera_info_topic": camera_info_topic,
        },
        "lidar": chosen,
        "ir": {**chosen, "ir_topic": ir_topic},
    }
    sharing = {} if share_latents is None else {"share_latents": share_latents, "fuse_foreign": share_latents}
    fusion = {"model": model, "robot_id": robot_id, **sharing, **fleet_key_parameters(fleet_key)}
    robot = _Namespace(ns, use_sim_time)
    nodes = robot.perception({m: _given(p) for m, p in encoders.items()}, _given(fusion))
    show_rviz, notes = _rviz_wanted(rviz and not headless)
    if not headless:
        nodes.append(robot.viz(_given({"model": model})))
    if show_rviz:
        shown = {
            "scan": scan_topic or _encoder_default("lidar", "scan_topic"),
            "camera/image_raw": image_topic or _encoder_default("camera", "image_topic"),
            "markers": "markers",
            "latent_image": "latent_image",
            "imagination": "imagination",
        }
        remaps = tuple((f"{RVIZ_ROBOT}/{t}", _resolve(ns, shown[t])) for t in RVIZ_TOPICS)
        nodes.append(replace(robot.rviz(), remaps=tuple((a, b) for a, b in remaps if a != b)))
    return Description(tuple(nodes), notes)


def _given(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in parameters.items() if value is not None and value != ""}


def _encoder_default(modality: str, parameter: str) -> str:
    """A topic parameter of the encoder as config/encoders.yaml sets it."""
    blocks = yaml.safe_load(_config("encoders.yaml").read_text())
    return blocks[f"/**/{modality}_encoder"]["ros__parameters"][parameter]


def _resolve(namespace: str, topic: str) -> str:
    return topic if topic.startswith("/") else f"{namespace}/{topic}"
