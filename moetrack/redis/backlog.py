"""The durable backlog: prepared items appended to Redis Streams, one stream per partition.

With ``backlog="redis://…"`` an app process's worker prepares records as usual and hands the
encoded items to a :class:`BacklogWriter` instead of a sender; ``moetrack relay`` processes
(:mod:`moetrack.redis.relay`) send them on. Keys, all under the app id's hash tag so that every
script touches one Redis Cluster slot::

    mt:{<app_id>}:meta          hash: partitions (fixed once written; producers and relays agree)
    mt:{<app_id>}:p:<n>         stream: the items of the customers hashed to partition n
    mt:{<app_id>}:dead          stream: items the server refused for good, with its answer
    mt:{<app_id>}:lease:<n>     string: the relay sending partition n (expires unless renewed)
    mt:{<app_id>}:handoff:<n>   string: set by a relay that gave partition n up cleanly
    mt:{<app_id>}:relay:<id>    hash: one relay's heartbeat and counters (expires)
    mt:{<app_id>}:relays        sorted set: relay ids by last heartbeat

An entry holds ``kind``, ``customer_id``, ``device_id`` (absent when None) and ``payload`` (the
item's encoded JSON). A customer always hashes to the same partition, and one relay sends a
partition at a time, so each customer's order is kept. Entries are deleted once delivered
and never trimmed before: at ``backlog_max_entries`` producers drop new items instead.

``redis`` (the ``moetrack[redis]`` extra) is imported only here and in the relay modules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import DeliveryError, MoetrackError, TransportError

if TYPE_CHECKING:
    import redis

    from .._config import Config
    from .._pipeline.source import Source, Stop
    from .._report import Reporter
    from .._wire.records import Item

__all__ = ["DEFAULT_PARTITIONS", "BacklogWriter", "Keys", "connect", "partition_of", "redact_url"]

#: Partitions of a new backlog; an existing one keeps the count recorded in its meta hash.
DEFAULT_PARTITIONS: Final = 8
#: Items appended per script call (one round trip).
CHUNK: Final = 500
#: Longest wait between two attempts while Redis is unreachable, seconds.
MAX_BACKOFF: Final = 2.0
GROUP: Final = "relays"

# One round trip: the depth check against the cap and every XADD of a chunk, atomically, so a
# chunk is stored whole or not at all. KEYS: the partition streams. ARGV: cap, then per item
# partition (1-based), kind, customer_id, device_id ('' for none), payload. Returns how many
# of the items were stored (the first ones; the rest would go over the cap).
_APPEND = """
local cap = tonumber(ARGV[1])
local depth = 0
for i = 1, #KEYS do depth = depth + redis.call('XLEN', KEYS[i]) end
local n = (#ARGV - 1) / 5
local room = cap - depth
if room < n then n = math.max(room, 0) end
local j = 2
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
return n
"""


class Keys:
    """The Redis key names of one app id's backlog."""

    __slots__ = ("base", "dead", "meta", "relays")

    def __init__(self, app_id: str) -> None:
        self.base = f"mt:{{{app_id}}}"
        self.meta = f"{self.base}:meta"
        self.dead = f"{self.base}:dead"
        self.relays = f"{self.base}:relays"

    def partition(self, n: int) -> str:
        return f"{self.base}:p:{n}"

    def lease(self, n: int) -> str:
        return f"{self.base}:lease:{n}"

    def handoff(self, n: int) -> str:
        return f"{self.base}:handoff:{n}"

    def relay(self, relay_id: str) -> str:
        return f"{self.base}:relay:{relay_id}"


def partition_of(customer_id: str, partitions: int) -> int:
    """The partition of a customer: stable across processes, hosts and Python versions."""
    return zlib.crc32(customer_id.encode("utf-8", "surrogatepass")) % partitions


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(?<=://)([^:@/]*):[^@/]*@", r"\1:***@", url)


def connect(url: str, *, timeout: float = 5.0, name: str = "moetrack") -> redis.Redis:
    """A client of ``url`` that never retries on its own (a retried append could store a
    chunk twice) and gives up on a dead server within ``timeout`` seconds."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - depends on the installation
        from .._exceptions import ConfigurationError

        raise ConfigurationError(
            "the Redis backlog and limiter need redis-py: pip install 'moetrack[redis]'"
        ) from exc
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_connect_timeout=min(timeout, 5.0),
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        client_name=name,
    )
    return client


def read_partitions(client: redis.Redis, keys: Keys, default: int = DEFAULT_PARTITIONS) -> int:
    """The app id's partition count, recording ``default`` if the backlog is new."""
    client.hsetnx(keys.meta, "partitions", default)
    raw = client.hget(keys.meta, "partitions")
    value = int(raw) if raw is not None else default
    return value if value > 0 else default


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


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
        #: Script calls that stored a chunk (one round trip each).
        self.requests = 0
        #: Attempts that found Redis unreachable.
        self.retried = 0
        #: Never throttled: appending to the backlog is not rate limited.
        self.throttled = 0
        #: Payload bytes stored.
        self.bytes = 0
        #: Items dropped because the backlog held ``backlog_max_entries``.
        self.dropped_full = 0
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
        while True:
            try:
                stored = self._append(items)
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
                delay = min(MAX_BACKOFF, self.config.retry_backoff * 2 ** min(attempt, 8))
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
            self.dropped_full += len(rest)
            error = DeliveryError(
                f"{len(rest)} records dropped: the backlog holds its "
                f"backlog_max_entries ({self.cap:,}) entries",
                count=len(rest),
            )
            self.reporter.dropped("backlog_full", error, len(rest))
            source.fail(rest, error, reason="backlog_full")
        return True

    def _append(self, items: Sequence[Item]) -> int:
        script, streams = self._connection()
        partitions = len(streams)
        args: list[Any] = [self.cap]
        crc = zlib.crc32
        for item in items:
            cid = item.customer_id
            args += (
                crc(cid.encode("utf-8", "surrogatepass")) % partitions + 1,
                item.kind,
                cid,
                item.device_id or "",
                item.payload,
            )
        return int(script(keys=streams, args=args))
