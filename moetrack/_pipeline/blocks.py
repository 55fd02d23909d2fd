"""Prepared items held compactly, in order, until the sender takes them.

The preparer turns each chunk of records into one *block*: a tuple of the chunk's positions
(a ``range`` when none of its records was dropped), kinds (``bytes``), customer ids, device
ids (None when none has one) and encoded payloads. A block holds only atomic values, so the
garbage collector stops tracking it after its first collection: a backlog of 100,000 events
adds nothing to a full collection, and an event waits in its payload plus about 70 bytes.
The sender's :class:`~moetrack._wire.item.Item` objects are made as it takes them, one
batch at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TypeAlias

from .._wire.item import Item

__all__ = ["ITEM_OVERHEAD", "Block", "Blocks", "block"]

#: What one waiting item costs beyond its encoded bytes: the bytes object's header and its
#: share of the block (an Item while its batch is in flight).
ITEM_OVERHEAD = 72

#: Positions, kinds, customer ids, device ids (None when none has one) and payloads.
Block: TypeAlias = tuple[
    Sequence[int], bytes, tuple[str, ...], "tuple[str | None, ...] | None", tuple[bytes, ...]
]


def block(
    start: int,
    span: int,
    positions: list[int],
    columns: tuple[list[int], list[str], list[str | None], list[bytes]],
) -> Block:
    """One block: ``span`` records from position ``start`` were prepared into the items at
    ``positions`` (kinds, customer ids, device ids and payloads in ``columns``)."""
    kinds, customers, devices, payloads = columns
    return (
        range(start, start + span) if len(positions) == span else tuple(positions),
        bytes(kinds),
        tuple(customers),
        tuple(devices) if any(d is not None for d in devices) else None,
        tuple(payloads),
    )


class Blocks:
    """The ready items, oldest first. Not thread-safe: its owner holds a lock."""

    __slots__ = ("_blocks", "_head")

    def __init__(self) -> None:
        self._blocks: deque[Block] = deque()
        self._head = 0  # items of the first block taken already

    def __bool__(self) -> bool:
        return bool(self._blocks)

    def append(self, ready: Block) -> None:
        self._blocks.append(ready)

    def first_position(self) -> int:
        """The position of the oldest ready item (there must be one)."""
        return self._blocks[0][0][self._head]

    def take(self, limit: int, out: dict[int, Item]) -> list[Item]:
        """Up to ``limit`` items, oldest first, each also entered in ``out`` by position."""
        blocks = self._blocks
        items: list[Item] = []
        append = items.append
        while blocks and len(items) < limit:
            positions, kinds, customers, devices, payloads = blocks[0]
            first = self._head
            end = min(len(positions), first + limit - len(items))
            for i in range(first, end):
                position = positions[i]
                item = Item(
                    kinds[i],
                    customers[i],
                    None if devices is None else devices[i],
                    payloads[i],
                    position,
                )
                out[position] = item
                append(item)
            if end == len(positions):
                blocks.popleft()
                self._head = 0
            else:
                self._head = end
        return items

    def unshift(self, items: list[Item]) -> None:
        """Put items taken back in front, in position order (``items`` is sorted)."""
        blocks = self._blocks
        if blocks and self._head:
            positions, kinds, customers, devices, payloads = blocks[0]
            h = self._head
            blocks[0] = (
                positions[h:],
                kinds[h:],
                customers[h:],
                None if devices is None else devices[h:],
                payloads[h:],
            )
            self._head = 0
        refs: list[int] = [item.ref for item in items]  # type: ignore[misc]
        blocks.appendleft(
            block(
                refs[0],
                refs[-1] - refs[0] + 1,
                refs,
                (
                    [item.kind for item in items],
                    [item.customer_id for item in items],
                    [item.device_id for item in items],
                    [item.payload for item in items],
                ),
            )
        )

    def clear(self) -> None:
        self._blocks.clear()
        self._head = 0
