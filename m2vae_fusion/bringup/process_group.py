"""Child processes that each lead their own process group, and stopping them as a ROS 2 user would.

`start` runs a command in a new session, so a terminal's Ctrl-C reaches only the caller (which
decides how its children stop) and whatever a child starts itself (`ros2 run` wrappers, torch
workers) shares the child's group. `stop` ends a set of them in steps: SIGINT to every group (what
Ctrl-C does to a node, so it shuts down cleanly), SIGTERM after a grace period, SIGKILL after
another, and finally SIGKILL to each group's leftovers, so nothing outlives the caller.

A child starts with SIGINT handled by default even where the caller ignores it: a shell script's
background job (`m2vae launch sim &`, a CI step run with `&`) inherits SIGINT ignored, and a child
that kept that could only be stopped by the SIGTERM step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

POLL_S = 0.05
TERM_GRACE_S = 2.0  # after SIGTERM, before SIGKILL


def start(argv: Sequence[str], **popen: Any) -> subprocess.Popen:
    """`argv` as the leader of a new process group (and session); `popen`: subprocess.Popen's keywords."""
    ignored = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if not ignored:
        return subprocess.Popen(list(argv), start_new_session=True, **popen)
    # An ignored signal stays ignored across exec: default for the fork, back to ignored at once.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        return subprocess.Popen(list(argv), start_new_session=True, **popen)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """`sig` to every process in `proc`'s group, if any is left."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):  # EPERM: macOS answers so for a group of zombies
        pass


def stop(
    procs: Iterable[subprocess.Popen],
    grace_s: float = 5.0,
    term_grace_s: float = TERM_GRACE_S,
    hurry: Callable[[], int] | None = None,
) -> None:
    """Stop every group: SIGINT, then SIGTERM after `grace_s`, SIGKILL after `term_grace_s`; returns
    once every leader is reaped. `hurry`: a count that rises when the caller wants the next step at
    once (another Ctrl-C)."""
    procs = list(procs)
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, term_grace_s), (signal.SIGKILL, term_grace_s)):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            break
        for proc in alive:
            signal_group(proc, sig)
        hurried = hurry() if hurry else 0
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(p.poll() is None for p in alive) and (hurry() if hurry else 0) == hurried:
            time.sleep(POLL_S)
    for proc in procs:
        # children a leader left behind in its group keep running after the leader exits
        signal_group(proc, signal.SIGKILL)
        proc.wait()
