"""``capture()``: record what moetrack would send, with no HTTP and no emulator.

::

    from moetrack.testing import capture

    def test_checkout_tracks_a_purchase():
        with capture() as sent:
            checkout(cart, amount=3999)
        assert sent.events[0]["action"] == "Purchase"
        assert sent.events[0]["customer_id"] == "user-42"

Inside the block the default client (the one ``moetrack.track()`` uses) is replaced by a
synchronous client whose transport keeps each request body instead of sending it, so every
call is validated, packed and recorded before it returns. The previous default client is put
back on exit. Not thread-safe across concurrent captures (like structlog's
``capture_logs``): use one capture at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .. import _api, signals
from .._client import Client
from .._wire.transport import Response

__all__ = ["CaptureTransport", "Captured", "capture"]

_OK = b'{"status":"success"}'


class CaptureTransport:
    """A transport that keeps every request body and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        """Keep ``body`` and answer 200 with the Data API's success body; nothing is sent."""
        self.bodies.append(body)
        return Response(200, {}, _OK)

    def close(self) -> None:
        """Nothing to release: the bodies stay readable after the client is shut down."""


class Captured:
    """What was captured: request bodies, elements, and drops with their reasons."""

    def __init__(self, transport: CaptureTransport) -> None:
        self._transport = transport
        #: ``(reason, error)`` for every record dropped inside the block.
        self.dropped: list[tuple[str, Exception | None]] = []

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """Each request body, parsed."""
        return [json.loads(b) for b in self._transport.bodies]

    @property
    def elements(self) -> list[dict[str, Any]]:
        """Every element of every body, in the order sent (``type`` is ``customer``,
        ``device`` or ``event``)."""
        return [e for body in self.bodies for e in body["elements"]]

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every action, flattened, with its element's ``customer_id`` and ``device_id``."""
        out = []
        for element in self.elements:
            if element["type"] == "event":
                for action in element["actions"]:
                    out.append(
                        {
                            "customer_id": element["customer_id"],
                            "device_id": element.get("device_id"),
                            **action,
                        }
                    )
        return out

    @property
    def users(self) -> list[dict[str, Any]]:
        """The customer elements (from ``identify()``), as sent."""
        return [e for e in self.elements if e["type"] == "customer"]

    @property
    def devices(self) -> list[dict[str, Any]]:
        """The device elements (from ``device()``), as sent."""
        return [e for e in self.elements if e["type"] == "device"]


@contextmanager
def capture(**options: Any) -> Iterator[Captured]:
    """Replace the default client with a capturing one for the ``with`` block.

    ``options`` are client options (``strict=True``, ``before_send=…``); rate limits are off
    and every call is processed before it returns.
    """
    transport = CaptureTransport()
    options = {
        "users_per_minute": None,
        "events_per_minute": None,
        **options,
        "sync": True,
        "transport": transport,
    }
    client = Client("CAPTURE", "capture", endpoint="http://127.0.0.1:9", environ={}, **options)
    captured = Captured(transport)

    def on_drop(sender: Any, **kw: Any) -> None:
        if sender is client:
            captured.dropped.append((kw["reason"], kw["error"]))

    signals.element_dropped.connect(on_drop)
    with _api._lock:
        previous, _api._default = _api._default, client
    try:
        yield captured
    finally:
        with _api._lock:
            _api._default = previous
        signals.element_dropped.disconnect(on_drop)
        client.shutdown(1.0)
