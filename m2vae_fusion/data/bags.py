"""Write ROS 2 bags (mcap) from rclpy messages without a ROS 2 install: rclpy serializes, `rosbags`
stores. The CDR bytes are rclpy's own and the type definitions come from the same .msg files
(test/test_messages.py checks rclpy and rosbags agree), so `ros2 bag` reads the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rclpy.serialization import serialize_message
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from m2vae_fusion.data.rosbag_types import typestore

NEVER = QosTime(0x7FFFFFFF, 0xFFFFFFFF)  # rmw's "infinite" duration, as ros2 bag records it


def offered_qos(latched: bool) -> Qos:
    """Reliable keep-last; transient-local for latched topics such as /tf_static so that
    `ros2 bag play` hands them to late subscribers."""
    return Qos(
        QosHistory.KEEP_LAST,
        10 if not latched else 1,
        QosReliability.RELIABLE,
        QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        NEVER,
        NEVER,
        QosLiveliness.AUTOMATIC,
        NEVER,
        False,
    )


class BagWriter:
    """An mcap bag open for writing; topics are added on first use with the message's type."""

    def __init__(self, path: Path, latched: tuple[str, ...] = ("/tf_static",)) -> None:
        if path.exists():
            raise FileExistsError(f"bag {path} already exists; choose another --out or remove it")
        self.path = path
        self.latched = latched
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self.writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    def write(self, topic: str, stamp_ns: int, msg: Any) -> None:
        connection = self.connections.get(topic)
        if connection is None:
            msgtype = type(msg).__module__.split(".")[0] + "/msg/" + type(msg).__name__
            connection = self.writer.add_connection(
                topic, msgtype, typestore=typestore(), offered_qos_profiles=[offered_qos(topic in self.latched)]
            )
            self.connections[topic] = connection
        self.writer.write(connection, stamp_ns, serialize_message(msg))
        self.counts[topic] = self.counts.get(topic, 0) + 1
