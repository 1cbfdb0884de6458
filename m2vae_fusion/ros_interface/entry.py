"""The console scripts of the nodes (setup.py NODES): take SIGINT/SIGTERM over first, then import the
node module and run its `main`. Importing a node (rclpy, torch, the model) takes seconds, and
`ros2 launch` stopping a graph that is still starting would otherwise interrupt that import with a
KeyboardInterrupt: a traceback and status -2 instead of a clean exit. A signal during the import
ends the process at once with status 0 (nothing has been started yet); after the node's orderly
shutdown the process ends without Python's slow finalisation."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from m2vae_fusion.ros_interface.stop_signals import STOP


def node_main(module: str) -> Callable[[], None]:
    def main() -> None:
        STOP.install(loading=True)
        node = importlib.import_module(f"m2vae_fusion.nodes.{module}")
        STOP.loaded()
        node.main()
        # The node has shut down (rclpy included). Python's own finalisation, unloading torch and the
        # rest, costs another half second of CPU per process: a whole graph stopping at once on two
        # cores would then outlast ros2 launch's 5 s before it escalates to SIGTERM.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    main.__name__ = main.__qualname__ = module
    main.__doc__ = f"`{module}` node: m2vae_fusion.nodes.{module}.main with stop signals taken over first."
    return main


encoder = node_main("encoder")
explorer = node_main("explorer")
fusion = node_main("fusion")
ground_truth = node_main("ground_truth")
gz_range_adapter = node_main("gz_range_adapter")
latent_monitor = node_main("latent_monitor")
scoreboard = node_main("scoreboard")
sim = node_main("sim")
viz = node_main("viz")
