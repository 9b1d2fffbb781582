"""The request rate each API token may keep (`api.rate_per_token`): past it, 429 with
Retry-After. Counted with the `limits` library (moving window, in memory)."""

from __future__ import annotations

import math
import threading
import time

from fastapi import HTTPException
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from vigil.api.auth import Principal

LONGEST_WINDOW = 60  # seconds a fractional rate may be spread over to count whole requests


def window(per_second: float) -> RateLimitItem:
    """`per_second` as whole requests in whole seconds (what `limits` counts): the shortest
    window, up to a minute, that holds a whole number of requests at that rate (10/s: 10 in
    1 s; 2.5/s: 5 in 2 s; 0.5/s: 1 in 2 s); failing that, the most a minute holds without
    going past the rate (at least one, over as many seconds as one takes)."""
    for seconds in range(1, LONGEST_WINDOW + 1):
        amount = per_second * seconds
        if amount >= 1 and math.isclose(amount, round(amount), rel_tol=1e-9):
            return RateLimitItemPerSecond(round(amount), seconds)
    if per_second * LONGEST_WINDOW >= 1:
        return RateLimitItemPerSecond(math.floor(per_second * LONGEST_WINDOW), LONGEST_WINDOW)
    return RateLimitItemPerSecond(1, math.ceil(1 / per_second))


def windows(per_second: float) -> tuple[RateLimitItem, ...]:
    """What `per_second` is checked as: its `window`, and, when that window holds more than
    one second's worth, at most `ceil(per_second)` in any one second (the burst)."""
    item = window(per_second)
    burst = math.ceil(per_second)
    return (item, RateLimitItemPerSecond(burst, 1)) if item.amount > burst else (item,)


class RateLimit:
    """At most `per_second` requests a second per API token, as many of them at once; None
    for no limit."""

    def __init__(self, per_second: float | None) -> None:
        self.items = windows(per_second) if per_second is not None else ()
        self.limiter = MovingWindowRateLimiter(MemoryStorage()) if self.items else None
        self._lock = threading.Lock()  # a request is counted in every window, or in none

    def check(self, who: Principal) -> None:
        """One request of `who`; HTTPException 429 with Retry-After (whole seconds, at least
        one: until every window has room again) past the rate."""
        if self.limiter is None:
            return
        with self._lock:
            full = [item for item in self.items if not self.limiter.test(item, who.id)]
            if not full:
                for item in self.items:
                    self.limiter.hit(item, who.id)
                return
            room_at = max(self.limiter.get_window_stats(item, who.id).reset_time for item in full)
        wait = max(1, math.ceil(room_at - time.time()))
        raise HTTPException(429, "too many requests", headers={"Retry-After": str(wait)})
