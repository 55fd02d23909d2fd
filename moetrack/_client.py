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
import time
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import signals
from ._config import Config
from ._context import get_ctx
from ._exceptions import ValidationError
from ._queue import MemoryQueue, RecordQueue
from ._records import DEVICE, EVENT, USER, Record, prepare
from ._report import Reporter, logger
from ._transport import HTTPTransport
from ._worker import Worker

__all__ = ["Client", "Stats"]

_time = time.time
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

    Takes the options of :func:`moetrack.init` (see the README's options table). Build one
    per process (or use the default one through the module functions); it is safe to share
    between threads and asyncio tasks.
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
        self._wake_at = max(1, min(config.max_batch_size, 500))
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
        """Track the event ``action`` with attributes from ``attributes`` and ``**attrs``."""
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

    def identify(
        self,
        attributes: Mapping[str, Any] | None = None,
        /,
        *,
        customer_id: Any = None,
        **attrs: Any,
    ) -> None:
        """Set user attributes (a User API element) of the customer in context or given."""
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
        """Create or update a device profile (a Device API element); needs platform and push_id."""
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
        if self._strict:
            record = self._prepare_strict(record)
        queue = self._queue
        worker = self._worker
        depth = queue.size()
        if depth + worker.held >= self._capacity and not self._wait_for_room():
            self._refused("queue_full", None)
            return
        queue.put(record)
        if signals.built:
            kind = record[0] if type(record) is tuple else record.kind
            self._reporter.emit("element_queued", kind=kind)
        if self._sync:
            worker.run_inline()
            return
        if worker.thread is None:
            worker.ensure_started()
        if depth >= self._wake_at and not worker.wake.is_set():
            worker.wake.set()  # Event.set takes a lock: only when the worker is asleep

    def _prepare_strict(self, record: Record) -> Any:
        try:
            return prepare(record, self.config.max_batch_bytes, self.config.before_send)
        except ValidationError as exc:
            self._worker.count_caller_drop(exc.reason)
            self._reporter.emit("element_dropped", reason=exc.reason, error=exc, count=1)
            raise

    def _wait_for_room(self) -> bool:
        if self.config.on_full != "block":
            return False
        end = time.monotonic() + self.config.block_timeout
        queue, worker = self._queue, self._worker
        worker.wake.set()
        while queue.size() + worker.held >= self._capacity:
            if time.monotonic() >= end:
                return False
            time.sleep(0.001)
        return True

    def _refused(self, reason: str, exc: BaseException | None) -> None:
        self._worker.count_caller_drop(reason)
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
        """Wait until everything queued so far is delivered or finally failed.

        Returns False if ``timeout`` seconds passed first (or the client was shut down with
        records still pending).
        """
        return self._worker.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default: the ``shutdown_timeout`` option), stop the
        worker, close connections. Later calls are dropped as ``shutdown``. Idempotent."""
        if self._refuse == "shutdown":
            return
        self._refuse = "shutdown"  # from now on, calls are dropped at the door
        limit = self.config.shutdown_timeout if timeout is None else timeout
        lost_before = self._worker.failed
        complete = self._worker.stop(limit)
        try:
            self._worker.transport.close()
        except Exception:
            logger.exception("closing the transport failed")
        worker = self._worker
        if worker.thread is None or worker.exited:
            # A call that passed the door just before shutdown began: nobody will send it.
            with worker.lock:
                late = len(self._queue.take(1 << 62))
                worker.caller_dropped += late
                if late:
                    worker.dropped["shutdown"] += late
            complete = complete or worker.held == 0
        if not complete:
            pending = self.stats().pending
            logger.error(
                "shutdown ended after %.1fs with %d records not delivered "
                "(%d failed during shutdown)",
                limit,
                pending,
                self._worker.failed - lost_before,
            )
        _live_clients.discard(self)
        self._reporter.close()

    def stats(self) -> Stats:
        """The counters now; see :class:`Stats`."""
        worker = self._worker
        with worker.lock:
            depth = self._queue.size()
            return Stats(
                queued=worker.caller_dropped + worker.taken + depth,
                sent=worker.sent,
                dropped=dict(worker.dropped),
                failed=worker.failed,
                pending=depth + worker.held,
                retried=worker.retried,
                requests=worker.requests,
                bytes=worker.bytes,
                queue_depth=depth,
            )

    def _after_fork_in_child(self) -> None:
        self._worker.after_fork_in_child()

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
    for client in list(_live_clients):
        client._after_fork_in_child()


atexit.register(_shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
