"""Shared fixtures: an isolated ROS 2 environment and real processes that are always cleaned up."""

from __future__ import annotations

import itertools
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from m2vae_fusion.bringup import process_group
from m2vae_fusion.bringup.ros_env import MAX_SAFE_DOMAIN_ID, isolated_ros_env

REPO = Path(__file__).resolve().parents[1]


# Consecutive domains from a random start: every test module gets its own.
_DOMAINS = itertools.count(random.randint(0, MAX_SAFE_DOMAIN_ID - 1))


# Every test runs in exactly one lane: `unit` (quick, no processes or DDS: `make test-unit`, the
# loop while editing), `dds` (real DDS or node processes) or `slow` (long without DDS).
LANES = ("unit", "dds", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test on real DDS (through ros_env, directly or via processes) is marked `ros`: the Jazzy
    lane (`make test-jazzy`, `pytest -m ros`) reruns exactly these against the other rclpy. Lanes:
    a `dds` or `slow` mark by hand wins; otherwise ros_env or a `ros` mark (launch tests) makes a test
    `dds`, anything else `unit`."""
    for item in items:
        if "ros_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ros)
        on_dds = item.get_closest_marker("ros") is not None
        by_hand = [lane for lane in LANES if item.get_closest_marker(lane)]
        if len(by_hand) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(by_hand)}: keep one of {', '.join(LANES)}")
        if by_hand == ["unit"] and on_dds:
            raise pytest.UsageError(f"{item.nodeid} is marked unit but runs on real DDS (ros_env, ros mark): drop the unit mark")
        if not by_hand:
            item.add_marker(pytest.mark.dds if on_dds else pytest.mark.unit)


@pytest.fixture(autouse=True, scope="session")
def own_ros_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads or writes the user's ~/.ros (belief snapshots, generated worlds, logs)."""
    os.environ["ROS_HOME"] = str(tmp_path_factory.mktemp("session_ros_home"))


@pytest.fixture(autouse=True)
def package_logs_reach_caplog() -> None:
    """Importing `launch` (launch_testing's pytest plugin does, at start-up) makes every logger created
    afterwards a LaunchLogger that does not propagate, so the package's own log records never reach
    caplog's handler on the root logger. Tests read them as a user's logging set-up would."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (name == "m2vae_fusion" or name.startswith("m2vae_fusion.")) and isinstance(logger, logging.Logger):
            logger.propagate = True


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh ROS_DOMAIN_ID for each test module, DDS discovery on localhost only. Per module, not
    per run: a process that a module had to SIGKILL leaves Fast DDS shared-memory ports behind that
    stall data (not discovery) on that domain for a while, and the next module must not inherit that.
    A ROS_HOME of its own too: fusion nodes snapshot their beliefs under it by default (ROS_HOME/
    m2vae_fusion/beliefs), and a test must not restore another's, nor the user's."""
    env = isolated_ros_env(domain_id=next(_DOMAINS) % MAX_SAFE_DOMAIN_ID + 1)
    env["ROS_HOME"] = str(tmp_path_factory.mktemp("ros_home"))
    # The in-process rclpy context must see the same settings as the child processes.
    for key in (
        "ROS_DOMAIN_ID",
        "ROS_AUTOMATIC_DISCOVERY_RANGE",
        "FASTDDS_DEFAULT_PROFILES_FILE",
        "RMW_IMPLEMENTATION",
        "ROS_HOME",
    ):
        os.environ[key] = env[key]
    return env


class Processes:
    """Starts real processes in their own process groups; `stop_all` ends every one of them."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[subprocess.Popen] = []

    def start(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = process_group.start(argv, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.started.append(proc)
        return proc

    def python(self, *args: str) -> subprocess.Popen:
        return self.start(sys.executable, *args)

    def stop_all(self, grace_s: float = 5.0) -> None:
        process_group.stop(self.started, grace_s)


@pytest.fixture
def processes(ros_env, tmp_path_factory: pytest.TempPathFactory):
    """Each test's processes get a ROS_HOME of their own: two tests of one module that both start a
    robot1 fusion node must not restore each other's belief snapshots."""
    group = Processes({**ros_env, "ROS_HOME": str(tmp_path_factory.mktemp("ros_home"))})
    yield group
    group.stop_all()
