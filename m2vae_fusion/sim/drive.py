"""Differential drive: exact arc integration of the true motion and dead-reckoned odometry with
wheel slip, the analogue of Gazebo's DiffDrive system for the kinematic embedded robot."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from m2vae_fusion.perception.readings import Odometry, Pose2D
from m2vae_fusion.sim.sdf import DiffDrive


def advance(pose: Pose2D, distance: float, rotation: float) -> Pose2D:
    """Move along a circular arc of length `distance` turning by `rotation` (exact for constant wheel speeds)."""
    if abs(rotation) < 1e-9:
        dx, dy = distance * math.cos(pose.yaw), distance * math.sin(pose.yaw)
    else:
        radius = distance / rotation
        dx = radius * (math.sin(pose.yaw + rotation) - math.sin(pose.yaw))
        dy = -radius * (math.cos(pose.yaw + rotation) - math.cos(pose.yaw))
    return Pose2D(pose.x + dx, pose.y + dy, wrap_angle(pose.yaw + rotation))


def wrap_angle(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


@dataclass
class DriveState:
    """Commanded velocities (clamped to the plugin's limits) and the odometry pose."""

    linear: float = 0.0
    angular: float = 0.0
    odom: Pose2D = Pose2D(0.0, 0.0, 0.0)


class DiffDriveModel:
    """Wheel kinematics of one robot. `slip` is the relative standard deviation of each wheel's
    travel as the encoders see it, so odometry drifts from the true pose like a real robot's."""

    def __init__(self, spec: DiffDrive, slip: float, rng: np.random.Generator) -> None:
        if spec.wheel_separation <= 0 or spec.wheel_radius <= 0:
            raise ValueError(f"diff drive needs positive wheel_separation and wheel_radius, got {spec}")
        self.spec = spec
        self.slip = slip
        self.rng = rng
        self.state = DriveState()

    def command(self, linear: float, angular: float) -> None:
        if not (math.isfinite(linear) and math.isfinite(angular)):
            raise ValueError(f"velocity command must be finite, got linear={linear} angular={angular}")
        vmax, wmax = self.spec.max_linear_velocity, self.spec.max_angular_velocity
        self.state.linear = min(max(linear, -vmax), vmax)
        self.state.angular = min(max(angular, -wmax), wmax)

    def wheel_travel(self, dt: float) -> tuple[float, float]:
        """Distance each wheel's contact point travels in dt at the commanded twist (left, right)."""
        half = self.spec.wheel_separation / 2
        return (self.state.linear - self.state.angular * half) * dt, (self.state.linear + self.state.angular * half) * dt

    def step(self, pose: Pose2D, dt: float) -> Pose2D:
        """Advance odometry by dt and return the true pose the commanded motion reaches. The caller
        may refuse that pose (an obstacle); odometry advances anyway, because blocked wheels slip
        and their encoders still count, as on a real robot pushing against a wall."""
        left, right = self.wheel_travel(dt)
        separation = self.spec.wheel_separation
        moved = advance(pose, (left + right) / 2, (right - left) / separation)
        if self.slip > 0:
            left *= 1 + self.slip * self.rng.standard_normal()
            right *= 1 + self.slip * self.rng.standard_normal()
        self.state.odom = advance(self.state.odom, (left + right) / 2, (right - left) / separation)
        return moved

    def odometry(self) -> Odometry:
        s = self.state
        return Odometry(s.odom.x, s.odom.y, s.odom.yaw, s.linear, s.angular)
