"""A relay's source: the backlog entries of the partitions it leases, and their settling.

One concern, one class: :class:`RelaySource` is the :class:`~moetrack._pipeline.source.Source`
a relay's sender takes batches from. It reads only partitions whose leases it holds
(:mod:`moetrack.redis.leases`), history first, and a partition's next entries only once
everything read before from it has been settled, so each customer's order is kept. Every
read and every settlement is a script that acts only while the lease holds this relay's
token (:mod:`moetrack.redis.scripts`):

- delivered (2xx): ``XACK`` and ``XDEL`` in one script;
- refused for good (a status the sender does not retry, such as a 4xx other than 429, or a
  single element too large): moved to the dead-letter stream ``mt:{app}:dead`` with the
  server's answer, acknowledged and deleted, in one script;
- given up after the retry deadline, or released: left pending, and the partition is read
  again from its pending entries; whatever was read from it after them is dropped unsent
  (an *epoch* ends), so no later entry of their customers passes them;
- read under a lease that has since ended: dropped, never sent, never settled.

Before each attempt to send a batch the sender asks :meth:`RelaySource.current`.
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
from . import metrics, scripts
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
        self._read_script = self.r.register_script(scripts.READ)
        self._ack = self.r.register_script(scripts.ACK)
        self._dead = self.r.register_script(scripts.DEAD)
        #: The last entry id seen per partition (where a blocking wait for new ones starts).
        self._last_id: dict[int, bytes] = {}
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

    def current(self, items: Sequence[Item]) -> bool:
        """Whether ``items`` may be sent now: read under the lease this relay still holds,
        not released since, and the lease surely valid for a while yet. The relay's sender
        asks before each attempt (the first and every retry) of each batch."""
        now = time.monotonic()
        with self._lock:
            for item in items:
                n, _, token, epoch = _ref(item)
                part = self._owned.get(n)
                if part is None or part.token != token or part.epoch != epoch:
                    return False
                if now >= part.valid_until:
                    return False
        return True

    def ack(self, items: Sequence[Item]) -> None:
        groups = _groups(items)
        self._acknowledge(groups)
        self.delivered += len(items)

    def _acknowledge(
        self, groups: dict[tuple[int, str, int], list[bytes]], *, outstanding: bool = True
    ) -> None:
        """Acknowledge and delete entries, all partitions in one script call; a partition
        whose lease is not ours any more is dropped (its next owner sends them again)."""
        order = list(groups)
        keys = [self.keys.lease(n) for n, _, _ in order]
        keys += [self.keys.partition(n) for n, _, _ in order]
        args: list[Any] = [GROUP]
        for group in order:
            args += (group[1], len(groups[group]), *groups[group])
        answer = self._settle(self._ack, keys, args)
        if answer is None:
            return
        for (n, token, epoch), done in zip(order, answer, strict=True):
            if int(done) == scripts.FENCED:
                self.leases.lose(n, token)
            elif outstanding:
                self._settled(n, token, epoch, len(groups[(n, token, epoch)]))

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        if not is_permanent(error):
            self.deferred += self._rewind(items)
            return
        cause = getattr(error, "cause", None) or error
        status = getattr(cause, "status", 0)
        answer = getattr(cause, "message", None) or str(cause)
        error_type = getattr(cause, "type", "") or ""
        now_ms = int(time.time() * 1000)
        by_ref = {_ref(item)[:2]: item for item in items}
        for (n, token, epoch), ids in _groups(items).items():
            args: list[Any] = [token, GROUP, n, status, error_type, answer, now_ms]
            for entry_id in ids:
                item = by_ref[(n, entry_id)]
                args += (entry_id, item.kind, item.customer_id, item.device_id or "", item.payload)
            keys = [self.keys.lease(n), self.keys.partition(n), self.keys.dead]
            moved = self._settle(self._dead, keys, args)
            if moved is None:
                continue  # a stop came first: left pending
            if int(moved) == scripts.FENCED:
                self.leases.lose(n, token)
                continue
            self._settled(n, token, epoch, len(ids))
            self.failed += len(ids)

    def release(self, items: Sequence[Item]) -> None:
        self._rewind(items)

    def wait(self, seconds: float) -> None:
        if seconds > 0 and not self._closed:
            self._wake.wait(seconds)

    # -- reading ------------------------------------------------------------------------------

    def _hand(self, limit: int) -> list[Item]:
        """Up to ``limit`` items from the buffer; stale ones (read under a lease or an epoch
        that has ended) are dropped: they are read again, in order, by whoever sends them."""
        buffer = self._buffer
        out: list[Item] = []
        with self._lock:
            while buffer and len(out) < limit:
                item = buffer.popleft()
                n, _, token, epoch = _ref(item)
                part = self._owned.get(n)
                if part is not None and part.token == token and part.epoch == epoch:
                    out.append(item)
        return out

    def _readable(self) -> dict[int, tuple[str, str, int]]:
        """Partitions that may be read now: ``n -> (cursor, token, epoch)``."""
        now = time.monotonic()
        with self._lock:
            return {
                n: (p.cursor, p.token, p.epoch)
                for n, p in self._owned.items()
                if p.ready and not p.lost and p.outstanding == 0 and now < p.valid_until
            }

    def _read(self, limit: int, block: float) -> None:
        """Read the readable partitions (history first) into the buffer, in one script that
        reads only those whose lease still holds this relay's token. With ``block``, first
        wait up to that long for new entries (a plain XREAD, which changes nothing)."""
        readable = self._readable()
        if block:
            # Wait only where the last read found nothing new: from the stream's last entry
            # then, so that nothing added since is missed.
            waiting = {}
            for n, (cursor, _, _) in readable.items():
                last = self._last_id.get(n)
                if cursor != ">" or last is None:
                    return  # something to read at once first
                waiting[self.keys.partition(n)] = last
            if not waiting:
                self._wake.wait(min(block, 0.1))
                return
            woken = self.r.xread(waiting, count=1, block=max(1, int(block * 1000)))  # type: ignore[arg-type]
            del woken  # only a wake-up: the read below is the one that counts
            readable = self._readable()
        if not readable:
            return
        order = sorted(readable)
        keys = [self.keys.lease(n) for n in order] + [self.keys.partition(n) for n in order]
        # About one full request per partition: less would make small batches, more would
        # only sit in the buffer.
        count = max(1, min(limit, int(self.config.max_batch_bytes / (self._avg_size + 40)) + 1))
        args: list[Any] = [GROUP, self.id, count]
        for n in order:
            cursor, token, _ = readable[n]
            args += (token, cursor)
        answer = self._read_script(keys=keys, args=args)
        gone: list[tuple[int, str, int, list[bytes]]] = []
        size = 0
        got = 0
        for n, reply in zip(order, answer, strict=True):
            cursor, token, epoch = readable[n]
            if reply is None:  # the lease is not ours any more
                self.leases.lose(n, token)
                continue
            entries, tip = reply
            # Where a wait for new entries starts: the last entry read, or the stream's tip.
            self._last_id.pop(n, None)
            if tip:
                self._last_id[n] = tip
            dead: list[bytes] = []
            with self._lock:
                part = self._owned.get(n)
                if part is None or part.token != token or part.epoch != epoch:
                    continue  # given up meanwhile: the entries stay pending
                if cursor == "0" and not entries:
                    part.cursor = ">"
                for entry_id, flat in entries:
                    if not flat:  # deleted while pending
                        dead.append(entry_id)
                        continue
                    fields = dict(zip(flat[::2], flat[1::2], strict=True))
                    payload = fields[b"payload"]
                    device = fields.get(b"device_id")
                    self._buffer.append(
                        Item(
                            int(fields[b"kind"]),
                            fields[b"customer_id"].decode("utf-8", "surrogatepass"),
                            device.decode("utf-8", "surrogatepass") if device else None,
                            payload,
                            (n, entry_id, token, epoch),
                        )
                    )
                    part.outstanding += 1
                    size += len(payload)
                    got += 1
            if dead:
                gone.append((n, token, epoch, dead))
        if got:
            self._avg_size = 0.8 * self._avg_size + 0.2 * (size / got)
        if gone:  # never counted as outstanding
            self._acknowledge({(n, t, e): ids for n, t, e, ids in gone}, outstanding=False)

    # -- settling -----------------------------------------------------------------------------

    def _settled(self, n: int, token: str, epoch: int, count: int) -> None:
        with self._lock:
            part = self._owned.get(n)
            if part is not None and part.token == token and part.epoch == epoch:
                part.outstanding = max(0, part.outstanding - count)

    def _rewind(self, items: Sequence[Item]) -> int:
        """Items not sent (released, or given up on for now): their partition is read again
        from its pending entries, and everything read from it since is stale (dropped before
        it is sent), so no later entry of their customers goes before them. Returns how many
        of ``items`` were current."""
        current = 0
        with self._lock:
            for (n, token, epoch), ids in _groups(items).items():
                part = self._owned.get(n)
                if part is not None and part.token == token and part.epoch == epoch:
                    part.epoch += 1
                    part.cursor = "0"
                    part.outstanding = 0
                    current += len(ids)
        return current

    def _settle(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a settling script until it answers; while Redis is down, wait and try again (a
        settlement lost here would only send the batch again). Each script acts only while
        the lease still holds the caller's token (FENCED otherwise), and does nothing twice
        when run again. None if a stop came first."""
        attempt = 0
        while True:
            try:
                result = script(keys=keys, args=args)
                self._up()
                return result
            except redis_errors() as exc:
                self._down(exc)
                if self.stop.expired() or self._closed:
                    return None
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


def _groups(items: Sequence[Item]) -> dict[tuple[int, str, int], list[bytes]]:
    """Entry ids by (partition, lease token, epoch), in order."""
    out: dict[tuple[int, str, int], list[bytes]] = defaultdict(list)
    for item in items:
        n, entry_id, token, epoch = _ref(item)
        out[(n, token, epoch)].append(entry_id)
    return out


def _ref(item: Item) -> tuple[int, bytes, str, int]:
    ref: tuple[int, bytes, str, int] = item.ref  # type: ignore[assignment]
    return ref


def _stream_lists(response: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    if not response:
        return []
    if isinstance(response, dict):  # RESP3
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in response.items()]
    return [(k, v) for k, v in response]
