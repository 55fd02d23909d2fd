"""Relays: the processes that send the durable backlog on (``moetrack relay``).

A relay runs one :class:`~moetrack._pipeline.sender.Sender` over a
:class:`~moetrack.redis.source.RelaySource`, which serves the backlog partitions
(:mod:`moetrack.redis.backlog`) the relay currently leases. Any number of relays, on any
hosts, share one backlog:

- **Leases** (:mod:`moetrack.redis.leases`). Partition ``n`` is sent by the relay holding
  ``mt:{app}:lease:<n>``. Each relay aims at its share of the partitions and gives extra ones
  up when idle, so relays that start later get work. A relay gives its leases up when it
  exits.
- **Order per customer** (:mod:`moetrack.redis.source`). A customer lives in one partition,
  one relay sends a partition at a time, and a partition's next entries are read only once
  everything read before from it has been settled. The sender keeps one batch in flight.
- **Fencing.** Each lease carries a token that grows with each new owner; reads and
  settlements are scripts that act only while the lease holds the caller's token, and a
  batch is sent only while the lease is surely valid (checked before each attempt). A
  relay that lost a lease (frozen longer than it lives) drops what it read of that
  partition: it sends none of it, settles none of it, retries none of it.
- **Settling.** Delivered: acknowledged and deleted, in one script. Refused for good: moved
  to the dead-letter stream. Given up after the retry deadline (7 days by default), or
  released at a stop: left pending, read again before anything later of its partition.
- **Crash recovery.** A relay that takes a partition over first claims its pending entries
  (``XAUTOCLAIM``): at once if the previous owner handed it over cleanly, otherwise once they
  have been idle ``claim_idle`` seconds (a few times the HTTP timeout, so a request still in
  flight at a stalled owner has ended). Only the batch that was in flight can arrive twice.
- **Metrics** (:mod:`moetrack.redis.metrics`): each heartbeat writes the relay's gauges and
  counters where ``moetrack backlog status`` reads them.

Per batch, Redis sees about three round trips: the read (one per several batches when the
backlog is deep), the shared limiter, and the acknowledgement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from .._exceptions import MoetrackError, TransportError
from .._pipeline.sender import Sender
from .._pipeline.source import Stop
from .._wire.encode import Batch
from .._wire.records import Item
from .._wire.transport import HTTPTransport
from .leases import LEASE_TTL
from .source import RelaySource, is_permanent

if TYPE_CHECKING:
    from .._config import Config
    from .._pipeline.limiter import Limiter
    from .._pipeline.source import Source
    from .._report import Reporter
    from .._wire.transport import Transport

__all__ = ["RELAY_RETRY_DEADLINE", "Relay", "RelaySource", "is_permanent"]

#: A relay retries a batch until it is delivered: the backlog is durable. A batch given up
#: on anyway (a retry deadline set shorter) is read again before anything later of its
#: partition is sent: everything read after it is dropped unsent and read again in order.
RELAY_RETRY_DEADLINE: Final = 7 * 24 * 3600.0


class _Fence:
    """The relay's Stop, seen by one batch: it also ends (the batch is released unsent) once
    the batch may no longer be sent (see :meth:`RelaySource.current`)."""

    __slots__ = ("_current", "_stop", "fenced")

    def __init__(self, stop: Stop, current: Callable[[], bool]) -> None:
        self._stop = stop
        self._current = current
        self.fenced = False

    @property
    def requested(self) -> bool:
        return self._stop.requested

    @property
    def drain(self) -> bool:
        return self._stop.drain

    @property
    def deadline(self) -> float | None:
        return self._stop.deadline

    def request(self, timeout: float | None = None, *, drain: bool = True) -> None:
        self._stop.request(timeout, drain=drain)

    def remaining(self) -> float | None:
        return self._stop.remaining()

    def expired(self) -> bool:
        if self._stop.expired():
            return True
        if not self._current():
            self.fenced = True
        return self.fenced


class RelaySender(Sender):
    """The sender of a relay: a batch is sent only while the relay holds the leases of its
    partitions and nothing of it is stale, checked before every attempt (the first and each
    retry) and again just before the request goes out. A batch that fails the check is
    released unsent and never retried: what was read under a lost lease is dropped (the
    partition's owner sends it), the rest is read again in order."""

    def __init__(self, relay_source: RelaySource, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relay_source = relay_source
        self._batch: Sequence[Item] | None = None
        #: Batches dropped unsent because the lease was lost, or what they held was stale.
        self.fenced = 0

    def send(
        self,
        batch: Batch,
        source: Source,
        stop: Stop,
        *,
        charged: bool = False,
        first_attempt: float | None = None,
    ) -> bool:
        fence = _Fence(stop, lambda: self.relay_source.current(batch.items))
        outer, self._batch = self._batch, batch.items
        try:
            sent = super().send(
                batch, source, cast(Stop, fence), charged=charged, first_attempt=first_attempt
            )
        finally:
            self._batch = outer
        if not sent and fence.fenced and not stop.expired():
            self.fenced += 1
            # Released unsent (the source dropped it): go on with what is current.
            return not (stop.requested and not stop.drain)
        return sent

    def _post(self, body: bytes, timeout: float) -> tuple[int, MoetrackError, float | None]:
        batch = self._batch
        if batch is not None and not self.relay_source.current(batch):
            # The lease ran out between the check and now: nothing goes out. The retry that
            # follows finds the fence closed and releases the batch.
            return 0, TransportError("not sent: the relay no longer holds the lease"), None
        return super()._post(body, timeout)


class Relay:
    """One relay process: a sender over a :class:`RelaySource`, until ``stop``.

    ``retry_deadline`` (default 7 days, as ``moetrack relay``) replaces the config's: how long
    a batch is retried before it is given up on for now (left pending and read again first).
    """

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
        retry_deadline: float = RELAY_RETRY_DEADLINE,
    ) -> None:
        config = config._replace(retry_deadline=retry_deadline)
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
            transport = HTTPTransport()
        self.sender = RelaySender(self.source, config, transport, reporter, limiter)
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
