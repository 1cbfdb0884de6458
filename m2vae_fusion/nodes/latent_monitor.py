"""latent_monitor: log every latent embedding seen on the latent-sharing topic, one line each.

Subscribes: `latents` (m2vae_msgs/LatentEmbedding; remap it to the shared topic).
Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them).

Usage: ros2 run m2vae_fusion latent_monitor --ros-args -r latents:=/shared/latents
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

from m2vae_fusion.ros_interface.parameters import Parameters, integer, text
from m2vae_fusion.ros_interface.runtime import SPIN_TICK_S, declare
from m2vae_fusion.ros_interface.stop_signals import STOP
from m2vae_fusion.ros_interface.topics import LATENT_QOS
from m2vae_msgs.msg import LatentEmbedding


def describe_latent(
    robot_id: str,
    object_id: str,
    model_id: str,
    modalities: Sequence[str],
    mean: Sequence[float],
    log_var: Sequence[float],
) -> str:
    """One human-readable line: who, what, which model, and the size of mu and sigma."""
    norm = math.sqrt(sum(m * m for m in mean))
    sigma = sum(math.exp(0.5 * lv) for lv in log_var) / max(len(log_var), 1)
    return (
        f"robot={robot_id or '?'} object={object_id or '?'} model={model_id or '?'} "
        f"modalities=[{','.join(modalities)}] dim={len(mean)} |mu|={norm:.3f} mean_sigma={sigma:.3f}"
    )


PARAMETERS: Parameters = {
    "max_messages": integer(0, "exit after this many messages; 0 runs until shut down", minimum=0),
    "model_id": text("", "if set, mark messages from any other model as INCOMPATIBLE"),
}


class LatentMonitor(Node):
    def __init__(self) -> None:
        super().__init__("latent_monitor")
        self.max_messages = declare(self, PARAMETERS, "max_messages")
        self.model_id = declare(self, PARAMETERS, "model_id")
        self.received = 0
        self.finished = Future()
        self.create_subscription(LatentEmbedding, "latents", self.on_latent, LATENT_QOS)
        self.get_logger().info(f"listening on {self.resolve_topic_name('latents')}")

    def on_latent(self, msg: LatentEmbedding) -> None:
        self.received += 1
        line = describe_latent(msg.robot_id, msg.object_id, msg.model_id, msg.modalities, msg.mean, msg.log_var)
        if self.model_id and msg.model_id != self.model_id:
            self.get_logger().warning(f"INCOMPATIBLE {line}")
        else:
            self.get_logger().info(line)
        if self.max_messages and self.received >= self.max_messages:
            self.finished.set_result(self.received)


def main(args: list[str] | None = None) -> None:
    # Not `with rclpy.init()`: Jazzy's rclpy (7.1) returns None there, not a context manager.
    # Stop signals as in every node (m2vae_fusion.ros_interface.stop_signals): a flag, read between spins.
    STOP.install()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = LatentMonitor()
        while not STOP.requested and not node.finished.done() and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=SPIN_TICK_S)
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        STOP.ignore_from_now()


if __name__ == "__main__":
    main()
