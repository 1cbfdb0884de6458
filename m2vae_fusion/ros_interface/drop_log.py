"""Messages a node refuses: `Dropped` names what and why, `DropLog` counts every one on /diagnostics
and logs at most one per kind every DROP_LOG_PERIOD_S, with a count of those left unsaid."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from m2vae_fusion.ros_interface import diagnostics

DROP_LOG_PERIOD_S = 5.0


class Dropped(Exception):
    """A message the node cannot use: `what` kind of message, `reason` the problem; `waiting`: not
    wrong, but something it needs has not arrived yet (camera_info, a transform); `kind`: a short name
    of the problem, the counter on /diagnostics; `subject`: how the log names the message (default
    `what`, e.g. "a 'camera' encoding (stamp 1.200 s)")."""

    def __init__(self, what: str, reason: str, waiting: bool = False, kind: str = "unusable", subject: str = "") -> None:
        super().__init__(f"{what}: {reason}")
        self.what, self.kind, self.reason, self.waiting = what, kind, reason, waiting
        self.subject = subject or what

    @property
    def key(self) -> str:
        return f"{diagnostics.DROPPED}{self.what}: {self.kind}"


class DropLog:
    """Logs dropped messages at most once per `period_s` per kind of message and reason, counting the
    rest: bad messages as warnings, those waiting for an input (usual while starting) as info.

    rclpy's own throttling is per call site, so it would hide a second kind of problem behind the first.
    Every drop is also counted by reason in `counters` (what /diagnostics shows)."""

    def __init__(
        self,
        warn: Callable[[str], None],
        info: Callable[[str], None],
        period_s: float = DROP_LOG_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
        counters: diagnostics.Counters | None = None,
    ) -> None:
        self.warn, self.info, self.period_s, self.clock = warn, info, period_s, clock
        self.counters = counters or diagnostics.Counters()
        self.last: dict[str, float] = {}
        self.silenced: dict[str, int] = {}
        self.total = 0

    def report(self, dropped: Dropped) -> None:
        self.total += 1
        self.counters.add(dropped.key)
        now = self.clock()
        if now - self.last.get(dropped.key, -math.inf) < self.period_s:
            self.silenced[dropped.key] = self.silenced.get(dropped.key, 0) + 1
            return
        self.last[dropped.key] = now
        more = self.silenced.pop(dropped.key, 0)
        text = f"dropped {dropped.subject}: {dropped.reason}" + (f" (and {more} more since the last report)" if more else "")
        # two call sites: rclpy refuses two severities from one line
        if dropped.waiting:
            self.info(text)
        else:
            self.warn(text)
