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

A limiter may also size batches to the moment (:meth:`SizingLimiter.acquire_some`): grant
the longest head of a batch that fits now, so a sender bound by the pace sends that much at
once instead of waiting until the whole batch fits. Both limiters here do.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .._config import Limiter

__all__ = ["Limiter", "LocalLimiter", "SizingLimiter", "WindowLimit", "first_units", "head"]


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

    def used(self, now: float) -> int:
        """Units spent within the window that ends at ``now``."""
        self._expire(now)
        return self._total

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


@runtime_checkable
class SizingLimiter(Limiter, Protocol):
    """A limiter that can grant part of a batch: what may go now, or when."""

    def acquire_some(self, batch: Sequence[int], least: int) -> tuple[int, float]:
        """``batch`` is its records in order, as runs: ``-k`` for k users (or devices),
        ``+k`` for k events. Charge and return ``(n, 0.0)`` for the longest head of ``n``
        records that fits now, if ``n >= least`` or it is the whole batch; otherwise charge
        nothing and return ``(0, seconds)`` to wait until the first ``least`` records fit.
        A head larger than a whole quota goes alone, once the window is empty."""


def head(batch: Sequence[int], users: float, events: float) -> tuple[int, int, int]:
    """The longest head of ``batch`` (runs, as for ``acquire_some``) holding at most
    ``users`` users and ``events`` events: ``(records, users, events)`` in it."""
    took = [0, 0]
    room = (users, events)
    for run in batch:
        kind, k = (0, -run) if run < 0 else (1, run)
        fit = max(0, int(min(room[kind] - took[kind], k)))
        took[kind] += fit
        if fit < k:
            break
    return took[0] + took[1], took[0], took[1]


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

    def acquire_some(self, batch: Sequence[int], least: int) -> tuple[int, float]:
        now = time.monotonic()
        if self._paused_until > now:
            return 0, self._paused_until - now
        users, events = self.users, self.events
        inf = float("inf")
        records, u, e = head(
            batch,
            inf if users.limit is None else users.limit - users.used(now),
            inf if events.limit is None else events.limit - events.used(now),
        )
        if records < least and records < sum(map(abs, batch)):
            records, u, e = head(batch, *first_units(batch, least))
            wait = max(users.wait_time(u, now), events.wait_time(e, now))
            if wait > 0:
                return 0, wait
        users.spend(u, now)
        events.spend(e, now)
        self._granted = (u, e)
        return records, 0.0

    def answered(self) -> None:
        # Kept until the next grant: the halves of a 413 end later, each moving the stamp.
        granted = self._granted
        if granted is not None:
            now = time.monotonic()
            self.users.restamp_last(granted[0], now)
            self.events.restamp_last(granted[1], now)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)


def first_units(batch: Sequence[int], least: int) -> tuple[int, int]:
    """The users and events among the first ``least`` records of ``batch``."""
    took = [0, 0]
    for run in batch:
        kind, k = (0, -run) if run < 0 else (1, run)
        t = min(k, least)
        took[kind] += t
        least -= t
        if least <= 0:
            break
    return took[0], took[1]
