"""rclpy inside a test process on the test's own domain: a node with its own context and executor that
tests give publishers and subscriptions, spun until a condition holds while a node under test runs."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest


@contextlib.contextmanager
def rclpy_session(args: list[str] | None = None) -> Iterator[None]:
    """`with rclpy.init():` on both distributions: Kilted's rclpy.init returns a context manager,
    Jazzy's (7.1) returns None."""
    import rclpy

    rclpy.init(args=args)
    try:
        yield
    finally:
        rclpy.try_shutdown()


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
        self,
        done: Callable[[], bool],
        timeout_s: float,
        proc: subprocess.Popen | dict[str, subprocess.Popen],
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


class BeliefWatch:
    """The belief about the object at (x, y) (within 5 cm) in ObjectBeliefArray messages, judged once
    all three sensors have been fused into it and `converge_s` more seconds have passed: the class
    converges as later views enter the belief as running means."""

    def __init__(self, x: float, y: float, converge_s: float) -> None:
        self.x, self.y, self.converge_s = x, y, converge_s
        self.final = None
        self.complete_since: float | None = None

    def take(self, msg) -> None:
        for belief in msg.beliefs:
            if len(belief.modalities) == 3 and abs(belief.position.x - self.x) < 0.05 and abs(belief.position.y - self.y) < 0.05:
                self.final = belief
                self.complete_since = self.complete_since or time.monotonic()

    def done(self) -> bool:
        return self.complete_since is not None and time.monotonic() > self.complete_since + self.converge_s
