"""A WSGI app for the preforking-server tests (uWSGI, gunicorn): one event per request.

The server imports it in its master before forking workers (unless told to load it in each
worker): ``moetrack.init()`` runs there, and the ``Boot`` events tracked at import belong to
the master. Each must arrive exactly once, and so must every request's event.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import moetrack

BOOT_EVENTS = 10
LOADED_IN = os.getpid()

client = moetrack.init(flush_interval=0.2)
for n in range(BOOT_EVENTS):
    moetrack.track("Boot", customer_id="prefork-master", n=n, pid=LOADED_IN)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    rid = int(query.get("rid", ["-1"])[0])
    if rid >= 0:
        moetrack.track("Request", customer_id=f"web-user-{rid % 5}", rid=rid, pid=os.getpid())
    body = json.dumps({"pid": os.getpid(), "loaded_in": LOADED_IN}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


app = application
