"""In-process rate limits (a sliding window per key), for sign-in and public endpoints.

Limits hold per server process; behind a load balancer each replica counts on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from promptloop.core.errors import RateLimited


class RateLimiter:
    """At most `limit` hits per `window` seconds for each key."""

    def __init__(self, *, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, what: str) -> None:
        """Count one attempt; raise RateLimited (saying when to retry) past the limit."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys:
                    self._hits.clear()  # bounded memory under a flood of distinct keys
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                retry = max(1, math.ceil(hits[0] + self.window - now))
                raise RateLimited(f"Too many {what}; try again in {retry} s.", retry_after=retry)
            hits.append(now)
