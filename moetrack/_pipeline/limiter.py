"""The Limiter seam: when may a batch of N users and M events go?

The send stage asks its :class:`Limiter` before every request. :class:`LocalLimiter` paces
one process (two sliding windows, :mod:`moetrack._pipeline.ratelimit`); the Redis limiter
(``limiter="redis://…"``) shares one account-wide quota between every process and host that
names the same Redis and app id. The API's quotas are per account, so a fleet must share one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .ratelimit import WindowLimit

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["Limiter", "LocalLimiter", "make_limiter"]


@runtime_checkable
class Limiter(Protocol):
    """Decides when a batch may be sent, and hears about the server's 429s.

    ``acquire`` is called before each request (never for the halves of a 413 split, which
    the original request paid for); ``answered`` after that request has its outcome
    (an answer, or none); ``pause`` when the server answered 429.
    """

    def acquire(self, users: int, events: int) -> float:
        """Charge the batch and return ``0.0`` if it may go now; otherwise charge nothing and
        return the seconds to wait before asking again (a 429 pause counts too)."""

    def answered(self) -> None:
        """The request of the last granted ``acquire`` has ended."""

    def pause(self, seconds: float) -> None:
        """The server answered 429: nobody sharing this limiter sends for ``seconds``."""


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


def make_limiter(config: Config) -> Limiter:
    """The limiter a config asks for: its own object, the shared Redis one, or a local one."""
    spec = config.limiter
    if spec is not None and not isinstance(spec, str):
        return spec
    local = LocalLimiter(
        config.users_per_minute, config.events_per_minute, config.rate_limit_window
    )
    if spec is None:
        return local
    from ..redis.limiter import RedisLimiter  # the moetrack[redis] extra

    return RedisLimiter.from_config(config, fallback=local)
