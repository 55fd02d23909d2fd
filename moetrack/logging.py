"""Events from the logs you already write: a ``logging`` handler and a structlog processor.

::

    import logging, moetrack
    from moetrack.logging import EventHandler

    moetrack.init()
    events = logging.getLogger("events")
    events.addHandler(EventHandler())
    events.info("Purchase", extra={"customer_id": user.id, "price": 3999})

:class:`EventHandler` turns each log record it handles into one ``track()`` call on the
caller's thread, so the ambient context applies exactly as for ``moetrack.track()``.
:class:`StructlogProcessor` (and the ready-made :data:`structlog_processor`) does the same for
structlog event dicts. Neither imports structlog unless asked to drop events.

Records of the ``moetrack`` logger (and its children), records logged on moetrack's own
threads (the delivery worker, where the HTTP client logs its requests), and records logged
while one of these is already tracking on the same thread are never tracked: nothing can loop.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from . import _api
from ._exceptions import ValidationError
from ._report import logger
from ._wire import records as _records

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["EventHandler", "StructlogProcessor", "structlog_processor"]

#: Keyword arguments of ``track()`` recognised in a record's extra or an event dict.
ACTION_FIELDS = (_records.ACTION_FIELDS - {"action", "attributes"}) | {"customer_id", "device_id"}
#: Where each of them goes in ``Client._track_fields``'s list (the order of track()'s).
_FIELD_SLOTS = {
    name: slot
    for slot, name in enumerate(
        (
            "customer_id",
            "device_id",
            "platform",
            "app_version",
            "current_time",
            "user_time",
            "user_timezone_offset",
        )
    )
}
_CURRENT_TIME = _FIELD_SLOTS["current_time"]

_BLANK_RECORD = vars(logging.LogRecord("", logging.NOTSET, "", 0, "", (), None))
#: The attributes every ``LogRecord`` has; whatever else a record carries came from ``extra``
#: (or from a record factory).
STANDARD_RECORD_ATTRIBUTES = frozenset((*_BLANK_RECORD, "message", "asctime", "taskName"))
# ``extra`` is written into a record after ``LogRecord.__init__`` set its attributes, and a
# dict keeps insertion order: reading the keys from the last one back, the extra fields end
# where the first attribute set by ``__init__`` is met (a formatter's ``message`` and
# ``asctime`` may come after them).
_INIT_KEYS = frozenset(_BLANK_RECORD)
del _BLANK_RECORD

#: Keys structlog uses for its own bookkeeping, never tracked as attributes.
STRUCTLOG_INTERNAL_KEYS = frozenset(
    ("event", "_record", "_from_structlog", "exc_info", "stack_info", "positional_args")
)

_OWN_LOGGER = "moetrack"
_OWN_LOGGER_PREFIX = "moetrack."
_OWN_THREAD_PREFIX = "moetrack-"


class _Tracking(threading.local):
    """True while a record or event dict is being tracked on this thread (a sync client sends
    inside track(), and the HTTP client logs while it does)."""

    active = False


_tracking = _Tracking()


def _own_record(record: logging.LogRecord) -> bool:
    """Whether ``record`` comes from moetrack itself: its logger, or one of its threads."""
    name = record.name
    if name == _OWN_LOGGER or name.startswith(_OWN_LOGGER_PREFIX):
        return True
    thread = record.threadName
    if thread is None:  # logging.logThreads is off: the record is handled where it was logged
        thread = threading.current_thread().name
    return thread.startswith(_OWN_THREAD_PREFIX)


class EventHandler(logging.Handler):
    """A ``logging.Handler`` that tracks each record it handles as one event.

    - The action is the record's unformatted ``msg`` (``"Refund %s"`` stays as written), or
      ``action(record)`` when given; a ``None`` action skips the record.
    - The attributes are the record's ``extra`` fields: everything on the record that a blank
      ``LogRecord`` does not have. ``attributes(record)`` may return the mapping instead;
      keys in it are attributes, even one called ``platform``.
    - ``customer_id``, ``device_id``, ``platform``, ``app_version``, ``current_time``,
      ``user_time`` and ``user_timezone_offset`` in ``extra`` fill those fields of the event;
      the ambient context applies as for ``track()``.
    - ``current_time`` is the record's ``created`` time in whole epoch seconds (unless
      ``extra`` names one).
    - ``client`` is the :class:`~moetrack.Client` to track on; by default the default client,
      looked up when each record is emitted (so the handler may be configured before
      :func:`moetrack.init`).

    ``emit()`` is one ``track()`` call: no formatting, no I/O. It never raises; a failure is
    passed to :meth:`handleError`, which follows ``logging.raiseExceptions``. Records of the
    ``moetrack`` logger and of moetrack's own threads are never tracked.

    ``dictConfig`` builds it from ``{"class": "moetrack.logging.EventHandler", ...}``; the
    keyword arguments go beside ``class`` (``ext://`` paths work for the callables and the
    client).
    """

    def __init__(
        self,
        level: int | str = logging.INFO,
        *,
        client: Client | None = None,
        action: Callable[[logging.LogRecord], str | None] | None = None,
        attributes: Callable[[logging.LogRecord], Mapping[str, Any] | None] | None = None,
    ) -> None:
        super().__init__(level)
        self.client = client
        self.action = action
        self.attributes = attributes

    def emit(self, record: logging.LogRecord) -> None:
        """Track ``record`` as one event (nothing for moetrack's own records)."""
        if _own_record(record):
            return
        try:
            client = self.client
            if client is None:
                client = _api._default or _api.get_client()
            if client._sync or client._strict:
                # A sync client sends inside track(), and the HTTP client logs as it does; a
                # strict one runs before_send inside track(), which may log.
                if _tracking.active:
                    return
                _tracking.active = True
                try:
                    self._track(client, record)
                finally:
                    _tracking.active = False
            else:
                self._track(client, record)
        except Exception:
            self.handleError(record)

    def _track(self, client: Client, record: logging.LogRecord) -> None:
        action: str | None
        if self.action is None:
            msg = record.msg
            action = msg if type(msg) is str else str(msg)
        else:
            action = self.action(record)
            if action is None:
                return
        # The extra fields: whatever logging set after the attributes every record has.
        values = record.__dict__
        extra: list[str] = []
        for key in reversed(values):
            if key in _INIT_KEYS:
                break
            extra.append(key)
        fields: list[Any] = [None] * len(_FIELD_SLOTS)
        attrs: dict[str, Any] = {}
        slot_of = _FIELD_SLOTS.get
        for key in reversed(extra):
            slot = slot_of(key)
            if slot is not None:
                fields[slot] = values[key]
            elif key not in STANDARD_RECORD_ATTRIBUTES:
                attrs[key] = values[key]
        if self.attributes is not None:
            mapping = self.attributes(record)
            attrs = {} if mapping is None else dict(mapping)
        if fields[_CURRENT_TIME] is None:
            fields[_CURRENT_TIME] = int(record.created)
        client._track_fields(action, attrs, fields)


class StructlogProcessor:
    """A structlog processor that tracks each event dict as one event.

    ``event`` is the action (or ``action(event_dict)``; ``None`` skips the event). The other
    keys are the attributes (or ``attributes(event_dict)``), except ``customer_id``,
    ``device_id``, ``platform``, ``app_version``, ``current_time``, ``user_time`` and
    ``user_timezone_offset``, which fill those fields, and structlog's own bookkeeping keys
    (``exc_info``, ``stack_info``, ``positional_args``, ``_record``, ``_from_structlog``).
    The ambient context applies as for ``track()``; the time is the time of the call. Like the
    handler, it never tracks moetrack's own records (met in a ``ProcessorFormatter``'s
    ``foreign_pre_chain``) or anything logged on moetrack's threads.

    The event dict is passed on unchanged; with ``drop=True`` (as the last processor) it is
    dropped after tracking, so the line goes to MoEngage and nowhere else. A tracking problem
    is logged on the ``moetrack`` logger and the event dict still passed on (in strict mode, a
    :class:`~moetrack.ValidationError` is raised, as ``track()`` raises it).
    """

    def __init__(
        self,
        *,
        client: Client | None = None,
        drop: bool = False,
        action: Callable[[MutableMapping[str, Any]], str | None] | None = None,
        attributes: Callable[[MutableMapping[str, Any]], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.client = client
        self.drop = drop
        self.action = action
        self.attributes = attributes
        self._drop_event: type[BaseException] | None = None
        if drop:
            from structlog import DropEvent  # the only place structlog is needed

            self._drop_event = DropEvent

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        # A stdlib record (structlog's ProcessorFormatter) carries the LogRecord as _record.
        record = event_dict.get("_record")
        if not (
            _tracking.active
            or threading.current_thread().name.startswith(_OWN_THREAD_PREFIX)
            or (isinstance(record, logging.LogRecord) and _own_record(record))
        ):
            _tracking.active = True
            try:
                self._track(event_dict)
            finally:
                _tracking.active = False
        if self._drop_event is not None:
            raise self._drop_event
        return event_dict

    def _track(self, event_dict: MutableMapping[str, Any]) -> None:
        client = self.client
        try:
            if client is None:
                client = _api._default or _api.get_client()
            action: str | None
            if self.action is None:
                # No event at all: tracked as "", which validation drops and counts.
                event = event_dict.get("event")
                action = "" if event is None else event if type(event) is str else str(event)
            else:
                action = self.action(event_dict)
                if action is None:
                    return
            fields: dict[str, Any] = {}
            mapping: Mapping[str, Any] | None
            if self.attributes is None:
                attrs: dict[str, Any] = {}
                for key, value in event_dict.items():
                    if key in ACTION_FIELDS:
                        fields[key] = value
                    elif key not in STRUCTLOG_INTERNAL_KEYS:
                        attrs[key] = value
                mapping = attrs or None
            else:
                for key in event_dict.keys() & ACTION_FIELDS:
                    fields[key] = event_dict[key]
                mapping = self.attributes(event_dict)
            client.track(action, mapping, **fields)
        except ValidationError:
            if client is not None and client.config.strict:
                raise
            self._problem(client)
        except Exception:
            self._problem(client)

    def _problem(self, client: Client | None) -> None:
        # Called inside an ``except`` block: the exception being handled is the cause.
        error = sys.exc_info()[1]
        detail = f"{type(error).__name__}: {error}"
        try:
            if client is not None:
                client._reporter.log(
                    logging.WARNING,
                    "structlog:" + type(error).__name__,
                    "the structlog processor could not track an event (%s)",
                    detail,
                )
                return
        except Exception:
            pass
        logger.warning("the structlog processor could not track an event (%s)", detail)

    def __repr__(self) -> str:
        return f"<moetrack.logging.StructlogProcessor drop={self.drop}>"


#: A pass-through processor on the default client: ``processors=[..., structlog_processor, ...]``.
structlog_processor = StructlogProcessor()
