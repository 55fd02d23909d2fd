"""Client-side rate limits: users/min and events/min, spent before each request.

A sliding window, not a token bucket: at most ``limit`` units in any ``window`` seconds. A
bucket of a minute's capacity may send twice its limit within one minute (a full bucket plus
a minute of refill), which a server counting over a sliding or fixed window answers with 429.
Spends are stamped when the response arrives, which is never earlier than the moment the
server counted them, so the client's window always closes after the server's does.
"""

from __future__ import annotations

from collections import deque

__all__ = ["WindowLimit"]


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

    def used(self, now: float) -> int:
        self._expire(now)
        return self._total
