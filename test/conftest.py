"""Shared fixtures: an isolated ROS 2 environment and real processes that are always cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m2vae_fusion.ros_env import isolated_ros_env

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """One fresh ROS_DOMAIN_ID for this test run, DDS discovery on localhost only."""
    env = isolated_ros_env()
    # The in-process rclpy context must see the same settings as the child processes.
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION"):
        os.environ[key] = env[key]
    return env


class Processes:
    """Starts real processes in their own process groups; `stop_all` ends every one of them."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[subprocess.Popen] = []

    def start(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(
            list(argv),
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    def python(self, *args: str) -> subprocess.Popen:
        return self.start(sys.executable, *args)

    def stop_all(self, grace_s: float = 5.0) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        for proc in self.started:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes(ros_env):
    group = Processes(ros_env)
    yield group
    group.stop_all()
