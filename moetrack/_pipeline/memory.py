"""The prepare stage and the in-memory source of an app process.

Records wait in the :class:`~moetrack._pipeline.queue.RecordQueue` as the callers left them. The
worker takes them in chunks, validates and encodes each one
(:func:`~moetrack._wire.records.prepare`) and keeps the items in order until the sender takes
them. Every record taken gets a
*position* (``Item.ref``): 0, 1, 2 … in queue order. Positions give ``flush()`` its meaning:
a flush called when ``n`` records had been queued waits until every position below ``n`` is
settled (sent, dropped or failed), whatever happens to the records queued after it.

Counting, all under :attr:`MemorySource.lock`: ``taken`` records left the queue; of them
``held`` are not settled yet; the rest were ``sent``, ``failed`` or ``dropped`` by reason.

:attr:`MemorySource.bytes` is what waits in memory: an estimate of the records waiting in
the queue, and the exact encoded size of the items once prepared, given back when an item
settles. The caller takes no lock for it: callers add their estimates to ``queued_in`` (a
lost update between two callers only lets a little more in), the preparer alone takes them
away in ``queued_out`` as it takes the records, and ``item_bytes`` changes under the lock.
Callers estimate only while a backlog builds up in the queue (the worker is not keeping
up), and then one record in :data:`SAMPLE` for that many; what the preparer takes away
(each record's own estimate) never exceeds what was added, and an empty queue sets the
estimate back to zero.

What this source promises: records live and die with the process. A batch released while
stopping is lost and counted as failed, in one report, by :meth:`MemorySource.give_up`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import DeliveryError, MoetrackError, ValidationError
from .._wire.records import EVENT, Dropped, Item, prepare
from .source import Stop

if TYPE_CHECKING:
    from .._config import Config
    from .._report import Reporter
    from .queue import RecordQueue

__all__ = ["SAMPLE", "MemorySource", "estimate"]

#: Records taken from the queue per lock round-trip.
TAKE_CHUNK = 512
#: While a backlog builds up, callers estimate one queued record in SAMPLE (a power of two).
SAMPLE = 8
#: What one waiting item costs beyond its encoded bytes (the objects around them).
ITEM_OVERHEAD = 160
_RECORD_OVERHEAD = 400


def estimate(record: Any) -> int:
    """A cheap, repeatable guess of what a queued record holds in memory, in bytes.

    The lengths of its top-level string values, plus a constant. It never calls user code,
    and the same record always gives the same number (the preparer takes away exactly what
    the caller added), since strings cannot change and the attribute dicts are the client's
    own copies.
    """
    if type(record) is not tuple:  # an Item prepared in the caller (strict mode)
        return ITEM_OVERHEAD + len(record.payload)
    size = _RECORD_OVERHEAD
    first = 4 if record[0] == EVENT else 3
    for attrs in (record[first], record[first + 1]):
        if attrs:
            for value in attrs.values():
                if type(value) is str:
                    size += len(value)
    return size


class MemorySource:
    """Prepares queued records and hands the items to the sender, in order."""

    def __init__(self, config: Config, queue: RecordQueue, reporter: Reporter) -> None:
        self.config = config
        self.queue = queue
        self.reporter = reporter
        self.stop = Stop()
        self.lock = threading.Lock()
        self.progress = threading.Condition(self.lock)
        self.wake = threading.Event()
        self._prepare_lock = threading.Lock()  # one preparer at a time keeps positions in order
        # under self.lock
        self.taken = 0
        self.held = 0
        self.sent = 0
        self.failed = 0
        self.caller_dropped = 0
        self.dropped: Counter[str] = Counter()
        self.flush_requests = 0
        self._ready: deque[Item] = deque()  # prepared, not taken by the sender
        self._out: dict[int, Item] = {}  # taken by the sender, not settled (by position)
        self._prepared_to = 0  # every position below is prepared or settled
        self.settled_below = 0  # every position below is settled
        # Bytes held in memory (see the module's docstring).
        self.queued_in = 0  # added by the callers, without a lock
        self.queued_out = 0  # added by the preparer (under _prepare_lock)
        self.item_bytes = 0  # prepared items not settled yet (under self.lock)

    # -- the caller's side -------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Bytes waiting in memory: estimated while queued, exact once encoded."""
        return self.queued_in - self.queued_out + self.item_bytes

    def count_caller_drop(self, reason: str, n: int = 1) -> None:
        with self.lock:
            self.caller_dropped += n
            self.dropped[reason] += n

    # -- the prepare stage -------------------------------------------------------------------

    def prepare_queued(self) -> None:
        """Turn every queued record into an item (or a counted drop), in queue order."""
        config = self.config
        max_bytes = config.max_batch_bytes
        before_send = config.before_send
        send = config.send
        with self._prepare_lock:
            while not self.stop.expired():
                with self.lock:
                    records = self.queue.take(TAKE_CHUNK)
                    n = len(records)
                    start = self.taken
                    self.taken += n
                    self.held += n
                if not n:
                    return
                ready: list[Item] = []
                exact = 0
                for position, record in enumerate(records, start):
                    try:
                        item = (
                            record
                            if type(record) is Item
                            else prepare(record, max_bytes, before_send)
                        )
                    except ValidationError as exc:
                        self._drop(exc.reason, exc)
                        continue
                    except Dropped:
                        self._drop("before_send", None)
                        continue
                    # before_send, or a value's own code (a Mapping's items()), raised; even
                    # SystemExit is this record's problem, never the end of the worker.
                    except BaseException as exc:
                        self._drop(
                            "error",
                            ValidationError(
                                "", f"{type(exc).__name__} while preparing: {exc}", "error"
                            ),
                        )
                        continue
                    if not send:
                        self._drop("send_disabled", None)
                        continue
                    item.ref = position
                    exact += ITEM_OVERHEAD + len(item.payload)
                    ready.append(item)
                if self.queued_in > self.queued_out:  # callers estimated some of them
                    # Never more than they added: they skip records the worker keeps up with.
                    estimated = sum(map(estimate, records))
                    self.queued_out = min(self.queued_out + estimated, self.queued_in)
                with self.lock:
                    self._ready.extend(ready)
                    self.item_bytes += exact
                    self._prepared_to = start + n
                    self._advance()
                if n < TAKE_CHUNK:
                    if self.queue.size() == 0:
                        self.queued_out = self.queued_in  # nothing waits in the queue
                    return

    def _drop(self, reason: str, error: ValidationError | None) -> None:
        with self.lock:
            self.held -= 1
            self.dropped[reason] += 1
        report = self.reporter
        if error is not None:
            report.log(30, "drop:" + reason, "dropped an element: %s", error)
            report.error(error)
        report.emit("element_dropped", reason=reason, error=error, count=1)

    def _advance(self) -> None:
        """Recompute the settled watermark (under the lock); wake flushes waiting on it."""
        if self._out:
            low = next(iter(self._out))
        elif self._ready:
            low = self._ready[0].ref  # type: ignore[assignment]
        else:
            low = self._prepared_to
        if low != self.settled_below:
            self.settled_below = low
            self.progress.notify_all()

    # -- the Source protocol -----------------------------------------------------------------

    def take(self, limit: int, timeout: float) -> list[Item] | None:
        self.prepare_queued()
        if not self._ready:
            if self.stop.requested:
                if self.queue.size() == 0:
                    return None
            else:
                self.wake.wait(timeout)
                self.wake.clear()
                self.prepare_queued()
        return self._take_ready(limit)

    def _take_ready(self, limit: int) -> list[Item]:
        with self.lock:
            ready, out = self._ready, self._out
            items: list[Item] = []
            while ready and len(items) < limit:
                item = ready.popleft()
                out[item.ref] = item  # type: ignore[index]
                items.append(item)
            return items

    def due(self) -> bool:
        return self.flush_requests > 0 or self.stop.requested

    def ack(self, items: Sequence[Item]) -> None:
        self._settle(items, "sent")

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        self._settle(items, reason)

    def release(self, items: Sequence[Item]) -> None:
        if not self.stop.requested:
            # Not a stop: the sender broke off (an unexpected error); send them again, first.
            with self.lock:
                for item in items:
                    self._out.pop(item.ref, None)  # type: ignore[call-overload]
                self._ready.extendleft(sorted(items, key=_position, reverse=True))
                self._advance()
            return
        nbytes = sum(ITEM_OVERHEAD + len(item.payload) for item in items)
        with self.lock:  # lost with the process; give_up() counts them as failed
            for item in items:
                self._out.pop(item.ref, None)  # type: ignore[call-overload]
            self.item_bytes -= nbytes
            self._advance()

    def _settle(self, items: Sequence[Item], outcome: str | None) -> None:
        n = len(items)
        nbytes = sum(len(item.payload) for item in items) + n * ITEM_OVERHEAD
        with self.lock:
            out = self._out
            for item in items:
                out.pop(item.ref, None)  # type: ignore[call-overload]
            self.held -= n
            self.item_bytes -= nbytes
            if outcome == "sent":
                self.sent += n
            elif outcome is None:
                self.failed += n
            else:
                self.dropped[outcome] += n
            self._advance()

    def wait(self, seconds: float) -> None:
        """Pass the time preparing what callers queue, so a backlog is held as bytes."""
        end = time.monotonic() + seconds
        while not self.stop.expired():
            left = end - time.monotonic()
            if left <= 0:
                return
            self.wake.wait(min(left, 0.25))
            self.wake.clear()
            self.prepare_queued()

    # -- flush and stop ----------------------------------------------------------------------

    def flush(self, timeout: float | None, exited: threading.Event) -> bool:
        """Wait until every record queued before this call is settled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            target = self.taken + self.queue.size()
            if self.settled_below >= target:
                return True
            self.flush_requests += 1
        try:
            self.wake.set()
            with self.lock:
                while self.settled_below < target:
                    if exited.is_set():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self.progress.wait(1.0 if remaining is None else min(remaining, 1.0))
                    self.wake.set()
                return True
        finally:
            with self.lock:
                self.flush_requests -= 1

    def give_up(self, cause: MoetrackError | None, timeout: float) -> int:
        """At the stop: count everything not settled as failed, in one report."""
        with self._prepare_lock, self.lock:
            queued = self.queue.take(1 << 62)
            self.queued_out = self.queued_in  # the queue is empty
            self.taken += len(queued)
            self.held += len(queued)
            n = self.held
            for item in (*self._out.values(), *self._ready):
                self.item_bytes -= ITEM_OVERHEAD + len(item.payload)
            self._out.clear()
            self._ready.clear()
            self.held = 0
            self.failed += n
            self._prepared_to = self.taken
            self._advance()
        if n:
            error = DeliveryError(
                f"{n} records not delivered before the shutdown timeout ({timeout:g}s)"
                + (f"; last error: {cause}" if cause is not None else ""),
                count=n,
                cause=cause,
            )
            self.reporter.log(40, "lost", "%s", error)
            self.reporter.error(error)
            self.reporter.emit("batch_failed", records=n, error=error)
        return n

    def sweep_late(self) -> None:
        """Count records queued after the worker ended as dropped (``shutdown``)."""
        with self._prepare_lock, self.lock:
            late = self.queue.take(1 << 62)
            if late:
                self.queued_out = self.queued_in  # the queue is empty
                self.caller_dropped += len(late)
                self.dropped["shutdown"] += len(late)


def _position(item: Item) -> int:
    return item.ref  # type: ignore[return-value]
