"""A relay's source: the backlog entries of the partitions it leases, and their settling.

:class:`RelaySource` is the :class:`~moetrack._pipeline.source.Source` a relay's sender
takes batches from. It reads (``XREADGROUP``) only partitions whose leases it holds
(:mod:`moetrack.redis.leases`), history first, and a partition's next entries only once
everything read before from it has been settled, so each customer's order is kept:

- delivered (2xx): ``XACK`` and ``XDEL`` in one round trip;
- refused for good (a status the sender does not retry, such as a 4xx other than 429, or a
  single element too large): the entry goes to the dead-letter stream ``mt:{app}:dead`` with
  the server's answer, then ``XACK`` and ``XDEL``, atomically;
- given up after the retry deadline, or released at a stop: left pending, read again first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import APIError, MoetrackError
from .._pipeline.retry import RetryPolicy
from .._wire.records import Item
from . import metrics
from .connection import Keys, connect, redact_url, redis_errors
from .leases import GROUP, LEASE_TTL, Leases

if TYPE_CHECKING:
    import redis

    from .._config import Config
    from .._pipeline.source import Stop
    from .._report import Reporter

__all__ = ["BLOCK", "RelaySource", "is_permanent"]

#: Longest single blocking read, seconds (a stop or a new lease is noticed within it).
BLOCK: Final = 0.5
#: Waits between attempts while Redis cannot be reached: while starting or settling, and
#: while reading (cut to the read's own timeout).
REDIS_BACKOFF: Final = RetryPolicy(backoff=0.1, backoff_max=2.0)
READ_BACKOFF: Final = RetryPolicy(backoff=0.2, backoff_max=3.2)


def is_permanent(error: MoetrackError) -> bool:
    """Whether a failed batch was refused for good (dead letter) rather than given up on
    after retries (left pending, tried again later)."""
    cause = getattr(error, "cause", None) or error
    return isinstance(cause, APIError) and not RetryPolicy.is_retryable(cause.status)


class RelaySource:
    """The Source of a relay: entries of the partitions it leases, in order per partition.

    ``start()`` joins the consumer group and starts the heartbeat thread; ``close()`` gives
    the leases up (with a handoff note) and removes the heartbeat.
    """

    def __init__(
        self,
        config: Config,
        reporter: Reporter,
        stop: Stop,
        *,
        url: str | None = None,
        relay_id: str | None = None,
        lease_ttl: float = LEASE_TTL,
        claim_idle: float | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        url = url or config.backlog
        if not url or not config.app_id:
            raise ValueError("a relay needs a backlog URL and an app id")
        self.config = config
        self.reporter = reporter
        self.stop = stop
        self.url = url
        self.keys = Keys(config.app_id)
        self.id = relay_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.r: redis.Redis = client or connect(
            url, timeout=max(config.timeout, 2 * BLOCK + 1.0), name=f"moetrack-relay-{self.id}"
        )
        self.leases = Leases(
            self.r,
            self.keys,
            self.id,
            reporter,
            lease_ttl=lease_ttl,
            claim_idle=claim_idle if claim_idle is not None else 3 * config.timeout,
            on_down=self._down,
            on_tick=self._on_tick,
        )
        self._owned = self.leases.owned
        self._lock = self.leases.lock
        self._buffer: deque[Item] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._down_since: float | None = None
        self._avg_size = 400.0
        self.started = time.time()
        #: Records delivered (acknowledged after a 2xx).
        self.delivered = 0
        #: Records refused for good and moved to the dead-letter stream.
        self.failed = 0
        #: Records given up on after the retry deadline, left pending to be sent again.
        self.deferred = 0
        #: Gauges refreshed by the heartbeat: entries waiting in the partitions held, entries
        #: read and not acknowledged, and the age in seconds of the oldest of those.
        self.gauges = metrics.Gauges()
        #: Filled by the relay: the sender's counters for the heartbeat.
        self.extra: Callable[[], dict[str, float]] = dict

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        attempt = 0
        while not self.stop.requested:  # a relay may start before its Redis does
            try:
                self.leases.prepare()
                break
            except redis_errors() as exc:
                self._down(exc)
                self._wake.wait(REDIS_BACKOFF.step(attempt))
                attempt += 1
        self.leases.start()

    def wake(self) -> None:
        """Cut short any wait (a stop was requested)."""
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.leases.close()
        with contextlib.suppress(*redis_errors()):
            self.r.delete(self.keys.relay(self.id))
            self.r.zrem(self.keys.relays, self.id)
        with contextlib.suppress(Exception):
            self.r.close()

    def owned(self) -> list[int]:
        return self.leases.ready()

    # -- the Source protocol ------------------------------------------------------------------

    def take(self, limit: int, timeout: float) -> list[Item] | None:
        if self._buffer:
            return self._hand(limit)
        end = time.monotonic() + timeout
        attempt = 0
        while True:
            if self.stop.requested or self._closed:
                return None
            left = end - time.monotonic()
            try:
                self._read(limit, 0)
                if not self._buffer and left > 0 and not self._all_taken():
                    self._read(limit, min(left, BLOCK))
                self._up()
            except redis_errors() as exc:
                self._down(exc)
                self._wake.wait(min(max(left, 0.05), READ_BACKOFF.step(attempt)))
                attempt += 1
            if self._buffer:
                return self._hand(limit)
            if end - time.monotonic() <= 0 or self._all_taken():
                return []

    def _all_taken(self) -> bool:
        """Whether the sender holds entries of ours: then a read that found nothing more
        means its batch should go now rather than wait for entries that may come."""
        with self._lock:
            return any(p.outstanding for p in self._owned.values())

    def due(self) -> bool:
        return not self._buffer

    def ack(self, items: Sequence[Item]) -> None:
        by_part = _by_partition(items)

        def settle(pipe: Any) -> None:
            for n, ids in by_part.items():
                key = self.keys.partition(n)
                pipe.xack(key, GROUP, *ids)
                pipe.xdel(key, *ids)

        self._write(settle, transaction=False)
        self._settled(by_part, None)
        self.delivered += len(items)

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        by_part = _by_partition(items)
        if not is_permanent(error):
            self._settled(by_part, "0")
            self.deferred += len(items)
            return
        cause = getattr(error, "cause", None) or error
        status = getattr(cause, "status", 0)
        answer = getattr(cause, "message", None) or str(cause)
        error_type = getattr(cause, "type", "") or ""
        now_ms = int(time.time() * 1000)

        def settle(pipe: Any) -> None:
            for item in items:
                n, entry_id = _ref(item)
                fields: dict[str, Any] = {
                    "kind": item.kind,
                    "customer_id": item.customer_id,
                    "payload": item.payload,
                    "partition": n,
                    "entry": entry_id,
                    "status": status,
                    "error_type": error_type,
                    "error": answer,
                    "failed_at": now_ms,
                }
                if item.device_id is not None:
                    fields["device_id"] = item.device_id
                pipe.xadd(self.keys.dead, fields)
            for n, ids in by_part.items():
                key = self.keys.partition(n)
                pipe.xack(key, GROUP, *ids)
                pipe.xdel(key, *ids)

        self._write(settle, transaction=True)
        self._settled(by_part, None)
        self.failed += len(items)

    def release(self, items: Sequence[Item]) -> None:
        self._settled(_by_partition(items), "0")

    def wait(self, seconds: float) -> None:
        if seconds > 0 and not self._closed:
            self._wake.wait(seconds)

    # -- reading ------------------------------------------------------------------------------

    def _hand(self, limit: int) -> list[Item]:
        buffer = self._buffer
        return [buffer.popleft() for _ in range(min(limit, len(buffer)))]

    def _read(self, limit: int, block: float) -> None:
        """One XREADGROUP over the readable partitions (history first), into the buffer."""
        with self._lock:
            readable = {
                n: p.cursor
                for n, p in self._owned.items()
                if p.ready and not p.lost and p.outstanding == 0
            }
        if block:
            readable = {n: c for n, c in readable.items() if c == ">"}
        if not readable:
            if block:
                self._wake.wait(min(block, 0.1))
            return
        streams = {self.keys.partition(n): c for n, c in readable.items()}
        # About one full request per partition: less would make small batches, more would
        # only sit in the buffer.
        count = max(1, min(limit, int(self.config.max_batch_bytes / (self._avg_size + 40)) + 1))
        response = self.r.xreadgroup(
            GROUP,
            self.id,
            streams,  # type: ignore[arg-type]
            count=count,
            block=max(1, int(block * 1000)) if block else None,
        )
        gone: dict[int, list[bytes]] = defaultdict(list)
        size = 0
        got = 0
        for raw_key, entries in _stream_lists(response):
            n = int(raw_key.rsplit(b":", 1)[1])
            with self._lock:
                part = self._owned.get(n)
                if part is None:
                    continue  # given up meanwhile: the entries stay pending for the next owner
                if readable.get(n) == "0" and not entries:
                    part.cursor = ">"
                for entry_id, fields in entries:
                    if not fields:  # deleted while pending
                        gone[n].append(entry_id)
                        continue
                    payload = fields[b"payload"]
                    device = fields.get(b"device_id")
                    self._buffer.append(
                        Item(
                            int(fields[b"kind"]),
                            fields[b"customer_id"].decode("utf-8", "surrogatepass"),
                            device.decode("utf-8", "surrogatepass") if device else None,
                            payload,
                            (n, entry_id),
                        )
                    )
                    part.outstanding += 1
                    size += len(payload)
                    got += 1
        if got:
            self._avg_size = 0.8 * self._avg_size + 0.2 * (size / got)
        if gone:
            with self.r.pipeline(transaction=False) as pipe:
                for n, ids in gone.items():
                    pipe.xack(self.keys.partition(n), GROUP, *ids)
                pipe.execute()

    def _settled(self, by_part: dict[int, list[bytes]], cursor: str | None) -> None:
        with self._lock:
            for n, ids in by_part.items():
                part = self._owned.get(n)
                if part is None:
                    continue
                part.outstanding = max(0, part.outstanding - len(ids))
                if cursor is not None:
                    part.cursor = cursor

    def _write(self, fill: Callable[[Any], None], *, transaction: bool) -> None:
        """Run one pipeline until it succeeds; while Redis is down, wait and try again (a
        settlement lost here would only send the batch again)."""
        attempt = 0
        while True:
            try:
                with self.r.pipeline(transaction=transaction) as pipe:
                    fill(pipe)
                    pipe.execute()
                self._up()
                return
            except redis_errors() as exc:
                self._down(exc)
                if self.stop.expired() or self._closed:
                    return
                self._wake.wait(REDIS_BACKOFF.step(attempt))
                attempt += 1

    def _down(self, exc: BaseException) -> None:
        if "NOGROUP" in str(exc):  # the server lost its data: start the groups again
            with contextlib.suppress(*redis_errors()):
                self.leases.prepare()
            return
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.reporter.log(
                logging.WARNING,
                "relay_redis_down",
                "relay %s cannot reach the backlog at %s (%s); retrying",
                self.id,
                redact_url(self.url),
                type(exc).__name__,
            )

    def _up(self) -> None:
        if self._down_since is not None:
            self.reporter.log(
                logging.WARNING,
                "relay_redis_up",
                "relay %s reached the backlog again after %.1fs",
                self.id,
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    # -- metrics -------------------------------------------------------------------------------

    def _on_tick(self, ttl_ms: int, now_ms: int) -> None:
        self.gauges = metrics.gauges(self.r, self.keys, self.owned(), now_ms)
        metrics.beat(
            self.r,
            self.keys,
            self.id,
            started=self.started,
            owned=self.owned(),
            counters=self.counters(),
            ttl_ms=ttl_ms,
            now_ms=now_ms,
        )

    def counters(self) -> dict[str, float]:
        g = self.gauges
        values: dict[str, float] = {
            "delivered": self.delivered,
            "failed": self.failed,
            "deferred": self.deferred,
            "lag": g.lag,
            "pending": g.pending,
            "oldest_pending_age": round(g.oldest_pending_age, 3),
        }
        values.update(self.extra())
        return values


def _by_partition(items: Sequence[Item]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = defaultdict(list)
    for item in items:
        n, entry_id = _ref(item)
        out[n].append(entry_id)
    return out


def _ref(item: Item) -> tuple[int, bytes]:
    ref: tuple[int, bytes] = item.ref  # type: ignore[assignment]
    return ref


def _stream_lists(response: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    if not response:
        return []
    if isinstance(response, dict):  # RESP3
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in response.items()]
    return [(k, v) for k, v in response]
