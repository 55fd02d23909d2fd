"""The :class:`Client`: owns the config, the queue, the worker and the transport.

``track()``, ``identify()`` and ``device()`` are the hot path (DESIGN §2). They read the
context once, take the time, put a tuple on the queue, and return. They never raise and
never block in default mode: whatever goes wrong is counted, logged (rate-limited), passed
to ``on_error`` and signalled. With ``strict=True`` the record is validated and encoded in
the caller, and invalid input raises :class:`~moetrack.ValidationError`.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import signals
from ._config import Config
from ._context import get_ctx
from ._exceptions import ValidationError
from ._pipeline.queue import (
    SAMPLE,
    WAKE_BYTES,
    WAKE_RECORDS,
    MemoryQueue,
    RecordQueue,
    estimate,
)
from ._pipeline.worker import Worker, stop_when_multiprocessing_child_ends
from ._report import Reporter, logger
from ._wire.records import DEVICE, EVENT, USER, Dropped, Record, prepare
from ._wire.transport import HTTPTransport

__all__ = ["Client", "Stats"]

_time = time.time
_getpid = os.getpid
_fork_lock = threading.Lock()
_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Stats(NamedTuple):
    """A consistent snapshot of a client's counters, in records (actions, users, devices).

    At every moment ``queued == sent + sum(dropped.values()) + failed + pending``.
    """

    #: Every record handed to the client, including those dropped at once.
    queued: int
    #: Delivered with a 2xx answer.
    sent: int
    #: Not sent on purpose, by reason (``invalid_customer_id``, ``queue_full``, …).
    dropped: Mapping[str, int]
    #: Given up on: a permanent error, the retry deadline, or the shutdown timeout.
    failed: int
    #: Waiting in the queue or in the worker (being prepared, packed or sent).
    pending: int
    #: Requests sent again after a 429, a 5xx or no answer.
    retried: int
    #: HTTP requests made.
    requests: int
    #: Request-body bytes delivered.
    bytes: int
    #: Records in the queue not yet taken by the worker.
    queue_depth: int


class Client:
    """Captures users, devices and events and delivers them through a background worker.

    Takes the options of :func:`moetrack.init` (listed on the documentation's Options page,
    ``docs/reference/options.md``). Build one per process (or use the default one through the
    module functions); it is safe to share between threads and asyncio tasks.

    Raises:
        ConfigurationError: an option has a wrong value; the message names it.

    Example::

        client = moetrack.Client(app_id, api_key, data_center="01", flush_interval=2.0)
        client.track("Purchase", customer_id="user-42", price=3999)
        client.flush(5)
    """

    def __init__(
        self,
        app_id: str | None = None,
        api_key: str | None = None,
        *,
        data_center: str | None = None,
        endpoint: str | None = None,
        queue: RecordQueue | None = None,
        **options: Any,
    ) -> None:
        refuse = options.pop("_refuse", None)
        self.config = config = Config.build(
            app_id, api_key, data_center=data_center, endpoint=endpoint, **options
        )
        self._reporter = Reporter(self, config.on_error, config.secrets())
        self._queue: RecordQueue = queue if queue is not None else MemoryQueue()
        transport = config.transport if config.transport is not None else HTTPTransport()
        self._worker = Worker(config, self._queue, transport, self._reporter)
        self._strict = config.strict
        self._sync = config.sync
        self._capacity = config.queue_capacity
        self._max_bytes = config.max_queue_bytes
        self._pid = _getpid()
        # The worker is woken once WAKE_RECORDS records wait: it prepares them a few score
        # at a time as they arrive, never a batch's worth at once (a request thread arriving
        # meanwhile would wait behind it for the interpreter), and not every few records
        # either (each wake-up is a thread switch the application pays for).
        self._wake_at = max(1, min(config.max_batch_size, WAKE_RECORDS))
        # Why records are refused at the door: None, or the reason they are counted under.
        self._refuse: str | None = refuse
        if refuse is None and not config.has_credentials:
            self._refuse = "no_credentials"
            missing = [n for n in ("app_id", "api_key") if not getattr(config, n)]
            logger.warning(
                "no %s (pass it or set MOETRACK_%s); nothing will be sent and "
                "records are dropped as 'no_credentials'",
                " or ".join(missing),
                "/MOETRACK_".join(m.upper() for m in missing),
            )
        self._warned_refuse = False
        if config.debug:
            logger.setLevel("DEBUG")
        _live_clients.add(self)

    # -- the hot path ----------------------------------------------------------------------

    def track(
        self,
        action: str,
        attributes: Mapping[str, Any] | None = None,
        /,
        *,
        customer_id: Any = None,
        device_id: Any = None,
        platform: str | None = None,
        app_version: str | None = None,
        current_time: Any = None,
        user_time: Any = None,
        user_timezone_offset: int | None = None,
        **attrs: Any,
    ) -> None:
        """Track the event ``action`` with attributes from ``attributes`` and ``**attrs``.

        Returns at once: the record is queued and sent by the background worker. Never
        raises and never blocks (unless ``on_full="block"``); a problem is counted in
        :meth:`stats`, logged, passed to ``on_error`` and signalled.

        Args:
            action: the event name.
            attributes: event attributes, merged under ``**attrs`` (an attribute named like
                one of the keyword fields, such as ``platform``, goes here).
            customer_id: the customer; default: the one bound by :func:`moetrack.context`.
            device_id: the device, optional.
            platform: ``ANDROID``, ``iOS``, ``web`` or ``unknown`` (any case).
            app_version: the app's version, optional.
            current_time: when it happened: epoch seconds, ISO 8601 or a ``datetime``;
                default: now.
            user_time: the user's local time, same forms, optional.
            user_timezone_offset: the user's offset from UTC in whole seconds.
            **attrs: more event attributes.

        Raises:
            ValidationError: only with ``strict=True``, for input the API would drop.
        """
        try:
            ctx = get_ctx()
            if ctx.lazy:
                ctx = ctx.resolve()
            self._put(
                (
                    EVENT,
                    ctx,
                    _time(),
                    action,
                    None if attributes is None else dict(attributes),
                    attrs,
                    customer_id,
                    device_id,
                    platform,
                    app_version,
                    current_time,
                    user_time,
                    user_timezone_offset,
                )
            )
        except Exception as exc:
            self._failed_in_caller(exc)

    def _track_fields(self, action: str, attrs: dict[str, Any], fields: list[Any]) -> None:
        """``track()`` for the logging handler: ``attrs`` is already its own dict, and
        ``fields`` holds customer_id … user_timezone_offset in track()'s order."""
        try:
            ctx = get_ctx()
            if ctx.lazy:
                ctx = ctx.resolve()
            self._put((EVENT, ctx, _time(), action, None, attrs, *fields))
        except Exception as exc:
            self._failed_in_caller(exc)

    def identify(
        self,
        attributes: Mapping[str, Any] | None = None,
        /,
        *,
        customer_id: Any = None,
        **attrs: Any,
    ) -> None:
        """Set user attributes (a User API element) of the customer in context or given.

        Args:
            attributes: user attributes, merged under ``**attrs``.
            customer_id: the customer; default: the one bound by :func:`moetrack.context`.
            **attrs: more user attributes.

        Raises:
            ValidationError: only with ``strict=True``.
        """
        try:
            ctx = get_ctx()
            if ctx.lazy:
                ctx = ctx.resolve()
            self._put(
                (
                    USER,
                    ctx,
                    _time(),
                    None if attributes is None else dict(attributes),
                    attrs,
                    customer_id,
                )
            )
        except Exception as exc:
            self._failed_in_caller(exc)

    def device(
        self,
        attributes: Mapping[str, Any] | None = None,
        /,
        *,
        customer_id: Any = None,
        device_id: Any = None,
        **attrs: Any,
    ) -> None:
        """Create or update a device profile (a Device API element).

        Args:
            attributes: device attributes, merged under ``**attrs``; ``platform``
                (``ANDROID``, ``iOS`` or ``web``) and ``push_id`` are required.
            customer_id: the device's customer; default: the one in context.
            device_id: the device; default: the one in context.
            **attrs: more device attributes.

        Raises:
            ValidationError: only with ``strict=True``.
        """
        try:
            ctx = get_ctx()
            if ctx.lazy:
                ctx = ctx.resolve()
            self._put(
                (
                    DEVICE,
                    ctx,
                    _time(),
                    None if attributes is None else dict(attributes),
                    attrs,
                    customer_id,
                    device_id,
                )
            )
        except Exception as exc:
            self._failed_in_caller(exc)

    def _failed_in_caller(self, exc: Exception) -> None:
        if self._strict and isinstance(exc, ValidationError):
            raise exc  # strict mode: the caller asked for it (already counted)
        self._refused("error", exc)

    def _put(self, record: Any) -> None:
        if self._refuse is not None:
            self._refused(self._refuse, None)
            return
        if self._pid != _getpid():
            self._forked()  # forked without Python's fork hooks (uWSGI forks from C)
        worker = self._worker
        if self._strict:
            inside = worker.inside
            # A before_send that tracks, inside the strict preparation of another record (or on
            # the worker thread): queued as it is, prepared by the pipeline, never recursively.
            if not getattr(inside, "active", False):
                inside.active = True
                try:
                    record = self._prepare_strict(record)
                except Dropped:
                    return  # before_send dropped it on purpose: counted, and not an error
                finally:
                    inside.active = False
        queue = self._queue
        source = worker.source
        depth = queue.size()
        # A record joining a queue of fewer than SAMPLE is counted exactly once encoded, a
        # moment later. Past that, one record in SAMPLE is estimated and stands for SAMPLE of
        # them (a burst costs the callers an eighth of the estimates), so a burst of large
        # records counts against max_queue_bytes before the worker has prepared it.
        size = estimate(record) * SAMPLE if depth and not depth & (SAMPLE - 1) else 0
        if (
            depth + source.held >= self._capacity
            # MemorySource.bytes, read inline: no property call on the hot path
            or source.queued_in - source.queued_out + source.item_bytes + size > self._max_bytes
        ) and not self._wait_for_room(size):
            self._refused("queue_full", None)
            return
        source.queued_in += size
        queue.put(record)
        if self._refuse is not None:  # shutdown may have begun meanwhile, and swept the queue
            self._late(worker)  # type: ignore[unreachable]
            return
        if signals.built:
            self._queued_signal(record, worker)
        if self._sync:
            worker.run_inline()
            return
        if worker.thread is None:
            worker.ensure_started()
        if (
            depth >= self._wake_at or (size and source.queued_in - source.queued_out >= WAKE_BYTES)
        ) and not source.wake.is_set():
            source.wake.set()  # Event.set takes a lock: only when the worker is asleep

    def _queued_signal(self, record: Any, worker: Worker) -> None:
        inside = worker.inside
        if getattr(inside, "queued", False):
            return  # a receiver of element_queued tracked: no signal about its own record
        inside.queued = True
        try:
            kind = record[0] if type(record) is tuple else record.kind
            self._reporter.emit("element_queued", kind=kind)
        finally:
            inside.queued = False

    def _late(self, worker: Worker) -> None:
        """A record that passed the door as shutdown began: once the worker has ended,
        nobody will send it, so it is counted as dropped (``shutdown``), never left pending."""
        if worker.exited.is_set() or (worker.thread is None and worker.source.stop.requested):
            worker.source.sweep_late()

    def _prepare_strict(self, record: Record) -> Any:
        try:
            return prepare(record, self.config.max_batch_bytes, self.config.before_send)
        except ValidationError as exc:
            self._worker.source.count_caller_drop(exc.reason)
            self._reporter.emit("element_dropped", reason=exc.reason, error=exc, count=1)
            raise
        except Dropped:
            self._worker.source.count_caller_drop("before_send")
            self._reporter.emit("element_dropped", reason="before_send", error=None, count=1)
            raise

    def _wait_for_room(self, size: int) -> bool:
        """``on_full="block"``: wait (on the worker's progress, not in a busy loop) until the
        record fits, or ``block_timeout`` passes."""
        if self.config.on_full != "block":
            return False
        end = time.monotonic() + self.config.block_timeout
        queue, source = self._queue, self._worker.source
        source.wake.set()
        with source.lock:
            while (
                queue.size() + source.held >= self._capacity
                or source.bytes + size > self._max_bytes
            ):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                source.progress.wait(remaining)
        return True

    def _refused(self, reason: str, exc: BaseException | None) -> None:
        self._worker.source.count_caller_drop(reason)
        report = self._reporter
        if reason in {"no_credentials", "not_initialized"}:
            if not self._warned_refuse:
                self._warned_refuse = True
                logger.warning(
                    "%s; records are dropped and counted as %r",
                    "moetrack.init() was not called"
                    if reason == "not_initialized"
                    else "the client has no credentials",
                    reason,
                )
        elif exc is not None:
            report.log(
                30,
                "caller:" + reason,
                "dropped a record in the caller: %s: %s",
                type(exc).__name__,
                exc,
            )
        else:
            report.log(30, "caller:" + reason, "dropped a record: %s", reason)
        error = ValidationError("", f"dropped: {reason}" + (f" ({exc})" if exc else ""), reason)
        report.error(error)
        report.emit("element_dropped", reason=reason, error=error, count=1)

    # -- control -------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send what was queued before this call now, and wait until it is settled.

        True when every one of those records was delivered or dropped on purpose (invalid,
        or by ``before_send``; see ``stats().dropped``). False when one of them failed (a
        permanent refusal, the retry deadline) or was lost at shutdown, or when ``timeout``
        seconds passed first. It returns a round trip after the call, whatever the
        ``flush_interval``.

        Records tracked after the call never satisfy it, and never hold it up.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            True once every record queued before the call is done as above (with
            ``backlog=``: stored in Redis); False otherwise.
        """
        return self._worker.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default: the ``shutdown_timeout`` option), stop the
        worker, close connections. Later calls are dropped as ``shutdown``. Idempotent.

        What could not be delivered in time is counted as ``failed`` and logged once.
        """
        if self._refuse == "shutdown":
            return
        if self._pid != _getpid():
            self._forked()  # the parent's records are the parent's to send
        self._refuse = "shutdown"  # from now on, calls are dropped at the door
        limit = self.config.shutdown_timeout if timeout is None else timeout
        worker = self._worker
        lost_before = worker.source.failed
        complete = worker.stop(limit)
        self._late(worker)  # a call that passed the door just before: nobody will send it
        complete = complete or worker.source.held == 0
        worker.close()
        if not complete:
            pending = self.stats().pending
            logger.error(
                "shutdown ended after %.1fs with %d records not delivered "
                "(%d failed during shutdown)",
                limit,
                pending,
                worker.source.failed - lost_before,
            )
        _live_clients.discard(self)

    def stats(self) -> Stats:
        """The counters now; see :class:`Stats`.

        Example::

            s = client.stats()
            assert s.queued == s.sent + sum(s.dropped.values()) + s.failed + s.pending
        """
        if self._pid != _getpid():
            self._forked()
        worker = self._worker
        source, sender = worker.source, worker.sender
        with source.lock:
            depth = self._queue.size()
            return Stats(
                queued=source.caller_dropped + source.taken + depth,
                sent=source.sent,
                dropped=dict(source.dropped),
                failed=source.failed,
                pending=depth + source.held,
                retried=sender.retried,
                requests=sender.requests,
                bytes=sender.bytes,
                queue_depth=depth,
            )

    def _forked(self) -> None:
        """This is a forked child: start afresh with an empty queue and a new worker.

        Runs from ``os.register_at_fork`` when Python forked, and otherwise from the first
        call that notices the process id changed (uWSGI and other C servers fork without
        Python's hooks). The parent's records, thread and locks stay the parent's: a shared
        or durable queue is never cleared here (its ``after_fork()`` is called if it has one).
        """
        with _fork_lock:
            if self._pid == _getpid():
                return
            queue = self._queue
            if isinstance(queue, MemoryQueue):
                queue = MemoryQueue()
            else:
                after_fork = getattr(queue, "after_fork", None)
                if after_fork is not None:
                    after_fork()
            self._reporter.after_fork_in_child()
            transport = self._worker.transport
            reset = getattr(transport, "reset_after_fork", None)
            if reset is not None:
                reset()
            self._queue = queue
            self._worker = Worker(self.config, queue, transport, self._reporter)
            stop_when_multiprocessing_child_ends(self._worker)
            self._pid = _getpid()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<moetrack.Client app_id={self.config.app_id!r} endpoint={self.config.base_url!r}>"


def _shutdown_all() -> None:
    """The exit hook: flush every live client within its shutdown timeout."""
    for client in list(_live_clients):
        try:
            client.shutdown()
        except Exception:
            logger.exception("flushing at exit failed")


def _after_fork_in_child() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()  # another thread may have held it at the fork
    for client in list(_live_clients):
        client._forked()


atexit.register(_shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
