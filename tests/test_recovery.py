"""How fast delivery resumes after the server recovers (issue 20).

The waits are read off a clock the test owns (the sender's wait goes through the source, which
moves that clock), so the figures are exact and the machine's load cannot change them. The
end-to-end tests run against the emulator on loopback and wait on conditions.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping, Sequence

import pytest

from moetrack._config import Config
from moetrack._exceptions import MoetrackError
from moetrack._pipeline import sender as sender_module
from moetrack._pipeline.sender import Sender
from moetrack._pipeline.source import Stop
from moetrack._report import Reporter
from moetrack._wire.encode import dumps
from moetrack._wire.records import EVENT, Item
from moetrack._wire.transport import Response
from moetrack.testing import Emulator
from tests.conftest import ClientFactory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ClockSource:
    """A source of prepared items whose ``wait`` moves the test's clock and notes the wait."""

    def __init__(self, clock: Clock, batches: int) -> None:
        self.clock = clock
        self.batches = [[_item(n)] for n in range(batches)]
        self.waits: list[float] = []
        self.acked = 0
        self.failed = 0
        self.handed = 0

    def take(self, limit: int, timeout: float) -> list[Item] | None:
        if self.acked + self.failed < self.handed:
            return []  # one batch at a time: the next comes once this one is settled
        if not self.batches:
            return None
        self.handed += 1
        return self.batches.pop(0)

    def due(self) -> bool:
        return True

    def ack(self, items: Sequence[Item]) -> None:
        self.acked += len(items)

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        self.failed += len(items)

    def release(self, items: Sequence[Item]) -> None:
        raise AssertionError("nothing is released without a stop")

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds


class ScriptedTransport:
    """Answers with the statuses it is given, in order (a Retry-After where one is given),
    and notes the test's clock at each request."""

    def __init__(self, clock: Clock, script: list[tuple[int, float | None]]) -> None:
        self.clock = clock
        self.script = list(script)
        self.sent_at: list[float] = []

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        self.sent_at.append(self.clock.now)
        status, retry_after = self.script.pop(0)
        extra = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return Response(status, extra, b'{"status": "success"}')

    def close(self) -> None:
        pass


class NoLimit:
    def acquire(self, users: int, events: int) -> float:
        return 0.0

    def answered(self) -> None:
        pass

    def pause(self, seconds: float) -> None:
        pass


def _item(n: int) -> Item:
    item = Item(EVENT, "cust-recovery", None, dumps({"action": "Step", "attributes": {"n": n}}))
    item.ref = n
    return item


def _run(
    monkeypatch: pytest.MonkeyPatch, script: list[tuple[int, float | None]], batches: int = 1
) -> tuple[ClockSource, list[float]]:
    """Send ``batches`` one-item batches through a Sender with the default options; the
    source, and the seconds between each request and the next."""
    clock = Clock()
    monkeypatch.setattr(sender_module, "_monotonic", clock)
    config = Config.build("APPRECOVERY1", "key-for-tests", endpoint="http://127.0.0.1:9")
    transport = ScriptedTransport(clock, script)
    sender = Sender(config, transport, Reporter(None, None, ()), NoLimit())
    source = ClockSource(clock, batches)
    sender.run(source, Stop())
    at = transport.sent_at
    return source, [round(b - a, 9) for a, b in itertools.pairwise(at)]


def test_a_429_with_retry_after_waits_exactly_that_and_does_not_grow_the_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, waits = _run(
        monkeypatch, [(503, None), (503, None), (429, 1), (429, 1), (503, None), (200, None)]
    )
    assert source.acked == 1
    first, second, limited1, limited2, third = waits
    assert 0.25 <= first <= 0.5
    assert 0.5 <= second <= 1.0
    assert (limited1, limited2) == (1.0, 1.0)
    # The third failure without Retry-After is the third step of the backoff, not the fifth.
    assert 1.0 <= third <= 2.0


def test_the_backoff_never_waits_past_about_two_seconds_at_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, waits = _run(monkeypatch, [(503, None)] * 12 + [(200, None)])
    assert source.acked == 1
    assert max(waits) <= 2.0
    assert min(waits[3:]) >= 1.0  # still exponential, with jitter: half the cap at least


def test_the_first_success_resets_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    source, waits = _run(
        monkeypatch, [(503, None)] * 5 + [(200, None), (503, None), (200, None)], batches=2
    )
    assert source.acked == 2
    assert 0.25 <= waits[-1] <= 0.5


def test_a_waiting_batch_is_retried_once_another_request_succeeds(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    # A long backoff, so that only another caller's success can end the first caller's wait.
    client = make_client(sync=True, retry_backoff=60, retry_backoff_max=60)
    emulator.fail_next(1, 503)
    first = threading.Thread(target=client.track, args=("First",), kwargs={"customer_id": "u-1"})
    first.start()
    assert emulator.wait_for(lambda: client.stats().retried == 1)
    client.track("Second", customer_id="u-2")  # succeeds at once
    first.join(20)
    assert not first.is_alive(), "the waiting batch kept waiting after a request succeeded"
    assert sorted(e["action"] for e in emulator.events()) == ["First", "Second"]


def test_a_connection_closed_without_an_answer_is_retried_at_once_without_a_failure(
    emulator: Emulator, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moetrack")
    client = make_client()
    client.track("Warm", customer_id="u-conn")
    assert client.flush(10)  # a kept-alive connection now waits in the pool
    emulator.drop_connections(1)  # the next request finds its connection closed
    client.track("AfterDrop", customer_id="u-conn")
    assert client.flush(10)
    stats = client.stats()
    assert (stats.sent, stats.failed, stats.retried) == (2, 0, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
