"""JSON encoding, and exact byte packing of ``transition`` bodies.

A body is ``{"type":"transition","elements":[E1,E2,…]}``. Event actions of one
``(customer_id, device_id)`` share one event element
``{"type":"event","customer_id":…,"device_id":…,"actions":[A1,A2,…]}`` while no user or
device element of that customer stands between them ("where order allows", DESIGN §4). The
packer adds up the exact byte length of the body it will produce, so a body is never one
byte over the limit and the batch's user and event counts are known before the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .item import EVENT, Item

__all__ = ["Batch", "Packer", "dumps", "min_body_size"]


def _make_json_dumps() -> Callable[[Any], bytes]:
    """The standard library's C encoder, built once.

    ``JSONEncoder.encode`` builds a new C encoder object on every call, which is most of its
    cost for small objects; building it once halves the time per element. Values reach the
    encoder already normalised (``_validate``), so it needs no ``default`` and no cycle check.
    """
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C accelerator
        import json

        encode = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
        ).encode
        return lambda obj: encode(obj).encode("utf-8")

    def refuse(obj: Any) -> Any:
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    c_encode = make(None, refuse, encoder.encode_basestring, None, ":", ",", False, False, False)
    join = "".join

    def dumps_c(obj: Any) -> bytes:
        return join(c_encode(obj, 0)).encode("utf-8")

    return dumps_c


def _dumps_first(obj: Any) -> bytes:
    """Pick the encoder on first use (so ``import moetrack`` never imports orjson)."""
    global dumps
    try:
        import orjson
    except ImportError:
        dumps = _make_json_dumps()
    else:
        orjson_dumps = orjson.dumps

        def _dumps_orjson(obj: Any) -> bytes:
            # orjson's bytes object keeps the whole buffer it wrote into (4 KiB at least,
            # 8 KiB for 1 KB of JSON), and encoded items wait in the backlog: 5,000 of them
            # held 45 MB. A copy is allocated to size (~0.6 µs per item).
            return bytes(memoryview(orjson_dumps(obj)))

        dumps = _dumps_orjson
    return dumps(obj)


#: Compact UTF-8 JSON; orjson when the ``moetrack[orjson]`` extra is installed. Call it as
#: ``_encode.dumps`` (a module attribute): it rebinds itself on first use.
dumps: Callable[[Any], bytes] = _dumps_first

_BODY_HEAD = b'{"type":"transition","elements":['
_BODY_TAIL = b"]}"
_BODY_OVERHEAD = len(_BODY_HEAD) + len(_BODY_TAIL)
_EVENT_TAIL = b"]}"


_heads: dict[tuple[str, str | None], bytes] = {}
#: Distinct (customer_id, device_id) heads remembered; the cache is emptied past this.
_HEADS_MAX = 4096


def event_head(customer_id: str, device_id: str | None) -> bytes:
    """The bytes of an event element before its first action (remembered per customer)."""
    key = (customer_id, device_id)
    head = _heads.get(key)
    if head is None:
        head = b'{"type":"event","customer_id":' + dumps(customer_id)
        if device_id is not None:
            head += b',"device_id":' + dumps(device_id)
        head += b',"actions":['
        if len(_heads) >= _HEADS_MAX:
            _heads.clear()
        _heads[key] = head
    return head


def min_body_size(kind: int, customer_id: str, device_id: str | None, payload: bytes) -> int:
    """Bytes of the smallest body that can carry this one item."""
    if kind == EVENT:
        return (
            _BODY_OVERHEAD
            + len(event_head(customer_id, device_id))
            + len(payload)
            + len(_EVENT_TAIL)
        )
    return _BODY_OVERHEAD + len(payload)


class Batch:
    """The items of one request and their body, with its size and counts."""

    __slots__ = ("body", "events", "items", "users")

    def __init__(self, items: list[Item], body: bytes, users: int, events: int) -> None:
        self.items = items
        self.body = body
        self.users = users
        self.events = events

    def __len__(self) -> int:
        return len(self.items)


class Packer:
    """Fills one body up to ``max_bytes``, ``max_records``, and the users/events caps.

    ``add(item)`` returns False when the item does not fit; the caller then takes the batch
    with :meth:`take` and starts the next one. Sizes are exact: ``len(take().body)`` equals
    the running :attr:`size`.
    """

    __slots__ = (
        "_elements",
        "_open",
        "events",
        "items",
        "max_bytes",
        "max_events",
        "max_records",
        "max_users",
        "size",
        "users",
    )

    def __init__(
        self,
        max_bytes: int,
        max_records: int,
        max_users: int | None = None,
        max_events: int | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.max_users = max_users
        self.max_events = max_events
        self._reset()

    def _reset(self) -> None:
        self.items: list[Item] = []
        # Elements in order: a user or device element's bytes, or an event element's bytes
        # so far (its head and actions, without the tail), growing in place. Neither holds a
        # reference, so a batch being filled adds no object for the garbage collector to walk
        # but this list and the dicts below.
        self._elements: list[bytes | bytearray] = []
        # customer_id -> device_id -> the event element still open for more actions
        self._open: dict[str, dict[str | None, bytearray]] = {}
        self.size = _BODY_OVERHEAD
        self.users = 0
        self.events = 0

    def add(self, item: Item) -> bool:
        if len(self.items) >= self.max_records:
            return False
        comma = 1 if self._elements else 0
        if item.kind == EVENT:
            if self.max_events is not None and self.events >= self.max_events:
                return False
            by_device = self._open.get(item.customer_id)
            element = by_device.get(item.device_id) if by_device is not None else None
            if element is not None:  # it holds one action at least: a comma, then this one
                grow = 1 + len(item.payload)
                if self.size + grow > self.max_bytes:
                    return False
                element += b","
                element += item.payload
            else:
                head = event_head(item.customer_id, item.device_id)
                grow = comma + len(head) + len(item.payload) + len(_EVENT_TAIL)
                if self.size + grow > self.max_bytes:
                    return False
                element = bytearray(head)
                element += item.payload
                self._elements.append(element)
                if by_device is None:
                    self._open[item.customer_id] = {item.device_id: element}
                else:
                    by_device[item.device_id] = element
            self.events += 1
        else:
            if self.max_users is not None and self.users >= self.max_users:
                return False
            grow = comma + len(item.payload)
            if self.size + grow > self.max_bytes:
                return False
            self._elements.append(item.payload)
            # Later actions of this customer must not move before this element.
            self._open.pop(item.customer_id, None)
            self.users += 1
        self.size += grow
        self.items.append(item)
        return True

    def take(self) -> Batch:
        elements = self._elements
        for element in elements:
            if type(element) is bytearray:
                element.extend(_EVENT_TAIL)  # closed: the batch is taken
        body = _BODY_HEAD + b",".join(elements) + _BODY_TAIL
        batch = Batch(self.items, body, self.users, self.events)
        self._reset()
        return batch

    def __len__(self) -> int:
        return len(self.items)

    def pack_all(self, items: Iterable[Item]) -> list[Batch]:
        """Pack ``items`` in order into as many batches as they need."""
        batches = []
        for item in items:
            if not self.add(item):
                batches.append(self.take())
                if not self.add(item):  # prepare() guarantees one item fits an empty body
                    raise AssertionError("an item larger than an empty batch reached the packer")
        if self.items:
            batches.append(self.take())
        return batches
