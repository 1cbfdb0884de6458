"""rclpy inside `m2vae fuzz` and `m2vae chaos`: a node on a context of its own (the graph's domain),
spun by wall time, so the command's own traffic never mixes with another rclpy user in the process."""

from __future__ import annotations

import time


class RclpyProbe:
    def __init__(self, domain_id: int, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.01, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                return

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():  # Ctrl-C has shut it down already
            self.rclpy.shutdown(context=self.context)
