"""Signalling a launched process without reaping it: the CPython fix for gh-87744, for Python < 3.13.

On Ctrl-C a terminal sends SIGINT to every process of the launch; ros2 launch then sends its own
SIGINT to each of them through asyncio's `SubprocessTransport.send_signal`, which before Python 3.13
goes through `subprocess.Popen.send_signal` and its `poll()`. A node that has already exited (ours
exit within ~0.1 s of the first signal) is reaped there, so asyncio's child watcher finds no child
and reports "Unknown child process pid N, will report returncode 255": `ros2 launch` then logs the
node as died with exit code 255 although it ended with 0 (seen under load with Python 3.11; Python
3.12's pidfd watcher has the same race). Python 3.13 sends the signal with `os.kill` instead
(python/cpython#121126); `signal_without_reaping` installs that behaviour on older interpreters.
A zombie's pid is not reused until it is reaped, so `os.kill` cannot hit another process.
"""

from __future__ import annotations

import os
import sys


def signal_without_reaping() -> bool:
    """Make asyncio's subprocess transports signal with os.kill; True where this changed anything."""
    if sys.platform == "win32" or sys.version_info >= (3, 13):
        return False
    from asyncio import base_subprocess

    transport = base_subprocess.BaseSubprocessTransport
    if getattr(transport.send_signal, "_m2vae_without_reaping", False):
        return False

    def send_signal(self, signal: int) -> None:
        self._check_proc()
        try:
            os.kill(self._proc.pid, signal)
        except ProcessLookupError:
            pass

    send_signal._m2vae_without_reaping = True  # type: ignore[attr-defined]
    transport.send_signal = send_signal
    return True
