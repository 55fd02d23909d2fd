"""The unit of the wire: the three kinds of element and :class:`Item`, one validated element
(or one event action) already encoded, as records produce it and packing consumes it."""

from __future__ import annotations

__all__ = ["DEVICE", "EVENT", "USER", "Item"]

EVENT = 0
USER = 1
DEVICE = 2


class Item:
    """One validated element (or one event action) as encoded JSON, ready to pack."""

    __slots__ = ("customer_id", "device_id", "kind", "payload", "ref")

    def __init__(
        self,
        kind: int,
        customer_id: str,
        device_id: str | None,
        payload: bytes,
        ref: object = None,
    ) -> None:
        self.kind = kind
        self.customer_id = customer_id
        self.device_id = device_id
        #: EVENT: the action object; USER/DEVICE: the whole element.
        self.payload = payload
        #: The source's handle on this item (a position, a stream entry id, a line number).
        self.ref = ref

    def __repr__(self) -> str:
        return f"Item({self.kind}, {self.customer_id!r}, {self.payload[:60]!r})"
