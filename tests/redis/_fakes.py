"""A list-backed Source for driving the backlog writer and relay pieces directly."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from moetrack._exceptions import MoetrackError
from moetrack._wire.encode import dumps
from moetrack._wire.records import EVENT, Item


def event(customer: str, n: int, device: str | None = None) -> Item:
    return Item(EVENT, customer, device, dumps({"action": "Step", "attributes": {"n": n}}))


class ListSource:
    """Hands out its items in order; records every settlement."""

    def __init__(self, items: Sequence[Item] = ()) -> None:
        self.items: deque[Item] = deque(items)
        self.acked: list[Item] = []
        self.failed: list[tuple[Item, MoetrackError, str | None]] = []
        self.released: list[Item] = []
        self.waits = 0
        self.ended = False
        self.cond = threading.Condition()

    def put(self, *items: Item) -> None:
        with self.cond:
            self.items.extend(items)
            self.cond.notify_all()

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def take(self, limit: int, timeout: float) -> list[Item] | None:
        with self.cond:
            self.cond.wait_for(lambda: self.items or self.ended, timeout)
            if not self.items:
                return None if self.ended else []
            return [self.items.popleft() for _ in range(min(limit, len(self.items)))]

    def due(self) -> bool:
        return not self.items

    def ack(self, items: Sequence[Item]) -> None:
        with self.cond:
            self.acked.extend(items)
            self.cond.notify_all()

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        with self.cond:
            self.failed.extend((item, error, reason) for item in items)
            self.cond.notify_all()

    def release(self, items: Sequence[Item]) -> None:
        with self.cond:
            self.released.extend(items)
            self.cond.notify_all()

    def wait(self, seconds: float) -> None:
        with self.cond:
            self.waits += 1
            self.cond.notify_all()
            self.cond.wait(seconds)

    def wait_for(self, predicate: object, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)  # type: ignore[arg-type]
