"""The durable backlog: prepared items appended to Redis Streams, one stream per partition.

With ``backlog="redis://…"`` an app process's worker prepares records as usual and hands the
encoded items to a :class:`BacklogWriter` instead of a sender; ``moetrack relay`` processes
(:mod:`moetrack.redis.relay`) send them on. The keys are named in
:mod:`moetrack.redis.connection`.

An entry holds ``kind``, ``customer_id``, ``device_id`` (absent when None) and ``payload`` (the
item's encoded JSON). A customer always hashes to the same partition, and one relay sends a
partition at a time, so each customer's order is kept. Entries are deleted once delivered
and never trimmed before: at ``backlog_max_entries`` producers drop new items instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import DeliveryError, MoetrackError, TransportError
from .._pipeline.retry import RetryPolicy
from .connection import Keys, connect, partition_of, read_partitions, redact_url, redis_errors

if TYPE_CHECKING:
    import redis

    from .._config import Config
    from .._pipeline.source import Source, Stop
    from .._report import Reporter
    from .._wire.records import Item

__all__ = ["BacklogWriter"]

#: Items appended per script call (one round trip).
CHUNK: Final = 500
#: Longest wait between two attempts while Redis is unreachable, seconds.
MAX_BACKOFF: Final = 2.0
#: How long Redis remembers that a chunk was stored, ms: a retry of its append within that
#: time stores nothing twice. Retries come within seconds of the first attempt unless Redis
#: stays unreachable for longer than this.
CHUNK_ID_TTL_MS: Final = 3_600_000

# One round trip: the depth check against the cap and every XADD of a chunk, atomically, so a
# chunk is stored whole or not at all, and once: the chunk's id is recorded (SET NX PX) with
# the count stored, and a chunk whose id is recorded is not stored again (its append was
# retried after an answer that never came). KEYS: the partition streams, then the chunk's id
# key. ARGV: cap, the id's lifetime (ms), then per item partition (1-based), kind,
# customer_id, device_id ('' for none), payload. Returns how many of the items were stored
# (the first ones; the rest would go over the cap).
_APPEND = """
local idkey = KEYS[#KEYS]
local done = redis.call('GET', idkey)
if done then return tonumber(done) end
local cap = tonumber(ARGV[1])
local depth = 0
for i = 1, #KEYS - 1 do depth = depth + redis.call('XLEN', KEYS[i]) end
local n = (#ARGV - 2) / 5
local room = cap - depth
if room < n then n = math.max(room, 0) end
local j = 3
for i = 1, n do
  local key = KEYS[tonumber(ARGV[j])]
  if ARGV[j + 3] == '' then
    redis.call('XADD', key, '*', 'kind', ARGV[j + 1], 'customer_id', ARGV[j + 2],
      'payload', ARGV[j + 4])
  else
    redis.call('XADD', key, '*', 'kind', ARGV[j + 1], 'customer_id', ARGV[j + 2],
      'device_id', ARGV[j + 3], 'payload', ARGV[j + 4])
  end
  j = j + 5
end
redis.call('SET', idkey, n, 'NX', 'PX', ARGV[2])
return n
"""


class BacklogWriter:
    """Stores what a source holds in the app id's backlog, and acknowledges it once stored.

    The worker runs it in place of a sender when ``backlog`` is set: ``run`` on the worker's
    thread, ``run_once`` in sync mode. One script call stores a chunk of up to 500 items. While
    Redis is unreachable nothing is acknowledged: the items stay with the source (so records
    wait in the bounded in-memory queue) and the chunk is tried again, with no deadline,
    until it is stored or the stop's deadline passes (then they are released).
    """

    def __init__(self, config: Config, reporter: Reporter, *, chunk: int = CHUNK) -> None:
        if not config.backlog or not config.app_id:
            raise ValueError("a BacklogWriter needs config.backlog and config.app_id")
        self.config = config
        self.reporter = reporter
        self.chunk = chunk
        self.cap = config.backlog_max_entries
        self.keys = Keys(config.app_id)
        self._url = config.backlog
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._pid = 0
        self._partitions = 0
        self._streams: list[str] = []
        self._down_since: float | None = None
        self._backoff = RetryPolicy(config.retry_backoff, MAX_BACKOFF)
        #: Script calls that stored a chunk (one round trip each).
        self.requests = 0
        #: Attempts that found Redis unreachable.
        self.retried = 0
        #: Payload bytes stored.
        self.bytes = 0
        #: Why the last attempt failed (for the report of what a stop left unstored).
        self.last_error: MoetrackError | None = None

    # -- connection, per process ---------------------------------------------------------------

    def _connection(self) -> tuple[Any, list[str]]:
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            # After a fork the parent's sockets are not ours: start over without closing them.
            self._client = connect(self._url, timeout=min(self.config.timeout, 5.0))
            self._script = self._client.register_script(_APPEND)
            self._pid = pid
            self._partitions = 0
        if not self._partitions:
            self._partitions = read_partitions(self._client, self.keys)
            self._streams = [self.keys.partition(n) for n in range(self._partitions)]
        return self._script, self._streams

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # closing a dead connection
                client.close()

    # -- the loops -----------------------------------------------------------------------------

    def run(self, source: Source, stop: Stop) -> None:
        """Store chunks as the source hands them, until it ends or ``stop`` says so."""
        while not stop.expired() and not (stop.requested and not stop.drain):
            items = source.take(self.chunk, self.config.flush_interval)
            if items is None:
                return
            if items and not self.store(items, source, stop):
                return

    def run_once(self, source: Source, stop: Stop) -> None:
        """Store what the source holds now, on the calling thread (sync mode)."""
        while True:
            items = source.take(self.chunk, 0.0)
            if not items:
                return
            if not self.store(items, source, stop):
                return

    def store(self, items: Sequence[Item], source: Source, stop: Stop) -> bool:
        """Append ``items``, then settle them: ack what was stored, fail what went over the
        cap. False (items released) if the stop's deadline came while Redis was down."""
        attempt = 0
        chunk_id = uuid.uuid4().hex  # the same for every attempt of this chunk
        while True:
            try:
                stored = self._append(items, chunk_id)
                break
            except redis_errors() as exc:
                self.retried += 1
                self.last_error = TransportError(
                    f"the backlog at {redact_url(self._url)} cannot be written: "
                    f"{type(exc).__name__}"
                )
                self._partitions = 0  # a restarted server may have lost the meta hash
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    self.reporter.log(
                        logging.WARNING,
                        "backlog_down",
                        "the backlog at %s cannot be written (%s); records wait in memory "
                        "until it can",
                        redact_url(self._url),
                        type(exc).__name__,
                    )
                if stop.expired() or (stop.requested and not stop.drain):
                    source.release(items)
                    return False
                delay = self._backoff.step(attempt)
                attempt += 1
                remaining = stop.remaining()
                if remaining is not None:
                    delay = max(0.0, min(delay, remaining))
                source.wait(delay)
        if self._down_since is not None:
            self.reporter.log(
                logging.WARNING,
                "backlog_up",
                "the backlog at %s is writable again after %.1fs",
                redact_url(self._url),
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self.last_error = None
        self.requests += 1
        if stored:
            done = items[:stored]
            self.bytes += sum(len(item.payload) for item in done)
            source.ack(done)
        if stored < len(items):
            rest = items[stored:]
            error = DeliveryError(
                f"{len(rest)} records dropped: the backlog holds its "
                f"backlog_max_entries ({self.cap:,}) entries",
                count=len(rest),
            )
            self.reporter.dropped("backlog_full", error, len(rest))
            source.fail(rest, error, reason="backlog_full")
        return True

    def _append(self, items: Sequence[Item], chunk_id: str) -> int:
        script, streams = self._connection()
        partitions = len(streams)
        args: list[Any] = [self.cap, CHUNK_ID_TTL_MS]
        for item in items:
            cid = item.customer_id
            args += (
                partition_of(cid, partitions) + 1,
                item.kind,
                cid,
                item.device_id or "",
                item.payload,
            )
        return int(script(keys=[*streams, self.keys.chunk(chunk_id)], args=args))
