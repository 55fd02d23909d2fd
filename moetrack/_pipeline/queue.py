"""Where records wait between the caller and the worker.

:class:`RecordQueue` is the interface a backend implements (a durable or shared one can
replace the in-memory default). The hot path calls ``put`` and ``size`` once per record, so
:class:`MemoryQueue` binds them straight to a :class:`collections.deque`'s C methods:
``append`` and ``popleft`` are atomic under the GIL, and no lock is taken per record.
Capacity is enforced by the client, which also counts what the worker already holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from .._wire.item import EVENT
from .blocks import ITEM_OVERHEAD

__all__ = [
    "SAMPLE",
    "TAKE_CHUNK",
    "WAKE_BYTES",
    "WAKE_RECORDS",
    "MemoryQueue",
    "RecordQueue",
    "estimate",
]

#: While a backlog builds up, callers estimate one queued record in SAMPLE (a power of two).
SAMPLE = 8
#: Records the worker takes from the queue at a time (well under a slice of work): between
#: two chunks it looks whether its slice is used up.
TAKE_CHUNK = 16
#: Callers wake the worker once this many records wait, so that records are prepared a few
#: score at a time as they arrive (about half a millisecond of work, in slices). Every
#: wake-up costs the application a thread switch and the interpreter handed over and back:
#: beside four request threads, waking it every 16 records cost more CPU than preparing
#: them. Fewer records wait until the flush interval, when the worker wakes by itself.
WAKE_RECORDS = 128
#: Callers also wake the worker once this many bytes are estimated to wait in the queue, so
#: a burst of large records is prepared, and counted exactly, soon.
WAKE_BYTES = 1 << 20
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


class RecordQueue(Protocol):
    #: Add one record; never blocks.
    put: Callable[[Any], None]
    #: How many records wait.
    size: Callable[[], int]

    def take(self, limit: int) -> list[Any]:
        """Remove and return up to ``limit`` records, oldest first."""


class MemoryQueue:
    """A FIFO of records in this process's memory."""

    __slots__ = ("_deque", "put", "size")

    def __init__(self) -> None:
        self._deque: deque[Any] = deque()
        self.put: Callable[[Any], None] = self._deque.append
        self.size: Callable[[], int] = self._deque.__len__

    def take(self, limit: int) -> list[Any]:
        popleft = self._deque.popleft
        out = []
        try:
            for _ in range(limit):
                out.append(popleft())
        except IndexError:
            pass
        return out
