"""The one background thread of a client: prepare, pack, pace, send, retry, count.

Data path (DESIGN §4)::

    queue ──take──▶ prepare (validate + encode) ──▶ backlog ──▶ Packer ──▶ rate limits
          ──▶ Transport.send ──▶ 2xx: sent │ 413: split │ 429/5xx/no answer: retry │ 4xx: failed

Records are counted from the moment they leave the queue (``taken``) until they are *done*:
sent, dropped with a reason, or failed. ``held`` is what was taken and is not done yet, so at
every moment ``taken == done + held`` and ``Client.stats()`` can read one consistent set of
numbers under :attr:`Worker.lock`.

One batch is in flight at a time and is retried before the next one is sent, which keeps
elements in order. While the worker waits (backoff, rate limit), it keeps turning queued
records into encoded items, so a backlog costs bytes of JSON rather than Python objects.
Threads live in this module only; the worker never reads contextvars (the caller captured
the context in the record).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING

from . import _http
from ._encode import Batch, Packer
from ._exceptions import (
    APIError,
    DeliveryError,
    MoetrackError,
    TransportError,
    ValidationError,
)
from ._ratelimit import WindowLimit
from ._records import Dropped, Item, prepare
from ._report import Reporter, logger
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._config import Config
    from ._queue import RecordQueue
    from ._transport import Transport

__all__ = ["Worker"]

#: Records taken from the queue per lock round-trip.
TAKE_CHUNK = 512
#: Seconds stop() waits past its deadline for the worker to count what is left and exit.
STOP_GRACE = 0.25
_monotonic = time.monotonic


class Worker:
    """Turns queued records into delivered requests, on its own thread or inline (sync)."""

    def __init__(
        self, config: Config, queue: RecordQueue, transport: Transport, reporter: Reporter
    ) -> None:
        self.config = config
        self.queue = queue
        self.transport = transport
        self.reporter = reporter
        self.policy = RetryPolicy(
            config.retry_backoff, config.retry_backoff_max, config.retry_deadline
        )
        self._url = config.url
        self._headers = config.headers() if config.has_credentials else {}
        self._secrets = config.secrets()
        import random  # here, not at import: ``import moetrack`` stays light

        self._rng = random.Random()
        self._init_state()

    def _init_state(self) -> None:
        """Fresh state; also what a forked child starts from."""
        config = self.config
        self.lock = threading.Lock()
        self.progress = threading.Condition(self.lock)
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.inline_lock = threading.Lock()
        # counters, all under self.lock
        self.taken = 0
        self.done = 0
        self.held = 0
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.requests = 0
        self.bytes = 0
        self.caller_dropped = 0
        self.dropped: Counter[str] = Counter()
        # worker-only state
        self.backlog: deque[Item] = deque()
        self.packer = Packer(
            config.max_batch_bytes,
            config.max_batch_size,
            config.users_per_minute,
            config.events_per_minute,
        )
        self.oldest: float | None = None  # when the oldest unsent item was taken
        self.users = WindowLimit(config.users_per_minute, config.rate_limit_window)
        self.events = WindowLimit(config.events_per_minute, config.rate_limit_window)
        self.flush_requests = 0
        self.stopping = False
        self.stop_deadline: float | None = None
        self.stop_timeout = config.shutdown_timeout  # what stop() was given, for the report
        # Records of batches that met the stop deadline: still held, counted as failed (with
        # everything not yet sent) in one report by _give_up_remaining.
        self.abandoned = 0
        self.abandon_cause: MoetrackError | None = None
        self.exited = False

    # -- lifecycle -----------------------------------------------------------------------

    def ensure_started(self) -> None:
        with self.lock:
            if self.thread is not None or self.stopping:
                return
            thread = threading.Thread(target=self._run, name="moetrack-worker", daemon=True)
            self.thread = thread
        thread.start()

    def after_fork_in_child(self) -> None:
        """The child of a fork: forget the parent's records and thread; start afresh."""
        self.queue.clear()
        self.reporter.after_fork_in_child()
        reset = getattr(self.transport, "reset_after_fork", None)
        if reset is not None:
            reset()
        self._init_state()
        _stop_when_multiprocessing_child_ends(self)

    def _run(self) -> None:
        while True:
            self.wake.wait(self._wait_timeout())
            self.wake.clear()
            try:
                if self._cycle():
                    return
            # Never let the worker die: log, and go on with the next cycle. BaseException too:
            # only user code (a callback calling sys.exit()) raises SystemExit on this thread,
            # where it cannot end the process but silently ended the worker.
            except BaseException:
                logger.exception("unexpected error in the worker; it continues")

    def _wait_timeout(self) -> float | None:
        if self.stopping:
            return 0.0
        if self.oldest is None:
            return self.config.flush_interval
        return max(0.0, self.oldest + self.config.flush_interval - _monotonic())

    def _cycle(self) -> bool:
        """One round: drain, send what is due. True when the worker should exit."""
        self.drain()
        due = (
            self.flush_requests > 0
            or self.stopping
            or (
                self.oldest is not None and _monotonic() - self.oldest >= self.config.flush_interval
            )
        )
        self.send_ready(force=due)
        if self.stopping and (self._stop_due() or self._idle()):
            self._give_up_remaining()
            with self.lock:
                self.exited = True
                self.progress.notify_all()
            return True
        return False

    def _idle(self) -> bool:
        return self.queue.size() == 0 and not self.backlog and len(self.packer) == 0

    def run_inline(self) -> None:
        """Sync mode: do the whole path on the calling thread."""
        with self.inline_lock:
            self.drain()
            self.send_ready(force=True)

    # -- counting ------------------------------------------------------------------------

    def count_caller_drop(self, reason: str, n: int = 1) -> None:
        with self.lock:
            self.caller_dropped += n
            self.dropped[reason] += n

    def _finish(
        self, n: int, *, sent: int = 0, failed: int = 0, dropped: str | None = None
    ) -> None:
        with self.lock:
            self.held -= n
            self.done += n
            if sent:
                self.sent += sent
            if failed:
                self.failed += failed
            if dropped is not None:
                self.dropped[dropped] += n
            self.progress.notify_all()

    # -- preparing -----------------------------------------------------------------------

    def drain(self) -> None:
        """Turn every queued record into an encoded item on the backlog (or a drop)."""
        config = self.config
        max_bytes = config.max_batch_bytes
        before_send = config.before_send
        while True:
            if self._stop_due():
                return  # preparing more only delays the exit; _give_up_remaining counts it
            with self.lock:
                records = self.queue.take(TAKE_CHUNK)
                n = len(records)
                self.taken += n
                self.held += n
            if not n:
                return
            if self.oldest is None:
                self.oldest = _monotonic()
            append = self.backlog.append
            for record in records:
                if type(record) is Item:  # strict mode prepared it in the caller
                    append(record)
                    continue
                try:
                    append(prepare(record, max_bytes, before_send))
                except ValidationError as exc:
                    self._drop(exc.reason, exc)
                except Dropped:
                    self._drop("before_send", None)
                # before_send, or a value's own code (a Mapping's items()), raised; even
                # SystemExit is this record's problem, never the end of the worker.
                except BaseException as exc:
                    self._drop(
                        "error",
                        ValidationError(
                            "", f"{type(exc).__name__} while preparing: {exc}", "error"
                        ),
                    )
            if n < TAKE_CHUNK:
                return

    def _drop(self, reason: str, error: ValidationError | None) -> None:
        self._finish(1, dropped=reason)
        report = self.reporter
        if error is not None:
            report.log(30, "drop:" + reason, "dropped an element: %s", error)
            report.error(error)
        report.emit("element_dropped", reason=reason, error=error, count=1)

    # -- sending -------------------------------------------------------------------------

    def send_ready(self, *, force: bool) -> None:
        """Pack the backlog into requests; send full ones, and the partial one if forced."""
        packer = self.packer
        backlog = self.backlog
        while backlog:
            if self._stop_due():
                return  # _give_up_remaining counts the rest, in one report
            if packer.add(backlog[0]):
                backlog.popleft()
                continue
            self._deliver(packer.take(), _monotonic())
            # What remains waits for its own interval, so a burst is sent in full bodies
            # rather than full ones followed at once by a small remainder.
            self.oldest = _monotonic()
        if force and len(packer) and not self._stop_due():
            self._deliver(packer.take(), _monotonic())
        if not backlog and not len(packer) and self.queue.size() == 0:
            self.oldest = None

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` while preparing newly queued records. False if the stop deadline
        came first."""
        end = _monotonic() + seconds
        if self.stop_deadline is not None and end > self.stop_deadline:
            return False
        while True:
            remaining = end - _monotonic()
            if remaining <= 0:
                return True
            self.wake.wait(min(remaining, 0.25))
            self.wake.clear()
            if self.thread is not None:
                self.drain()
            if self._deadline_passed():
                return False

    def _deadline_passed(self) -> bool:
        return self.stop_deadline is not None and _monotonic() >= self.stop_deadline

    def _stop_due(self) -> bool:
        """Stopping, and either the deadline passed or a batch could not be sent before it:
        send nothing more (a request after the deadline only makes the exit later, and sending
        later batches past an abandoned one would break the order)."""
        return self.stop_deadline is not None and (
            self.abandoned > 0 or _monotonic() >= self.stop_deadline
        )

    def _abandon(self, batch: Batch, cause: MoetrackError | None) -> None:
        """The stop deadline came first: leave the batch to _give_up_remaining.

        Failing it here, batch by batch, reported only the first of them (the log is
        rate-limited per kind) and made one more request per remaining batch after the
        deadline; the exit log then understated what was lost.
        """
        self.abandoned += len(batch)
        if cause is not None:
            self.abandon_cause = cause

    def _deliver(self, batch: Batch, first_attempt: float) -> None:
        if not self.config.send:
            self._finish(len(batch), dropped="send_disabled")
            return
        attempt = 0
        report = self.reporter
        config = self.config
        error: MoetrackError | None = None
        while True:
            if self._stop_due():
                self._abandon(batch, error)
                return
            now = _monotonic()
            wait = max(
                self.users.wait_time(batch.users, now), self.events.wait_time(batch.events, now)
            )
            if wait > 0:
                report.emit("rate_limited", wait=wait, users=batch.users, events=batch.events)
                report.log(20, "ratelimit", "waiting %.1fs for the client-side rate limit", wait)
                if not self._sleep(wait):
                    self._abandon(batch, error)
                    return
                continue
            timeout = config.timeout
            if self.stop_deadline is not None:
                timeout = max(0.05, min(timeout, self.stop_deadline - now))
            try:
                response = self.transport.send(self._url, batch.body, self._headers, timeout)
            except TransportError as exc:
                error = self._scrubbed(exc)
                status = 0
            except Exception as exc:  # a custom transport that broke its contract
                error = self._scrubbed(TransportError(f"{type(exc).__name__}: {exc}"))
                status = 0
            else:
                status = response.status
            done_at = _monotonic()
            self.users.spend(batch.users, done_at)
            self.events.spend(batch.events, done_at)
            with self.lock:
                self.requests += 1
            if 200 <= status < 300:
                with self.lock:
                    self.bytes += len(batch.body)
                self._finish(len(batch), sent=len(batch))
                if config.debug:
                    logger.debug(
                        "sent %d records in %d bytes (%d users, %d events)",
                        len(batch),
                        len(batch.body),
                        batch.users,
                        batch.events,
                    )
                report.emit(
                    "batch_sent",
                    records=len(batch),
                    bytes=len(batch.body),
                    users=batch.users,
                    events=batch.events,
                    status=status,
                )
                return
            if status:
                error = _http.response_error(
                    status,
                    response.body,
                    response.headers.get("retry-after"),
                    secrets=self._secrets,
                ) or APIError(f"HTTP {status}", status=status)
            if status == 413:
                self._split(batch, error, first_attempt)
                return
            retryable = status == 0 or self.policy.is_retryable(status)
            if not retryable:
                self._fail(batch, error, "the server refused it")
                return
            retry_after = error.retry_after if isinstance(error, APIError) else None
            delay = self.policy.delay(attempt, retry_after, self._rng)
            if _monotonic() + delay - first_attempt > self.policy.deadline:
                self._fail(
                    batch,
                    error,
                    f"still failing after the {self.policy.deadline:g}s retry deadline",
                )
                return
            with self.lock:
                self.retried += 1
            report.emit("request_retried", attempt=attempt + 1, delay=delay, error=error)
            report.log(30, "retry", "request failed (%s); retrying in %.2fs", error, delay)
            attempt += 1
            if not self._sleep(delay):
                self._abandon(batch, error)
                return

    def _scrubbed(self, error: TransportError) -> TransportError:
        """The error, or a copy without the key if its message quotes it: a custom transport
        may quote the request headers, and on_error and the signals get the error as it is
        (only log records are scrubbed)."""
        text = str(error)
        if any(secret in text for secret in self._secrets):
            return TransportError(_http.redact(text, self._secrets))
        return error

    def _split(self, batch: Batch, error: MoetrackError | None, first_attempt: float) -> None:
        items = batch.items
        if len(items) == 1:
            self._fail(batch, error, "the server refused a single element as too large")
            return
        self.reporter.log(30, "split", "413 for %d records; sending them in halves", len(items))
        half = len(items) // 2
        config = self.config
        for part in (items[:half], items[half:]):
            packer = Packer(config.max_batch_bytes, len(part), None, None)
            for sub in packer.pack_all(part):
                self._deliver(sub, first_attempt)

    def _fail(self, batch: Batch, cause: MoetrackError | None, why: str) -> None:
        n = len(batch)
        self._finish(n, failed=n)
        error = DeliveryError(f"{n} records not delivered: {why}: {cause}", count=n, cause=cause)
        self.reporter.log(40, "fail", "%s", error)
        self.reporter.error(error)
        self.reporter.emit("batch_failed", records=n, error=error)

    def _give_up_remaining(self) -> None:
        """At the stop deadline: count what is left as failed, once, and say how many."""
        n = self.abandoned + len(self.packer) + len(self.backlog)
        cause, self.abandoned, self.abandon_cause = self.abandon_cause, 0, None
        self.packer.take()
        self.backlog.clear()
        with self.lock:
            queued = self.queue.take(1 << 62)
            self.taken += len(queued)
            self.held += len(queued)
        n += len(queued)
        if n:
            self.oldest = None
            self._finish(n, failed=n)
            error = DeliveryError(
                f"{n} records not delivered before the shutdown timeout "
                f"({self.stop_timeout:g}s)"
                + (f"; last error: {cause}" if cause is not None else ""),
                count=n,
                cause=cause,
            )
            self.reporter.log(40, "lost", "%s", error)
            self.reporter.error(error)
            self.reporter.emit("batch_failed", records=n, error=error)

    # -- flush and stop (called from other threads) ----------------------------------------

    def flush(self, timeout: float | None) -> bool:
        if self.thread is None:
            if self.config.sync and not self.stopping:
                self.run_inline()
            return self.queue.size() == 0 and self.held == 0
        deadline = None if timeout is None else _monotonic() + timeout
        with self.lock:
            target = self.taken + self.queue.size()
            if self.done >= target:
                return True
            self.flush_requests += 1
        try:
            self.wake.set()
            with self.lock:
                while self.done < target and not self.exited:
                    remaining = None if deadline is None else deadline - _monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self.progress.wait(remaining if remaining is None else min(remaining, 1.0))
                    self.wake.set()
                return self.done >= target
        finally:
            with self.lock:
                self.flush_requests -= 1

    def stop(self, timeout: float) -> bool:
        """Flush within ``timeout`` seconds, then end the thread. True if nothing was lost."""
        with self.lock:
            if not self.stopping:
                self.stopping = True
                self.stop_deadline = _monotonic() + timeout
                self.stop_timeout = timeout
            thread = self.thread
        if thread is None:
            if self.config.sync:
                with self.inline_lock:
                    self.drain()
                    self.send_ready(force=True)
            else:
                self.drain()
            if self.held or self.queue.size():
                self._give_up_remaining()
        else:
            self.wake.set()
            # The worker keeps to the deadline by itself: requests sent while stopping have
            # their timeout cut to it, waits end at it, and what is left is counted at once.
            # Only a request sent before stop() can outlast it (it has the whole `timeout`
            # option); then stop() returns at the deadline anyway and the caller reports the
            # records still pending, rather than holding the exit for up to `timeout` more.
            thread.join(timeout + STOP_GRACE)
        return self.held == 0 and self.queue.size() == 0


# -- processes forked by multiprocessing -------------------------------------------------------


def _stop_when_multiprocessing_child_ends(worker: Worker) -> None:
    """Flush when a child forked by ``multiprocessing`` ends (a Pool worker, a Process).

    multiprocessing ends the processes it forks with ``os._exit()``, which skips ``atexit``:
    whatever such a child tracked in its last flush interval was lost without a word. Its own
    exit hook runs the finalizers registered after it has set the child up (it clears the
    parent's first), so ask to register one at that point. Nothing happens when
    multiprocessing is not in use, or the child is killed (``Pool.terminate()``).
    """
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.register_after_fork(worker, _register_exit_finalizer)


def _register_exit_finalizer(worker: Worker) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _stop_at_child_exit, args=(worker,), exitpriority=0)


def _stop_at_child_exit(worker: Worker) -> None:
    if worker.stopping:
        return  # shut down already
    if not worker.stop(worker.config.shutdown_timeout):
        logger.error(
            "%d records not delivered when this process ended (shutdown timeout %gs)",
            worker.held + worker.queue.size(),
            worker.config.shutdown_timeout,
        )
