"""The shared limiter: one account-wide quota for every process that names the same Redis.

``limiter="redis://host:6379/0"`` (env ``MOETRACK_LIMITER``) makes every client, relay and
import of one app id draw from the same ``users_per_minute`` and ``events_per_minute``. The
API counts its quotas per account, so a fleet of processes pacing themselves alone earns 429s.

The algorithm is an exact sliding window kept in Redis: per quota one sorted set of the
grants, checked and charged by one Lua script, one round trip per batch, on Redis's clock
(``TIME``), so the hosts' clocks never matter. Neither do the senders' batch sizes: the
parameters are the quota ``Q``, the window ``W`` and an allowance ``L`` alone, the same for
every process.

Each grant is scored with the latest moment the server may count its request: its grant time
``g`` plus ``L`` (the allowance covers the reply from Redis, packing, and the request's way to
the server), until the sender reports, with its next acquire, when the answer came ``a``;
then ``a`` (the server counted it before answering), but never less than ``g``: the sender
measures "answered so long ago" on its own clock, and Redis's may have been set back since.
A grant leaves the window once its score is more than ``W`` old. A batch of ``n`` at Redis
time ``t`` is granted iff the units in the window plus ``n`` are at most ``Q`` (``t`` never
steps back: the script keeps the latest time it has seen). Both quotas are checked in the
same call and charged together, or neither is charged and the wait comes back: the exact time
until enough of the oldest grants leave the window.

Why no window of the server's holds more than ``Q``. The server counts a request at some ``c``
with ``g <= c <= score``. A closed window ``[b, b + W]`` of the server's holds only requests
with ``g <= b + W`` and ``score >= c >= b``. Take the last of them to be granted, at
``s <= b + W``: every other was granted before it with a score ``>= b >= s - W`` (a report
only lowers a score to its answer, still ``>= c``), so all were in the window when it was
granted, and the script granted it only if the total, its own units included, was at most
``Q``. A batch larger than the whole quota (never made by the packer) goes alone, once the
window is empty.

The pace: a busy sender reports each answer with its next acquire, so each grant holds its
units for ``W`` plus the request's own time; sustained use is the whole quota less that, and
never less than ``W / (W + L)`` of it (98.4 % at a minute with ``L`` = 1 s). A process with two
requests in flight at once (sync mode) reports neither: they hold theirs for ``W + L``.

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

from .._exceptions import ConfigurationError
from .._pipeline.limiter import LocalLimiter, first_units
from .connection import Keys, connect, redact_url, redis_errors, url_password

if TYPE_CHECKING:
    import redis

    from .._config import Config

__all__ = ["SCRIPT", "RedisLimiter"]

logger = logging.getLogger("moetrack")

#: Seconds between attempts to reach Redis again while the local fallback paces.
RETRY_INTERVAL = 5.0
#: Seconds to connect to Redis and to wait for one answer. The sender waits this long at most
#: before falling back to the local limiter.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 1.0
#: The least time (seconds) allowed between a grant and its request reaching the server.
MIN_ALLOWANCE = 0.25
#: Answered grants kept to report with the next acquire (more are left to expire as they are).
MAX_REPORTS = 16

#: KEYS: users window, events window, pause, state (a hash: ``clock``, the latest time seen,
#:   so the script's clock never steps back even when Redis's does; ``used1``/``used2``, the
#:   units in each window; ``seq1``/``seq2``, the running total of units granted, which names
#:   each grant).
#: ARGV[1] = "acquire", ARGV[2] = the clock in µs (tests only; "0": Redis's ``TIME``),
#:   ARGV[3] = ``W`` and ARGV[4] = ``L`` in µs, ARGV[5], ARGV[6] = the users and events quotas
#:   (0: no limit), ARGV[7] = ``least``, ARGV[8] = ``R``, the number of answered grants that
#:   follow, six numbers each: users seq and units, events seq and units (0 when none), the
#:   grant's time on the script's clock, µs since the answer; then the batch as runs of
#:   records in order: ``-k`` is k users (or devices), ``+k`` k events. Grants the longest head
#:   of the batch that fits now if it holds at least ``least`` records (or all of them),
#:   charging both quotas; otherwise charges nothing. Returns ``{records granted, wait µs,
#:   now µs, users seq, events seq}``: the wait, when nothing was granted, until the first
#:   ``least`` records fit (a pause counts).
#: ARGV[1] = "pause", ARGV[2] = milliseconds: the pause key lives at least that long. Returns
#:   the pause's remaining milliseconds.
#: A window is a sorted set of grants: score the moment the server has surely counted the
#: request (the grant plus ``L``, until the sender reports when its answer came: then that,
#: never before the grant: the sender's clock and Redis's may disagree), member
#: ``"<seq>:<units>"``. Times are integer µs, exact in a Lua number and a score.
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
local function fmt(x) return string.format('%.0f', x) end
local now = tonumber(ARGV[2])
if now <= 0 then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local window, allowance = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = KEYS[4]
local seen = tonumber(redis.call('HGET', state, 'clock') or '0')
if seen >= now then now = seen else redis.call('HSET', state, 'clock', fmt(now)) end
redis.call('PEXPIRE', state, math.ceil((window + allowance) / 1000) + 1000)
-- answered grants: the server counted them before their answer came
local restamps = tonumber(ARGV[8])
for r = 0, restamps - 1 do
  local base = 9 + 6 * r
  -- the sender counts "so long ago" on its own clock; Redis's may have stepped back since
  local at = math.max(now - tonumber(ARGV[base + 5]), tonumber(ARGV[base + 4]))
  for i = 1, 2 do
    local seq = tonumber(ARGV[base + 2 * i - 2])
    if seq > 0 then
      local member = fmt(seq) .. ':' .. ARGV[base + 2 * i - 1]
      local score = redis.call('ZSCORE', KEYS[i], member)
      if score and tonumber(score) > at then redis.call('ZADD', KEYS[i], fmt(at), member) end
    end
  end
end
local left = redis.call('PTTL', KEYS[3])
if left > 0 then return {0, left * 1000, now, 0, 0} end
local quota = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local least = tonumber(ARGV[7])
local used, room = {0, 0}, {0, 0}
for i = 1, 2 do
  if quota[i] > 0 then
    -- a grant counts until it is more than a window old: windows are closed, [c, c + W]
    local cutoff = fmt(now - window - 1)
    local gone = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', cutoff)
    if gone[1] then
      local n = 0
      for _, member in ipairs(gone) do n = n + tonumber(string.match(member, ':(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', cutoff)
      redis.call('HINCRBY', state, 'used' .. i, -n)
    end
    if redis.call('ZCARD', KEYS[i]) == 0 then redis.call('HSET', state, 'used' .. i, 0) end
    used[i] = tonumber(redis.call('HGET', state, 'used' .. i) or '0')
    room[i] = quota[i] - used[i]
  end
end
-- the longest head that fits, and the units of the first ``least`` records
local take, need = {0, 0}, {0, 0}
local records, walked, all, full = 0, 0, 0, true
for j = 9 + 6 * restamps, #ARGV do
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
              wait = math.max(wait, tonumber(page[p + 1]) + window + 1 - now)
              break
            end
          end
          start = start + 64
        end
      end
    end
    return {0, wait, now, 0, 0}
  end
  records, take = least, need
end
local seqs = {0, 0}
for i = 1, 2 do
  if quota[i] > 0 and take[i] > 0 then
    seqs[i] = redis.call('HINCRBY', state, 'seq' .. i, take[i])
    redis.call('HINCRBY', state, 'used' .. i, take[i])
    redis.call('ZADD', KEYS[i], fmt(now + allowance), fmt(seqs[i]) .. ':' .. fmt(take[i]))
    redis.call('PEXPIRE', KEYS[i], math.ceil((window + allowance) / 1000) + 1000)
  end
end
return {records, 0, now, seqs[1], seqs[2]}
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


def runs(users: int, events: int) -> list[int]:
    """A batch of ``users`` and ``events`` as the script's runs (order does not matter when
    it is taken whole)."""
    return [k for k in (-users, events) if k]


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
        #: The window and the allowance (µs), and the users and events quotas (0: off).
        self.parameters = (
            round(window * 1_000_000),
            round(allowance * 1_000_000),
            users_per_minute or 0,
            events_per_minute or 0,
        )
        keys = Keys(app_id)
        self.keys = (keys.window("users"), keys.window("events"), keys.pause, keys.window())
        #: Tests only: a clock (µs) the script uses instead of Redis's ``TIME``.
        self.clock: Callable[[], int] | None = None
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
        # Guards the grants in flight, the reports and the fallback: several sync-mode callers
        # may acquire at once. Never held across a round trip to Redis.
        self._state = threading.Lock()
        self._down = False  # Redis failed; the fallback paces until _retry_at
        self._retry_at = 0.0
        self._local_grant = False
        # Grants through Redis whose request has not ended; the one in flight alone (its seqs,
        # units and time on the script's clock), and answered ones (with the monotonic µs of
        # the answer) to report.
        self._flight = 0
        self._alone: tuple[int, int, int, int, int] | None = None
        self._answered: list[tuple[int, int, int, int, int, int]] = []
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
        )

    def __repr__(self) -> str:
        return f"RedisLimiter({self.url!r}, app_id={self.app_id!r})"

    # --- the Limiter protocol -----------------------------------------------------------

    def acquire(self, users: int, events: int) -> float:
        return self.acquire_some(runs(users, events), users + events)[1]

    def acquire_some(self, batch: Sequence[int], least: int) -> tuple[int, float]:
        if self._use_fallback():
            return self._acquire_locally(batch, least)
        window, allowance, users, events = self.parameters
        clock = 0 if self.clock is None else self.clock()
        with self._state:
            answered, self._answered = self._answered, []
        now_us = self._micros()
        reports = [x for *grant, at in answered for x in (*grant, max(0, now_us - at))]
        try:
            granted, wait_us, now, users_seq, events_seq = self._run(
                "acquire", clock, window, allowance, users, events, least, len(answered),
                *reports, *batch,
            )  # fmt: skip
        except self._errors as exc:
            self._went_down(exc)
            return self._acquire_locally(batch, least)
        if wait_us > 0:
            with self._state:
                self._local_grant = False
            return 0, int(wait_us) / 1_000_000
        granted = int(granted)
        with self._state:
            self._local_grant = False
            self.last_grant = int(now)
            self._flight += 1
            if self._flight == 1:
                n_users, n_events = first_units(batch, granted)
                self._alone = (int(users_seq), n_users, int(events_seq), n_events, int(now))
            else:  # two requests in flight at once (sync mode): neither is reported
                self._alone = None
        return granted, 0.0

    def answered(self) -> None:
        with self._state:
            self._answered_locked()

    def _answered_locked(self) -> None:
        if self._local_grant:
            self._local_grant = False
            self.fallback.answered()
            return
        if self._flight <= 0:
            # Another request of the same grant (the halves of a 413): report its end instead.
            if self._answered:
                self._answered[-1] = (*self._answered[-1][:5], self._micros())
            return
        self._flight -= 1
        # Reported with the next acquire: the server counted the request before now.
        if self._flight == 0 and self._alone is not None and len(self._answered) < MAX_REPORTS:
            self._answered.append((*self._alone, self._micros()))
        self._alone = None

    def pause(self, seconds: float) -> None:
        with self._state:
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

    def _micros(self) -> int:
        """This process's clock in µs (the test clock when one is set)."""
        if self.clock is not None:
            return self.clock()
        return int(time.monotonic() * 1_000_000)

    def _use_fallback(self) -> bool:
        return self._down and time.monotonic() < self._retry_at

    def _acquire_locally(self, batch: Sequence[int], least: int) -> tuple[int, float]:
        with self._state:
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
