"""Read SDF worlds and models (the same files Gazebo loads) into plain data for the embedded simulator.

Only what the embedded backend can honour is read; every other element is reported once through the
`m2vae_fusion.sim` logger, naming the file and the element path, so a world that relies on something
the embedded simulator ignores never drifts silently. Malformed files raise `SdfError` naming the file
and the element.

Pose conventions follow SDF 1.9 with default `relative_to`: a link pose is relative to its model, a
collision / visual / sensor pose to its link, a model pose to its parent (world or including model),
a `<frame>` pose to the frame it is attached to. `<pose relative_to=...>` is not supported (error).
"""

from __future__ import annotations

import logging
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m2vae_fusion.core.errors import M2VAEError
from m2vae_fusion.perception.frames import pose_matrix

log = logging.getLogger("m2vae_fusion.sim")

MIN_VERSION = (1, 6)
RESOURCE_PATH_VARIABLES = ("GZ_SIM_RESOURCE_PATH", "IGN_GAZEBO_RESOURCE_PATH", "SDF_PATH")

# Plugins the embedded simulator implements itself, or whose job it does in another way.
PLUGINS_IMPLEMENTED = {"gz-sim-diff-drive-system"}
PLUGINS_COVERED = {
    "gz-sim-physics-system": "the embedded simulator moves the robot kinematically",
    "gz-sim-user-commands-system": "no GUI commands in the embedded simulator",
    "gz-sim-scene-broadcaster-system": "no GUI in the embedded simulator",
    "gz-sim-sensors-system": "sensors are rendered and ray-cast by the embedded simulator",
    "gz-sim-joint-state-publisher-system": "the embedded simulator does not publish joint_states",
}


class SdfError(M2VAEError, ValueError):
    """An SDF file is malformed or uses something the loader cannot represent."""

    def __init__(self, path: Path | str, element: str, reason: str) -> None:
        super().__init__(f"{path}: <{element}>: {reason}")
        self.path = Path(path)
        self.element = element


# ---------------------------------------------------------------- the data


@dataclass(frozen=True)
class Geometry:
    """kind box (size = x, y, z), cylinder (radius, length), sphere (radius,), plane (size x, y)."""

    kind: str
    size: tuple[float, ...]


@dataclass(frozen=True)
class Material:
    diffuse: tuple[float, float, float, float] = (0.7, 0.7, 0.7, 1.0)
    specular: float = 0.1  # mean of the specular colour
    roughness: float | None = None  # PBR metal workflow, when given


@dataclass(frozen=True)
class Shape:
    """A collision or visual: geometry placed at `pose` (relative to its link)."""

    name: str
    pose: np.ndarray
    geometry: Geometry
    laser_retro: float = 0.0
    material: Material = field(default_factory=Material)


@dataclass(frozen=True)
class Noise:
    mean: float = 0.0
    stddev: float = 0.0


@dataclass(frozen=True)
class CameraSpec:
    horizontal_fov: float
    width: int
    height: int
    near: float
    far: float
    noise: Noise


@dataclass(frozen=True)
class RaySpec:
    """A planar lidar: `samples` beams from min_angle to max_angle inclusive (Gazebo's spacing)."""

    samples: int
    min_angle: float
    max_angle: float
    range_min: float
    range_max: float
    noise: Noise

    @property
    def angle_increment(self) -> float:
        return (self.max_angle - self.min_angle) / (self.samples - 1) if self.samples > 1 else 0.0


@dataclass(frozen=True)
class Sensor:
    name: str
    type: str  # camera | gpu_lidar | lidar
    pose: np.ndarray  # relative to its link
    update_rate: float
    topic: str
    frame_id: str  # gz_frame_id, else the link name
    camera: CameraSpec | None = None
    ray: RaySpec | None = None


@dataclass(frozen=True)
class Link:
    name: str
    pose: np.ndarray  # relative to the model
    collisions: tuple[Shape, ...]
    visuals: tuple[Shape, ...]
    sensors: tuple[Sensor, ...]


@dataclass(frozen=True)
class Frame:
    name: str
    attached_to: str
    pose: np.ndarray  # relative to attached_to


@dataclass(frozen=True)
class DiffDrive:
    left_joint: str
    right_joint: str
    wheel_separation: float
    wheel_radius: float
    max_linear_velocity: float
    max_angular_velocity: float
    odom_frame: str
    base_frame: str


@dataclass(frozen=True)
class Model:
    name: str  # instance name in the world
    source: str  # the model's own name (its folder / <model name>), which carries an object's class
    path: Path
    pose: np.ndarray  # in the world
    static: bool
    links: tuple[Link, ...]
    frames: tuple[Frame, ...]
    diff_drive: DiffDrive | None

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise SdfError(self.path, "link", f"model {self.name!r} has no link {name!r}")

    def frame_in_model(self, name: str) -> np.ndarray:
        """Transform model -> frame for a link or a `<frame>` (followed through attached_to)."""
        for link in self.links:
            if link.name == name:
                return link.pose
        for frame in self.frames:
            if frame.name == name:
                return self.frame_in_model(frame.attached_to) @ frame.pose
        raise SdfError(self.path, "frame", f"model {self.name!r} has no link or frame {name!r}")


@dataclass(frozen=True)
class Light:
    name: str
    type: str  # directional | point | spot
    pose: np.ndarray
    direction: tuple[float, float, float]
    diffuse: tuple[float, float, float]
    specular: tuple[float, float, float]
    cast_shadows: bool


@dataclass(frozen=True)
class World:
    name: str
    path: Path
    models: tuple[Model, ...]
    lights: tuple[Light, ...]

    def model(self, name: str) -> Model:
        for model in self.models:
            if model.name == name:
                return model
        raise SdfError(
            self.path, "model", f"world {self.name!r} has no model {name!r} (has: {', '.join(m.name for m in self.models)})"
        )


# ---------------------------------------------------------------- parsing helpers


class _Reader:
    """Reads one SDF file: typed child access with errors naming file and element, and a record of
    every element that was looked at so the rest can be reported as unsupported."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise SdfError(path, "sdf", f"not well-formed XML: {exc}") from None
        except OSError as exc:
            raise SdfError(path, "sdf", f"cannot read: {exc.strerror}") from None
        if self.root.tag != "sdf":
            raise SdfError(path, self.root.tag, "the root element must be <sdf>")
        version = self.root.get("version", "")
        try:
            parsed = tuple(int(p) for p in version.split("."))
        except ValueError:
            raise SdfError(path, "sdf", f"version {version!r} is not a number like 1.9") from None
        if parsed < MIN_VERSION:
            raise SdfError(path, "sdf", f"version {version} is older than {'.'.join(map(str, MIN_VERSION))}")
        self.used: set[int] = {id(self.root)}
        self.parent: dict[int, ET.Element] = {id(c): p for p in self.root.iter() for c in p}

    def where(self, element: ET.Element) -> str:
        names = []
        node: ET.Element | None = element
        while node is not None and node is not self.root:
            label = node.tag + (f"[{node.get('name')}]" if node.get("name") else "")
            names.append(label)
            node = self.parent.get(id(node))
        return "/".join(reversed(names))

    def error(self, element: ET.Element, reason: str) -> SdfError:
        return SdfError(self.path, self.where(element), reason)

    def child(self, element: ET.Element, tag: str) -> ET.Element | None:
        found = element.find(tag)
        if found is not None:
            self.used.add(id(found))
        return found

    def children(self, element: ET.Element, tag: str) -> list[ET.Element]:
        found = element.findall(tag)
        self.used.update(id(f) for f in found)
        return found

    def mark(self, element: ET.Element) -> None:
        """Mark a whole subtree as handled (elements that are read wholesale or deliberately skipped)."""
        self.used.update(id(e) for e in element.iter())

    def text(self, element: ET.Element, tag: str, default: str | None = None) -> str:
        found = self.child(element, tag)
        if found is None or found.text is None or not found.text.strip():
            if default is None:
                raise self.error(element, f"missing <{tag}>")
            return default
        return found.text.strip()

    def floats(self, element: ET.Element, tag: str, count: int, default: tuple[float, ...] | None = None) -> tuple[float, ...]:
        found = self.child(element, tag)
        if found is None or not (found.text or "").strip():
            if default is None:
                raise self.error(element, f"missing <{tag}>")
            return default
        try:
            values = tuple(float(v) for v in found.text.split())
        except ValueError:
            raise self.error(found, f"expected {count} numbers, got {found.text.strip()!r}") from None
        if len(values) != count or not all(math.isfinite(v) for v in values):
            raise self.error(found, f"expected {count} finite numbers, got {found.text.strip()!r}")
        return values

    def number(self, element: ET.Element, tag: str, default: float | None = None) -> float:
        return self.floats(element, tag, 1, None if default is None else (default,))[0]

    def pose(self, element: ET.Element) -> np.ndarray:
        found = self.child(element, "pose")
        if found is not None and found.get("relative_to"):
            raise self.error(
                found,
                f"relative_to={found.get('relative_to')!r} is not supported by the embedded simulator; use the default frame",
            )
        if found is not None and found.get("degrees", "false") == "true":
            x, y, z, r, p, w = self.floats(element, "pose", 6)
            return pose_matrix(x, y, z, math.radians(r), math.radians(p), math.radians(w))
        return pose_matrix(*self.floats(element, "pose", 6, (0.0,) * 6))

    def flag(self, element: ET.Element, tag: str, default: bool) -> bool:
        value = self.text(element, tag, str(default).lower()).lower()
        if value not in ("true", "false", "1", "0"):
            raise self.error(element, f"<{tag}> must be true or false, got {value!r}")
        return value in ("true", "1")

    def report_unused(self) -> list[str]:
        """Warn once about every element (subtree) that nothing read; returns their paths."""
        skipped = []
        for element in self.root.iter():
            if id(element) in self.used:
                continue
            parent = self.parent.get(id(element))
            if parent is not None and id(parent) not in self.used:
                continue  # its parent is already reported
            skipped.append(self.where(element))
        for where in skipped:
            log.warning("%s: <%s> is not supported by the embedded simulator and is ignored", self.path, where)
        return skipped


def resource_paths(extra: list[Path] | None = None) -> list[Path]:
    """Where `model://NAME` is looked up: extra folders, then the Gazebo resource path variables."""
    paths = list(extra or [])
    for variable in RESOURCE_PATH_VARIABLES:
        paths += [Path(p) for p in os.environ.get(variable, "").split(os.pathsep) if p]
    return paths


def resolve_uri(uri: str, base: Path, search: list[Path]) -> Path:
    """A model folder or file for an `<include><uri>`: model://NAME, file://PATH or a relative path."""
    if uri.startswith("model://"):
        name, _, rest = uri[len("model://") :].partition("/")
        for folder in search:
            candidate = folder / name / rest if rest else folder / name
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"{uri} not found in {', '.join(map(str, search)) or 'no resource path'}")
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    return path if path.is_absolute() else base / path


def model_file(folder_or_file: Path) -> Path:
    """The SDF inside a model folder: the one model.config names, else model.sdf."""
    if folder_or_file.is_file():
        return folder_or_file
    config = folder_or_file / "model.config"
    if config.is_file():
        try:
            sdf = ET.parse(config).getroot().find("sdf")
        except ET.ParseError as exc:
            raise SdfError(config, "model", f"not well-formed XML: {exc}") from None
        if sdf is not None and sdf.text:
            return folder_or_file / sdf.text.strip()
    return folder_or_file / "model.sdf"


# ---------------------------------------------------------------- elements


def _geometry(reader: _Reader, shape: ET.Element) -> Geometry:
    geometry = reader.child(shape, "geometry")
    if geometry is None:
        raise reader.error(shape, "missing <geometry>")
    kinds = list(geometry)
    if len(kinds) != 1:
        raise reader.error(geometry, f"expected exactly one shape, got {[k.tag for k in kinds]}")
    kind = kinds[0]
    reader.used.add(id(kind))
    if kind.tag == "box":
        size = reader.floats(kind, "size", 3)
    elif kind.tag == "cylinder":
        size = (reader.number(kind, "radius"), reader.number(kind, "length"))
    elif kind.tag == "sphere":
        size = (reader.number(kind, "radius"),)
    elif kind.tag == "plane":
        reader.floats(kind, "normal", 3, (0.0, 0.0, 1.0))
        size = reader.floats(kind, "size", 2, (100.0, 100.0))
    else:
        raise reader.error(
            kind, f"geometry <{kind.tag}> is not supported by the embedded simulator (box, cylinder, sphere, plane)"
        )
    if any(s <= 0 for s in size):
        raise reader.error(kind, f"sizes must be positive, got {size}")
    return Geometry(kind.tag, size)


def _material(reader: _Reader, visual: ET.Element) -> Material:
    material = reader.child(visual, "material")
    if material is None:
        return Material()
    diffuse = reader.floats(material, "diffuse", 4, (0.7, 0.7, 0.7, 1.0))
    reader.floats(material, "ambient", 4, diffuse)  # the renderer derives ambient from the light
    specular = reader.floats(material, "specular", 4, (0.1, 0.1, 0.1, 1.0))
    roughness = None
    pbr = reader.child(material, "pbr")
    if pbr is not None:
        metal = reader.child(pbr, "metal")
        if metal is None:
            raise reader.error(pbr, "only the <metal> workflow is supported")
        reader.number(metal, "metalness", 0.0)
        roughness = reader.number(metal, "roughness", 0.5)
    return Material(diffuse, sum(specular[:3]) / 3, roughness)


def _shape(reader: _Reader, element: ET.Element, visual: bool) -> Shape:
    retro = 0.0
    if not visual:
        retro = reader.number(element, "laser_retro", 0.0)
        surface = reader.child(element, "surface")
        if surface is not None:
            reader.mark(surface)  # contact and friction parameters: no dynamics in the embedded simulator
    else:
        reader.flag(element, "cast_shadows", True)
        # Gazebo's gpu_lidar reads retro from visuals; here the collision's value is the one that counts
        reader.number(element, "laser_retro", 0.0)
        # visibility bits keep Gazebo's IR rays off the robot's own shell; here rays skip the own body
        reader.number(element, "visibility_flags", 0.0)
    return Shape(
        name=element.get("name", ""),
        pose=reader.pose(element),
        geometry=_geometry(reader, element),
        laser_retro=retro,
        material=_material(reader, element) if visual else Material(),
    )


def _noise(reader: _Reader, parent: ET.Element) -> Noise:
    noise = reader.child(parent, "noise")
    if noise is None:
        return Noise()
    kind = noise.get("type") or reader.text(noise, "type", "gaussian")
    if kind not in ("gaussian", "none"):
        raise reader.error(noise, f"noise type {kind!r} is not supported (gaussian, none)")
    mean, stddev = reader.number(noise, "mean", 0.0), reader.number(noise, "stddev", 0.0)
    if stddev < 0:
        raise reader.error(noise, f"stddev must be >= 0, got {stddev}")
    return Noise(mean, stddev) if kind == "gaussian" else Noise()


def _sensor(reader: _Reader, element: ET.Element, link_name: str) -> Sensor:
    kind = element.get("type", "")
    name = element.get("name") or ""
    camera = ray = None
    if kind == "camera":
        camera = _camera_spec(reader, element)
    elif kind in ("gpu_lidar", "lidar", "gpu_ray", "ray"):
        ray = _ray_spec(reader, element, kind)
    else:
        raise reader.error(element, f"sensor type {kind!r} is not supported by the embedded simulator (camera, gpu_lidar)")
    for tag in ("always_on", "visualize", "enable_metrics"):
        reader.child(element, tag)
    rate = reader.number(element, "update_rate", 10.0)
    if rate <= 0:
        raise reader.error(element, f"update_rate must be > 0, got {rate}")
    return Sensor(
        name=name,
        type="camera" if kind == "camera" else "gpu_lidar",
        pose=reader.pose(element),
        update_rate=rate,
        topic=reader.text(element, "topic", name),
        frame_id=reader.text(element, "gz_frame_id", link_name),
        camera=camera,
        ray=ray,
    )


def _camera_spec(reader: _Reader, element: ET.Element) -> CameraSpec:
    """The <camera> block of a camera sensor."""
    c = reader.child(element, "camera")
    if c is None:
        raise reader.error(element, "a camera sensor needs <camera>")
    image = reader.child(c, "image")
    clip = reader.child(c, "clip")
    if image is None:
        raise reader.error(c, "missing <image>")
    fmt = reader.text(image, "format", "R8G8B8")
    if fmt != "R8G8B8":
        raise reader.error(image, f"image format {fmt!r} is not supported (R8G8B8)")
    camera = CameraSpec(
        horizontal_fov=reader.number(c, "horizontal_fov", 1.047),
        width=int(reader.number(image, "width")),
        height=int(reader.number(image, "height")),
        near=reader.number(clip, "near", 0.02) if clip is not None else 0.02,
        far=reader.number(clip, "far", 100.0) if clip is not None else 100.0,
        noise=_noise(reader, c),
    )
    if camera.width < 1 or camera.height < 1 or not 0 < camera.horizontal_fov < math.pi:
        raise reader.error(c, "image size must be positive and horizontal_fov in (0, pi)")
    return camera


def _ray_spec(reader: _Reader, element: ET.Element, kind: str) -> RaySpec:
    """The <lidar> (or older <ray>) block of a lidar sensor."""
    block = reader.child(element, "lidar") or reader.child(element, "ray")
    if block is None:
        raise reader.error(element, f"a {kind} sensor needs <lidar>")
    scan = reader.child(block, "scan")
    horizontal = reader.child(scan, "horizontal") if scan is not None else None
    rng = reader.child(block, "range")
    if horizontal is None or rng is None:
        raise reader.error(block, "needs <scan><horizontal> and <range>")
    if scan is not None and scan.find("vertical") is not None:
        vertical = reader.child(scan, "vertical")
        if int(reader.number(vertical, "samples", 1)) > 1:
            raise reader.error(vertical, "3-D lidars (vertical samples > 1) are not supported")
    reader.number(horizontal, "resolution", 1.0)
    reader.number(rng, "resolution", 0.0)
    reader.number(block, "visibility_mask", 0.0)  # see visibility_flags in _shape
    ray = RaySpec(
        samples=int(reader.number(horizontal, "samples")),
        min_angle=reader.number(horizontal, "min_angle"),
        max_angle=reader.number(horizontal, "max_angle"),
        range_min=reader.number(rng, "min"),
        range_max=reader.number(rng, "max"),
        noise=_noise(reader, block),
    )
    if ray.samples < 1 or ray.max_angle < ray.min_angle or not 0 <= ray.range_min < ray.range_max:
        raise reader.error(block, "needs samples >= 1, min_angle <= max_angle and 0 <= range min < max")
    return ray


def _link(reader: _Reader, element: ET.Element) -> Link:
    name = element.get("name") or ""
    if not name:
        raise reader.error(element, "a link needs a name")
    inertial = reader.child(element, "inertial")
    if inertial is not None:
        reader.mark(inertial)  # masses matter to Gazebo's physics, not to the kinematic embedded robot
    return Link(
        name=name,
        pose=reader.pose(element),
        collisions=tuple(_shape(reader, c, visual=False) for c in reader.children(element, "collision")),
        visuals=tuple(_shape(reader, v, visual=True) for v in reader.children(element, "visual")),
        sensors=tuple(_sensor(reader, s, name) for s in reader.children(element, "sensor")),
    )


def _diff_drive(reader: _Reader, plugin: ET.Element) -> DiffDrive:
    reader.mark(plugin)  # topics and rates are the ROS side's business; read what drives the robot

    def number(tag: str, default: float | None = None) -> float:
        return reader.number(plugin, tag, default)

    return DiffDrive(
        left_joint=reader.text(plugin, "left_joint"),
        right_joint=reader.text(plugin, "right_joint"),
        wheel_separation=number("wheel_separation"),
        wheel_radius=number("wheel_radius"),
        max_linear_velocity=number("max_linear_velocity", math.inf),
        max_angular_velocity=number("max_angular_velocity", math.inf),
        odom_frame=reader.text(plugin, "frame_id", "odom"),
        base_frame=reader.text(plugin, "child_frame_id", "base_link"),
    )


def _plugins(reader: _Reader, parent: ET.Element) -> DiffDrive | None:
    drive = None
    for plugin in parent.findall("plugin"):
        filename = plugin.get("filename", "")
        short = filename.removeprefix("lib").removesuffix(".so").replace("ignition-gazebo", "gz-sim")
        if short in PLUGINS_IMPLEMENTED:
            reader.used.add(id(plugin))
            drive = _diff_drive(reader, plugin)
        elif short in PLUGINS_COVERED:
            reader.mark(plugin)
            log.debug("%s: plugin %s: %s", reader.path, filename, PLUGINS_COVERED[short])
        # anything else stays unmarked and is reported as unsupported
    return drive


def _model(
    reader: _Reader,
    element: ET.Element,
    search: list[Path],
    parent_pose: np.ndarray,
    name: str | None = None,
    pose: np.ndarray | None = None,
    static: bool | None = None,
) -> Model:
    own_name = element.get("name") or ""
    if not own_name:
        raise reader.error(element, "a model needs a name")
    for nested in reader.children(element, "model") + reader.children(element, "include"):
        raise reader.error(nested, "nested models are not supported by the embedded simulator")
    joints = reader.children(element, "joint")
    for joint in joints:
        # joints place links in Gazebo; the embedded robot is kinematic, so link poses are what count
        reader.mark(joint)
    frames = []
    for frame in reader.children(element, "frame"):
        attached = frame.get("attached_to", "")
        if not frame.get("name") or not attached:
            raise reader.error(frame, "a frame needs name and attached_to")
        frames.append(Frame(frame.get("name", ""), attached, reader.pose(frame)))
    own_pose = reader.pose(element)  # an <include><pose> replaces it
    model_pose = own_pose if pose is None else pose
    model = Model(
        name=name or own_name,
        source=own_name,
        path=reader.path,
        pose=parent_pose @ model_pose,
        static=reader.flag(element, "static", False) if static is None else static,
        links=tuple(_link(reader, link) for link in reader.children(element, "link")),
        frames=tuple(frames),
        diff_drive=_plugins(reader, element),
    )
    for tag in ("self_collide", "allow_auto_disable", "enable_wind"):
        reader.child(element, tag)
    for frame in model.frames:
        model.frame_in_model(frame.name)  # attached_to must resolve
    return model


def load_model(path: Path, search: list[Path] | None = None, **overrides) -> Model:
    """One model file (or model folder), optionally renamed / re-posed / made static as an <include> does."""
    path = model_file(Path(path))
    reader = _Reader(path)
    element = reader.child(reader.root, "model")
    if element is None:
        raise SdfError(path, "sdf", "no <model> in this file")
    model = _model(reader, element, resource_paths(search), np.eye(4), **overrides)
    reader.report_unused()
    return model


def _light(reader: _Reader, element: ET.Element) -> Light:
    kind = element.get("type", "point")
    if kind not in ("directional", "point", "spot"):
        raise reader.error(element, f"light type {kind!r} is not one of directional, point, spot")
    for tag in ("intensity", "attenuation", "spot"):
        found = reader.child(element, tag)
        if found is not None:
            reader.mark(found)
    return Light(
        name=element.get("name", ""),
        type=kind,
        pose=reader.pose(element),
        direction=reader.floats(element, "direction", 3, (0.0, 0.0, -1.0)),
        diffuse=reader.floats(element, "diffuse", 4, (1.0, 1.0, 1.0, 1.0))[:3],
        specular=reader.floats(element, "specular", 4, (0.1, 0.1, 0.1, 1.0))[:3],
        cast_shadows=reader.flag(element, "cast_shadows", False),
    )


def load_world(path: Path | str, search: list[Path] | None = None) -> World:
    """Parse a world SDF and every model it includes (model://, file:// or relative URIs)."""
    path = Path(path)
    reader = _Reader(path)
    world = reader.child(reader.root, "world")
    if world is None:
        raise SdfError(path, "sdf", "no <world> in this file")
    folders = resource_paths(search)
    models = [_model(reader, m, folders, np.eye(4)) for m in reader.children(world, "model")]
    for include in reader.children(world, "include"):
        uri = reader.text(include, "uri")
        try:
            target = resolve_uri(uri, path.parent, folders)
        except FileNotFoundError as exc:
            raise reader.error(include, str(exc)) from None
        static = reader.flag(include, "static", False) if include.find("static") is not None else None
        pose = reader.pose(include) if include.find("pose") is not None else None
        models.append(load_model(target, search, name=reader.text(include, "name", "") or None, pose=pose, static=static))
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SdfError(path, "world", f"model names must be unique, repeated: {', '.join(duplicates)}")
    lights = tuple(_light(reader, light) for light in reader.children(world, "light"))
    _plugins(reader, world)
    for tag in ("physics", "gravity", "magnetic_field", "atmosphere", "scene", "gui", "spherical_coordinates", "wind"):
        for found in reader.children(world, tag):
            reader.mark(found)  # physics and GUI settings have no embedded counterpart worth warning about
    reader.report_unused()
    return World(name=world.get("name", path.stem), path=path, models=tuple(models), lights=lights)
