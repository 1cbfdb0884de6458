"""The real `ros2` command in tests: whether it is here, and a `ros2 launch` run watched line by line.

`ros2` comes from a system ROS 2 or from ../shared/ros2-cli (installed into the venv by `make setup`,
the upstream launch system and CLI); where neither is present the tests that need it skip, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

ROS2 = shutil.which("ros2")
HAVE_ROS2 = ROS2 is not None and all(importlib.util.find_spec(m) is not None for m in ("launch_ros", "ros2launch"))
SKIP_REASON = (
    "the ros2 CLI and launch system are not installed: no system ROS 2 is sourced and ../shared/ros2-cli "
    "was not there when `make setup` ran"
)
needs_ros2 = pytest.mark.skipif(not HAVE_ROS2, reason=SKIP_REASON)

STARTED = re.compile(r"^\[INFO\] \[(?P<label>[^\]]+)\]: process started with pid \[(?P<pid>\d+)\]")
CLEAN = re.compile(r"^\[INFO\] \[(?P<label>[^\]]+)\]: process has finished cleanly")
# What must never appear in a run that ends well: launch's ERROR lines (a process that died, one that
# had to be escalated to SIGTERM, an exception in the launch), and a node's crash.
TROUBLE = re.compile(r"\[ERROR\]|Traceback \(most recent call last\)|terminate called|Fatal Python error")


class LaunchRun:
    """`ros2 launch ...` in its own process group (as a terminal runs it), its output collected."""

    def __init__(self, processes, *arguments: str) -> None:
        self.proc = processes.start(ROS2, "launch", *arguments)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1, timeout_s: float = 180.0) -> None:
        """Until `count` lines match `pattern`; fails naming what was seen when the launch ends first."""
        expression = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while sum(bool(expression.search(line)) for line in list(self.lines)) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(5)
                pytest.fail(f"{count} line(s) matching {pattern!r} did not appear (exit {self.proc.poll()}):\n{self.output}")
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        """label (`robot1.fusion-5`) -> pid of every process the launch started."""
        return {m["label"]: int(m["pid"]) for m in map(STARTED.match, list(self.lines)) if m}

    def pid_of(self, role: str) -> int:
        (pid,) = [pid for label, pid in self.pids().items() if label.rsplit("-", 1)[0] == role]
        return pid

    def ctrl_c(self) -> None:
        """What Ctrl-C in the terminal does: SIGINT to ros2 launch and every node in its group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout_s: float = 120.0) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(10)
        return code

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def assert_ended_well(self, code: int) -> None:
        """Status 0, no ERROR or crash line, every started process finished cleanly, none left."""
        assert code == 0, f"ros2 launch exited with {code}:\n{self.output}"
        trouble = [line for line in self.lines if TROUBLE.search(line)]
        assert not trouble, "lines that must not appear:\n" + "\n".join(trouble) + f"\n\nwhole output:\n{self.output}"
        started = set(self.pids())
        clean = {m["label"] for m in map(CLEAN.match, self.lines) if m}
        assert started and started == clean, f"started {sorted(started)}, finished cleanly {sorted(clean)}:\n{self.output}"
        assert not self.group_alive(), "processes of the launch are still running"


def ros2_command(env: dict[str, str], *arguments: str, timeout_s: float = 60.0) -> str:
    """Run `ros2 ARGS` (never through the daemon, which would outlive the test); its stdout."""
    done = subprocess.run([ROS2, *arguments], env=env, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"ros2 {' '.join(arguments)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout
