"""The request rate each API token may keep (`api.rate_per_token`): past it, 429 with
Retry-After."""

from __future__ import annotations

import math
import threading
import time

from fastapi import HTTPException

from vigil.api.auth import Principal


class RateLimit:
    """A token bucket per API token: `per_second` requests a second, as many at once; None
    for no limit."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, who: Principal) -> None:
        """One request of `who`; HTTPException 429 with Retry-After past the rate."""
        rate = self.per_second
        if rate is None:
            return
        now = time.monotonic()
        with self._lock:
            level, last = self._buckets.get(who.id, (rate, now))
            level = min(rate, level + (now - last) * rate)
            if level < 1:
                wait = math.ceil((1 - level) / rate)
                self._buckets[who.id] = (level, now)
                raise HTTPException(429, "too many requests", headers={"Retry-After": str(wait)})
            self._buckets[who.id] = (level - 1, now)
