"""rclpy inside a test process on the test's own domain: a node with its own context and executor that
tests give publishers and subscriptions, spun until a condition holds while a node under test runs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest


class DdsProbe:
    def __init__(self, domain_id: int, name: str, under_test: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.under_test = under_test
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(
        self, done: Callable[[], bool], timeout_s: float, proc: subprocess.Popen | dict[str, subprocess.Popen],
        tick: Callable[[], None] | None = None,
    ) -> bool:
        """Spin until `done()`; False after `timeout_s`; fails the test when `proc` (or any of name ->
        process) exits meanwhile. `tick` runs before every spin (e.g. to keep publishing)."""
        procs = proc if isinstance(proc, dict) else {self.under_test: proc}
        deadline = time.monotonic() + timeout_s
        while not done():
            for name, each in procs.items():
                if each.poll() is not None:
                    pytest.fail(f"{name} exited with {each.returncode}:\n{each.stdout.read()}")
            if time.monotonic() > deadline:
                return False
            if tick:
                tick()
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)
