"""The shared limiter: one account-wide quota for every process that names the same Redis.

``limiter="redis://host:6379/0"`` (env ``MOETRACK_LIMITER``) makes every client, relay and
import of one app id draw from the same ``users_per_minute`` and ``events_per_minute``. The
API counts its quotas per account, so a fleet of processes pacing themselves alone earns 429s.

The algorithm is an exact sliding window kept in Redis: per quota one sorted set of the
grants (score: Redis's clock, ``TIME``, in µs; member: the running total of units granted
and the grant's own count), checked and charged by one Lua script, one round trip per batch.
The hosts' clocks never matter, and neither do the senders' batch sizes: the parameters are
the quota ``Q``, the window ``W`` and an allowance ``L`` alone, the same for every process.

A grant of ``n`` units at Redis time ``t`` is made iff the grants stamped in
``(t - W - L, t]`` plus ``n`` are at most ``Q``; it is then stamped ``t`` (``t`` never steps
back: the script keeps the latest time it has seen, should Redis's clock step back). Both
quotas are checked in the same call and charged together, or neither is charged and the wait
comes back: the exact time until enough of the oldest grants leave the window.

Why no window of the server's holds more than ``Q``. Let the server count a request at some
moment ``c`` with ``g <= c <= g + L``, ``g`` its grant (``L``, the allowance, covers the
reply from Redis, packing, and the request's way to the server). A window ``(b, b + W]`` of
the server's then holds only requests granted in ``(b - L, b + W]``, a span of ``W + L``.
Take the last of them to be granted, at ``s``: every other was granted before it, at a stamp
``> b - L >= s - W - L``, so all were still counted when it was granted, and the script
granted it only if the total, its own units included, was at most ``Q``. A batch larger than
the whole quota (never made by the packer) goes alone, once the window is empty.

The pace: a window of ``W + L`` holds ``Q``, so sustained use is ``W / (W + L)`` of the
quota whatever the batch sizes (98.4 % at a minute with ``L`` = 1 s).

``acquire_some`` (one round trip too) grants the longest head of a batch that fits now, if
it holds at least ``least`` records, so a sender bound by the pace sends what may go now
instead of waiting for room for a whole batch.

A 429 sets the shared key ``mt:{app}:pause`` (PX), which the script checks in the same round
trip: every process then waits out the server's ``Retry-After``. Keys expire once they no
longer matter, so nothing is left behind.

When Redis cannot be reached the limiter paces this process alone (its local fallback), logs
once, and tries Redis again every few seconds; it logs once more when Redis is back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .._exceptions import ConfigurationError

if TYPE_CHECKING:
    import redis

    from .._config import Config
    from .._pipeline.limiter import LocalLimiter

__all__ = ["SCRIPT", "RedisLimiter", "display_url"]

logger = logging.getLogger("moetrack")

#: Seconds between attempts to reach Redis again while the local fallback paces.
RETRY_INTERVAL = 5.0
#: Seconds to connect to Redis and to wait for one answer. The sender waits this long at most
#: before falling back to the local limiter.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 1.0
#: The least time (seconds) allowed between a grant and its request reaching the server.
MIN_ALLOWANCE = 0.25

#: KEYS: users window, events window, pause, clock (the latest time seen: the script's clock
#:   never steps back, even when Redis's does).
#: ARGV[1] = "acquire", ARGV[2] = the clock in µs (tests only; "0": Redis's ``TIME``),
#:   ARGV[3] = the span ``W + L`` in µs, ARGV[4], ARGV[5] = the users and events quotas
#:   (0: no limit), ARGV[6] = ``least``, ARGV[7...] = the batch as runs of records in order:
#:   ``-k`` is k users (or devices), ``+k`` k events. Grants the longest head of the batch
#:   that fits now if it holds at least ``least`` records (or all of them), charging both
#:   quotas; otherwise charges nothing. Returns ``{records granted, wait µs, now µs}``: the
#:   wait, when nothing was granted, until the first ``least`` records fit (a pause counts).
#: ARGV[1] = "pause", ARGV[2] = milliseconds: the pause key lives at least that long. Returns
#:   the pause's remaining milliseconds.
#: Each window is a sorted set: score the grant's stamp, member ``"<running total>:<n>"`` (the
#: total zero-padded, so equal stamps sort in grant order), so the units in the window are
#: the last total less the first member's total before it: O(log n) a call, however many
#: grants the window holds. Times are integer µs, exact in a Lua number and a score (< 2^53).
SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
if ARGV[1] == 'pause' then
  local ms = tonumber(ARGV[2])
  local left = redis.call('PTTL', KEYS[3])
  if left < ms then
    redis.call('SET', KEYS[3], '1', 'PX', ms)
    left = ms
  end
  return left
end
local now = tonumber(ARGV[2])
if now <= 0 then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local span = tonumber(ARGV[3])
local seen = tonumber(redis.call('GET', KEYS[4]) or '0')
if seen >= now then
  now = seen
else
  redis.call('SET', KEYS[4], string.format('%.0f', now), 'PX', math.ceil(span / 1000) + 1000)
end
local left = redis.call('PTTL', KEYS[3])
if left > 0 then return {0, left * 1000, now} end
local quota = {tonumber(ARGV[4]), tonumber(ARGV[5])}
local least = tonumber(ARGV[6])
local used, total, last, room = {0, 0}, {0, 0}, {0, 0}, {0, 0}
for i = 1, 2 do
  if quota[i] > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%.0f', now - span))
    local top = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
    if top[1] then
      local first = redis.call('ZRANGE', KEYS[i], 0, 0)[1]
      local before, n = string.match(first, '^(%d+):(%d+)$')
      total[i] = tonumber(string.match(top[1], '^(%d+):'))
      last[i] = tonumber(top[2])
      used[i] = total[i] - (tonumber(before) - tonumber(n))
    end
    room[i] = quota[i] - used[i]
  end
end
-- the longest head that fits, and the units of the first ``least`` records
local take, need = {0, 0}, {0, 0}
local records, walked, all, full = 0, 0, 0, true
for j = 7, #ARGV do
  local k = tonumber(ARGV[j])
  local i = 2
  if k < 0 then i, k = 1, -k end
  if walked < least then
    local t = math.min(k, least - walked)
    need[i] = need[i] + t
    walked = walked + t
  end
  if full then
    local fit = k
    if quota[i] > 0 then fit = math.max(0, math.min(k, room[i] - take[i])) end
    take[i] = take[i] + fit
    records = records + fit
    if fit < k then full = false end
  end
  all = all + k
end
if records < least and records < all then
  -- a head larger than a whole quota can never fit: it goes alone, once the window is empty
  local alone = true
  for i = 1, 2 do
    if quota[i] > 0 and need[i] > 0 and math.min(need[i], quota[i]) > room[i] then
      alone = false
    end
  end
  if not alone then
    local wait = 1
    for i = 1, 2 do
      local excess = used[i] + math.min(need[i], quota[i]) - quota[i]
      if quota[i] > 0 and need[i] > 0 and excess > 0 then
        -- the oldest grants leave the window one by one: when is enough gone?
        local start = 0
        while excess > 0 do
          local page = redis.call('ZRANGE', KEYS[i], start, start + 63, 'WITHSCORES')
          if not page[1] then break end
          for p = 1, #page, 2 do
            excess = excess - tonumber(string.match(page[p], ':(%d+)$'))
            if excess <= 0 then
              wait = math.max(wait, tonumber(page[p + 1]) + span - now)
              break
            end
          end
          start = start + 64
        end
      end
    end
    return {0, wait, now}
  end
  records, take = least, need
end
for i = 1, 2 do
  if quota[i] > 0 and take[i] > 0 then
    local stamp = math.max(now, last[i])
    local member = string.format('%015.0f:%.0f', total[i] + take[i], take[i])
    redis.call('ZADD', KEYS[i], string.format('%.0f', stamp), member)
    redis.call('PEXPIRE', KEYS[i], math.ceil((stamp - now + span) / 1000) + 1000)
  end
end
return {records, 0, now}
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


def runs(users: int, events: int) -> list[int]:
    """A batch of ``users`` and ``events`` as the script's runs (order does not matter when
    it is taken whole)."""
    return [k for k in (-users, events) if k]


def display_url(url: str) -> str:
    """The URL as logs and messages may show it: any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<a redis URL that cannot be parsed>"


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None


class RedisLimiter:
    """The account's quotas shared through Redis by every process of one app id.

    ``RedisLimiter(url, app_id, users_per_minute, events_per_minute, window, fallback=...)``;
    ``None`` turns a quota off. ``allowance`` is the seconds a request may take from its
    grant to the server (default: a sixtieth of the window, at least 0.25 s). Every process
    sharing the quota must use the same quotas, window and allowance; batch sizes may differ.
    ``fallback`` paces this process
    alone while Redis is unreachable (default: a
    :class:`~moetrack._pipeline.limiter.LocalLimiter` of the same quotas).
    """

    def __init__(
        self,
        url: str,
        app_id: str,
        users_per_minute: int | None,
        events_per_minute: int | None,
        window: float = 60.0,
        *,
        fallback: LocalLimiter | None = None,
        allowance: float | None = None,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ConfigurationError(
                "limiter: a redis:// limiter needs the redis package: pip install 'moetrack[redis]'"
            ) from exc
        from .._pipeline.limiter import LocalLimiter

        self.url = display_url(url)
        self._password = _password(url)
        self.app_id = app_id
        self.window = window
        self.fallback = (
            fallback
            if fallback is not None
            else LocalLimiter(users_per_minute, events_per_minute, window)
        )
        if allowance is None:
            allowance = max(window / 60, MIN_ALLOWANCE)
        #: The window the script counts (µs: ``W + L``), and the users and events quotas
        #: (0: off).
        self.parameters = (
            round((window + allowance) * 1_000_000),
            users_per_minute or 0,
            events_per_minute or 0,
        )
        prefix = f"mt:{{{app_id}}}:"
        self.keys = (
            f"{prefix}window:users",
            f"{prefix}window:events",
            f"{prefix}pause",
            f"{prefix}clock",
        )
        #: Tests only: a clock (µs) the script uses instead of Redis's ``TIME``.
        self.clock: Callable[[], int] | None = None
        # redis-py's pool notices a fork (it compares pids) and never reuses the parent's
        # sockets in the child. One retry covers a pooled socket the server has closed.
        self._redis: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._no_script: type[BaseException] = redis.exceptions.NoScriptError
        self._lock = threading.Lock()
        self._down = False  # Redis failed; the fallback paces until _retry_at
        self._retry_at = 0.0
        self._local_grant = False
        #: Calls that reached Redis, and acquires answered by the fallback.
        self.round_trips = 0
        self.fallback_acquires = 0
        #: Redis's clock (µs since the epoch) at the last grant that went through Redis.
        self.last_grant = 0

    @classmethod
    def from_config(cls, config: Config, *, fallback: LocalLimiter) -> RedisLimiter:
        """The limiter of a client's config (``limiter="redis://…"``)."""
        url = config.limiter
        if not isinstance(url, str):
            raise ConfigurationError("limiter: must be a redis:// URL here")
        return cls(
            url,
            config.app_id or "default",
            config.users_per_minute,
            config.events_per_minute,
            config.rate_limit_window,
            fallback=fallback,
        )

    def __repr__(self) -> str:
        return f"RedisLimiter({self.url!r}, app_id={self.app_id!r})"

    # --- the Limiter protocol -----------------------------------------------------------

    def acquire(self, users: int, events: int) -> float:
        return self.acquire_some(runs(users, events), users + events)[1]

    def acquire_some(self, batch: Sequence[int], least: int) -> tuple[int, float]:
        if self._use_fallback():
            return self._acquire_locally(batch, least)
        span, users, events = self.parameters
        clock = 0 if self.clock is None else self.clock()
        try:
            granted, wait_us, now = self._run("acquire", clock, span, users, events, least, *batch)
        except self._errors as exc:
            self._went_down(exc)
            return self._acquire_locally(batch, least)
        self._local_grant = False
        if wait_us > 0:
            return 0, int(wait_us) / 1_000_000
        self.last_grant = int(now)
        return int(granted), 0.0

    def answered(self) -> None:
        if self._local_grant:
            self._local_grant = False
            self.fallback.answered()

    def pause(self, seconds: float) -> None:
        self.fallback.pause(seconds)  # holds if Redis goes away during the pause
        if seconds <= 0 or self._use_fallback():
            return
        try:
            self._run("pause", max(1, math.ceil(seconds * 1000)))
        except self._errors as exc:
            self._went_down(exc)

    def close(self) -> None:
        """Close the connections to Redis (the limiter reconnects if used again)."""
        with contextlib.suppress(*self._errors):
            self._redis.close()

    # --- Redis ----------------------------------------------------------------------------

    def _run(self, *args: Any) -> Any:
        """One round trip: EVALSHA, or EVAL (which caches the script) if the server lost it."""
        try:
            result = self._redis.evalsha(SCRIPT_SHA, 4, *self.keys, *args)
        except self._no_script:
            result = self._redis.eval(SCRIPT, 4, *self.keys, *args)
        self.round_trips += 1
        if self._down:
            self._came_back()
        return result

    def _use_fallback(self) -> bool:
        return self._down and time.monotonic() < self._retry_at

    def _acquire_locally(self, batch: Sequence[int], least: int) -> tuple[int, float]:
        self.fallback_acquires += 1
        granted, wait = self.fallback.acquire_some(batch, least)
        self._local_grant = wait <= 0
        return granted, wait

    def _went_down(self, exc: BaseException) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + RETRY_INTERVAL
            if self._down:
                return
            self._down = True
        reason = f"{type(exc).__name__}: {exc}"
        if self._password:
            reason = reason.replace(self._password, "***")
        logger.warning(
            "moetrack: the shared limiter's Redis %s is unreachable (%s); this process paces "
            "itself alone and tries Redis again every %.0f s",
            self.url,
            reason,
            RETRY_INTERVAL,
        )

    def _came_back(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        logger.info("moetrack: the shared limiter's Redis %s is back; quota shared again", self.url)
