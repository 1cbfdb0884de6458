"""The simulator's own messages: ground truth of every object (m2vae_msgs/LabelledObjectArray, in the
shared `map` frame). What any robot publishes, sensor readings, odometry, transforms and the clock, is
m2vae_fusion.ros_interface.reading_messages.
"""

from __future__ import annotations

from collections.abc import Iterable

from geometry_msgs.msg import Pose

from m2vae_fusion.perception.readings import ObjectState
from m2vae_fusion.ros_interface.reading_messages import MAP_FRAME, header, yaw_quaternion
from m2vae_msgs.msg import LabelledObject, LabelledObjectArray


def labelled_objects(objects: Iterable[ObjectState], stamp: float) -> LabelledObjectArray:
    """GROUND TRUTH of every object, in the world (map) frame: for labels and evaluation only."""
    msgs = []
    for obj in objects:
        pose = Pose(orientation=yaw_quaternion(obj.yaw))
        pose.position.x, pose.position.y, pose.position.z = float(obj.x), float(obj.y), float(obj.z)
        msgs.append(
            LabelledObject(
                name=obj.name,
                label=obj.label,
                class_id=obj.class_id,
                colour=obj.colour,
                shape=obj.shape,
                surface=obj.surface,
                pose=pose,
            )
        )
    return LabelledObjectArray(header=header(stamp, MAP_FRAME), objects=msgs)
