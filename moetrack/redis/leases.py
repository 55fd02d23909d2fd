"""A relay's leases: which backlog partitions it may send, and for how long.

Partition ``n`` is sent by the relay holding ``mt:{app}:lease:<n>``, renewed by a heartbeat
thread. Each new owner gets a **token**, a counter (``mt:{app}:fence:<n>``) that increases
with every new lease; the lease holds ``<relay id>#<token>``. Everything a relay does to a
partition in Redis (reading, acknowledging, dead-lettering, renewing, giving up) is a script
that acts only while the lease still holds its token, so a relay that lost the lease (it
froze longer than the lease lives: a GC pause, a stopped VM, a slow network) changes nothing.
Sends to the API cannot be fenced by the server, so the relay sends a batch only while its
lease is known to be valid: renewed less than ``VALID_SHARE`` of a lease's life ago, as
measured on its own monotonic clock (which keeps counting while a process is stopped).

Each relay aims at its share of the partitions (their count over the live relays) and gives
extra ones up when idle, so relays that start later get work. A relay gives its leases up
when it exits, with a handoff note so that the next owner claims the pending entries at
once; otherwise the next owner claims them (``XAUTOCLAIM``) once they have been idle
``claim_idle`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._report import logger
from . import scripts
from .connection import Keys, read_partitions, redis_errors

if TYPE_CHECKING:
    import redis

    from .._report import Reporter

__all__ = ["GROUP", "LEASE_TTL", "Leases", "Partition"]

#: The consumer group of every partition stream.
GROUP: Final = "relays"
#: Seconds a lease lives unless renewed; it is renewed three times per life.
LEASE_TTL: Final = 10.0
#: The share of a lease's life, counted from the start of its last renewal, during which the
#: relay sends: the rest is a margin for the request to reach the server.
VALID_SHARE: Final = 0.6


class Partition:
    """What a relay knows of one partition it leases."""

    __slots__ = ("cursor", "epoch", "lost", "outstanding", "ready", "token", "valid_until")

    def __init__(self, token: str, valid_until: float) -> None:
        #: The lease's value: this relay's id and the lease's token.
        self.token = token
        #: ``time.monotonic()`` until which the lease is surely ours (see VALID_SHARE).
        self.valid_until = valid_until
        #: Bumped whenever what was read is released: entries read before are stale, and
        #: are dropped rather than sent (they are read again, in order).
        self.epoch = 0
        #: Whether its pending entries are all ours (claimed) and it may be read.
        self.ready = False
        #: "0": read our pending entries first; ">": new entries.
        self.cursor = "0"
        #: Entries read and not settled yet.
        self.outstanding = 0
        self.lost = False


class Leases:
    """The partitions one relay holds: taken, renewed, handed over and claimed by a heartbeat
    thread. ``owned`` (guarded by ``lock``) is shared with the relay's source, which reads
    only partitions that are ``ready`` and not ``lost``.

    ``on_down`` hears of every Redis error; ``on_tick(ttl_ms, now_ms)`` runs at the end of each
    heartbeat (the relay's gauges and its heartbeat record).
    """

    def __init__(
        self,
        r: redis.Redis,
        keys: Keys,
        relay_id: str,
        reporter: Reporter,
        *,
        lease_ttl: float,
        claim_idle: float,
        on_down: Callable[[BaseException], None],
        on_tick: Callable[[int, int], None],
    ) -> None:
        self.r = r
        self.keys = keys
        self.id = relay_id
        self.reporter = reporter
        self.lease_ttl = lease_ttl
        self.claim_idle = claim_idle
        self.on_down = on_down
        self.on_tick = on_tick
        self._acquire = r.register_script(scripts.ACQUIRE)
        self._renew = r.register_script(scripts.RENEW)
        self._release = r.register_script(scripts.RELEASE)
        self._forget = r.register_script(scripts.FORGET)
        self.partitions = 0
        self.owned: dict[int, Partition] = {}
        self.lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renewal = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Read the partition count and make sure every partition has the consumer group."""
        self.partitions = read_partitions(self.r, self.keys)
        for n in range(self.partitions):
            try:
                self.r.xgroup_create(self.keys.partition(n), GROUP, id="0", mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def start(self) -> None:
        self.maintain()  # take the first leases now rather than one period later
        self._thread = threading.Thread(target=self._heartbeat, name="moetrack-relay", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End the heartbeat and give every lease up (with a handoff note where clean)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self.lock:
            owned = list(self.owned.items())
            self.owned.clear()
        handoff_ms = max(1, int(self.claim_idle * 4000))
        with contextlib.suppress(*redis_errors()):
            for n, part in owned:
                clean = "1" if part.ready else "0"
                self._release(
                    keys=[self.keys.lease(n), self.keys.handoff(n)],
                    args=[part.token, handoff_ms, clean],
                )

    def lose(self, n: int, token: str) -> None:
        """Forget partition ``n`` if its lease is still ``token`` here: Redis said that it
        is not ours any more."""
        with self.lock:
            part = self.owned.get(n)
            if part is not None and part.token == token:
                del self.owned[n]
                part.lost = True
            else:
                return
        self.reporter.log(logging.WARNING, "relay_lease", "relay %s lost partition %d", self.id, n)

    def ready(self) -> list[int]:
        """The partitions held and claimed, in order."""
        with self.lock:
            return sorted(n for n, p in self.owned.items() if p.ready)

    # -- the heartbeat -------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        period = self.lease_ttl / 3
        while not self._closing.wait(period):
            self.maintain()

    def maintain(self) -> None:
        try:
            self._tick()
        except redis_errors() as exc:
            self.on_down(exc)
            if time.monotonic() - self._last_renewal > self.lease_ttl:
                # Our leases have expired by now: another relay may own those partitions.
                with self.lock:
                    for part in self.owned.values():
                        part.lost = True
                    self.owned.clear()
        except Exception:  # a bug here must not end the heartbeat
            logger.exception("relay %s: heartbeat failed", self.id)

    def _tick(self) -> None:
        r = self.r
        keys = self.keys
        ttl_ms = int(self.lease_ttl * 1000)
        now_s, now_us = r.time()
        now_ms = now_s * 1000 + now_us // 1000
        if not self.partitions:
            self.prepare()
        with r.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.relays, {self.id: now_ms})
            pipe.zremrangebyscore(keys.relays, 0, now_ms - 3 * ttl_ms)
            pipe.zcard(keys.relays)
            live = int(pipe.execute()[2])
        # Renew what we hold; forget what we lost.
        with self.lock:
            held = [(n, p.token) for n, p in self.owned.items()]
        for n, token in held:
            started = time.monotonic()
            if self._renew(keys=[keys.lease(n)], args=[token, ttl_ms]):
                with self.lock:
                    part = self.owned.get(n)
                    if part is not None and part.token == token:
                        part.valid_until = started + VALID_SHARE * self.lease_ttl
            else:
                self.lose(n, token)
        self._last_renewal = time.monotonic()
        share = math.ceil(self.partitions / max(1, live))
        # Give extra partitions up so that newer relays get their share: stop reading them,
        # and hand each over once nothing read from it is unsettled.
        with self.lock:
            count = len(self.owned)
            surplus = max(0, count - share)
            leaving = [n for n, p in self.owned.items() if p.lost][:surplus]
            for n, p in self.owned.items():
                if len(leaving) >= surplus:
                    break
                if not p.lost:
                    p.lost = True
                    leaving.append(n)
            extra = [n for n in leaving if self.owned[n].outstanding == 0]
            given = [(n, self.owned.pop(n)) for n in extra]
        for n, part in given:
            self._release(
                keys=[keys.lease(n), keys.handoff(n)],
                args=[part.token, max(1, int(self.claim_idle * 4000)), "1" if part.ready else "0"],
            )
            count -= 1
        # Take free ones up to our share, starting at a place of our own.
        if count < share and not self._closing.is_set():
            start = hash(self.id) % self.partitions
            for i in range(self.partitions):
                if count >= share:
                    break
                n = (start + i) % self.partitions
                with self.lock:
                    if n in self.owned:
                        continue
                started = time.monotonic()
                value = self._acquire(keys=[keys.lease(n), keys.fence(n)], args=[self.id, ttl_ms])
                if value:
                    token = text(value)
                    with self.lock:
                        self.owned[n] = Partition(token, started + VALID_SHARE * self.lease_ttl)
                    count += 1
        # Claim the pending entries of partitions taken over.
        with self.lock:
            claiming = [n for n, p in self.owned.items() if not p.ready]
        for n in claiming:
            if self._claim(n):
                with self.lock:
                    part = self.owned.get(n)
                    if part is not None:
                        part.ready = True
                        part.cursor = "0"
        self.on_tick(ttl_ms, now_ms)

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
            if text(c["name"]) != self.id and int(c["pending"])
        ]
        if others:
            return False
        if handoff is not None:
            r.delete(self.keys.handoff(n))
        # Consumers of relays that are gone, with nothing pending: forget them. A relay that
        # may still be alive (it has a heartbeat record) is never forgotten.
        names = [text(c["name"]) for c in r.xinfo_consumers(key, GROUP)]
        names = [name for name in names if name != self.id]
        if names:
            self._forget(
                keys=[key, *(self.keys.relay(name) for name in names)], args=[GROUP, *names]
            )
        return True


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
