"""Environment for ROS 2 processes that must stay on this host: tests and `m2vae doctor`."""

from __future__ import annotations

import os
import random

from m2vae_fusion.resources import config_path

# Linux's ephemeral ports start at 32768; Fast DDS maps domain d to ports 7400 + 250 d, so
# domains above 101 can collide with ephemeral ports.
MAX_SAFE_DOMAIN_ID = 101


def isolated_ros_env(domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default os.environ) with its own ROS_DOMAIN_ID and loopback-only DDS."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(random.randint(1, MAX_SAFE_DOMAIN_ID) if domain_id is None else domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(config_path("fastdds_localhost.xml"))
    env["RMW_IMPLEMENTATION"] = env.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp"
    return env
