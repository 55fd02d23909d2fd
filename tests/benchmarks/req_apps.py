"""The web apps of :mod:`tests.benchmarks.bench_requests`: one view, three ``track()`` calls.

``BENCH_VARIANT`` chooses the tracking (:data:`VARIANTS`), ``BENCH_SINK`` is the sink's URL.
Each server process builds its own client on its first request (after gunicorn forked it),
so no client crosses a fork. The view reads the customer id from the path, tracks three
events of a few attributes each and answers a small JSON body.

- ``flask_app``: Flask, served by gunicorn (``sync`` or ``gthread`` workers);
- ``fastapi_app``: FastAPI, served by uvicorn; the view is ``async def``, so the three calls
  run on the event loop, as in most FastAPI services.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

#: The tracking variants, in the order the report lists them.
VARIANTS = ("none", "moetrack-nopacing", "moetrack-defaults", "segment", "posthog")

#: Queue bound for the peers (their defaults, 10,000 for Segment, would drop in a long run).
PEER_QUEUE = 1_000_000

Track = Callable[[str, dict[str, Any], str], None]

_lock = threading.Lock()
_track: Track | None = None


def _no_tracking(event: str, attributes: dict[str, Any], customer: str) -> None:
    pass


def build(variant: str, sink: str) -> Track:
    """The ``track(event, attributes, customer)`` of one variant, pointed at ``sink``."""
    if variant == "none":
        return _no_tracking
    if variant in {"moetrack-nopacing", "moetrack-defaults"}:
        import moetrack

        options: dict[str, Any] = {}
        if variant == "moetrack-nopacing":
            options = {"users_per_minute": None, "events_per_minute": None}
        client = moetrack.Client("BENCH_APP", "bench-key", endpoint=sink, **options)

        def track_moetrack(event: str, attributes: dict[str, Any], customer: str) -> None:
            client.track(event, attributes, customer_id=customer)

        return track_moetrack
    if variant == "segment":
        import segment.analytics as analytics

        seg = analytics.Client("bench-write-key", host=sink, max_queue_size=PEER_QUEUE)

        def track_segment(event: str, attributes: dict[str, Any], customer: str) -> None:
            seg.track(user_id=customer, event=event, properties=attributes)

        return track_segment
    if variant == "posthog":
        from posthog import Posthog

        ph = Posthog("phc_bench", host=sink, max_queue_size=PEER_QUEUE)

        def track_posthog(event: str, attributes: dict[str, Any], customer: str) -> None:
            ph.capture(event, distinct_id=customer, properties=attributes)

        return track_posthog
    raise ValueError(f"unknown BENCH_VARIANT {variant!r}; one of {', '.join(VARIANTS)}")


def tracker() -> Track:
    """This process's tracker, built on first use."""
    global _track
    track = _track
    if track is None:
        with _lock:
            if _track is None:
                _track = build(os.environ.get("BENCH_VARIANT", "none"), os.environ["BENCH_SINK"])
            track = _track
    return track


def handle(customer: str) -> dict[str, Any]:
    """What each view does: three events of a request, then the answer."""
    track = tracker()
    track("Page Viewed", {"path": "/order", "referrer": "search", "mobile": False}, customer)
    track("Cart Updated", {"sku": "SKU-1042", "quantity": 2, "price": 19.99}, customer)
    track("Order Placed", {"order_id": "o-7731", "total": 39.98, "currency": "EUR"}, customer)
    return {"ok": True, "customer": customer, "total": 39.98}


def _flask_app() -> Any:
    from flask import Flask, jsonify

    app = Flask("bench_requests")

    @app.get("/order/<customer>")
    def order(customer: str) -> Any:
        return jsonify(handle(customer))

    @app.get("/ping")
    def ping() -> Any:
        return jsonify({"ok": True})

    return app


def _fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/order/{customer}")
    async def order(customer: str) -> dict[str, Any]:
        return handle(customer)

    @app.get("/ping")
    async def ping() -> dict[str, Any]:
        return {"ok": True}

    return app


def __getattr__(name: str) -> Any:
    # Built on import by the server that asks for it, so each server imports only its own
    # framework.
    if name == "flask_app":
        return _flask_app()
    if name == "fastapi_app":
        return _fastapi_app()
    raise AttributeError(name)
