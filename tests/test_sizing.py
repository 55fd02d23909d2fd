"""Batches sized to the moment: when the pace binds, a sender sends the head of its batch that
the limiter can grant now, instead of waiting until the whole batch fits."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import pytest

from moetrack._config import Config
from moetrack._exceptions import MoetrackError
from moetrack._pipeline import limiter as _limiter
from moetrack._pipeline.limiter import LocalLimiter, head
from moetrack._pipeline.sender import Sender
from moetrack._pipeline.source import Stop
from moetrack._report import Reporter
from moetrack._wire.records import EVENT, Item
from moetrack._wire.transport import Response
from moetrack.testing import Emulator

from .conftest import ClientFactory


def test_head_is_the_longest_run_of_records_that_fits() -> None:
    # runs: -k users, +k events, in the batch's order
    assert head([5, -2, 3], 10, 10) == (10, 2, 8)
    assert head([5, -2, 3], 1, 10) == (6, 1, 5)  # the second user does not fit: stop there
    assert head([5, -2, 3], 0, 4) == (4, 0, 4)
    assert head([-3], float("inf"), 0) == (3, 3, 0)


def test_the_local_limiter_grants_what_fits_now_or_says_when_the_least_part_does() -> None:
    limiter = LocalLimiter(None, 100, 60.0)
    assert limiter.acquire(0, 60) == 0.0
    limiter.answered()
    assert limiter.acquire_some([100], 10) == (40, 0.0)  # 40 of the 100 fit now
    granted, wait = limiter.acquire_some([100], 10)
    assert granted == 0  # none now: the first grant leaves the window in a minute
    assert 59 < wait <= 60
    # the whole batch when it fits, even under least
    limiter = LocalLimiter(None, 100, 60.0)
    assert limiter.acquire_some([7], 10) == (7, 0.0)
    # a batch larger than the quota goes alone once the window is empty, as acquire does
    limiter = LocalLimiter(None, 100, 60.0)
    assert limiter.acquire_some([150], 150) == (150, 0.0)


def test_a_paced_client_sends_the_part_that_may_go_now(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    """100 events a minute: 60 go, then a batch of 100 waits. The 40 that fit go at once; the
    other 60 wait for the window (here: not at all within the test)."""
    # events_per_minute set low so the pace binds within the test; the window as shipped.
    client = make_client(events_per_minute=100, users_per_minute=None)
    for i in range(60):
        client.track("First", {"i": i}, customer_id="c1")
    assert client.flush(10)
    for i in range(100):
        client.track("Second", {"i": i}, customer_id="c1")
    assert emulator.wait_for(lambda: len(emulator.events()) == 100, timeout=20)
    sizes = [r["events"] for r in emulator.requests() if r["status"] == 200]
    assert sizes == [60, 40]
    client.shutdown(0.1)


# -- the next batch is taken while a request is in flight ------------------------------------


class _HeldTransport:
    """Answers 200, but holds the first request until the test lets it go."""

    def __init__(self) -> None:
        self.in_flight = threading.Event()
        self.release = threading.Event()

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        self.in_flight.set()
        self.release.wait(30)
        return Response(200, {}, b'{"status": "success"}')

    def close(self) -> None:
        pass


class _ListSource:
    """100 events, handed out as asked."""

    def __init__(self, transport: _HeldTransport) -> None:
        self.items = [
            Item(EVENT, f"c{i % 7}", None, b'{"action":"x","attributes":{}}') for i in range(100)
        ]
        self.transport = transport
        self.handed = 0
        self.acked = 0
        self.changed = threading.Condition()

    def take(self, limit: int, timeout: float) -> list[Item] | None:
        with self.changed:
            if self.acked == len(self.items):
                return None
            out = self.items[self.handed : self.handed + limit]
            self.handed += len(out)
            self.changed.notify_all()
            return out

    def due(self) -> bool:
        return True

    def ack(self, items: Sequence[Item]) -> None:
        with self.changed:
            self.acked += len(items)
            self.changed.notify_all()

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        raise AssertionError(error)

    def release(self, items: Sequence[Item]) -> None:
        pass

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)  # the source's own wait: the sender's backoff or pacing


def test_the_next_batch_is_taken_while_a_request_is_in_flight() -> None:
    """Batches of 50: while the first request is held, the sender takes the next 50 (a
    source prepares what it hands out), so the network and the CPU overlap."""
    config = Config.build(
        "APP", "key", endpoint="http://127.0.0.1:1", max_batch_size=50, flush_interval=0.01,
        users_per_minute=None, events_per_minute=None,
    )  # fmt: skip
    transport = _HeldTransport()
    source = _ListSource(transport)
    sender = Sender(config, transport, Reporter(None, None, ()))
    runner = threading.Thread(target=sender.run, args=(source, Stop()))
    runner.start()
    try:
        assert transport.in_flight.wait(10)
        with source.changed:
            # The first request is held until the end: all 100 are handed out before it is
            # answered (the first batch's 50, one that did not fit, the next 49). A sender that
            # took nothing while a request was in flight would stop at 51.
            assert source.changed.wait_for(lambda: source.handed == 100, timeout=10)
        assert not transport.release.is_set()
    finally:
        transport.release.set()
        runner.join(30)
    assert source.acked == 100


def test_the_halves_of_a_413_move_the_local_grant_to_the_last_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each half of a split batch is answered on its own, after the grant: the window counts
    the grant from the last answer (the server may have counted the second half then)."""
    clock = [100.0]
    monkeypatch.setattr(_limiter.time, "monotonic", lambda: clock[0])
    limiter = LocalLimiter(None, 10, 60.0)
    assert limiter.acquire(0, 10) == 0.0
    clock[0] = 101.0
    limiter.answered()  # the first half
    clock[0] = 102.0
    limiter.answered()  # the second half
    assert limiter.acquire(0, 1) == pytest.approx(60.0)  # the window ends at 162, not 161
