"""A ``backlog_full`` drop is reported like every other loss: a log record, ``on_error`` and
the ``element_dropped`` signal (it was only counted before issue 20)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import moetrack
from moetrack import signals

from .conftest import RedisServer

APP = "APPBACKLOG02"


def test_backlog_full_drops_are_logged_passed_to_on_error_and_signalled(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moetrack")
    errors: list[moetrack.MoetrackError] = []
    dropped: list[dict[str, Any]] = []

    def on_dropped(sender: Any, **kw: Any) -> None:
        dropped.append(kw)

    client = moetrack.Client(
        APP,
        "key-for-tests",
        endpoint="http://127.0.0.1:9",  # nothing listens: only the backlog is written
        backlog=redis_server.url,
        backlog_max_entries=5,  # small, so that the test can fill it
        on_error=errors.append,
    )
    try:
        with signals.element_dropped.connected_to(on_dropped):
            for i in range(8):
                client.track("Step", customer_id="cust-full", seq=i)
            client.flush(10)
        assert client.stats().dropped == {"backlog_full": 3}
        assert sum(kw["count"] for kw in dropped if kw["reason"] == "backlog_full") == 3
        assert sum(e.count for e in errors if isinstance(e, moetrack.DeliveryError)) == 3
        assert any("backlog_max_entries" in r.getMessage() for r in caplog.records)
    finally:
        client.shutdown(2)
