"""The Limiter seam: when may a batch of N users and M events go?

The send stage asks its :class:`Limiter` before every request. :class:`LocalLimiter` paces
one process with two sliding windows (:class:`WindowLimit`); the Redis limiter
(``limiter="redis://…"``, built through :mod:`moetrack._pipeline.backends`) shares one
account-wide quota between every process and host that names the same Redis and app id. The
API's quotas are per account, so a fleet must share one.

Why a sliding window, not a token bucket: at most ``limit`` units in any ``window`` seconds.
A bucket of a minute's capacity may send twice its limit within one minute (a full bucket
plus a minute of refill), which a server counting over a sliding or fixed window answers with
429. Spends are stamped when the response arrives, which is never earlier than the moment the
server counted them, so the client's window always closes after the server's does.
"""

from __future__ import annotations

import time
from collections import deque

from .._config import Limiter

__all__ = ["Limiter", "LocalLimiter", "WindowLimit"]


class WindowLimit:
    """At most ``limit`` units per ``window`` seconds; ``limit=None`` means no limit."""

    __slots__ = ("_spent", "_total", "limit", "window")

    def __init__(self, limit: int | None, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0

    def _expire(self, now: float) -> None:
        spent = self._spent
        while spent and spent[0][0] <= now - self.window:
            self._total -= spent.popleft()[1]

    def wait_time(self, n: int, now: float) -> float:
        """Seconds from ``now`` until ``n`` more units fit in the window (0.0: now)."""
        if self.limit is None or n <= 0:
            return 0.0
        self._expire(now)
        # A batch larger than the whole limit can never fit; it goes alone, once the window
        # is empty, rather than never (the packer keeps batches within the limits).
        excess = self._total + min(n, self.limit) - self.limit
        if excess <= 0:
            return 0.0
        for stamp, count in self._spent:
            excess -= count
            if excess <= 0:
                return max(0.0, stamp + self.window - now)
        return self.window  # unreachable: the window holds at least the excess

    def spend(self, n: int, now: float) -> None:
        if self.limit is None or n <= 0:
            return
        self._spent.append((now, n))
        self._total += n

    def restamp_last(self, n: int, now: float) -> None:
        """Move the last spend of ``n`` units to ``now`` (its request has just ended)."""
        if self.limit is None or n <= 0 or not self._spent:
            return
        stamp, count = self._spent[-1]
        if count == n and now > stamp:
            self._spent[-1] = (now, n)


class LocalLimiter:
    """This process's users/min and events/min, counted over ``window`` seconds.

    A grant is stamped again when the request ends: the server counts a request at some
    moment between the two, so the window counted here never closes before the server's.
    """

    __slots__ = ("_granted", "_paused_until", "events", "users")

    def __init__(
        self, users_per_minute: int | None, events_per_minute: int | None, window: float = 60.0
    ) -> None:
        self.users = WindowLimit(users_per_minute, window)
        self.events = WindowLimit(events_per_minute, window)
        self._granted: tuple[int, int] | None = None
        self._paused_until = 0.0

    def acquire(self, users: int, events: int) -> float:
        now = time.monotonic()
        wait = max(
            self._paused_until - now,
            self.users.wait_time(users, now),
            self.events.wait_time(events, now),
        )
        if wait > 0:
            return wait
        self.users.spend(users, now)
        self.events.spend(events, now)
        self._granted = (users, events)
        return 0.0

    def answered(self) -> None:
        granted, self._granted = self._granted, None
        if granted is not None:
            now = time.monotonic()
            self.users.restamp_last(granted[0], now)
            self.events.restamp_last(granted[1], now)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
