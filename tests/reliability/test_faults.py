"""The fault matrix: every way the server or the network can misbehave, each with the
accounting invariant sampled while the fault is active and checked at the end, and each
event accounted for at the emulator (exactly once, or at least once where a response came
too late — the one documented exception)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

import moetrack
from moetrack import signals
from moetrack.testing import Emulator

from ..conftest import ClientFactory
from .conftest import (
    SCRIPT_PRELUDE,
    Processes,
    Sampler,
    assert_accounted,
    assert_exactly_once_in_order,
    child_env,
    free_port,
    received,
    track_numbered,
    wait_until,
)

CUSTOMERS = [f"fault-user-{n}" for n in range(4)]


class Recorder:
    """Keeps what one signal sent for one client (blinker holds receivers weakly: this
    object holds it)."""

    def __init__(self, signal: Any, client: moetrack.Client) -> None:
        self.calls: list[dict[str, Any]] = []
        self._signal = signal
        signal.connect(self._receive, sender=client)

    def _receive(self, sender: Any, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    def close(self) -> None:
        self._signal.disconnect(self._receive)


def warm_up(client: moetrack.Client) -> None:
    """One delivered event first, so a timed fault meets requests rather than the client's
    start-up (the first request of a client builds its HTTP client and TLS context)."""
    client.track("WarmUp", customer_id="warm-up-user")
    assert client.flush(10)


def storm(
    client: moetrack.Client,
    emulator: Emulator,
    start_fault: Callable[[], None],
    met: Callable[[], bool],
    n: int,
) -> dict[str, list[int]]:
    """Track ``n`` numbered events before, during and after a fault: a third before it
    starts, more while it lasts — until ``met()`` says that requests met it, then some more —
    and the rest after it ended. Returns what each customer should receive, in order."""
    expected: dict[str, list[int]] = {c: [] for c in CUSTOMERS}
    seq = 0

    def produce(count: int) -> None:
        nonlocal seq
        for _ in range(count):
            customer = CUSTOMERS[seq % len(CUSTOMERS)]
            client.track("Storm", customer_id=customer, seq=seq)
            expected[customer].append(seq)
            seq += 1

    produce(n // 3)
    start_fault()
    produce(n // 3)
    assert wait_until(met, timeout=30), "no request met the fault"
    produce(n // 6)
    emulator.clear_faults()
    produce(n - seq)
    return expected


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_storm_of_a_few_hundred_ms_loses_nothing_and_sends_nothing_twice(
    status: int, emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(max_batch_size=25)
    warm_up(client)
    with Sampler(client, emulator) as sampler:
        expected = storm(
            client,
            emulator,
            lambda: emulator.fail_for(3600, status),  # until cleared
            lambda: client.stats().retried >= 3,
            n=200,
        )
        assert client.flush(20)
    sampler.check()
    stats = assert_accounted(client, emulator)
    assert (stats.sent, stats.failed, stats.pending, stats.dropped) == (201, 0, 0, {})
    assert stats.retried >= 3
    assert sum(r["status"] == status for r in emulator.requests()) == stats.retried
    assert_exactly_once_in_order(emulator, expected)


@pytest.mark.parametrize("retry_after", [None, 0.15], ids=["no-retry-after", "retry-after"])
def test_429_storm_is_waited_out(
    retry_after: float | None, emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(max_batch_size=25, retry_backoff=0.02, retry_backoff_max=0.1)
    warm_up(client)
    retries = Recorder(signals.request_retried, client)
    try:
        with Sampler(client, emulator) as sampler:
            expected = storm(
                client,
                emulator,
                lambda: emulator.fail_for(3600, 429, retry_after=retry_after),  # until cleared
                lambda: client.stats().retried >= 3,
                n=150,
            )
            assert client.flush(20)
    finally:
        retries.close()
    sampler.check()
    stats = assert_accounted(client, emulator)
    assert (stats.sent, stats.failed, stats.pending) == (151, 0, 0)
    delays = [call["delay"] for call in retries.calls]
    assert len(delays) == stats.retried >= 3
    assert all(isinstance(call["error"], moetrack.RateLimitedError) for call in retries.calls)
    if retry_after is None:
        assert all(0 < d <= 0.1 for d in delays)  # capped backoff with jitter
        assert len(set(delays)) > 1
    else:
        assert delays == [retry_after] * len(delays)  # the server's word, exactly
    assert_exactly_once_in_order(emulator, expected)


def test_connections_closed_mid_request_are_retried_exactly_once(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    errors: list[moetrack.MoetrackError] = []
    client = make_client(max_batch_size=40, on_error=errors.append)
    retries = Recorder(signals.request_retried, client)
    emulator.drop_connections(6)
    try:
        with Sampler(client, emulator) as sampler:
            expected = track_numbered(client, 400, CUSTOMERS)
            assert client.flush(20)
    finally:
        retries.close()
    sampler.check()
    stats = assert_accounted(client, emulator)
    # A connection closed without an answer is tried again at once, not counted; the second
    # of a pair is a failure like any other: six drops, three retries.
    assert (stats.sent, stats.failed, stats.retried) == (400, 0, 3)
    assert all(isinstance(c["error"], moetrack.TransportError) for c in retries.calls)
    dropped = [r for r in emulator.requests() if r["fault"] == "drop_connection"]
    assert len(dropped) == 6
    assert errors == []
    assert_exactly_once_in_order(emulator, expected)


def test_a_slow_response_within_the_timeout_is_exactly_once(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    # Answers held 0.3 s, and a request timeout far above it: however busy the machine, every
    # answer comes back in time.
    client = make_client(timeout=30.0, max_batch_size=50)
    emulator.delay(0.3)
    with Sampler(client, emulator) as sampler:
        expected = track_numbered(client, 150, CUSTOMERS)
        assert client.flush(20)
    emulator.clear_faults()
    sampler.check()
    stats = assert_accounted(client, emulator)
    assert (stats.sent, stats.retried) == (150, 0)
    assert_exactly_once_in_order(emulator, expected)


def test_a_response_slower_than_the_timeout_is_delivered_at_least_once_with_a_duplicate(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    """The documented exception to exactly once: the server stored the batch, its answer
    came after the client's timeout, so the client sent it again."""
    client = make_client(timeout=0.25, flush_interval=30)
    retries = Recorder(signals.request_retried, client)
    # The first request is stored at once and its answer held for far longer than the
    # client's timeout (until the emulator stops), however busy the machine.
    emulator.delay(3600, n=1)
    try:
        with Sampler(client, emulator) as sampler:
            expected = track_numbered(client, 20, ["slow-user"])
            assert client.flush(20)
    finally:
        retries.close()
    sampler.check()
    stats = assert_accounted(client, emulator)
    # The client counts each record once: it cannot know the first attempt was stored.
    assert (stats.sent, stats.failed, stats.retried, stats.requests) == (20, 0, 1, 2)
    assert isinstance(retries.calls[0]["error"], moetrack.TransportError)
    assert "Timeout" in str(retries.calls[0]["error"])
    # At the emulator: the whole batch twice, in order — every event at least once.
    assert received(emulator, "slow-user") == expected["slow-user"] * 2
    assert [r["status"] for r in emulator.requests()] == [200, 200]


def test_a_server_down_at_start_that_comes_up_later_gets_everything_once(
    make_client: ClientFactory,
) -> None:
    port = free_port()
    late = Emulator(port=port)  # not started: nothing listens on the port yet
    client = make_client(late, max_batch_size=50, retry_backoff=0.05, retry_backoff_max=0.2)
    try:
        with Sampler(client, late) as sampler:
            expected = track_numbered(client, 300, CUSTOMERS)
            assert wait_until(lambda: client.stats().retried >= 3, timeout=10)
            assert client.stats().sent == 0
            late.start()
            assert late.port == port
            assert client.flush(20)
        sampler.check()
        stats = assert_accounted(client, late)
        assert (stats.sent, stats.failed, stats.pending) == (300, 0, 0)
        assert_exactly_once_in_order(late, expected)
    finally:
        client.shutdown(2)
        late.stop()


NEVER_ANSWERS = """
import os, re, threading
from tests.reliability.waits import WatchedTransport

transport = WatchedTransport()
_exit["client"] = client = moetrack.Client(
    "NEVERAPP", "never-key", endpoint=os.environ["ENDPOINT"], max_batch_size=100,
    flush_interval=0.05, retry_backoff=0.05, retry_backoff_max=0.2,
    shutdown_timeout=float(os.environ["SHUTDOWN_TIMEOUT"]),
    timeout=float(os.environ.get("TIMEOUT", "10")), transport=transport,
)
_exit["extra"] = tried = {"batches": 0}
retried = threading.Event()

def on_retry(sender, attempt, **kwargs):
    retried.set()
    if attempt == 1:  # a batch's first failure: one more batch was tried
        tried["batches"] += 1

def wait_for_retry():
    return retried.wait(30)

moetrack.signals.request_retried.connect(on_retry)
for n in range(3000):
    client.track("Lost", customer_id="never-user", n=n)
# The process exits once the first request was sent (and hangs, or was refused).
assert transport.wait_in_flight(1) if os.environ["SERVER"] == "hung" else wait_for_retry()
"""


@pytest.mark.parametrize(
    ("server", "request_timeout"),
    [("refused", 10.0), ("hung", 0.5), ("hung", 60.0)],
    ids=["nothing-listens", "hung", "hung-request-in-flight-with-a-long-timeout"],
)
def test_a_server_that_never_comes_back_costs_at_most_the_shutdown_timeout_at_exit(
    server: str, request_timeout: float, emulator: Emulator, processes: Processes
) -> None:
    if server == "hung":
        emulator.pause()
        endpoint = emulator.url
    else:
        endpoint = f"http://127.0.0.1:{free_port()}"
    shutdown_timeout = 1.5
    done = processes.run_script(
        SCRIPT_PRELUDE + NEVER_ANSWERS,
        env=child_env(
            ENDPOINT=endpoint,
            SERVER=server,
            SHUTDOWN_TIMEOUT=str(shutdown_timeout),
            TIMEOUT=str(request_timeout),
        ),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = done.last_json()
    # The exit hook keeps to the shutdown timeout, also when a request with a 60 s timeout was
    # in flight when the process began to exit. A bound is the promise itself; it is generous
    # (a loaded machine only adds to it) and far below what waiting for the server would take
    # (a 10 s or 60 s request timeout, then a retry for each of the 30 batches).
    assert report["hook_seconds"] <= shutdown_timeout + 5, report
    stats = report["stats"]
    assert stats["sent"] == 0
    assert stats["failed"] + stats["pending"] == 3000
    assert stats["queued"] == stats["sent"] + stats["failed"] + stats["pending"]
    # ... and the log says how many were lost, in one record.
    lost = [
        int(n.replace(",", "")) for n in re.findall(r"([\d,]+) records not delivered", done.stderr)
    ]
    assert lost == [3000], done.stderr
    # Only the first batch was ever tried (and retried): no request for each of the others
    # after the deadline, which only delayed the exit.
    assert report["extra"]["batches"] <= 1, report


def test_413_at_a_lowered_limit_splits_and_fails_only_what_cannot_fit(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    emulator.set_body_limit(3_000)
    errors: list[moetrack.MoetrackError] = []
    client = make_client(flush_interval=5, on_error=errors.append)
    expected: dict[str, list[int]] = {c: [] for c in CUSTOMERS}
    with Sampler(client, emulator) as sampler:
        for seq in range(120):
            customer = CUSTOMERS[seq % len(CUSTOMERS)]
            if seq == 77:  # alone it is bigger than what the server takes
                client.track("Big", customer_id=customer, seq=seq, pad="x" * 4_000)
                continue
            client.track("Big", customer_id=customer, seq=seq, pad="y" * 40)
            expected[customer].append(seq)
        assert client.flush(20) is False  # settled, and seq 77 failed
    sampler.check()
    stats = assert_accounted(client, emulator)
    assert (stats.sent, stats.failed, stats.pending, stats.retried) == (119, 1, 0, 0)
    assert wait_until(lambda: len(errors) >= 1, timeout=10)  # on_error runs on the worker
    (error,) = errors
    assert isinstance(error, moetrack.DeliveryError)
    assert isinstance(error.cause, moetrack.PayloadTooLargeError)
    assert error.count == 1
    statuses = [r["status"] for r in emulator.requests()]
    assert 413 in statuses
    assert all(r["bytes"] <= 3_000 for r in emulator.requests() if r["status"] == 200)
    assert_exactly_once_in_order(emulator, expected)


@pytest.mark.parametrize(
    ("case", "status", "error_type"),
    [
        ("wrong-key", 401, moetrack.AuthenticationError),
        ("suspended", 403, moetrack.AccountSuspendedError),
        ("temporarily_suspended", 403, moetrack.AccountSuspendedError),
    ],
    ids=["401-wrong-key", "403-suspended", "403-temporarily-suspended"],
)
def test_a_permanent_error_fails_each_batch_once_without_a_retry_loop(
    case: str,
    status: int,
    error_type: type[Exception],
    emulator: Emulator,
    moetrack_logs: pytest.LogCaptureFixture,
) -> None:
    if case == "wrong-key":
        key = "not-the-key"
    else:
        key = emulator.api_key or ""
        emulator.set_app_state(emulator.app_id, case)  # type: ignore[arg-type]
    errors: list[moetrack.MoetrackError] = []
    client = moetrack.Client(
        emulator.app_id,
        key,
        endpoint=emulator.url,
        flush_interval=0.05,
        max_batch_size=10,
        retry_backoff=0.01,
        on_error=errors.append,
    )
    failed = Recorder(signals.batch_failed, client)
    retried = Recorder(signals.request_retried, client)
    try:
        with Sampler(client, emulator) as sampler:
            for seq in range(30):
                client.track("Refused", customer_id="refused-user", seq=seq)
            assert client.flush(10) is False  # settled: every batch refused
        sampler.check(min_samples=3)
        # Failed at once, never retried, and nothing left that a retry loop could send again.
        stats = assert_accounted(client, emulator)
        assert (stats.sent, stats.failed, stats.retried, stats.pending) == (0, 30, 0, 0)
        assert retried.calls == []
        assert stats.requests == len(emulator.requests()) == 3  # one per batch of 10
        assert {r["status"] for r in emulator.requests()} == {status}

        # Each failed batch is reported once through on_error and once as a signal (on the
        # worker, after its records are counted as failed) ...
        def reported() -> bool:
            logged = any(r.levelname == "ERROR" for r in moetrack_logs.records)
            return logged and len(errors) >= 3 and len(failed.calls) >= 3

        assert wait_until(reported, timeout=10)
        assert len(errors) == len(failed.calls) == 3
        assert sum(c["records"] for c in failed.calls) == 30
        for error in errors:
            assert isinstance(error, moetrack.DeliveryError)
            assert isinstance(error.cause, error_type)
            assert error.cause.status == status
        # ... and the log has one clear record with the server's message (repeats within the
        # log interval are counted, not repeated).
        records = [r for r in moetrack_logs.records if r.levelname == "ERROR"]
        assert len(records) == 1
        assert "10 records not delivered" in records[0].getMessage()
        assert str(errors[0].cause.message) in records[0].getMessage()
        if case != "wrong-key":  # the account comes back: the worker did not stop
            emulator.set_app_state(emulator.app_id, "active")
            client.track("Back", customer_id="refused-user")
            assert client.flush(5)
            assert [e["action"] for e in emulator.events()] == ["Back"]
        client.shutdown(5)
        # The worker has stopped: no request came after those counted, from a loop or not.
        assert len(emulator.requests()) == client.stats().requests
    finally:
        failed.close()
        retried.close()
        client.shutdown(1)
