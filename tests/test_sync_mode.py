"""Sync mode and callbacks that track: no double count, no deadlock, no recursion, no lock
held across network I/O.

Each test failed before issue 20's fixes: shutdown counted a request in flight as failed and
then as sent; a ``before_send`` that tracked hung the caller; a limiter's round trip made every
caller thread wait.
"""

from __future__ import annotations

import threading
from typing import Any

import moetrack
from moetrack import signals
from moetrack.testing import Emulator
from tests.conftest import ClientFactory

#: Seconds a test gives a thread that should return at once before calling it stuck.
STUCK = 20.0


def _call(fn: Any, *args: Any, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def test_sync_shutdown_waits_for_a_request_in_flight_and_counts_it_once(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    errors: list[moetrack.MoetrackError] = []
    client = make_client(sync=True, on_error=errors.append)
    emulator.pause()  # holds the request until the test resumes it
    caller = _call(client.track, "InFlight", customer_id="u-sync")
    assert emulator.wait_for(lambda: emulator.held == 1)
    stopper = _call(client.shutdown, 5)
    assert emulator.wait_for(lambda: client._refuse == "shutdown")
    emulator.resume()
    stopper.join(STUCK)
    caller.join(STUCK)
    assert not stopper.is_alive()
    assert not caller.is_alive()
    stats = client.stats()
    assert (stats.sent, stats.failed, stats.pending) == (1, 0, 0)
    assert errors == []
    assert len(emulator.events()) == 1


def test_sync_before_send_that_tracks_neither_deadlocks_nor_recurses(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client: moetrack.Client

    def audit(element: dict[str, Any]) -> dict[str, Any]:
        if element.get("action") == "Purchase":
            client.track("Audit", customer_id="u-audit")
        return element

    client = make_client(sync=True, before_send=audit)
    caller = _call(client.track, "Purchase", customer_id="u-buyer")
    caller.join(STUCK)
    assert not caller.is_alive(), "track() in sync mode hung on a before_send that tracks"
    assert client.flush(STUCK)
    assert sorted(e["action"] for e in emulator.events()) == ["Audit", "Purchase"]
    assert client.stats().sent == 2


def test_sync_on_error_and_signal_receivers_may_track(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client: moetrack.Client

    def on_error(error: moetrack.MoetrackError) -> None:
        client.track("ErrorSeen", customer_id="u-ops")

    def on_sent(sender: Any, **kw: Any) -> None:
        if kw["records"] and not getattr(on_sent, "done", False):
            on_sent.done = True  # type: ignore[attr-defined]
            client.track("BatchSeen", customer_id="u-ops")

    client = make_client(sync=True, on_error=on_error)
    with signals.batch_sent.connected_to(on_sent):
        caller = _call(client.track, "Bad", customer_id="")  # dropped: on_error tracks
        caller.join(STUCK)
        assert not caller.is_alive(), "an on_error that tracks hung a sync client"
        assert client.flush(STUCK)
    assert sorted(e["action"] for e in emulator.events()) == ["BatchSeen", "ErrorSeen"]


def test_strict_before_send_that_tracks_does_not_recurse(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    here = threading.local()  # how deep this thread is in before_send
    deepest = 0
    client: moetrack.Client

    def audit(element: dict[str, Any]) -> dict[str, Any]:
        nonlocal deepest
        here.depth = getattr(here, "depth", 0) + 1
        deepest = max(deepest, here.depth)
        try:
            if element.get("action") == "Purchase":
                client.track("Audit", customer_id="u-audit")
            return element
        finally:
            here.depth -= 1

    client = make_client(strict=True, before_send=audit)
    client.track("Purchase", customer_id="u-buyer")
    assert client.flush(STUCK)
    # The Audit record was queued, and prepared on its own: never inside the before_send
    # of the record that tracked it.
    assert deepest == 1
    assert sorted(e["action"] for e in emulator.events()) == ["Audit", "Purchase"]


class _SlowLimiter:
    """A shared limiter whose first ``acquire`` takes as long as the test says (a round trip
    to an unreachable Redis); the others answer at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self._first = True
        self._lock = threading.Lock()

    def acquire(self, users: int, events: int) -> float:
        with self._lock:
            first, self._first = self._first, False
        if first:
            self.entered.set()
            self.release.wait(STUCK)
        return 0.0

    def answered(self) -> None:
        pass

    def pause(self, seconds: float) -> None:
        pass


def test_sync_callers_do_not_wait_on_another_callers_limiter_round_trip(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    limiter = _SlowLimiter()
    client = make_client(sync=True, limiter=limiter)
    slow = _call(client.track, "Slow", customer_id="u-slow")
    assert limiter.entered.wait(STUCK)
    fast = _call(client.track, "Fast", customer_id="u-fast")
    fast.join(STUCK)
    try:
        assert not fast.is_alive(), "a caller waited on another caller's limiter round trip"
        assert [e["action"] for e in emulator.events()] == ["Fast"]
    finally:
        limiter.release.set()
        slow.join(STUCK)


def test_an_element_queued_receiver_that_tracks_does_not_recurse(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()

    def on_queued(sender: Any, **kw: Any) -> None:
        if sender is client:
            client.track("Seen", customer_id="u-ops")  # queued, with no signal of its own

    with signals.element_queued.connected_to(on_queued):
        client.track("Purchase", customer_id="u-buyer")
    assert client.flush(STUCK)
    assert client.stats().queued == 2
    assert sorted(e["action"] for e in emulator.events()) == ["Purchase", "Seen"]
