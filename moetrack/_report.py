"""How problems and progress are reported: counters, signals, ``on_error`` and the logger.

Everything the library wants to say goes through one :class:`Reporter`, so the rules hold in
one place: log records are rate-limited per kind of problem and scrubbed of the API key;
signals are built only when they have receivers; a failing ``on_error`` or signal receiver is
logged and never reaches the worker or the caller.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import signals
from ._exceptions import MoetrackError

if TYPE_CHECKING:
    from blinker import NamedSignal

__all__ = ["Reporter", "SecretFilter", "logger"]

logger = logging.getLogger("moetrack")
#: Seconds between two log records about the same kind of problem.
LOG_INTERVAL = 10.0


class SecretFilter(logging.Filter):
    """Replaces the secrets of every live client in a ``moetrack`` log record with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self._owners: weakref.WeakKeyDictionary[object, tuple[str, ...]] = (
            weakref.WeakKeyDictionary()
        )

    def add(self, owner: object, secrets: Iterable[str]) -> None:
        self._owners[owner] = tuple(s for s in secrets if s)

    def remove(self, owner: object) -> None:
        self._owners.pop(owner, None)

    def _secrets(self) -> set[str]:
        return {s for secrets in list(self._owners.values()) for s in secrets}

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets()
        if not secrets:
            return True
        message = record.getMessage()
        scrubbed = message
        for secret in secrets:
            scrubbed = scrubbed.replace(secret, "***")
        if scrubbed != message or record.exc_info:
            record.msg, record.args = scrubbed, None
            if record.exc_info:
                # A traceback is formatted later from exc_info; fold it in scrubbed now.
                text = logging.Formatter().formatException(record.exc_info)
                for secret in secrets:
                    text = text.replace(secret, "***")
                record.msg = f"{scrubbed}\n{text}"
                record.exc_info = None
                record.exc_text = None
        return True


secret_filter = SecretFilter()
logger.addFilter(secret_filter)


class Reporter:
    """Logs (rate-limited), calls ``on_error`` and sends signals for one client."""

    def __init__(self, sender: Any, on_error: Any, secrets: Iterable[str]) -> None:
        self._sender = sender
        self._on_error = on_error
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()
        secret_filter.add(self, secrets)

    def close(self) -> None:
        """The client is shut down: its key need no longer be scrubbed from records."""
        secret_filter.remove(self)

    def log(self, level: int, key: str, message: str, *args: Any) -> None:
        """Log at most one record per ``key`` every LOG_INTERVAL seconds, counting the rest."""
        if not logger.isEnabledFor(level):
            return
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < LOG_INTERVAL:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        logger.log(level, message, *args)

    def after_fork_in_child(self) -> None:
        # Another thread of the parent may have held the lock at the fork.
        self._lock = threading.Lock()

    def error(self, error: MoetrackError) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(error)
        except BaseException:  # even SystemExit: user code must not stop the worker
            logger.exception("the on_error callback raised")

    def dropped(self, reason: str, error: MoetrackError | None, count: int = 1) -> None:
        """Report ``count`` records dropped for ``reason``, the same way for every drop: a log
        record and ``on_error`` (when there is an error to tell), and the ``element_dropped``
        signal. Counting them is the source's business (``stats().dropped``)."""
        if error is not None:
            if count == 1:
                self.log(logging.WARNING, "drop:" + reason, "dropped an element: %s", error)
            else:
                self.log(logging.WARNING, "drop:" + reason, "%s", error)
            self.error(error)
        self.emit("element_dropped", reason=reason, error=error, count=count)

    def emit(self, name: str, **kwargs: Any) -> None:
        """Send the signal ``name`` if anyone could be listening (no blinker import if not)."""
        if signals.built:
            self.signal(getattr(signals, name), **kwargs)

    def signal(self, signal: NamedSignal, **kwargs: Any) -> None:
        if not signal.receivers:
            return
        try:
            signal.send(self._sender, **kwargs)
        except BaseException:  # even SystemExit: user code must not stop the worker
            logger.exception("a receiver of the %r signal raised", signal.name)
