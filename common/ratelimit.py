"""Token buckets, kept in this process's memory.

Each key (a credential's subject, a member) has a bucket of `burst` tokens refilled at
`rate` per second; a call takes one token or is refused with the seconds until the next one.
Memory is bounded: past `max_keys` buckets the least recently used one is forgotten, which
only ever lets a forgotten key start again with a full bucket.

Why in the process and not in Redis: a check costs well under a microsecond here against a
round trip there, and the limits guard the server against one noisy caller, not a contract
to the call. The price: with N server processes behind a balancer a key gets up to N times
the limit. Set the limits per process with that in mind.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBuckets:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and a burst of at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def take(self, key: str) -> float:
        """Takes a token for `key`: 0.0 when taken, else the seconds until one is there."""
        now = self._clock()
        tokens, as_of = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - as_of) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now)  # re-inserted: the dict's order is recency
        if len(self._buckets) > self._max_keys:
            del self._buckets[next(iter(self._buckets))]
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
