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

__all__ = ["MemoryQueue", "RecordQueue"]


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
