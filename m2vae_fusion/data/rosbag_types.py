"""A `rosbags` type store that knows m2vae_msgs, for reading and writing bags without ROS 2.

The types are registered from the same .msg files rosidl built, so CDR bytes written through
`rosbags` equal what rclpy serializes (test/test_messages.py checks it).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

MSG_PACKAGE = "m2vae_msgs"


def msg_dir() -> Path:
    """The installed m2vae_msgs/msg folder (AMENT_PREFIX_PATH), else the source checkout's."""
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidate = Path(prefix) / "share" / MSG_PACKAGE / "msg"
        if candidate.is_dir():
            return candidate
    checkout = Path(__file__).resolve().parents[2] / MSG_PACKAGE / "msg"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"no {MSG_PACKAGE}/msg folder in AMENT_PREFIX_PATH or the source checkout; run `make setup`")


@cache
def typestore() -> Typestore:
    """ROS 2 Kilted's standard types plus every m2vae_msgs message."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{MSG_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store
