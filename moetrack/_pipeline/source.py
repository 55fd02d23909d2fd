"""The Source seam: where the send stage takes prepared items, and where it settles them.

::

    caller ─▶ queue ─▶ PREPARE ─▶ Source ─▶ SEND (pack, pace, send, retry) ─▶ settle
                                    ▲                                          │
                                    └──────── ack / fail / release per batch ◀─┘

A :class:`Source` hands :class:`~moetrack._wire.records.Item` objects to one sender, in order,
and takes each batch back exactly once: ``ack`` (delivered), ``fail`` (given up: a permanent
refusal or the retry deadline) or ``release`` (never answered, and the sender is stopping).
What a released or never-settled item becomes after a crash is the source's promise: the
in-memory source loses it with the process and counts it; the Redis backlog leaves it
pending for another relay to reclaim; the import command resumes after the last ack.

Items a source hands out carry its own handle in :attr:`Item.ref` (a position, a stream
entry id, a line number). Batches are settled in the order their items were taken.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .._exceptions import MoetrackError
    from .._wire.records import Item

__all__ = ["Source", "Stop"]


@runtime_checkable
class Source(Protocol):
    def take(self, limit: int, timeout: float) -> list[Item] | None:
        """Up to ``limit`` items, oldest first, waiting at most ``timeout`` seconds for the
        first. ``[]`` when none came in time; ``None`` when none will ever come again (the
        source ended, or it is being stopped and has nothing left)."""

    def due(self) -> bool:
        """Whether a partly filled batch should be sent now rather than at the flush
        interval (a flush or a stop is waiting, or the source has nothing more at hand)."""

    def ack(self, items: Sequence[Item]) -> None:
        """The server accepted these items (a 2xx answer)."""

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        """These items are given up: refused for good, or past the retry deadline. With a
        ``reason`` (``"backlog_full"``) they are counted as dropped for it, not failed."""

    def release(self, items: Sequence[Item]) -> None:
        """These items were taken but have no final outcome, and the sender is stopping."""

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass while the sender waits (backoff, pacing); a source may use
        the time (the in-memory one prepares newly queued records) and may return early
        when it is being stopped."""


class Stop:
    """How a sender is told to stop: when, and whether to finish what its source holds.

    ``drain=True`` (an app process exiting): keep sending until the source is empty or the
    deadline passes. ``drain=False`` (a relay on SIGTERM): finish the batch in flight,
    release the rest, and return.
    """

    __slots__ = ("deadline", "drain", "requested")

    def __init__(self) -> None:
        self.requested = False
        self.drain = True
        #: ``time.monotonic()`` after which nothing more is sent; None: no deadline.
        self.deadline: float | None = None

    def request(self, timeout: float | None = None, *, drain: bool = True) -> None:
        if not self.requested:
            self.requested = True
            self.drain = drain
            self.deadline = None if timeout is None else time.monotonic() + timeout

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()
