"""The embedded simulator: the SDF world of the Gazebo path, run headless on MuJoCo.

The robot is kinematic: a differential drive moves its base along exact arcs and stops at obstacles
(no wheel or contact dynamics), MuJoCo renders the camera (EGL or OSMesa) and casts the LiDAR and IR
rays. Range sensors see an SDF collision's `laser_retro` as its reflectivity, through the AMiRo reading model
of m2vae_fusion.perception.range_model (with the exact cos(incidence) of MuJoCo's surface normals):
- LiDAR intensity = retro * cos(incidence), plus noise;
- IR reading = retro * cos(incidence) * (d_ref / max(d, d_ref))^2, plus noise: AMiRo's proximity
  sensors answer with more light from closer and brighter surfaces (inverse-square falloff).
With `range_output="gazebo"` both report what Gazebo's gpu_lidar does instead: the quantised retro
itself, without intensity noise (range_model.gazebo_intensity): raw input for testing the Gazebo adapter.
Noise standard deviations come from the SDF `<noise>` elements, all scaled by `noise_scale`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m2vae_fusion.perception import range_model
from m2vae_fusion.perception.frames import matrix_quaternion, matrix_yaw, pose_matrix
from m2vae_fusion.perception.readings import CameraImage, ObjectState, Odometry, Pose2D, Scan, SensorSpec, Transform
from m2vae_fusion.sim.drive import DiffDriveModel, wrap_angle
from m2vae_fusion.sim.scene import RAY_GROUPS, Footprint, MountedSensor, SceneBuilder, mounted_sensors
from m2vae_fusion.sim.sdf import SdfError, load_world
from m2vae_fusion.sim.truth import world_objects

RANGE_OUTPUTS = ("amiro", "gazebo")


@dataclass(frozen=True)
class SimConfig:
    world: Path
    robot: str = "amiro"
    seed: int = 0
    noise_scale: float = 1.0
    odometry_slip: float = 0.02  # relative std of each wheel's travel as the encoders count it
    intensity_noise: float = 0.01  # std of LiDAR / IR intensity noise (SDF has no element for it)
    ir_reference_distance: float = range_model.IR_REFERENCE_DISTANCE  # IR reads the bare reflectivity here
    range_output: str = "amiro"  # amiro: the AMiRo reading model; gazebo: raw intensities as Gazebo's gpu_lidar gives them
    camera_size: tuple[int, int] | None = None  # (width, height) overriding the SDF
    model_paths: tuple[Path, ...] = field(default_factory=tuple)  # searched before GZ_SIM_RESOURCE_PATH

    def __post_init__(self) -> None:
        if self.noise_scale < 0 or self.odometry_slip < 0 or self.intensity_noise < 0:
            raise ValueError(f"noise settings must be >= 0: {self}")
        if self.ir_reference_distance <= 0:
            raise ValueError(f"ir_reference_distance must be > 0, got {self.ir_reference_distance}")
        if self.range_output not in RANGE_OUTPUTS:
            raise ValueError(f"range_output must be one of {', '.join(RANGE_OUTPUTS)}, got {self.range_output!r}")
        if self.camera_size is not None and min(self.camera_size) < 1:
            raise ValueError(f"camera_size must be positive, got {self.camera_size}")


def default_model_paths() -> tuple[Path, ...]:
    from m2vae_fusion.resources import share_dir

    return (share_dir() / "models",)


# The simulator only renders offscreen. Without MUJOCO_GL, MuJoCo picks GLFW and needs a display, so a
# sim node started by `ros2 launch` or `ros2 run` outside env.sh would die on a headless machine.
DEFAULT_GL = "egl"


def offscreen_gl_environment() -> str:
    """Set MUJOCO_GL (and PyOpenGL's platform to match) where the user has not; the backend in use.
    Effective only before mujoco is first imported."""
    backend = os.environ.setdefault("MUJOCO_GL", DEFAULT_GL)
    os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


class Simulator:
    """One robot driving in an SDF world; see the module docstring for the sensor models."""

    def __init__(self, config: SimConfig) -> None:
        offscreen_gl_environment()
        import mujoco  # imported here so `m2vae --help` and ROS-only code never load it

        self.config = config
        self._mj = mujoco
        self.rng = np.random.default_rng(config.seed)
        self.world = load_world(config.world, list(config.model_paths or default_model_paths()))
        self.robot = self.world.model(config.robot)
        drive = self.robot.diff_drive
        if drive is None:
            raise SdfError(
                self.robot.path, "plugin", f"model {self.robot.name!r} has no DiffDrive plugin, so it cannot be driven"
            )
        self.base_frame = drive.base_frame
        self.odom_frame = drive.odom_frame
        self.drive = DiffDriveModel(drive, config.odometry_slip * config.noise_scale, self.rng)

        self._pick_sensors()
        size = self._camera_size()

        builder = SceneBuilder(
            self.world.name,
            size or (64, 64),
            near=self._camera.sensor.camera.near if self._camera else 0.02,
            far=self._camera.sensor.camera.far if self._camera else 100.0,
        )
        for light in self.world.lights:
            builder.add_light(light)
        for model in self.world.models:
            builder.add_model(model, kinematic=not model.static)
        camera_name = None
        if self._camera:
            link = next(candidate for candidate in self.robot.links if self._camera.sensor in candidate.sensors)
            camera_name = builder.add_camera(self.robot, link, self._camera.sensor)
        self.model = mujoco.MjModel.from_xml_string(builder.xml())
        self.data = mujoco.MjData(self.model)
        self._retro = np.zeros(self.model.ngeom)
        for name, retro in builder.retro.items():
            self._retro[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, name)] = retro
        self._robot_body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, self.robot.name)
        self._mocap = self.model.body_mocapid[self._robot_body]
        self._obstacles = [f for name, outlines in builder.footprints.items() if name != self.robot.name for f in outlines]
        self._radius = max(
            (
                math.hypot(f.x - self.robot.pose[0, 3], f.y - self.robot.pose[1, 3]) + max(f.half_extents)
                for f in builder.footprints[self.robot.name]
            ),
            default=0.05,
        )
        self._start_renderer(size, camera_name)
        self._model_to_base = self.robot.frame_in_model(self.base_frame)
        start = self.robot.pose @ self._model_to_base
        self._pose = Pose2D(start[0, 3], start[1, 3], matrix_yaw(start))
        self._base_height = start[2, 3]
        self._odom_origin = self._pose
        self.time = 0.0
        self._place_robot()

    def _pick_sensors(self) -> None:
        """The robot's camera, IR ring and LiDAR among its sensors, mounted on the base frame."""
        mounted = mounted_sensors(self.robot, self.base_frame)
        cameras = [m for m in mounted if m.sensor.type == "camera"]
        ranges = [m for m in mounted if m.sensor.type == "gpu_lidar"]
        if len(cameras) > 1:
            raise SdfError(self.robot.path, "sensor", "the embedded simulator drives at most one camera per robot")
        self._camera = cameras[0] if cameras else None
        # the 8-beam ring near the floor is the IR sensor; the other planar lidar is the LiDAR
        self._ir = next((m for m in ranges if m.sensor.ray.samples <= 16), None)
        self._lidar = next((m for m in ranges if m is not self._ir), None)

    def _start_renderer(self, size: tuple[int, int] | None, camera_name: str | None) -> None:
        """The offscreen renderer and the pool of pixel noise, for a robot with a camera."""
        mujoco = self._mj
        self._renderer = None
        self._pixel_noise = None
        if self._camera and size:
            self._renderer = mujoco.Renderer(self.model, height=size[1], width=size[0])
            noise = self._camera.sensor.camera.noise
            stddev = noise.stddev * self.config.noise_scale * 255.0
            if stddev > 0 or noise.mean:
                # Fresh Gaussians for 230k pixels cost more than rendering them; a window at a random
                # offset into a pool of twice that size is as noisy and ~10x cheaper.
                pool = self.rng.normal(noise.mean * 255.0, stddev, 2 * size[0] * size[1] * 3 + 1)
                self._pixel_noise = np.round(pool).astype(np.int16)
            self._camera_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera_name)

    # ------------------------------------------------------------ motion

    def _camera_size(self) -> tuple[int, int] | None:
        if not self._camera:
            return None
        spec = self._camera.sensor.camera
        return self.config.camera_size or (spec.width, spec.height)

    def _base_in_world(self) -> np.ndarray:
        return pose_matrix(self._pose.x, self._pose.y, self._base_height, 0.0, 0.0, self._pose.yaw)

    def _place_robot(self) -> None:
        model_pose = self._base_in_world() @ np.linalg.inv(self._model_to_base)
        self.data.mocap_pos[self._mocap] = model_pose[:3, 3]
        x, y, z, w = matrix_quaternion(model_pose)
        self.data.mocap_quat[self._mocap] = (w, x, y, z)
        self._mj.mj_kinematics(self.model, self.data)
        self._mj.mj_camlight(self.model, self.data)

    def collides(self, pose: Pose2D) -> bool:
        """Would the robot's round body overlap an obstacle's footprint at this pose?"""
        return any(_overlaps(f, pose.x, pose.y, self._radius) for f in self._obstacles)

    def set_cmd_vel(self, linear: float, angular: float) -> None:
        self.drive.command(linear, angular)

    def step(self, dt: float) -> None:
        """Advance dt seconds: the robot follows the commanded twist unless that would hit an obstacle."""
        if not dt > 0:
            raise ValueError(f"step dt must be > 0, got {dt}")
        moved = self.drive.step(self._pose, dt)
        if moved != self._pose and not self.collides(moved):
            self._pose = moved
            self._place_robot()
        self.time += dt

    def set_robot_pose(self, x: float, y: float, yaw: float) -> None:
        """Teleport the robot (data collection). Odometry does not see the jump, as after a kidnapping."""
        self._pose = Pose2D(float(x), float(y), wrap_angle(float(yaw)))
        self._place_robot()

    @property
    def robot_pose(self) -> Pose2D:
        return self._pose

    def odometry(self) -> Odometry:
        return self.drive.odometry()

    def map_to_odom(self) -> Pose2D:
        """The true map -> odom offset: what a perfect localisation would publish."""
        odom = self.drive.state.odom
        base_in_map = self._base_in_world()
        base_in_odom = pose_matrix(odom.x, odom.y, 0.0, 0.0, 0.0, odom.yaw)
        offset = base_in_map @ np.linalg.inv(base_in_odom)
        return Pose2D(offset[0, 3], offset[1, 3], matrix_yaw(offset))

    # ------------------------------------------------------------ sensors

    @property
    def sensors(self) -> dict[str, SensorSpec]:
        found = {}
        for mounted, kind in ((self._camera, "camera"), (self._lidar, "lidar"), (self._ir, "ir")):
            if mounted is not None:
                found[kind] = SensorSpec(mounted.sensor.name, kind, mounted.sensor.update_rate, mounted.sensor.frame_id)
        return found

    def camera(self) -> CameraImage:
        if self._renderer is None:
            raise RuntimeError(f"robot {self.robot.name!r} has no camera")
        spec = self._camera.sensor.camera
        self._renderer.update_scene(self.data, camera=self._camera_id)
        rgb = self._renderer.render()
        if self._pixel_noise is not None:
            n = rgb.size
            offset = int(self.rng.integers(len(self._pixel_noise) - n))
            noisy = rgb.reshape(-1).astype(np.int16) + self._pixel_noise[offset : offset + n]
            rgb = np.clip(noisy, 0, 255).astype(np.uint8).reshape(rgb.shape)
        height, width = rgb.shape[:2]
        f = (width / 2) / math.tan(spec.horizontal_fov / 2)
        return CameraImage(rgb, f, f, width / 2, height / 2, self._camera.sensor.frame_id)

    def _cast(self, mounted: MountedSensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distances, hit retro-reflectivity, cos(incidence) and the beam angles of a planar scan."""
        spec = mounted.sensor.ray
        pose = self._base_in_world() @ mounted.base_to_sensor
        angles = spec.min_angle + spec.angle_increment * np.arange(spec.samples)
        local = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
        directions = local @ pose[:3, :3].T
        n = spec.samples
        geom = np.zeros(n, dtype=np.int32)
        dist = np.zeros(n)
        normal = np.zeros(3 * n)
        self._mj.mj_multiRay(
            self.model,
            self.data,
            pose[:3, 3].copy(),
            directions.reshape(-1).copy(),
            RAY_GROUPS,
            1,
            self._robot_body,
            geom,
            dist,
            normal,
            n,
            spec.range_max,
        )
        hit = (dist >= 0) & (geom >= 0)
        retro = np.where(hit, self._retro[np.maximum(geom, 0)], 0.0)
        cos = np.abs(np.einsum("ij,ij->i", normal.reshape(n, 3), directions))
        return np.where(hit, dist, np.inf), retro, np.where(hit, cos, 0.0), angles

    def _scan(self, mounted: MountedSensor, intensity: np.ndarray, dist: np.ndarray) -> Scan:
        spec = mounted.sensor.ray
        scale = self.config.noise_scale
        ranges = dist.copy()
        hit = np.isfinite(ranges)
        ranges[hit] += spec.noise.mean + spec.noise.stddev * scale * self.rng.standard_normal(hit.sum())
        ranges[hit & (ranges > spec.range_max)] = np.inf
        ranges[hit & (ranges < spec.range_min)] = -np.inf  # REP-117: too close to measure
        measured = np.isfinite(ranges)
        if self.config.range_output == "amiro":  # Gazebo puts no noise on intensities
            intensity = intensity + self.config.intensity_noise * scale * self.rng.standard_normal(len(intensity))
        intensity = np.where(measured, intensity, 0.0)
        return Scan(
            ranges.astype(np.float32),
            np.clip(intensity, 0.0, None).astype(np.float32),
            spec.min_angle,
            spec.max_angle,
            spec.angle_increment,
            spec.range_min,
            spec.range_max,
            mounted.sensor.frame_id,
        )

    def lidar(self) -> Scan:
        if self._lidar is None:
            raise RuntimeError(f"robot {self.robot.name!r} has no LiDAR")
        dist, retro, cos, _ = self._cast(self._lidar)
        if self.config.range_output == "gazebo":
            return self._scan(self._lidar, range_model.gazebo_intensity(retro), dist)
        return self._scan(self._lidar, range_model.lidar_intensity(retro, cos), dist)

    def ir(self) -> Scan:
        if self._ir is None:
            raise RuntimeError(f"robot {self.robot.name!r} has no IR ring")
        dist, retro, cos, _ = self._cast(self._ir)
        if self.config.range_output == "gazebo":
            return self._scan(self._ir, range_model.gazebo_intensity(retro), dist)
        return self._scan(self._ir, range_model.ir_reading(retro, cos, dist, self.config.ir_reference_distance), dist)

    # ------------------------------------------------------------ frames and ground truth

    def static_transforms(self) -> list[Transform]:
        """base -> every sensor link, and every <frame> (e.g. the camera's optical frame) -> its parent."""
        base_inv = np.linalg.inv(self._model_to_base)
        transforms = [
            _transform(self.base_frame, link.name, base_inv @ link.pose)
            for link in self.robot.links
            if link.sensors and link.name != self.base_frame
        ]
        transforms += [_transform(f.attached_to, f.name, f.pose) for f in self.robot.frames]
        return transforms

    @property
    def objects(self) -> list[ObjectState]:
        """The world's objects: the models named after a class of the paper's label space (config/labels.yaml)."""
        return world_objects(self.world)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _transform(parent: str, child: str, t: np.ndarray) -> Transform:
    return Transform(parent, child, (float(t[0, 3]), float(t[1, 3]), float(t[2, 3])), matrix_quaternion(t))


def _overlaps(f: Footprint, x: float, y: float, radius: float) -> bool:
    dx, dy = x - f.x, y - f.y
    if f.round:
        return math.hypot(dx, dy) < radius + f.half_extents[0]
    c, s = math.cos(f.yaw), math.sin(f.yaw)
    u, v = c * dx + s * dy, -s * dx + c * dy
    cu = min(max(u, -f.half_extents[0]), f.half_extents[0])
    cv = min(max(v, -f.half_extents[1]), f.half_extents[1])
    return math.hypot(u - cu, v - cv) < radius
