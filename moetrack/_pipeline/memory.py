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

Prepared items wait compactly, in blocks the garbage collector does not walk
(:mod:`~moetrack._pipeline.blocks`).

The preparer works in chunks of :data:`TAKE_CHUNK` records and lets other threads run
between two of them (:class:`~moetrack._pipeline.breath.Breath`), so that a request thread
never waits for the worker through a whole batch.

What this source promises: records live and die with the process. A batch released while
stopping is lost and counted as failed, in one report, by :meth:`MemorySource.give_up`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._exceptions import DeliveryError, MoetrackError, ValidationError
from .._wire.records import Dropped, Item, prepare
from .blocks import ITEM_OVERHEAD, Block, Blocks, block
from .breath import Breath
from .queue import TAKE_CHUNK, estimate
from .source import Stop

if TYPE_CHECKING:
    from .._config import Config
    from .._report import Reporter
    from .queue import RecordQueue

__all__ = ["MemorySource"]


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
        self._pause = threading.Event()  # never set: what sync mode waits on
        # under self.lock
        self.taken = 0
        self.held = 0
        self.sent = 0
        self.failed = 0
        self.caller_dropped = 0
        self.dropped: Counter[str] = Counter()
        self.flush_requests = 0
        self._ready = Blocks()  # prepared, not taken by the sender
        self._out: dict[int, Item] = {}  # taken by the sender, not settled (by position)
        self._prepared_to = 0  # every position below is prepared or settled
        # Chunks prepared ahead of an earlier one still being prepared on another thread (sync
        # mode): start -> (end, block or None, bytes); they join _ready in position order.
        self._chunks: dict[int, tuple[int, Block | None, int]] = {}
        self.settled_below = 0  # every position below is settled
        # The lowest position of each batch failed or lost while a flush waits.
        self._failures: list[int] = []
        self._given_up = False  # give_up() counted everything: late preparers count nothing
        # Bytes held in memory (see the module's docstring).
        self.queued_in = 0  # added by the callers, without a lock
        self.queued_out = 0  # added by the preparers (under self.lock)
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
        """Turn every queued record into an item (or a counted drop), in queue order.

        No lock is held while ``before_send`` or a value's own code runs, nor while a drop is
        reported: a callback may track (or log through a handler that tracks) without a
        deadlock. In sync mode several callers prepare at once; each takes a chunk of
        consecutive positions under the lock, and the chunks join the ready items in order.
        """
        config = self.config
        max_bytes = config.max_batch_bytes
        before_send = config.before_send
        send = config.send
        breath = Breath()
        while not self.stop.expired():
            with self.lock:
                if self.given_up():
                    return
                records = self.queue.take(TAKE_CHUNK)
                n = len(records)
                start = self.taken
                self.taken += n
                self.held += n
            if not n:
                return
            positions: list[int] = []
            kinds: list[int] = []
            customers: list[str] = []
            devices: list[str | None] = []
            payloads: list[bytes] = []
            drops: list[tuple[str, ValidationError | None]] = []
            exact = 0
            for position, record in enumerate(records, start):
                try:
                    item = (
                        record if type(record) is Item else prepare(record, max_bytes, before_send)
                    )
                except ValidationError as exc:
                    drops.append((exc.reason, exc))
                    continue
                except Dropped:
                    drops.append(("before_send", None))
                    continue
                # before_send, or a value's own code (a Mapping's items()), raised; even
                # SystemExit is this record's problem, never the end of the worker.
                except BaseException as exc:
                    problem = ValidationError(
                        "", f"{type(exc).__name__} while preparing: {exc}", "error"
                    )
                    drops.append(("error", problem))
                    continue
                if not send:
                    drops.append(("send_disabled", None))
                    continue
                positions.append(position)
                kinds.append(item.kind)
                customers.append(item.customer_id)
                devices.append(item.device_id)
                payloads.append(item.payload)
                exact += ITEM_OVERHEAD + len(item.payload)
            prepared = (
                block(start, n, positions, (kinds, customers, devices, payloads))
                if positions
                else None
            )
            # Never more than the callers added: they skip records the worker keeps up with.
            estimated = sum(map(estimate, records)) if self.queued_in > self.queued_out else 0
            # Reported before they count as settled: a flush() that returns finds them reported.
            if not self.given_up():
                for reason, error in drops:
                    self._report_drop(reason, error)
            with self.lock:
                if estimated:
                    self.queued_out = min(self.queued_out + estimated, self.queued_in)
                if self.given_up():
                    return  # counted as failed by give_up()
                self.held -= len(drops)
                dropped = self.dropped
                for reason, _ in drops:
                    dropped[reason] += 1
                chunks = self._chunks
                chunks[start] = (start + n, prepared, exact)
                while self._prepared_to in chunks:
                    end, ready, nbytes = chunks.pop(self._prepared_to)
                    if ready is not None:
                        self._ready.append(ready)
                    self.item_bytes += nbytes
                    self._prepared_to = end
                self._advance()
                if n < TAKE_CHUNK and self.queue.size() == 0:
                    self.queued_out = self.queued_in  # nothing waits in the queue
            if n < TAKE_CHUNK:
                return
            breath()

    def given_up(self) -> bool:
        """Whether :meth:`give_up` counted what was left (another thread may have)."""
        return self._given_up

    def _report_drop(self, reason: str, error: ValidationError | None) -> None:
        self.reporter.dropped(reason, error, 1)

    def _advance(self) -> None:
        """Recompute the settled watermark (under the lock); wake flushes waiting on it."""
        if self._out:
            low = next(iter(self._out))
        elif self._ready:
            low = self._ready.first_position()
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
            return self._ready.take(limit, self._out)

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
                back = [item for item in items if self._out.pop(item.ref, None) is not None]  # type: ignore[call-overload]
                if back:
                    back.sort(key=_position)
                    self._ready.unshift(back)
                self._advance()
            return
        with self.lock:  # lost with the process; give_up() counts them as failed
            lost = [item for item in items if self._out.pop(item.ref, None) is not None]  # type: ignore[call-overload]
            if lost:
                self.item_bytes -= sum(ITEM_OVERHEAD + len(item.payload) for item in lost)
                self._note_failure(lost)
                self._advance()

    def _settle(self, items: Sequence[Item], outcome: str | None) -> None:
        with self.lock:
            # Only what is still out counts: a batch whose request outlasted the shutdown
            # deadline was counted by give_up() already, and every record counts once.
            out = self._out
            settled = [item for item in items if out.pop(item.ref, None) is not None]  # type: ignore[call-overload]
            if not settled:
                return
            n = len(settled)
            self.held -= n
            self.item_bytes -= sum(len(item.payload) for item in settled) + n * ITEM_OVERHEAD
            if outcome == "sent":
                self.sent += n
            elif outcome is None:
                self.failed += n
                self._note_failure(settled)
            else:
                self.dropped[outcome] += n
            self._advance()

    def _note_failure(self, items: Sequence[Item]) -> None:
        """Remember (under the lock) that these records were not delivered, for the flushes
        waiting now: a flush is False when one of its records failed or was lost."""
        if self.flush_requests:
            self._failures.append(min(map(_position, items)))

    def wait(self, seconds: float) -> None:
        """Pass the time preparing what callers queue, so a backlog is held as bytes.

        In sync mode it only lets the time pass: each caller prepares and sends its own
        records, and a record prepared here might wait for the next call to be sent.
        """
        if self.config.sync:
            self._pause.wait(seconds)
            return
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
        """Wait until every record queued before this call is settled.

        True when they all were sent or dropped on purpose (invalid, ``before_send``); False
        when one of them failed or was lost at shutdown, or ``timeout`` passed first. The
        worker sends a partial batch as soon as a flush waits (:meth:`due`), so this returns
        a round trip after the call, whatever the flush interval.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            target = self.taken + self.queue.size()
            if self.settled_below >= target:
                return True
            if not self.flush_requests:
                self._failures.clear()
            self.flush_requests += 1
            mark = len(self._failures)
        try:
            self.wake.set()
            with self.lock:
                while self.settled_below < target:
                    if exited.is_set():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    # Settling notifies; the re-wake only guards against a lost wake-up.
                    self.progress.wait(1.0 if remaining is None else min(remaining, 1.0))
                    if self.settled_below < target:
                        self.wake.set()
                return not any(low < target for low in self._failures[mark:])
        finally:
            with self.lock:
                self.flush_requests -= 1

    def give_up(self, cause: MoetrackError | None, timeout: float) -> int:
        """At the stop: count everything not settled as failed, in one report."""
        with self.lock:
            self._given_up = True  # a chunk being prepared on another thread is counted here
            queued = self.queue.take(1 << 62)
            self.queued_out = self.queued_in  # the queue is empty
            self.taken += len(queued)
            self.held += len(queued)
            n = self.held
            self.item_bytes = 0  # nothing prepared is held any more
            self._out.clear()
            self._ready.clear()
            self._chunks.clear()
            self.held = 0
            self.failed += n
            if n and self.flush_requests:
                self._failures.append(self.settled_below)
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
        with self.lock:
            late = self.queue.take(1 << 62)
            if late:
                self.queued_out = self.queued_in  # the queue is empty
                self.caller_dropped += len(late)
                self.dropped["shutdown"] += len(late)


def _position(item: Item) -> int:
    return item.ref  # type: ignore[return-value]
