"""A token bucket per client: ``rate`` requests per second on average, bursts up to ``burst``.

A small limiter of our own rather than slowapi: slowapi decorates each endpoint and keys on the
request only, while here one ASGI middleware keys on the verified token's subject (or the client
address) and must answer every route, the unknown ones included.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucketLimiter:
    """``acquire(key)`` takes a token from ``key``'s bucket and returns 0, or returns the seconds
    until one is available (nothing taken). Buckets start full. ``rate <= 0`` disables limiting.

    Memory stays bounded: past ``max_clients`` buckets, the full ones (clients that have been
    idle long enough to refill) are forgotten, which changes nothing for them.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.clock, self.max_clients = float(rate), max(1, int(burst)), clock, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, time of that count)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_clients:
                    self._forget_idle(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full = [k for k, (tokens, then) in self._buckets.items() if tokens + (now - then) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


def retry_after(seconds: float) -> str:
    """The Retry-After header's value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
