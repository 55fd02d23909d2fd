"""Relays: the processes that send the durable backlog on (``moetrack relay``).

A relay runs one :class:`~moetrack._pipeline.sender.Sender` over a :class:`RelaySource`, which
serves the backlog partitions (:mod:`moetrack.redis.backlog`) the relay currently leases. Any
number of relays, on any hosts, share one backlog:

- **Leases.** Partition ``n`` is sent by the relay holding ``mt:{app}:lease:<n>`` (``SET NX
  PX``, renewed by a heartbeat thread). Each relay aims at its share of the partitions (their
  count over the live relays) and gives extra ones up when idle, so relays that start later
  get work. A relay gives its leases up when it exits.
- **Order per customer.** A customer lives in one partition, one relay sends a partition at a
  time, and a partition's next entries are read only once everything read before from it has
  been settled. The sender keeps one batch in flight.
- **Settling.** Delivered (2xx): ``XACK`` and ``XDEL`` in one round trip. Refused for good (a
  status the sender does not retry, such as a 4xx other than 429, or a single element too
  large): the entry goes to the dead-letter stream ``mt:{app}:dead`` with the server's answer,
  then ``XACK`` and ``XDEL``, atomically. Given up after the retry deadline, or released at a
  stop: left pending, read again first.
- **Crash recovery.** A relay that takes a partition over first claims its pending entries
  (``XAUTOCLAIM``): at once if the previous owner handed it over cleanly, otherwise once they
  have been idle ``claim_idle`` seconds (a few times the HTTP timeout, so a request still in
  flight at a stalled owner has ended). Only the batch that was in flight can arrive twice.

Per batch, Redis sees about three round trips: the read (one per several batches when the
backlog is deep), the shared limiter, and the acknowledgement.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from .._exceptions import APIError, MoetrackError
from .._pipeline.retry import RetryPolicy
from .._report import logger
from .._wire.records import Item
from .backlog import GROUP, Keys, connect, read_partitions, redact_url, redis_errors

if TYPE_CHECKING:
    import redis

    from .._config import Config
    from .._pipeline.limiter import Limiter
    from .._pipeline.source import Stop
    from .._report import Reporter
    from .._wire.transport import Transport

__all__ = ["Relay", "RelaySource", "is_permanent"]

#: Seconds a lease lives unless renewed; it is renewed three times per life.
LEASE_TTL: Final = 10.0
#: Longest single blocking read, seconds (a stop or a new lease is noticed within it).
BLOCK: Final = 0.5

# Renew the lease if it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Give the lease up if it is still ours; with ARGV[3] = '1' leave a handoff note so that the
# next owner claims our pending entries at once.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[3] == '1' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
  return 1
end
return 0
"""


def is_permanent(error: MoetrackError) -> bool:
    """Whether a failed batch was refused for good (dead letter) rather than given up on
    after retries (left pending, tried again later)."""
    cause = getattr(error, "cause", None) or error
    return isinstance(cause, APIError) and not RetryPolicy.is_retryable(cause.status)


class _Partition:
    __slots__ = ("cursor", "lost", "outstanding", "ready")

    def __init__(self) -> None:
        #: Whether its pending entries are all ours (claimed) and it may be read.
        self.ready = False
        #: "0": read our pending entries first; ">": new entries.
        self.cursor = "0"
        #: Entries read and not settled yet.
        self.outstanding = 0
        self.lost = False


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
        self.lease_ttl = lease_ttl
        self.claim_idle = claim_idle if claim_idle is not None else 3 * config.timeout
        self.r: redis.Redis = client or connect(
            url, timeout=max(config.timeout, 2 * BLOCK + 1.0), name=f"moetrack-relay-{self.id}"
        )
        self._renew = self.r.register_script(_RENEW)
        self._release = self.r.register_script(_RELEASE)
        self.partitions = 0
        self._owned: dict[int, _Partition] = {}
        self._lock = threading.Lock()
        self._buffer: deque[Item] = deque()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._down_since: float | None = None
        self._last_renewal = time.monotonic()
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
        self.lag = 0
        self.pending = 0
        self.oldest_pending_age = 0.0
        #: Filled by the relay: the sender's counters for the heartbeat.
        self.extra: Callable[[], dict[str, float]] = dict

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        attempt = 0
        while not self.stop.requested:  # a relay may start before its Redis does
            try:
                self._prepare()
                break
            except redis_errors() as exc:
                self._down(exc)
                self._wake.wait(min(2.0, 0.1 * 2 ** min(attempt, 5)))
                attempt += 1
        self._maintain()  # take the first leases now rather than one period later
        self._thread = threading.Thread(target=self._heartbeat, name="moetrack-relay", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Cut short any wait (a stop was requested)."""
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._closing.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._lock:
            owned = list(self._owned.items())
            self._owned.clear()
        handoff_ms = max(1, int(self.claim_idle * 4000))
        with contextlib.suppress(*redis_errors()):
            for n, part in owned:
                clean = "1" if part.ready else "0"
                self._release(
                    keys=[self.keys.lease(n), self.keys.handoff(n)],
                    args=[self.id, handoff_ms, clean],
                )
            self.r.delete(self.keys.relay(self.id))
            self.r.zrem(self.keys.relays, self.id)
        with contextlib.suppress(Exception):
            self.r.close()

    def _prepare(self) -> None:
        self.partitions = read_partitions(self.r, self.keys)
        for n in range(self.partitions):
            try:
                self.r.xgroup_create(self.keys.partition(n), GROUP, id="0", mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def owned(self) -> list[int]:
        with self._lock:
            return sorted(n for n, p in self._owned.items() if p.ready)

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
                self._wake.wait(min(max(left, 0.05), 0.2 * 2 ** min(attempt, 4)))
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
                self._wake.wait(min(2.0, 0.1 * 2 ** min(attempt, 5)))
                attempt += 1

    def _down(self, exc: BaseException) -> None:
        if "NOGROUP" in str(exc):  # the server lost its data: start the groups again
            with contextlib.suppress(*redis_errors()):
                self._prepare()
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

    # -- leases and heartbeat -----------------------------------------------------------------

    def _heartbeat(self) -> None:
        period = self.lease_ttl / 3
        while not self._closing.wait(period):
            self._maintain()

    def _maintain(self) -> None:
        try:
            self._tick()
        except redis_errors() as exc:
            self._down(exc)
            if time.monotonic() - self._last_renewal > self.lease_ttl:
                # Our leases have expired by now: another relay may own those partitions.
                with self._lock:
                    for part in self._owned.values():
                        part.lost = True
                    self._owned.clear()
        except Exception:  # a bug here must not end the heartbeat
            logger.exception("relay %s: heartbeat failed", self.id)

    def _tick(self) -> None:
        r = self.r
        keys = self.keys
        ttl_ms = int(self.lease_ttl * 1000)
        now_s, now_us = r.time()
        now_ms = now_s * 1000 + now_us // 1000
        if not self.partitions:
            self._prepare()
        with r.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.relays, {self.id: now_ms})
            pipe.zremrangebyscore(keys.relays, 0, now_ms - 3 * ttl_ms)
            pipe.zcard(keys.relays)
            live = int(pipe.execute()[2])
        # Renew what we hold; forget what we lost.
        with self._lock:
            held = list(self._owned)
        for n in held:
            if not self._renew(keys=[keys.lease(n)], args=[self.id, ttl_ms]):
                with self._lock:
                    part = self._owned.pop(n, None)
                    if part is not None:
                        part.lost = True
                self.reporter.log(
                    logging.WARNING, "relay_lease", "relay %s lost partition %d", self.id, n
                )
        self._last_renewal = time.monotonic()
        share = math.ceil(self.partitions / max(1, live))
        # Give extra partitions up so that newer relays get their share: stop reading them,
        # and hand each over once nothing read from it is unsettled.
        with self._lock:
            count = len(self._owned)
            surplus = max(0, count - share)
            leaving = [n for n, p in self._owned.items() if p.lost][:surplus]
            for n, p in self._owned.items():
                if len(leaving) >= surplus:
                    break
                if not p.lost:
                    p.lost = True
                    leaving.append(n)
            extra = [n for n in leaving if self._owned[n].outstanding == 0]
            given = [(n, self._owned.pop(n)) for n in extra]
        for n, part in given:
            self._release(
                keys=[keys.lease(n), keys.handoff(n)],
                args=[self.id, max(1, int(self.claim_idle * 4000)), "1" if part.ready else "0"],
            )
            count -= 1
        # Take free ones up to our share, starting at a place of our own.
        if count < share and not self._closed:
            start = hash(self.id) % self.partitions
            for i in range(self.partitions):
                if count >= share:
                    break
                n = (start + i) % self.partitions
                with self._lock:
                    if n in self._owned:
                        continue
                if r.set(keys.lease(n), self.id, nx=True, px=ttl_ms):
                    with self._lock:
                        self._owned[n] = _Partition()
                    count += 1
        # Claim the pending entries of partitions taken over.
        with self._lock:
            claiming = [n for n, p in self._owned.items() if not p.ready]
        for n in claiming:
            if self._claim(n):
                with self._lock:
                    part = self._owned.get(n)
                    if part is not None:
                        part.ready = True
                        part.cursor = "0"
        self._gauges(now_ms)
        self._beat(ttl_ms, now_ms)

    def _claim(self, n: int) -> bool:
        """Make every pending entry of partition ``n`` ours; False while some are too fresh."""
        r = self.r
        key = self.keys.partition(n)
        handoff = r.get(self.keys.handoff(n))
        min_idle = 0 if handoff is not None else int(self.claim_idle * 1000)
        cursor: Any = "0-0"
        while True:
            result = r.xautoclaim(key, GROUP, self.id, min_idle, cursor, count=1000)
            cursor = result[0]
            if cursor in (b"0-0", "0-0"):
                break
        summary: Any = r.xpending(key, GROUP)
        others = [
            c
            for c in summary.get("consumers") or ()
            if _text(c["name"]) != self.id and int(c["pending"])
        ]
        if others:
            return False
        if handoff is not None:
            r.delete(self.keys.handoff(n))
        # Consumers left with nothing pending are gone relays: forget them.
        for c in r.xinfo_consumers(key, GROUP):
            name = _text(c["name"])
            if name != self.id and int(c["pending"]) == 0:
                r.xgroup_delconsumer(key, GROUP, name)
        return True

    def _gauges(self, now_ms: int) -> None:
        owned = self.owned()
        if not owned:
            self.lag = self.pending = 0
            self.oldest_pending_age = 0.0
            return
        with self.r.pipeline(transaction=False) as pipe:
            for n in owned:
                pipe.xlen(self.keys.partition(n))
                pipe.xpending(self.keys.partition(n), GROUP)
            answers = pipe.execute()
        lag = pending = 0
        oldest: int | None = None
        for length, summary in zip(answers[::2], answers[1::2], strict=True):
            lag += int(length)
            pending += int(summary["pending"])
            if summary["pending"] and summary["min"]:
                ms = int(_text(summary["min"]).split("-")[0])
                oldest = ms if oldest is None else min(oldest, ms)
        self.lag, self.pending = lag, pending
        self.oldest_pending_age = 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000)

    def counters(self) -> dict[str, float]:
        values: dict[str, float] = {
            "delivered": self.delivered,
            "failed": self.failed,
            "deferred": self.deferred,
            "lag": self.lag,
            "pending": self.pending,
            "oldest_pending_age": round(self.oldest_pending_age, 3),
        }
        values.update(self.extra())
        return values

    def _beat(self, ttl_ms: int, now_ms: int) -> None:
        key = self.keys.relay(self.id)
        fields: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": int(self.started * 1000),
            "heartbeat": now_ms,
            "partitions": ",".join(map(str, self.owned())),
        }
        fields.update(self.counters())
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=cast(Any, fields))
            pipe.pexpire(key, 3 * ttl_ms)
            pipe.execute()


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Relay:
    """One relay process: a sender over a :class:`RelaySource`, until ``stop``."""

    def __init__(
        self,
        config: Config,
        reporter: Reporter,
        *,
        url: str | None = None,
        transport: Transport | None = None,
        limiter: Limiter | None = None,
        lease_ttl: float = LEASE_TTL,
        claim_idle: float | None = None,
        relay_id: str | None = None,
    ) -> None:
        from .._pipeline.source import Stop

        self.config = config
        self.reporter = reporter
        self.stop = Stop()
        self.source = RelaySource(
            config,
            reporter,
            self.stop,
            url=url,
            relay_id=relay_id,
            lease_ttl=lease_ttl,
            claim_idle=claim_idle,
        )
        if transport is None:
            from .._wire.transport import HTTPTransport

            transport = HTTPTransport()
        from .._pipeline.sender import Sender

        self.sender = Sender(config, transport, reporter, limiter)
        self.source.extra = self._sender_counters

    def _sender_counters(self) -> dict[str, float]:
        s = self.sender
        return {"requests": s.requests, "retried": s.retried, "rate_limited": s.throttled}

    def request_stop(self, timeout: float | None = None) -> None:
        """Finish the batch in flight (within ``timeout`` seconds), release the rest, return."""
        self.stop.request(timeout, drain=False)
        self.source.wake()

    def run(self) -> None:
        self.source.start()
        try:
            self.sender.run(self.source, self.stop)
        finally:
            self.source.close()
            self.sender.close()
