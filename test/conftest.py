"""Shared fixtures: an isolated ROS 2 environment and real processes that are always cleaned up."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m2vae_fusion.ros_env import MAX_SAFE_DOMAIN_ID, isolated_ros_env

REPO = Path(__file__).resolve().parents[1]


# Consecutive domains from a random start: every test module gets its own.
_DOMAINS = itertools.count(random.randint(0, MAX_SAFE_DOMAIN_ID - 1))


@pytest.fixture(scope="module")
def ros_env() -> dict[str, str]:
    """A fresh ROS_DOMAIN_ID for each test module, DDS discovery on localhost only. Per module, not
    per run: a process that a module had to SIGKILL leaves Fast DDS shared-memory ports behind that
    stall data (not discovery) on that domain for a while, and the next module must not inherit that."""
    env = isolated_ros_env(domain_id=next(_DOMAINS) % MAX_SAFE_DOMAIN_ID + 1)
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
