"""The background thread of a client, and how it starts, flushes and stops.

The thread runs the two stages (DESIGN §9): the in-memory source prepares queued records
(:mod:`moetrack._pipeline.memory`), and the send stage takes them from it — the HTTP
:class:`~moetrack._pipeline.sender.Sender`, or the Redis backlog writer when ``backlog=`` is set.
In sync mode there is no thread: the caller prepares and sends, and no lock is held while
it does (nor while it waits on a retry or the rate limit); ``shutdown()`` waits for the
requests other callers have in flight, up to its deadline.

Threads live in this module only; the worker never reads contextvars (the caller captured
the context in the record).
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from .._report import logger
from .backends import SendStage, backlog_writer
from .memory import MemorySource
from .sender import Sender

if TYPE_CHECKING:
    from .._config import Config
    from .._report import Reporter
    from .._wire.transport import Transport
    from .queue import RecordQueue
    from .source import Stop

__all__ = ["Worker", "stop_when_multiprocessing_child_ends"]

#: Seconds stop() waits past its deadline for the worker to count what is left and exit.
STOP_GRACE = 0.25


def _send_stage(config: Config, transport: Transport, reporter: Reporter) -> SendStage:
    if config.backlog is not None:
        return backlog_writer(config, reporter)  # the moetrack[redis] extra
    return Sender(config, transport, reporter)


class Worker:
    """One client's source, send stage and thread."""

    def __init__(
        self, config: Config, queue: RecordQueue, transport: Transport, reporter: Reporter
    ) -> None:
        self.config = config
        self.queue = queue
        self.transport = transport
        self.reporter = reporter
        self.source = MemorySource(config, queue, reporter)
        self.sender = _send_stage(config, transport, reporter)
        self.thread: threading.Thread | None = None
        self.exited = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when an inline send ends
        self._inline = 0  # sync mode: callers sending now (under _lock)
        self._close_on_exit = False
        self.stop_timeout = config.shutdown_timeout
        #: ``active`` is True on a thread running this pipeline: the worker thread, or a caller
        #: preparing or sending inline (strict and sync modes). A callback it runs
        #: (``before_send``, ``on_error``, a signal receiver, a logging handler) may track:
        #: the record is queued, and the pipeline already running on the thread handles it,
        #: so a callback never re-enters the pipeline (no deadlock, no recursion).
        self.inside = threading.local()

    # -- lifecycle ---------------------------------------------------------------------------

    def ensure_started(self) -> None:
        with self._lock:
            if self.thread is not None or self.source.stop.requested:
                return
            thread = threading.Thread(target=self._run, name="moetrack-worker", daemon=True)
            self.thread = thread
        thread.start()

    def busy(self) -> bool:
        """Whether this thread is running the pipeline now (see :attr:`inside`)."""
        return getattr(self.inside, "active", False)

    def _run(self) -> None:
        self.inside.active = True  # callbacks on this thread that track only queue
        source, stop = self.source, self.source.stop
        while True:
            try:
                # Returns once stopping: the source is empty, the deadline passed, or a batch
                # was released because the deadline came first (nothing more is sent then).
                self.sender.run(source, stop)
            # Never let the worker die: log, and go on. BaseException too: only user code (a
            # callback calling sys.exit()) raises SystemExit on this thread, where it cannot
            # end the process but silently ended the worker.
            except BaseException:
                logger.exception("unexpected error in the worker; it continues")
                source.wait(0.1)
            if stop.requested:
                break
        self._finish()

    def _finish(self) -> None:
        self.source.give_up(self.sender.last_error, self.stop_timeout)
        with self._lock:
            self.exited.set()
            close = self._close_on_exit
        if close:  # shutdown() gave up waiting: close what it could not close under us
            self._close_now()

    def run_inline(self) -> None:
        """Sync mode: prepare and send what is queued, on the calling thread.

        No lock is held meanwhile. A callback that tracks on this thread only queues its
        record, and this loop sends it before returning.
        """
        if self.busy():
            return  # a callback of the pipeline running on this thread: it sends the record
        local = self.inside
        with self._lock:
            self._inline += 1
        local.active = True
        try:
            source, stop = self.source, self.source.stop
            self.sender.run_once(source, stop)
            while self.queue.size() and not stop.expired():  # what callbacks tracked meanwhile
                self.sender.run_once(source, stop)
        finally:
            local.active = False
            with self._lock:
                self._inline -= 1
                close = self._close_on_exit and not self._inline
                self._idle.notify_all()
            if close:  # shutdown() gave up waiting for this request: close after it
                self._close_now()

    # -- flush and stop (called from other threads) ------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        if self.busy():
            # A callback of this pipeline, on its own thread: waiting would wait for itself.
            return self.source.flush(0.0, self.exited)
        if self.thread is None and self.config.sync and not self.source.stop.requested:
            self.run_inline()
        return self.source.flush(timeout, self.exited)

    def stop(self, timeout: float) -> bool:
        """Flush within ``timeout`` seconds, then end the thread. True if nothing was lost."""
        source = self.source
        source.stop.request(timeout)
        self.stop_timeout = timeout
        with self._lock:
            thread = self.thread
        if thread is None:
            # Never started (sync mode, or nothing was queued): send what is left from here,
            # within the same deadline.
            try:
                if self.config.sync:
                    self.run_inline()
                    self._wait_for_inline(source.stop)
                else:
                    self.sender.run(source, source.stop)
            finally:
                self._finish()
        else:
            source.wake.set()
            # The send stage keeps to the deadline by itself: requests sent while stopping
            # have their timeout cut to it, waits end at it, and what is left is counted at
            # once. Only a request sent before stop() can outlast it.
            thread.join(timeout + STOP_GRACE)
        return self.source.held == 0 and self.queue.size() == 0

    def _wait_for_inline(self, stop: Stop) -> None:
        """Sync mode: wait, up to the stop's deadline, for the requests other callers have in
        flight, so that each record is counted once, as what became of it."""
        own = 1 if self.busy() else 0  # shutdown() called from a callback of a send
        with self._idle:
            while self._inline > own:
                remaining = stop.remaining()
                if remaining is not None and remaining <= 0:
                    return
                self._idle.wait(remaining)

    def close(self) -> bool:
        """Close the connections and stop scrubbing the key, once the thread has ended.

        If it is still running (a request sent before the stop outlasts it), it closes them
        itself when it ends, rather than have them closed under its request; so does the last
        caller sending inline in sync mode.
        """
        with self._lock:
            if (self.thread is not None and not self.exited.is_set()) or self._inline > (
                1 if self.busy() else 0
            ):
                self._close_on_exit = True
                return False
        self._close_now()
        return True

    def _close_now(self) -> None:
        try:
            self.sender.close()
        except Exception:
            logger.exception("closing the transport failed")
        self.reporter.close()


# -- processes forked by multiprocessing -------------------------------------------------------


def stop_when_multiprocessing_child_ends(worker: Worker) -> None:
    """Flush when a child forked by ``multiprocessing`` ends (a Pool worker, a Process).

    multiprocessing ends the processes it forks with ``os._exit()``, which skips ``atexit``:
    whatever such a child tracked in its last flush interval was lost without a word. Its own
    exit hook runs the finalizers registered after it has set the child up, so ask to
    register one at that point. Nothing happens when multiprocessing is not in use, or the
    child is killed (``Pool.terminate()``).
    """
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.register_after_fork(worker, _register_exit_finalizer)


def _register_exit_finalizer(worker: Worker) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _stop_at_child_exit, args=(worker,), exitpriority=0)


def _stop_at_child_exit(worker: Worker) -> None:
    if worker.source.stop.requested:
        return  # shut down already
    if not worker.stop(worker.config.shutdown_timeout):
        logger.error(
            "%d records not delivered when this process ended (shutdown timeout %gs)",
            worker.source.held + worker.queue.size(),
            worker.config.shutdown_timeout,
        )
