"""The send stage: pack, pace, send, retry, and settle every batch exactly once.

One :class:`Sender` serves an app process (its in-memory source), a relay (the Redis
backlog) and a bulk import (a file), through the :class:`~moetrack._pipeline.source.Source` seam::

    source.take ─▶ Packer ─▶ limiter.acquire ─▶ transport.send ─▶ settle:
        2xx                                  ack
        413                                  halves, each settled on its own
        408 425 429 5xx, or no answer        retry until the deadline, then fail
        any other 4xx, 501, 505              fail

One batch is in flight at a time, and it is settled (in a ``finally``) before the next is
sent, so batches settle in the order their items were taken: an ordered source keeps each
customer's order. Every wait goes through ``source.wait`` so the source can use the time.

Retries: an answer with ``Retry-After`` is retried exactly that many seconds later, and does
not grow the backoff; any other failure waits the next step of the exponential backoff with
jitter (``retry_backoff`` doubling up to ``retry_backoff_max``). The backoff belongs to the
sender, not to one batch: the first success resets it, and ends the wait of a batch backing
off meanwhile (another caller's, in sync mode), so delivery resumes as the server recovers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from .._exceptions import APIError, DeliveryError, MoetrackError, TransportError
from .._report import logger
from .._wire import encode as _encode
from .._wire import http as _http
from .._wire.encode import Batch, Packer
from .._wire.item import EVENT
from .backends import make_limiter
from .breath import Breath
from .limiter import Limiter, LocalLimiter
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .._config import Config
    from .._report import Reporter
    from .._wire.records import Item
    from .._wire.transport import Transport
    from .source import Source, Stop

__all__ = ["Sender"]

_monotonic = time.monotonic

# How a batch ends.
ACK: Final = 0
FAIL: Final = 1
RELEASE: Final = 2
SPLIT: Final = 3  # settled by its halves
RELEASE_SPLIT: Final = 4  # settled by its halves, the last of them released

#: While the pace binds, a batch's head goes as soon as a tenth of it may (1/LEAST_PART).
LEAST_PART: Final = 10
#: Seconds between two looks, during a backoff, at whether another request succeeded.
SUCCESS_CHECK: Final = 0.25


class Sender:
    """Sends what a source hands it, one batch at a time, and settles each batch."""

    def __init__(
        self,
        config: Config,
        transport: Transport,
        reporter: Reporter,
        limiter: Limiter | None = None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.reporter = reporter
        self.limiter = limiter if limiter is not None else make_limiter(config)
        self.policy = RetryPolicy(
            config.retry_backoff, config.retry_backoff_max, config.retry_deadline
        )
        self._url = config.url
        self._headers = config.headers() if config.has_credentials else {}
        self._secrets = config.secrets()
        import random  # here, not at import: ``import moetrack`` stays light

        self._rng = random.Random()
        # Import now what sending needs (the JSON encoder, httpx), on the thread building the
        # client: a fork while the worker thread was importing a module would leave the child
        # with that module half-initialised for good.
        _encode.dumps(None)
        warm = getattr(transport, "warm", None)
        if warm is not None:
            warm(self._url)
        # Sync mode sends from the callers' threads: the counters, the backoff and a local
        # limiter are shared, under this lock. It is never held across I/O: a shared limiter
        # (Redis) makes round trips, and is called without it.
        self._lock = threading.Lock()
        self._local_limiter = isinstance(self.limiter, LocalLimiter)
        #: Failures without a Retry-After since the last success: the backoff's exponent.
        self._streak = 0
        #: Successes so far: a batch waiting on its backoff retries once this moves.
        self._successes = 0
        self.requests = 0
        self.retried = 0
        self.throttled = 0
        self.bytes = 0
        #: The last error of a batch released unsent (for the report of what a stop lost).
        self.last_error: MoetrackError | None = None
        # While run() sends, the thread running it and how it takes the next items meanwhile.
        self._runner: threading.Thread | None = None
        self._ahead: Callable[[], bool] | None = None
        self._poster: _Poster | None = None  # run()'s request thread, once it sent one

    def packer(self) -> Packer:
        config = self.config
        return Packer(
            config.max_batch_bytes,
            config.max_batch_size,
            config.users_per_minute,
            config.events_per_minute,
        )

    def close(self) -> None:
        poster, self._poster = self._poster, None
        if poster is not None:
            poster.close()
        self.transport.close()

    # -- the loop ----------------------------------------------------------------------------

    def run(self, source: Source, stop: Stop) -> None:
        """Send until the source ends, or ``stop`` says so; release whatever is left."""
        packer = self.packer()
        held: deque[Item] = deque()  # taken from the source, not packed yet
        interval = self.config.flush_interval
        first_taken = 0.0
        ended = False
        breath = Breath()

        def ahead() -> bool:
            """While a request is in flight: take (and so prepare) the next batch's items."""
            nonlocal ended, first_taken
            room = self.config.max_batch_size - len(held) - len(packer)
            if ended or room <= 0 or stop.requested:
                return False
            items = source.take(room, 0.0)
            if items is None:
                ended = True
                return False
            if not items:
                return False
            if not len(packer) and not held:
                first_taken = _monotonic()
            held.extend(items)
            return True

        self._runner, self._ahead = threading.current_thread(), ahead
        try:
            while not stop.expired() and not (stop.requested and not stop.drain):
                while held and packer.add(held[0]):
                    held.popleft()
                    breath()  # a full batch packs in several slices
                if held:  # the next item does not fit: the batch is full
                    if not self._send_next(packer, held, source, stop):
                        return
                    breath.restart()  # it waited for the answer
                    # What remains waits for its own interval, so a burst goes in full bodies.
                    first_taken = _monotonic()
                    continue
                if ended:
                    if len(packer) and self._send_next(packer, held, source, stop):
                        continue
                    return
                now = _monotonic()
                if len(packer) and now >= first_taken + interval:
                    if not self._send_next(packer, held, source, stop):
                        return
                    continue
                if len(packer) and source.due():
                    timeout = 0.0  # a flush waits: take what is ready, then send
                else:
                    timeout = first_taken + interval - now if len(packer) else interval
                items = source.take(max(1, self.config.max_batch_size - len(packer)), timeout)
                # It may have waited: the slice starts now (preparing had slices of its own).
                breath.restart()
                if items is None:
                    ended = True
                elif items:
                    if not len(packer) and not held:
                        first_taken = _monotonic()
                    held.extend(items)
                elif (
                    len(packer) and source.due() and not self._send_next(packer, held, source, stop)
                ):
                    return
        finally:
            self._runner = self._ahead = None
            rest = [*packer.take().items, *held]
            if rest:
                source.release(rest)

    def _send_next(self, packer: Packer, held: deque[Item], source: Source, stop: Stop) -> bool:
        """Send the packer's batch; or, when the pace binds and the limiter can size it, the
        longest head of it that may go now (at least a tenth of it), the rest put
        back in front of ``held`` for the next one. Waiting for room for the whole batch
        would leave the room there is now unused. False as :meth:`send`."""
        batch = packer.take()
        acquire_some = getattr(self.limiter, "acquire_some", None)
        if acquire_some is None:
            return self.send(batch, source, stop)
        items = batch.items
        shape = _runs(items)
        least = max(1, len(items) // LEAST_PART)
        while True:
            if stop.expired():
                return self.send(batch, source, stop)  # released there
            if self._local_limiter:
                with self._lock:
                    granted, wait = acquire_some(shape, least)
            else:  # may be a round trip: never under a lock
                granted, wait = acquire_some(shape, least)
            if wait <= 0:
                break
            report = self.reporter
            report.emit("rate_limited", wait=wait, users=batch.users, events=batch.events)
            report.log(20, "ratelimit", "waiting %.1fs for the rate limit", wait)
            if not self._wait(source, stop, wait):
                source.release(items)
                return False
        if granted >= len(items):
            return self.send(batch, source, stop, charged=True)
        held.extendleft(reversed(items[granted:]))
        part = items[:granted]
        batches = Packer(self.config.max_batch_bytes, len(part)).pack_all(part)
        return self._send_each(batches, source, stop, charged=True)

    def run_once(self, source: Source, stop: Stop) -> None:
        """Send what the source holds now, on this thread (sync mode, on the caller).

        No lock is held while it waits on a retry or the rate limit: callers of other
        threads send their own records meanwhile.
        """
        items = source.take(1 << 30, 0.0)
        if items:
            self.send_all(items, source, stop)

    def send_all(self, items: list[Item], source: Source, stop: Stop) -> None:
        """Pack ``items`` and send them now, batch by batch."""
        self._send_each(self.packer().pack_all(items), source, stop)

    def _send_each(
        self,
        batches: list[Batch],
        source: Source,
        stop: Stop,
        *,
        charged: bool = False,
        first_attempt: float | None = None,
    ) -> bool:
        """Send ``batches`` in order; once one is released unsent (or raises), release the
        rest. False if that happened."""
        for i, batch in enumerate(batches):
            sent = False
            try:
                sent = self.send(batch, source, stop, charged=charged, first_attempt=first_attempt)
            finally:
                if not sent:
                    for rest in batches[i + 1 :]:
                        source.release(rest.items)
            if not sent:
                return False
        return True

    # -- one batch ---------------------------------------------------------------------------

    def send(
        self,
        batch: Batch,
        source: Source,
        stop: Stop,
        *,
        charged: bool = False,
        first_attempt: float | None = None,
    ) -> bool:
        """Send one batch through retries; settle it exactly once, whatever happens.

        False when it was released unsent because the stop came first: then nothing more
        should be sent (a request after the deadline only delays the exit, and a later batch
        sent past a released one would break the order).
        """
        outcome, error = RELEASE, None
        try:
            outcome, error = self._attempts(batch, source, stop, charged, first_attempt)
        except Exception as exc:  # a bug here must not leave the batch held
            logger.exception("unexpected error while sending a batch")
            outcome = FAIL
            error = DeliveryError(
                f"{len(batch)} records not delivered: {type(exc).__name__} while sending: {exc}",
                count=len(batch),
            )
        finally:
            self._settle(batch, source, outcome, error)
        return outcome not in (RELEASE, RELEASE_SPLIT)

    def _settle(
        self, batch: Batch, source: Source, outcome: int, error: MoetrackError | None
    ) -> None:
        """Report the outcome, then settle it with the source: a ``flush()`` that returns
        once the batch is settled finds its errors already reported."""
        report = self.reporter
        if outcome == ACK:
            with self._lock:
                self.bytes += len(batch.body)
            if self.config.debug:
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
                status=200,
            )
            source.ack(batch.items)
        elif outcome == FAIL:
            assert error is not None
            try:
                report.log(40, "fail", "%s", error)
                report.error(error)
                report.emit("batch_failed", records=len(batch), error=error)
            finally:
                source.fail(batch.items, error)
        elif outcome == RELEASE:
            if error is not None:
                self.last_error = error
            source.release(batch.items)

    def _attempts(
        self,
        batch: Batch,
        source: Source,
        stop: Stop,
        charged: bool,
        first_attempt: float | None,
    ) -> tuple[int, MoetrackError | None]:
        config = self.config
        report = self.reporter
        if first_attempt is None:
            first_attempt = _monotonic()
        attempt = 0
        error: MoetrackError | None = None
        while True:
            if stop.expired():
                return RELEASE, error
            if not charged:
                wait = self._acquire(batch.users, batch.events)
                if wait > 0:
                    report.emit("rate_limited", wait=wait, users=batch.users, events=batch.events)
                    report.log(20, "ratelimit", "waiting %.1fs for the rate limit", wait)
                    if not self._wait(source, stop, wait):
                        return RELEASE, error
                    continue
            charged = False  # a retry is charged again: the server may have counted it
            timeout = config.timeout
            remaining = stop.remaining()
            if remaining is not None:
                timeout = max(0.05, min(timeout, remaining))
            status, error, retry_after = self._post_ahead(batch.body, timeout)
            if self._local_limiter:
                with self._lock:
                    self.limiter.answered()
            else:
                self.limiter.answered()
            step = 0
            with self._lock:
                self.requests += 1
                if status == 429:
                    self.throttled += 1
                if 200 <= status < 300:
                    self._streak = 0  # the server is back: the next failure starts afresh
                    self._successes += 1
                elif retry_after is None or retry_after <= 0:
                    step = self._streak
                    self._streak += 1
                successes = self._successes
            if 200 <= status < 300:
                return ACK, None
            if status == 413:
                return self._split(batch, source, stop, error, first_attempt)
            if status and not RetryPolicy.is_retryable(status):
                return FAIL, _failure(batch, error, "the server refused it")
            if retry_after is not None and retry_after > 0:
                # The server said when to come back: exactly then, and the exponent stays.
                delay = float(retry_after)
            else:
                delay = self.policy.delay(step, None, self._rng)
            if status == 429:
                self._pause(delay)
            if _monotonic() + delay - first_attempt > self.policy.deadline:
                return FAIL, _failure(
                    batch,
                    error,
                    f"still failing after the {self.policy.deadline:g}s retry deadline",
                )
            with self._lock:
                self.retried += 1
            report.emit("request_retried", attempt=attempt + 1, delay=delay, error=error)
            report.log(30, "retry", "request failed (%s); retrying in %.2fs", error, delay)
            attempt += 1
            if not self._wait(source, stop, delay, successes):
                return RELEASE, error

    def _post_ahead(self, body: bytes, timeout: float) -> tuple[int, MoetrackError, float | None]:
        """:meth:`_post`; in :meth:`run`, on the sender's request thread while this one takes
        and prepares the next batch's items, so the network and the CPU overlap."""
        ahead = self._ahead
        if ahead is None or threading.current_thread() is not self._runner:
            return self._post(body, timeout)
        poster = self._poster
        if poster is None:
            poster = self._poster = _Poster(self._post)
        done = poster.submit(body, timeout)
        while not done.is_set() and ahead():
            pass
        done.wait()
        return poster.result()

    def _post(self, body: bytes, timeout: float) -> tuple[int, MoetrackError, float | None]:
        """One request. Never raises: no answer is status 0 with a TransportError."""
        try:
            response = self.transport.send(self._url, body, self._headers, timeout)
            status = response.status
            if not isinstance(status, int) or isinstance(status, bool):
                raise TypeError(f"the transport's response status is {status!r}")
            if 200 <= status < 300:
                return status, APIError("", status=status), None
            error = _http.response_error(
                status, response.body, response.headers.get("retry-after"), secrets=self._secrets
            ) or APIError(f"HTTP {status}", status=status)
        except TransportError as exc:
            return 0, self._scrubbed(exc), None
        except Exception as exc:  # a custom transport that broke its contract
            return 0, self._scrubbed(TransportError(f"{type(exc).__name__}: {exc}")), None
        return status, error, error.retry_after

    def _acquire(self, users: int, events: int) -> float:
        if self._local_limiter:
            with self._lock:
                return self.limiter.acquire(users, events)
        return self.limiter.acquire(users, events)  # may be a round trip: never under a lock

    def _pause(self, seconds: float) -> None:
        if self._local_limiter:
            with self._lock:
                self.limiter.pause(seconds)
        else:
            self.limiter.pause(seconds)

    def _wait(
        self, source: Source, stop: Stop, seconds: float, successes: int | None = None
    ) -> bool:
        """Let ``seconds`` pass through the source. False if the stop comes first.

        With ``successes`` (a backoff), the wait ends early once another request succeeded
        (another caller's, in sync mode): the server is back, and the batch is retried.
        """
        end = _monotonic() + seconds
        if stop.deadline is not None and end > stop.deadline:
            return False
        while True:
            left = end - _monotonic()
            if left <= 0:
                return True
            source.wait(left if successes is None else min(left, SUCCESS_CHECK))
            if stop.expired() or (stop.requested and not stop.drain):
                return False
            if successes is not None and self._successes != successes:
                return True

    def _split(
        self,
        batch: Batch,
        source: Source,
        stop: Stop,
        error: MoetrackError | None,
        first_attempt: float,
    ) -> tuple[int, MoetrackError | None]:
        items = batch.items
        if len(items) == 1:
            return FAIL, _failure(batch, error, "the server refused a single element as too large")
        self.reporter.log(30, "split", "413 for %d records; sending them in halves", len(items))
        half = len(items) // 2
        config = self.config
        parts = [
            sub
            for part in (items[:half], items[half:])
            for sub in Packer(config.max_batch_bytes, len(part)).pack_all(part)
        ]
        # The request that earned the 413 paid for these items already.
        if self._send_each(parts, source, stop, charged=True, first_attempt=first_attempt):
            return SPLIT, None
        return RELEASE_SPLIT, None

    def _scrubbed(self, error: TransportError) -> TransportError:
        """The error, or a copy without the key if its message quotes it: a custom transport
        may quote the request headers, and on_error and the signals get the error as it is
        (only log records are scrubbed)."""
        text = str(error)
        if any(secret in text for secret in self._secrets):
            return TransportError(_http.redact(text, self._secrets))
        return error


class _Poster:
    """The request thread of :meth:`Sender.run`: one request at a time, handed over and
    waited for by the thread running it. Started at the first request and kept: a thread
    per request would cost its start and its objects every batch."""

    def __init__(self, post: Callable[[bytes, float], tuple[int, MoetrackError, float | None]]):
        self._post = post
        self._go = threading.Event()
        self._done = threading.Event()
        self._job: tuple[bytes, float] | None = None
        self._result: tuple[int, MoetrackError, float | None] | None = None
        self._thread: threading.Thread | None = None

    def submit(self, body: bytes, timeout: float) -> threading.Event:
        """Start a request; the event is set once it has its answer (or none)."""
        self._job, self._result = (body, timeout), None
        self._done.clear()
        thread = self._thread
        if thread is None or not thread.is_alive():
            thread = self._thread = threading.Thread(
                target=self._loop, name="moetrack-request", daemon=True
            )
            thread.start()
        self._go.set()
        return self._done

    def result(self) -> tuple[int, MoetrackError, float | None]:
        result = self._result
        if result is None:
            raise RuntimeError("the request thread ended without an answer")
        return result

    def close(self) -> None:
        self._job = None
        self._go.set()

    def _loop(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            job = self._job
            if job is None:
                return
            try:
                self._result = self._post(*job)
            finally:
                self._done.set()


def _runs(items: list[Item]) -> list[int]:
    """The kinds of ``items`` in order as a limiter's runs: ``-k`` users, ``+k`` events."""
    out: list[int] = []
    run = 0
    for item in items:
        step = 1 if item.kind == EVENT else -1
        if run and (run > 0) != (step > 0):
            out.append(run)
            run = 0
        run += step
    if run:
        out.append(run)
    return out


def _failure(batch: Batch, cause: MoetrackError | None, why: str) -> DeliveryError:
    n = len(batch)
    return DeliveryError(f"{n} records not delivered: {why}: {cause}", count=n, cause=cause)
