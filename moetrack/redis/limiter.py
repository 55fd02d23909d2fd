"""The shared limiter: one account-wide quota for every process that names the same Redis.

``limiter="redis://host:6379/0"`` (env ``MOETRACK_LIMITER``) makes every client and relay of
one app id draw from the same ``users_per_minute`` and ``events_per_minute``. The API counts
its quotas per account, so a fleet of processes pacing themselves alone earns 429s.

The algorithm is GCRA (the generic cell rate algorithm), one Lua script, one round trip per
batch, on Redis's own clock (``TIME``), so the hosts' clocks never matter. Per quota ``Q``
over ``W`` seconds, with a burst ``B`` (the largest batch that goes without waiting for an
idle bucket, at most ``Q / 10``) and a latency allowance ``L``, one unit costs
``T = (W + L) / (Q - B)`` seconds of "theoretical arrival time" (TAT), kept in one key.

A batch of ``n`` units is granted at Redis time ``t`` iff ``TAT <= t + (B - n) * T``; then
``TAT = max(TAT, t) + n * T``. Both quotas are checked in the same call and charged together,
or neither is charged and the wait is returned. Why no window of ``W`` seconds ever holds
more than ``Q`` units, even counting that a batch is taken whole: for grants ``1..k`` at
``t_1 <= ... <= t_k``, each grant pushes the TAT by its cost, so the TAT before grant ``k`` is
at least ``t_1 + (n_1 + ... + n_(k-1)) * T``; the grant condition at ``t_k`` then gives
``n_1 + ... + n_k <= (t_k - t_1) / T + B``, which is at most ``Q`` while ``t_k - t_1 <= W + L``.
So the quota holds at the server for every request that reaches it within ``L`` seconds of
its grant (by default a sixtieth of the window, at least a quarter of a second: one second
of a minute). A batch
larger than ``B`` (up to the whole quota) still goes, once the bucket has been idle long
enough; the same proof covers it. The steady pace is ``(Q - B) / (W + L)`` units a second:
90 % of the quota, less the allowance, for batches up to ``B``; about half for batches near
the whole quota.

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
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigurationError
from .._pipeline.limiter import LocalLimiter
from .connection import Keys, connect, redact_url, redis_errors, url_password

if TYPE_CHECKING:
    import redis

    from .._config import Config

__all__ = ["SCRIPT", "RedisLimiter", "gcra_parameters"]

logger = logging.getLogger("moetrack")

#: Seconds between attempts to reach Redis again while the local fallback paces.
RETRY_INTERVAL = 5.0
#: Seconds to connect to Redis and to wait for one answer. The sender waits this long at most
#: before falling back to the local limiter.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 1.0
#: The least time (seconds) allowed between a grant and its request reaching the server.
MIN_ALLOWANCE = 0.25

#: KEYS: users TAT, events TAT, pause. ARGV[1] = "acquire", then per quota (users, events) five
#:   numbers: cost, burst, T (µs per unit; 0: no limit), quota, keep (µs the key outlives its
#:   TAT). Returns ``{wait, now}``: wait 0 when granted (both quotas charged), otherwise the
#:   µs to wait (nothing charged), a pause included; now is Redis's clock, in µs.
#: ARGV[1] = "pause", ARGV[2] = milliseconds: the pause key lives at least that long. Returns
#:   the pause's remaining milliseconds.
#: Times are integer microseconds of Redis's clock, exact in a Lua number (below 2^53).
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
local left = redis.call('PTTL', KEYS[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
if left > 0 then return {left * 1000, now} end
local wait = 0
local tat = {0, 0}
for i = 1, 2 do
  local a = 5 * i - 3
  local n, burst = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local t, quota = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if n > 0 and t > 0 then
    tat[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
    -- a batch over the whole quota can never fit: it goes alone once the bucket is idle
    local allow_at = tat[i] - (burst - math.min(n, quota)) * t
    if allow_at - now > wait then wait = allow_at - now end
  end
end
if wait > 0 then return {wait, now} end
for i = 1, 2 do
  local a = 5 * i - 3
  local n, t, keep = tonumber(ARGV[a]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 4])
  if n > 0 and t > 0 then
    local new = math.max(tat[i], now) + n * t
    local ttl = math.ceil((new - now + keep) / 1000) + 1
    redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', ttl)
  end
end
return {0, now}
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


def gcra_parameters(
    quota: int | None, window: float, max_batch: int, allowance: float
) -> tuple[int, int, int]:
    """``(burst, µs per unit, µs the key must outlive its TAT)`` for one quota; ``(0, 0, 0)``
    when it is off. ``T`` is rounded up, which only makes the pace slower."""
    if quota is None:
        return (0, 0, 0)
    burst = max(1, min(max_batch, quota // 10))
    if burst >= quota:  # a quota of 1: one unit at a time, one per window
        burst = 0
    per_unit = math.ceil((window + allowance) * 1_000_000 / (quota - burst))
    # A batch larger than the burst waits until TAT <= now - (n - burst) * T, with n up to
    # the quota: the key must last that long past its TAT, or its absence would read as
    # "idle for ever" too early.
    keep = (quota - burst) * per_unit
    return (burst, per_unit, keep)


class RedisLimiter:
    """The account's quotas shared through Redis by every process of one app id.

    ``RedisLimiter(url, app_id, users_per_minute, events_per_minute, window, fallback=...)``;
    ``None`` turns a quota off. ``max_batch`` is the largest batch the sender makes (the
    burst is at most a tenth of a quota); ``allowance`` the seconds a request may take from
    its grant to the server (default: a sixtieth of the window, at least 0.25 s). Every
    process sharing the quota must use the same figures. ``fallback`` paces this process
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
        max_batch: int = 1_000,
        allowance: float | None = None,
    ) -> None:
        self.url = redact_url(url)
        self._password = url_password(url)
        self.app_id = app_id
        self.window = window
        self.fallback = (
            fallback
            if fallback is not None
            else LocalLimiter(users_per_minute, events_per_minute, window)
        )
        if allowance is None:
            allowance = max(window / 60, MIN_ALLOWANCE)
        users = gcra_parameters(users_per_minute, window, max_batch, allowance)
        events = gcra_parameters(events_per_minute, window, max_batch, allowance)
        #: (burst, µs per unit, quota, keep) of the users and the events quota.
        self.parameters = (
            (users[0], users[1], users_per_minute or 0, users[2]),
            (events[0], events[1], events_per_minute or 0, events[2]),
        )
        keys = Keys(app_id)
        self.keys = (keys.gcra("users"), keys.gcra("events"), keys.pause)
        # One retry covers a pooled socket the server has closed.
        self._redis: redis.Redis = connect(
            url,
            timeout=SOCKET_TIMEOUT,
            connect_timeout=CONNECT_TIMEOUT,
            retries=1,
            name=None,
            health_check_interval=0,
        )
        import redis

        self._errors: tuple[type[BaseException], ...] = redis_errors()
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
    def from_config(cls, config: Config, *, fallback: LocalLimiter | None = None) -> RedisLimiter:
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
            max_batch=config.max_batch_size,
        )

    def __repr__(self) -> str:
        return f"RedisLimiter({self.url!r}, app_id={self.app_id!r})"

    # --- the Limiter protocol -----------------------------------------------------------

    def acquire(self, users: int, events: int) -> float:
        if self._use_fallback():
            return self._acquire_locally(users, events)
        (ub, ut, uq, uk), (eb, et, eq, ek) = self.parameters
        try:
            wait_us, now = self._run("acquire", users, ub, ut, uq, uk, events, eb, et, eq, ek)
        except self._errors as exc:
            self._went_down(exc)
            return self._acquire_locally(users, events)
        self._local_grant = False
        if wait_us > 0:
            return int(wait_us) / 1_000_000
        self.last_grant = int(now)
        return 0.0

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
            result = self._redis.evalsha(SCRIPT_SHA, 3, *self.keys, *args)
        except self._no_script:
            result = self._redis.eval(SCRIPT, 3, *self.keys, *args)
        self.round_trips += 1
        if self._down:
            self._came_back()
        return result

    def _use_fallback(self) -> bool:
        return self._down and time.monotonic() < self._retry_at

    def _acquire_locally(self, users: int, events: int) -> float:
        self.fallback_acquires += 1
        wait = self.fallback.acquire(users, events)
        self._local_grant = wait <= 0
        return wait

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
