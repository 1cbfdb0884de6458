"""Turn a parsed SDF world into a MuJoCo model: visuals for the camera, collisions for ray casting,
robots as kinematic (mocap) bodies, plus the lookup tables the sensors need (retro-reflectivity per
geom, 2-D obstacle footprints, sensor poses in the robot's base frame)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from m2vae_fusion.perception.frames import matrix_quaternion
from m2vae_fusion.sim.sdf import Geometry, Light, Link, Model, Sensor, Shape

VISUAL_GROUP = 0  # rendered by the camera (MuJoCo shows groups 0-2 by default)
COLLISION_GROUP = 3  # hidden from the camera, hit by the range sensors
RAY_GROUPS = np.array([0, 0, 0, 1, 0, 0], dtype=np.uint8)


@dataclass(frozen=True)
class Footprint:
    """An obstacle's outline in the ground plane: a circle (half_extents = (r, r)) or an oriented box."""

    x: float
    y: float
    yaw: float
    half_extents: tuple[float, float]
    round: bool


@dataclass(frozen=True)
class MountedSensor:
    """A sensor placed in its robot's base frame (the frame the diff drive moves)."""

    sensor: Sensor
    base_to_sensor: np.ndarray  # 4x4


def _quat_wxyz(t: np.ndarray) -> str:
    x, y, z, w = matrix_quaternion(t)
    return f"{w:.9g} {x:.9g} {y:.9g} {z:.9g}"


def _pos(t: np.ndarray) -> str:
    return " ".join(f"{v:.9g}" for v in t[:3, 3])


def _mj_size(geometry: Geometry) -> tuple[str, str]:
    """MuJoCo geom type and size (half extents) for an SDF geometry (full extents)."""
    s = geometry.size
    if geometry.kind == "box":
        return "box", f"{s[0] / 2:.9g} {s[1] / 2:.9g} {s[2] / 2:.9g}"
    if geometry.kind == "cylinder":
        return "cylinder", f"{s[0]:.9g} {s[1] / 2:.9g}"
    if geometry.kind == "sphere":
        return "sphere", f"{s[0]:.9g}"
    return "plane", f"{s[0] / 2:.9g} {s[1] / 2:.9g} 1"


def _footprint(shape: Shape, world_pose: np.ndarray) -> Footprint | None:
    """The ground-plane outline of an upright collision shape; None for planes (the floor)."""
    g = shape.geometry
    x, y, yaw = world_pose[0, 3], world_pose[1, 3], math.atan2(world_pose[1, 0], world_pose[0, 0])
    if g.kind == "box":
        return Footprint(x, y, yaw, (g.size[0] / 2, g.size[1] / 2), False)
    if g.kind in ("cylinder", "sphere"):
        return Footprint(x, y, yaw, (g.size[0], g.size[0]), True)
    return None


# the camera of MuJoCo looks along its -z with y up; SDF sensors look along +x with z up
SDF_TO_MJ_CAMERA = np.array([[0, 0, -1, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)


class SceneBuilder:
    """Builds the MJCF text and remembers which MuJoCo geom came from which SDF shape."""

    def __init__(self, name: str, offscreen: tuple[int, int], near: float, far: float) -> None:
        self.root = ET.Element("mujoco", model=name)
        ET.SubElement(self.root, "compiler", angle="radian")
        ET.SubElement(self.root, "statistic", extent="1", center="0 0 0")
        visual = ET.SubElement(self.root, "visual")
        ET.SubElement(visual, "global", offwidth=str(offscreen[0]), offheight=str(offscreen[1]))
        # shadows cost ~15x in software rendering (DESIGN.md); the SDF lights say cast_shadows=false anyway
        ET.SubElement(visual, "quality", shadowsize="0")
        # a dim light at the camera (the robot's own LEDs) lets shiny surfaces show a highlight
        ET.SubElement(visual, "headlight", ambient="0.3 0.3 0.3", diffuse="0.15 0.15 0.15", specular="0.15 0.15 0.15")
        ET.SubElement(visual, "map", znear=f"{near:.6g}", zfar=f"{far:.6g}")
        self.assets = ET.SubElement(self.root, "asset")
        ET.SubElement(
            self.assets,
            "texture",
            type="skybox",
            builtin="gradient",
            rgb1="0.7 0.75 0.8",
            rgb2="0.3 0.3 0.35",
            width="32",
            height="32",
        )
        self.worldbody = ET.SubElement(self.root, "worldbody")
        self.geom_names: list[str] = []  # MuJoCo geoms are numbered in document order
        self.retro: dict[str, float] = {}
        self.footprints: dict[str, list[Footprint]] = {}  # model name -> its outlines
        self.materials = 0

    def add_light(self, light: Light) -> None:
        d = np.asarray(light.direction, dtype=float)
        d = light.pose[:3, :3] @ (d / (np.linalg.norm(d) or 1.0))
        ET.SubElement(
            self.worldbody,
            "light",
            name=light.name or f"light{len(self.worldbody)}",
            directional="true" if light.type == "directional" else "false",
            pos=_pos(light.pose),
            dir=" ".join(f"{v:.6g}" for v in d),
            diffuse=" ".join(f"{v:.4g}" for v in light.diffuse),
            specular=" ".join(f"{v:.4g}" for v in light.specular),
            castshadow="false",
        )

    def _material(self, shape: Shape) -> str:
        name = f"mat{self.materials}"
        self.materials += 1
        m = shape.material
        shininess = 1.0 - m.roughness if m.roughness is not None else 0.5
        ET.SubElement(
            self.assets,
            "material",
            name=name,
            rgba=" ".join(f"{v:.4g}" for v in m.diffuse),
            specular=f"{min(max(m.specular, 0.0), 1.0):.4g}",
            shininess=f"{min(max(shininess, 0.0), 1.0):.4g}",
        )
        return name

    def _geom(self, parent: ET.Element, name: str, shape: Shape, pose: np.ndarray, visual: bool) -> None:
        kind, size = _mj_size(shape.geometry)
        attrs = dict(name=name, type=kind, size=size, pos=_pos(pose), quat=_quat_wxyz(pose), contype="0", conaffinity="0")
        if visual:
            attrs.update(group=str(VISUAL_GROUP), material=self._material(shape))
        else:
            # mj_ray skips fully transparent geoms, so collisions stay opaque and hide in a group instead
            attrs.update(group=str(COLLISION_GROUP), rgba="0.5 0.5 0.5 1")
            self.retro[name] = shape.laser_retro
        ET.SubElement(parent, "geom", attrs)
        self.geom_names.append(name)

    def add_model(self, model: Model, kinematic: bool) -> None:
        """Static models go straight into the world; others become a mocap body placed each step."""
        if kinematic:
            parent = ET.SubElement(
                self.worldbody, "body", name=model.name, mocap="true", pos=_pos(model.pose), quat=_quat_wxyz(model.pose)
            )
            frame = np.eye(4)
        else:
            parent, frame = self.worldbody, model.pose
        outlines = self.footprints.setdefault(model.name, [])
        for link in model.links:
            for i, shape in enumerate(link.visuals):
                self._geom(parent, f"{model.name}/{link.name}/visual{i}", shape, frame @ link.pose @ shape.pose, visual=True)
            for i, shape in enumerate(link.collisions):
                local = link.pose @ shape.pose
                self._geom(parent, f"{model.name}/{link.name}/collision{i}", shape, frame @ local, visual=False)
                outline = _footprint(shape, model.pose @ local)
                if outline is not None:
                    outlines.append(outline)

    def add_camera(self, robot: Model, link: Link, sensor: Sensor) -> str:
        spec = sensor.camera
        assert spec is not None
        pose = link.pose @ sensor.pose @ SDF_TO_MJ_CAMERA
        fovy = math.degrees(2 * math.atan(math.tan(spec.horizontal_fov / 2) * spec.height / spec.width))
        name = f"{robot.name}/{sensor.name}"
        body = self.worldbody.find(f"body[@name='{robot.name}']")
        assert body is not None, "cameras ride on kinematic bodies"
        ET.SubElement(body, "camera", name=name, pos=_pos(pose), quat=_quat_wxyz(pose), fovy=f"{fovy:.9g}")
        return name

    def xml(self) -> str:
        return ET.tostring(self.root, encoding="unicode")


def mounted_sensors(robot: Model, base_frame: str) -> list[MountedSensor]:
    """Every sensor of a robot with its pose in the base frame."""
    base_inv = np.linalg.inv(robot.frame_in_model(base_frame))
    return [MountedSensor(sensor, base_inv @ link.pose @ sensor.pose) for link in robot.links for sensor in link.sensors]
