"""The emulator's read-only views: its state as JSON under ``/_emulator/`` and the web page.

::

    GET /_emulator/state                 everything for one app, with counts
    GET /_emulator/users                 customer_id -> merged attributes
    GET /_emulator/users/<customer_id>   attributes, devices and events (the timeline)
    GET /_emulator/devices               device_id -> {customer_id, attributes}
    GET /_emulator/events?customer_id=   accepted events in arrival order
    GET /_emulator/dropped               what Bulk Import dropped, and why
    GET /_emulator/requests              the request log (never a key)

Each takes ``?app_id=`` (default: the emulator's first app). Nothing here changes state.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from ._checks import ERRORS
from ._server import NOT_FOUND, Reply, fail, json_bytes


class Readable(Protocol):
    """What the views read of the emulator (the :class:`~moetrack.testing.Emulator` that
    serves them passes itself in)."""

    def _snapshot(self, app_id: str | None) -> dict[str, Any]: ...
    def users(self, app_id: str | None = None) -> dict[str, dict[str, Any]]: ...
    def user(self, customer_id: str, app_id: str | None = None) -> dict[str, Any] | None: ...
    def devices(self, app_id: str | None = None) -> dict[str, dict[str, Any]]: ...
    def events(
        self, customer_id: str | None = None, app_id: str | None = None
    ) -> list[dict[str, Any]]: ...
    def dropped(self, app_id: str | None = None) -> list[dict[str, Any]]: ...
    def requests(self) -> list[dict[str, Any]]: ...


__all__ = ["page", "read_api"]

_PAGE_MODULE = __name__.rpartition(".")[0] + "._page"  # beside this module, whatever the package
_FALLBACK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>moetrack emulator</title></head>
<body><h1>moetrack emulator</h1>
<p>The MoEngage Data API emulator is running. Its state, as JSON:</p>
<ul>
<li><a href="/_emulator/state">/_emulator/state</a></li>
<li><a href="/_emulator/users">/_emulator/users</a></li>
<li><a href="/_emulator/devices">/_emulator/devices</a></li>
<li><a href="/_emulator/events">/_emulator/events</a></li>
<li><a href="/_emulator/dropped">/_emulator/dropped</a></li>
<li><a href="/_emulator/requests">/_emulator/requests</a></li>
</ul></body></html>
"""


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def read_api(emulator: Readable, target: str) -> Reply:
    """Answer ``GET /_emulator/...``; 404 for an unknown view, user or app."""
    url = urlsplit(target)
    query = parse_qs(url.query)
    app_id = _first(query, "app_id")
    parts = url.path.rstrip("/").split("/")[2:]  # after "/_emulator"
    try:
        if parts == ["state"]:
            data: Any = emulator._snapshot(app_id)
        elif parts == ["users"]:
            data = emulator.users(app_id)
        elif len(parts) == 2 and parts[0] == "users":
            customer_id = unquote(parts[1])
            attributes = emulator.user(customer_id, app_id)
            if attributes is None:
                return fail(NOT_FOUND, f"no user {customer_id!r}")
            data = {
                "customer_id": customer_id,
                "attributes": attributes,
                "devices": {
                    device_id: device
                    for device_id, device in emulator.devices(app_id).items()
                    if device["customer_id"] == customer_id
                },
                "events": emulator.events(customer_id, app_id),
            }
        elif parts == ["devices"]:
            data = emulator.devices(app_id)
        elif parts == ["events"]:
            data = emulator.events(_first(query, "customer_id"), app_id)
        elif parts == ["dropped"]:
            data = emulator.dropped(app_id)
        elif parts == ["requests"]:
            data = [r for r in emulator.requests() if app_id is None or r["app_id"] == app_id]
        else:
            return fail(NOT_FOUND)
    except KeyError:  # an unknown app_id
        return fail(ERRORS["invalid_app_id"]._replace(status=404))
    return Reply(200, json_bytes(data))


def page() -> Reply:
    """The web page (``moetrack.testing._page``), or a list of links when it is missing."""
    try:
        module = importlib.import_module(_PAGE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _PAGE_MODULE:
            raise
        html = _FALLBACK_PAGE
    else:
        html = module.render_page()
    return Reply(200, str(html).encode("utf-8"), "text/html; charset=utf-8")
