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
- **Settling.** Delivered: acknowledged and deleted. Refused for good: moved to the
  dead-letter stream. Given up after the retry deadline, or released at a stop: left
  pending, read again first.
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

from typing import TYPE_CHECKING

from .._pipeline.sender import Sender
from .._pipeline.source import Stop
from .._wire.transport import HTTPTransport
from .leases import LEASE_TTL
from .source import RelaySource, is_permanent

if TYPE_CHECKING:
    from .._config import Config
    from .._pipeline.limiter import Limiter
    from .._report import Reporter
    from .._wire.transport import Transport

__all__ = ["Relay", "RelaySource", "is_permanent"]


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
