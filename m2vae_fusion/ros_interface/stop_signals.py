"""SIGINT and SIGTERM as a request to stop, for node processes (m2vae_fusion.ros_interface.runtime).

rclpy's own handlers shut the context down and then let Python raise KeyboardInterrupt wherever the
main thread is. Inside a callback run by the C++ EventsExecutor, or while the executor calls back into
rclpy's Python during a node's shutdown, that becomes `RuntimeError: Unable to convert call argument`
(status 1) or `terminate called after throwing ... pybind11::error_already_set` (an abort, -6), and the
node's own shutdown never runs. Here a signal only sets a flag that the spin loop reads.

`ros2 launch` on Ctrl-C delivers SIGINT twice (the terminal's and its own), so a repeated signal is
still a stop request; only the HARD_STOP_COUNT-th one ends the process at once, the default way.

A SIGTERM first writes every thread's stack to stderr (faulthandler, from the C signal handler, so it
works even while the main thread is stuck in C code), then counts as a stop request like SIGINT:
`ros2 launch` and `m2vae launch` send SIGTERM only to a node that did not stop on SIGINT, and the
stacks say where it hung.
No ROS imports: node entry points install it before importing rclpy and torch, which takes seconds.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HARD_STOP_COUNT = 3  # signals until the process ends without its orderly shutdown


class StopSignals:
    """Once installed (main thread only), for the rest of the process: SIGINT and SIGTERM are recorded
    as stop requests instead of raising KeyboardInterrupt. Never put back: a second signal may arrive
    while rclpy shuts down or Python exits, and must not turn a clean stop into a death by signal."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.loading = False  # importing the node: nothing started yet, so a signal may end it at once

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # Runs between two bytecodes of whatever the main thread does, possibly inside a callback the
        # C++ executor called: it must not raise.
        self.received.append(signum)
        if self.loading:
            # Still importing rclpy / torch (seconds, or tens of seconds when a whole graph starts on
            # two cores): no DDS participant, no file, nothing to close. Waiting for the import would
            # only make ros2 launch escalate to SIGTERM and report the node as failing to stop.
            os._exit(0)
        if len(self.received) >= HARD_STOP_COUNT:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def install(self, loading: bool = False) -> StopSignals:
        """Take the signals over; `loading`: until `loaded()`, a signal ends the process at once, status 0."""
        self.loading = loading
        return self._set(self._handle)

    def loaded(self) -> None:
        self.loading = False

    def ignore_from_now(self) -> StopSignals:
        """For a process that has shut down and is only exiting: Python's finalisation puts SIGINT
        back to its default (death by signal, status -2) unless it is ignored."""
        return self._set(signal.SIG_IGN)

    def _set(self, handler: Any) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            # faulthandler keeps the handler it replaced and would not install itself again over ours
            faulthandler.unregister(signal.SIGTERM)
            for sig in STOP_SIGNALS:
                signal.signal(sig, handler)
            if handler == self._handle:
                faulthandler.register(signal.SIGTERM, all_threads=True, chain=True)
        return self


STOP = StopSignals()  # the process's one record of stop requests
