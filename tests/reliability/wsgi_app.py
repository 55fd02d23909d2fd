"""A tiny WSGI app for the gunicorn test: tracks one event per request, and some at import.

With ``--preload`` gunicorn imports it once, in the master, before forking its workers: the
``Boot`` events are queued in the master (the flush interval keeps them there across the
fork) and must be sent exactly once, by the master, never by a worker.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import moetrack

BOOT_EVENTS = 25
MASTER_PID = os.getpid()

client = moetrack.init(flush_interval=1.0)
for n in range(BOOT_EVENTS):
    moetrack.track("Boot", customer_id="gunicorn-master", n=n, pid=MASTER_PID)

#: What the master still held at each fork; a worker sees the value of its own fork last.
PENDING_AT_FORK: list[int] = []
os.register_at_fork(before=lambda: PENDING_AT_FORK.append(client.stats().pending))


def rendezvous(directory: str, rid: int, deadline: float = 30.0) -> None:
    """Note that request ``rid`` arrived, and wait until requests 0 and 1 both did."""
    open(os.path.join(directory, str(rid)), "w").close()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if all(os.path.exists(os.path.join(directory, str(r))) for r in (0, 1)):
            return
        time.sleep(0.01)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    rid = int(query["rid"][0])
    pid = os.getpid()
    moetrack.track("Request", customer_id=f"web-user-{rid % 5}", rid=rid, pid=pid)
    if rid in (0, 1):  # each holds its worker until the other arrived: both workers serve
        rendezvous(os.environ["MOETRACK_TEST_RENDEZVOUS"], rid)
    body = json.dumps(
        {
            "pid": pid,
            "master_pid": MASTER_PID,
            "boot_events": BOOT_EVENTS,
            "master_pending_at_fork": PENDING_AT_FORK[-1],
            "queued_here": client.stats().queued,
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
