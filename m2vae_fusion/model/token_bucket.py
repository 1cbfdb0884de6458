"""A token bucket: how the fusion node limits the latents it shares and fuses per robot."""

from __future__ import annotations


class TokenBucket:
    """At most `rate` takes per second on average, bursts of up to `capacity`."""

    def __init__(self, rate: float, capacity: float, now_s: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self.at_s = capacity, now_s

    def take(self, now_s: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now_s - self.at_s) * self.rate)
        self.at_s = max(self.at_s, now_s)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
