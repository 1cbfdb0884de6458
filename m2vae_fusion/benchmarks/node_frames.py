"""Frames to replay to an encoder node, rendered beforehand by the embedded simulator, and the bare
path: the node's work on a frame without DDS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2vae_fusion.benchmarks.node_process import NAMESPACE, BenchError

VIEW_DISTANCE = 0.2  # m, robot centre to object centre, as the shipped model was trained (0.16-0.25 m)


@dataclass
class Frame:
    """One pre-rendered moment: the messages to publish (stamps are set at each send) and the inputs of
    the bare path."""

    odom: Any  # TFMessage with odom -> base_link
    messages: list[tuple[str, Any]]  # (topic, message) in publishing order, the LiDAR scan last
    expected: int  # encodings the node's path makes of it
    views: Any  # np.ndarray (expected, view dim): the torch forward's input


def bare_views(model: Any, modality: str, messages: dict[str, Any], static: Sequence[Any], params: dict[str, Any]) -> Any:
    """The node's work on one frame up to the torch forward, without DDS: its conversion functions,
    observe() and its object filter; the flat views (N, dim) of the objects it would encode."""
    import numpy as np

    from m2vae_fusion.model.views import view_vector
    from m2vae_fusion.perception import frames
    from m2vae_fusion.perception.features import observe
    from m2vae_fusion.ros_interface.sensor_input import camera_reading, scan_reading

    scan_msg = messages["scan"]
    scan = scan_reading(scan_msg)
    partner_msg = {"camera": messages.get("camera/image_raw"), "ir": messages.get("ir/scan")}.get(modality)
    image = camera_reading(partner_msg, messages["camera/camera_info"]) if modality == "camera" else None
    ir = scan_reading(partner_msg, "IR reading") if modality == "ir" else None
    base = f"{NAMESPACE}/base_link"
    # as the node: every mounting is passed, only those of the readings given are used
    mounting = {"lidar": frames.lookup(static, base, scan_msg.header.frame_id), "ir": np.eye(4), "camera": np.eye(4)}
    mounting[modality] = frames.lookup(static, base, (partner_msg or scan_msg).header.frame_id)
    observations = observe(image, scan, ir, mounting["lidar"], mounting["ir"], mounting["camera"], model.config.perception)
    near, far = params["min_distance"], params["max_distance"]
    seen = [
        o
        for o in observations
        if getattr(o, modality) is not None
        and near <= o.candidate.distance <= far
        and abs(o.candidate.bearing) <= params["max_bearing"]
    ][: params["max_objects"]]
    return np.stack([view_vector(modality, getattr(o, modality)) for o in seen]) if seen else np.zeros((0, 0), np.float32)


def bare_path(model: Any, modality: str, messages: dict[str, Any], static: Sequence[Any], params: dict[str, Any]) -> int:
    """bare_views and the torch forward: the node's path without DDS; the number of encodings."""
    views = bare_views(model, modality, messages, static, params)
    if len(views):
        model.encode_views(modality, views)
    return len(views)


def render_frames(
    world: Path, modalities: Sequence[str], model: Any, params: dict[str, dict[str, Any]], rate_hz: float
) -> tuple[Any, list[Any], dict[str, list[Frame]]]:
    """The robot VIEW_DISTANCE from each object of `world`, facing it: the /tf_static message, its
    transforms as the node converts them, and per modality the frames in which the node's path finds
    an object to encode (BenchError when there is none)."""
    from tf2_msgs.msg import TFMessage

    from m2vae_fusion.perception.ros_messages import transform_of
    from m2vae_fusion.ros_interface import reading_messages as to_msg
    from m2vae_fusion.sim.simulator import SimConfig, Simulator
    from m2vae_fusion.sim.viewpoints import look_at

    prefix = NAMESPACE + "/"
    with Simulator(SimConfig(world=world)) as sim:
        static_msg = to_msg.static_tf_message(sim.static_transforms(), 0.0, prefix)
        readings = []
        for target in sim.objects:
            pose = look_at(target, VIEW_DISTANCE, math.atan2(target.y, target.x))
            sim.set_robot_pose(pose.x, pose.y, pose.yaw)
            readings.append((sim.camera(), sim.lidar(), sim.ir(), sim.odometry()))
    static = [transform_of(t) for t in static_msg.transforms]
    frames: dict[str, list[Frame]] = {}
    for modality in modalities:
        frames[modality] = []
        for camera, lidar, ir, odom in readings:
            messages = {"scan": to_msg.laser_scan(lidar, 0.0, rate_hz, prefix)}
            if modality == "camera":
                messages = {
                    "camera/camera_info": to_msg.camera_info(camera, 0.0, prefix),
                    "camera/image_raw": to_msg.image(camera, 0.0, prefix),
                    **messages,
                }
            elif modality == "ir":
                messages = {"ir/scan": to_msg.laser_scan(ir, 0.0, rate_hz, prefix), **messages}
            views = bare_views(model, modality, messages, static, params[modality])
            if len(views):
                odom_msg = TFMessage(transforms=[to_msg.odom_transform(odom, 0.0, prefix)])
                frames[modality].append(Frame(odom_msg, list(messages.items()), len(views), views))
        if not frames[modality]:
            raise BenchError(
                f"the {modality} encoder's path finds no object to encode in any of the {len(readings)} views of {world}"
            )
    return static_msg, static, frames
