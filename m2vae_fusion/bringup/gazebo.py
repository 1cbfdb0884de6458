"""The files and transforms the Gazebo variant of the simulated graph needs (for the launch file; not
runnable here without gz).

One `gz sim -r` runs the world with its robots taken out; per robot, ros_gz_sim `create` spawns
models/amiro renamed robotK at the robot's pose in the world, its Gazebo topics moved under /robotK
and its frames prefixed robotK/ (one shared model would put every robot on /scan, /odom, ...); a
parameter_bridge in the namespace takes config/gz_bridge.yaml's entries pointed at those topics
(robot 1 alone bridges /clock); and static transform publishers give what the embedded sim publishes
itself: map -> robotK/odom and base_link -> every sensor frame of the SDF. The files go to
<cache>/gazebo.

Two changes to each robot's copy of the model, for what the embedded simulator does:
- odometry: gz-sim's OdometryPublisher (the model's true pose in the world) publishes odom and
  odom -> base_link, and DiffDrive's wheel odometry moves to odom_wheels / tf_wheels (not bridged).
  The embedded sim publishes drifting wheel odometry with map -> odom as the true offset; here odom
  is the world frame and map -> odom the identity, so positions in map are true in both. With
  DiffDrive's odometry and a map -> odom fixed at the spawn pose they would drift with wheel slip.
- the IR ring's self-mask: the shipped model's body visuals carry one visibility bit that its IR ring
  masks out (the ring sits inside the shell). Robot k gets that bit shifted by k - 1, so each ring
  hides its own shell only and sees the other robots, as the embedded sim's rays do.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from m2vae_fusion.bringup.description import BringupError, NodeSpec, RobotPlacement
from m2vae_fusion.bringup.worlds import write_if_changed
from m2vae_fusion.resources import share_dir

ROBOT_MODEL = "amiro"
CLOCK = "/clock"
ODOMETRY_PUBLISHER = ("gz-sim-odometry-publisher-system", "gz::sim::systems::OdometryPublisher")
DIFF_DRIVE = "gz::sim::systems::DiffDrive"
WHEEL_ODOMETRY = {"odom_topic": "odom_wheels", "tf_topic": "tf_wheels"}  # DiffDrive's own, not bridged
# gz-rendering's visibility bits (include/gz/rendering/RenderTypes.hh, gz-rendering 8): bits 0 and 1
# are GZ_VISIBILITY_GUI and GZ_VISIBILITY_SELECTABLE, bits 28-31 are not in GZ_VISIBILITY_ALL
FREE_VISIBILITY_BITS = range(2, 28)


@dataclass(frozen=True)
class GazeboRobot:
    model: Path  # the robot's SDF, topics and frames namespaced
    bridge_config: Path
    transforms: tuple[NodeSpec, ...]  # static transform publishers, in the robot's namespace


@dataclass(frozen=True)
class GazeboFiles:
    world: Path  # the world without its robots
    robots: dict[str, GazeboRobot]  # by namespace


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


def gazebo_robot_model(model_sdf: Path, namespace: str, index: int = 0) -> str:
    """Robot number `index` (0-based) of the launch: the SDF with its Gazebo topics under /<namespace>,
    its frame ids prefixed <namespace>/, its own visibility bit and ground-truth odometry (see the module)."""
    tree = ET.parse(model_sdf)
    model = tree.getroot().find("model")
    if model is None:
        raise BringupError(f"robot model {model_sdf}: no <model> element")
    _own_visibility_bit(model, model_sdf, index)
    _true_odometry(model, model_sdf)
    for element in tree.getroot().iter():
        text = (element.text or "").strip()
        if not text:
            continue
        if element.tag in ("topic", "odom_topic", "tf_topic"):
            element.text = f"/{namespace}/{text.lstrip('/')}"
        elif element.tag in ("gz_frame_id", "frame_id", "child_frame_id", "odom_frame", "robot_base_frame"):
            element.text = f"{namespace}/{text}"
    ET.indent(tree, space="  ")
    return ET.tostring(tree.getroot(), encoding="unicode", xml_declaration=True)


def _own_visibility_bit(model: ET.Element, model_sdf: Path, index: int) -> None:
    """Move the model's one body visibility bit (and its sensors' masks of it) to bit `index` places up."""
    flags = {int(e.text) for e in model.iter("visibility_flags")}
    if not flags:
        return
    own = flags.pop() if len(flags) == 1 else 0
    if own not in [1 << b for b in FREE_VISIBILITY_BITS]:
        raise BringupError(
            f"robot model {model_sdf}: its visuals' visibility_flags must all be one bit of "
            f"{FREE_VISIBILITY_BITS.start}-{FREE_VISIBILITY_BITS.stop - 1}"
        )
    bit = own.bit_length() - 1
    if bit + index not in FREE_VISIBILITY_BITS:
        raise BringupError(
            f"{index + 1} robots need {index + 1} visibility bits from bit {bit}: gz-rendering leaves bits "
            f"{FREE_VISIBILITY_BITS.start}-{FREE_VISIBILITY_BITS.stop - 1} free"
        )
    for element in model.iter("visibility_flags"):
        element.text = str(1 << (bit + index))
    for element in model.iter("visibility_mask"):
        if int(element.text) & (1 << bit) == 0:  # a mask hiding the own body hides this robot's only
            element.text = str(0xFFFFFFFF & ~(1 << (bit + index)))


def _true_odometry(model: ET.Element, model_sdf: Path) -> None:
    """DiffDrive keeps driving; its wheel odometry moves aside and OdometryPublisher takes odom and the tf."""
    drive = next((p for p in model.findall("plugin") if p.get("name") == DIFF_DRIVE), None)
    if drive is None:
        raise BringupError(f"robot model {model_sdf} has no DiffDrive plugin")
    fields = {tag: (drive.findtext(tag) or "").strip() for tag in ("frame_id", "child_frame_id", "odom_publish_frequency")}
    for tag, topic in WHEEL_ODOMETRY.items():
        element = drive.find(tag)
        (ET.SubElement(drive, tag) if element is None else element).text = topic
    filename, name = ODOMETRY_PUBLISHER
    plugin = ET.SubElement(model, "plugin", filename=filename, name=name)
    values = {
        "odom_frame": fields["frame_id"] or "odom",
        "robot_base_frame": fields["child_frame_id"] or "base_link",
        "odom_topic": "odom",
        "tf_topic": "tf",
        "dimensions": "2",
        "odom_publish_frequency": fields["odom_publish_frequency"] or "20",
    }
    for tag, value in values.items():
        ET.SubElement(plugin, tag).text = value


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
    from m2vae_fusion.perception.frames import matrix_quaternion

    qx, qy, qz, qw = matrix_quaternion(t)
    numbers = {"--x": t[0, 3], "--y": t[1, 3], "--z": t[2, 3], "--qx": qx, "--qy": qy, "--qz": qz, "--qw": qw}
    arguments = [item for flag, value in numbers.items() for item in (flag, f"{float(value):.6g}")]
    return NodeSpec(
        name=name,
        executable="static_transform_publisher",
        package="tf2_ros",
        namespace=f"/{namespace}",
        arguments=(*arguments, "--frame-id", parent, "--child-frame-id", child),
    )


def gazebo_files(world: Path, robots: tuple[RobotPlacement, ...], cache: Path) -> GazeboFiles:
    """Write the Gazebo files for `robots` in `world` to <cache>/gazebo (unchanged ones are left alone)."""
    folder = cache / "gazebo"
    gz_world = write_if_changed(folder / f"{world.stem}_without_robots.sdf", gazebo_world(world, robots))
    model_sdf = share_dir() / "models" / ROBOT_MODEL / "model.sdf"
    entries = yaml.safe_load((share_dir() / "config" / "gz_bridge.yaml").read_text())
    frames = sensor_frames(model_sdf)
    per_robot = {}
    for k, robot in enumerate(robots):
        ns = robot.namespace
        bridge = yaml.safe_dump(gazebo_bridge_config(entries, ns, clock=k == 0), sort_keys=False)
        # OdometryPublisher's odom is the world frame (see the module)
        transforms = [static_transform("map_to_odom", ns, "map", f"{ns}/odom", np.eye(4))]
        transforms += [
            static_transform(f"static_tf_{child}", ns, f"{ns}/{parent}", f"{ns}/{child}", t) for parent, child, t in frames
        ]
        per_robot[ns] = GazeboRobot(
            model=write_if_changed(folder / ns / "model.sdf", gazebo_robot_model(model_sdf, ns, k)),
            bridge_config=write_if_changed(folder / ns / "gz_bridge.yaml", bridge),
            transforms=tuple(transforms),
        )
    return GazeboFiles(gz_world, per_robot)
