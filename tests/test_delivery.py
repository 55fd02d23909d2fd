"""Every delivery promise of DESIGN §4, proven over real HTTP against the emulator."""

from __future__ import annotations

import asyncio
import enum
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

import moetrack
from moetrack import signals
from moetrack.testing import Emulator

from ._need import need
from .conftest import ClientFactory
from .reliability.conftest import SCRIPT_PRELUDE
from .reliability.waits import WaitSpy, WatchedTransport, call_with_deadline


class Tier(enum.Enum):
    GOLD = "gold"


def assert_accounted(client: moetrack.Client) -> moetrack.Stats:
    stats = client.stats()
    assert stats.queued == stats.sent + sum(stats.dropped.values()) + stats.failed + stats.pending
    return stats


def test_a_thousand_events_users_and_devices_arrive_exactly_in_order(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(max_batch_bytes=20_000)
    at = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=timezone.utc)
    ids = [uuid.UUID(int=n) for n in range(50)]
    for c in range(50):
        cid = f"customer-{c:02d}"
        client.identify(customer_id=cid, name=f"Name {c}", tier=Tier.GOLD, joined=at)
        client.device(
            customer_id=cid, device_id=f"dev-{c}", platform="android", push_id=f"push-{c}"
        )
    for n in range(1000):
        c = n % 50
        client.track(
            "Purchase",
            {"nested": {"list": [1, "two", {"three": 3.5}], "when": at}},
            customer_id=f"customer-{c:02d}",
            seq=n,
            price=Decimal("39.99"),
            qty=Decimal(3),
            ref=ids[c],
            tier=Tier.GOLD,
            at=at,
            ok=True,
            none=None,
        )
    assert client.flush(30)
    stats = assert_accounted(client)
    assert (stats.sent, stats.pending, stats.failed, stats.dropped) == (1100, 0, 0, {})

    events = emulator.events()
    assert len(events) == 1000
    for c in range(50):
        mine = emulator.events(customer_id=f"customer-{c:02d}")
        assert [e["attributes"]["seq"] for e in mine] == list(range(c, 1000, 50))
    sample = emulator.events(customer_id="customer-07")[0]
    assert sample["attributes"] == {
        "nested": {"list": [1, "two", {"three": 3.5}], "when": "2026-03-04T05:06:07.890000Z"},
        "seq": 7,
        "price": 39.99,
        "qty": 3,
        "ref": str(ids[7]),
        "tier": "gold",
        "at": "2026-03-04T05:06:07.890000Z",
        "ok": True,
        "none": None,
    }
    users = emulator.users()
    assert len(users) == 50
    assert users["customer-07"] == {
        "name": "Name 7",
        "tier": "gold",
        "joined": "2026-03-04T05:06:07.890000Z",
    }
    devices = emulator.devices()
    assert devices["dev-7"]["customer_id"] == "customer-07"
    assert devices["dev-7"]["attributes"] == {"platform": "ANDROID", "push_id": "push-7"}
    assert emulator.dropped() == []

    requests = emulator.requests()
    assert len(requests) == stats.requests > 1
    for r in requests:
        assert r["path"] == f"/v1/transition/{emulator.app_id}"
        assert r["status"] == 200
        assert r["bytes"] <= 20_000
        assert r["moe_appkey_matches"] is True
        assert r["authorization"] == "Basic ***"
    assert sum(r["bytes"] for r in requests) == stats.bytes


def test_actions_of_one_customer_are_merged_into_one_element(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    # A long interval, so that the actions tracked here wait for the one flush, together.
    client = make_client(flush_interval=5)
    with moetrack.context(customer_id="merge-me"):
        for n in range(20):
            client.track("Step", n=n)
    assert client.flush(10)
    (request,) = emulator.requests()
    assert request["elements"] == 1
    assert request["events"] == 20


def test_a_process_that_just_exits_delivers_everything(emulator: Emulator) -> None:
    script = textwrap.dedent(
        f"""
        import moetrack
        moetrack.init({emulator.app_id!r}, {emulator.api_key!r}, endpoint={emulator.url!r})
        with moetrack.context(customer_id="exit-user"):
            for n in range(5000):
                moetrack.track("Tick", n=n)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert emulator.wait_for_events(5000, timeout=5)
    events = emulator.events()
    assert [e["attributes"]["n"] for e in events] == list(range(5000))


def test_fork_each_event_arrives_exactly_once(emulator: Emulator) -> None:
    need(hasattr(os, "fork"), "needs os.fork")
    script = SCRIPT_PRELUDE + textwrap.dedent(
        f"""
        import os
        _exit["client"] = client = moetrack.init(
            {emulator.app_id!r}, {emulator.api_key!r}, endpoint={emulator.url!r},
            flush_interval=30,  # nothing is sent before the fork: the queue is still full
        )
        for n in range(100):
            moetrack.track("Parent", customer_id="parent-user", n=n)
        assert client.stats().pending > 0   # still queued at fork time
        pid = os.fork()
        if pid == 0:
            for n in range(100):
                moetrack.track("Child", customer_id="child-user", n=n)
            sys.exit(0)                     # a normal exit: atexit flushes the child's own
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for n in range(100, 150):
            moetrack.track("Parent", customer_id="parent-user", n=n)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=60, capture_output=True, text=True
    )
    # Each process reports its own client's stats as the last thing it does: child, parent.
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["stats"]["sent"] for r in reports] == [100, 150], done.stderr
    # Every request either process made has reached the emulator: nothing can come later.
    made = sum(r["stats"]["requests"] for r in reports)
    assert emulator.wait_for(lambda: len(emulator.requests()) >= made, timeout=30)
    assert len(emulator.requests()) == made
    parent = [e["attributes"]["n"] for e in emulator.events(customer_id="parent-user")]
    child = [e["attributes"]["n"] for e in emulator.events(customer_id="child-user")]
    assert parent == list(range(150))
    assert child == list(range(100))


def test_threads_and_tasks_never_carry_another_customer(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    moetrack.init(emulator.app_id, emulator.api_key, endpoint=emulator.url)
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        with moetrack.context(customer_id=f"thread-{n}"):
            barrier.wait()
            for i in range(50):
                moetrack.track("T", who=f"thread-{n}", i=i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def task(n: int) -> None:
        with moetrack.context(customer_id=f"task-{n}"):
            for i in range(10):
                moetrack.track("A", who=f"task-{n}", i=i)
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(50)))

    asyncio.run(main())
    assert moetrack.flush(20)
    events = emulator.events()
    assert len(events) == 8 * 50 + 50 * 10
    assert all(e["customer_id"] == e["attributes"]["who"] for e in events)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_storm_loses_nothing(
    status: int, emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()
    emulator.fail_next(6, status)
    with moetrack.context(customer_id="storm-user"):
        for n in range(300):
            client.track("S", n=n)
    assert client.flush(20)
    stats = assert_accounted(client)
    assert stats.sent == 300
    assert stats.retried >= 6
    assert [e["attributes"]["n"] for e in emulator.events()] == list(range(300))


def test_429_with_retry_after_is_honoured(emulator: Emulator, make_client: ClientFactory) -> None:
    client = make_client()
    emulator.fail_next(1, 429, retry_after=1)
    retries: list[float] = []

    def on_retry(sender: Any, **kw: Any) -> None:
        if sender is client:  # not a client another test left running
            retries.append(kw["delay"])

    signals.request_retried.connect(on_retry)
    try:
        start = time.monotonic()
        client.track("R", customer_id="patient-user")
        assert client.flush(10)
        # A lower bound, which a loaded machine cannot break: it only makes the wait longer.
        assert time.monotonic() - start >= 1.0
    finally:
        signals.request_retried.disconnect(on_retry)
    assert retries == [1.0]
    assert len(emulator.events()) == 1


def test_dropped_connections_lose_nothing(emulator: Emulator, make_client: ClientFactory) -> None:
    client = make_client()
    emulator.drop_connections(3)
    for n in range(100):
        client.track("D", customer_id="drop-user", n=n)
    assert client.flush(20)
    assert [e["attributes"]["n"] for e in emulator.events()] == list(range(100))
    assert assert_accounted(client).sent == 100


def test_413_splits_and_resends(emulator: Emulator, make_client: ClientFactory) -> None:
    emulator.set_body_limit(6_000)
    # A long interval, so that the records go in full bodies, which the server refuses.
    client = make_client(flush_interval=5)
    for n in range(200):
        client.track("Big", customer_id=f"user-{n % 7}", n=n, pad="x" * 100)
    assert client.flush(20)
    stats = assert_accounted(client)
    assert stats.sent == 200
    assert stats.failed == 0
    got = sorted(e["attributes"]["n"] for e in emulator.events())
    assert got == list(range(200))
    assert any(r["status"] == 413 for r in emulator.requests())
    assert all(r["bytes"] <= 6_000 for r in emulator.requests() if r["status"] == 200)


def test_401_fails_once_without_looping_and_never_logs_the_key(
    emulator: Emulator, moetrack_logs: pytest.LogCaptureFixture
) -> None:
    errors: list[moetrack.MoetrackError] = []
    client = moetrack.Client(
        emulator.app_id,
        "wrong-secret-key-123",
        endpoint=emulator.url,
        on_error=errors.append,
    )
    try:
        for n in range(10):
            client.track("X", customer_id="auth-user", n=n)
        assert client.flush(10) is False  # settled, and failed
        stats = assert_accounted(client)
        # Failed at once, and nothing left that a retry loop could send again ...
        assert (stats.failed, stats.pending, stats.sent, stats.retried) == (10, 0, 0, 0)
        assert stats.requests == len(emulator.requests()) <= 2
        # on_error runs on the worker, after the records are counted as failed.
        assert emulator.wait_for(lambda: len(errors) >= stats.requests, timeout=10)
        assert len(errors) == stats.requests
        cause = errors[0].cause  # type: ignore[attr-defined]
        assert isinstance(cause, moetrack.AuthenticationError)
        assert cause.status == 401
        assert "App Secret key mismatch" in str(errors[0])
    finally:
        client.shutdown(5)
    # ... and once the worker has stopped, the server has seen no other request.
    assert len(emulator.requests()) == stats.requests
    text = "\n".join(r.getMessage() for r in moetrack_logs.records)
    assert "App Secret key mismatch" in text
    for secret in client.config.secrets():
        assert secret not in text
        assert secret not in repr(errors)
        assert secret not in str(errors)


def test_client_side_rate_limit_earns_no_429() -> None:
    with Emulator(users_per_minute=8, events_per_minute=40, rate_limit_window=2.0) as emu:
        client = moetrack.Client(
            emu.app_id,
            emu.api_key,
            endpoint=emu.url,
            users_per_minute=8,
            events_per_minute=40,
            rate_limit_window=2.0,
        )
        try:
            for n in range(120):
                client.track("Paced", customer_id=f"user-{n % 5}", n=n)
            for n in range(20):
                client.identify(customer_id=f"user-{n}", n=n)
            assert client.flush(30)
            statuses = [r["status"] for r in emu.requests()]
            assert 429 not in statuses
            assert len(emu.events()) == 120
            assert len(emu.users()) == 20
            assert client.stats().sent == 140
        finally:
            client.shutdown(1)


def test_queue_overflow_never_blocks_and_counts_drops(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    transport = WatchedTransport()
    client = make_client(queue_capacity=100, max_batch_size=10, transport=transport)
    emulator.pause()
    try:
        client.track("O", customer_id="busy-user", n=-1)
        # The worker is inside a request the paused server holds, and stays there ...
        assert transport.wait_in_flight(1)

        def flood() -> list[str]:
            with WaitSpy() as spy:
                for n in range(2000):
                    client.track("O", customer_id="busy-user", n=n)
            return spy.waits

        # ... while 2,000 calls return without waiting on anything: no sleep, no wait on a
        # condition or event, no held lock, no socket (the deadline only turns a hang into a
        # failure).
        returned, waits = call_with_deadline(flood)
        assert returned, "a call waited on the worker"
        assert waits == []
        assert transport.in_flight == 1
        stats = assert_accounted(client)
        assert stats.sent == 0
        assert stats.pending <= 100
        assert stats.dropped == {"queue_full": 2001 - stats.pending}
    finally:
        emulator.resume()
    assert client.flush(20)
    stats = assert_accounted(client)
    assert stats.sent + stats.dropped["queue_full"] == 2001
    assert len(emulator.events()) == stats.sent


def test_block_on_full_waits_for_room_and_gives_up_at_its_timeout(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    transport = WatchedTransport()
    block_timeout = 0.2
    client = make_client(
        queue_capacity=5,
        max_batch_size=1,
        on_full="block",
        block_timeout=block_timeout,
        transport=transport,
    )
    emulator.pause()
    try:
        client.track("B", customer_id="block-user", n=-1)
        assert transport.wait_in_flight(1)  # held by the paused server from now on
        for n in range(4):  # fills the queue: 5 records, one of them in flight
            client.track("B", customer_id="block-user", n=n)
        assert client.stats().pending == 5

        def one_more() -> tuple[float, list[str]]:
            with WaitSpy() as spy:
                start = time.monotonic()
                client.track("B", customer_id="block-user", n=99)
                return time.monotonic() - start, spy.waits

        returned, (waited, waits) = call_with_deadline(one_more)
        # The call waited for room (it slept or waited, which a call never does otherwise) ...
        assert returned
        assert waits
        # ... and, no room coming while the server is paused, gave up on its own timeout: at
        # least block_timeout (a lower bound, which load cannot break), and not for ever
        # (a generous bound: scheduling on a loaded machine only adds to it).
        assert block_timeout <= waited < block_timeout + 10
        stats = client.stats()
        assert stats.dropped == {"queue_full": 1}
        assert stats.pending == 5
    finally:
        emulator.resume()
    assert client.flush(20)
    assert [e["attributes"]["n"] for e in emulator.events()] == [-1, 0, 1, 2, 3]


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("track", {"customer_id": "1"}, "invalid_customer_id"),
    ("track", {"customer_id": "Guest"}, "invalid_customer_id"),
    ("track", {}, "no_customer_id"),
    ("track", {"customer_id": "ok-user", "platform": "windows"}, "invalid_platform"),
    (
        "track",
        {"customer_id": "ok-user", "user_timezone_offset": 99_999},
        "invalid_timezone_offset",
    ),
    ("track", {"customer_id": "ok-user", "current_time": "last tuesday"}, "invalid_time"),
    ("track", {"customer_id": "ok-user", "userId": 3}, "reserved_name"),
    ("track", {"customer_id": "ok-user", "price": float("nan")}, "invalid_value"),
    ("track", {"customer_id": "ok-user", "blob": b"raw"}, "invalid_value"),
    ("track", {"customer_id": "ok-user", "text": "\ud800"}, "invalid_value"),
    ("track", {"customer_id": "ok-user", "huge": "x" * 120_000}, "too_large"),
    ("identify", {"customer_id": "ok-user", "_id": 1}, "reserved_name"),
    ("device", {"customer_id": "ok-user", "platform": "web"}, "invalid_device"),
    (
        "device",
        {"customer_id": "ok-user", "platform": "unknown", "push_id": "p"},
        "invalid_platform",
    ),
]


def _call(client: moetrack.Client, method: str, kwargs: dict[str, Any]) -> None:
    if method == "track":
        client.track("Event", **kwargs)
    else:
        getattr(client, method)(**kwargs)


def test_each_invalid_input_is_dropped_with_its_reason_and_neighbours_arrive(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    seen: list[tuple[str, str]] = []

    def on_drop(sender: Any, **kw: Any) -> None:
        seen.append((kw["reason"], str(kw["error"])))

    signals.element_dropped.connect(on_drop)
    try:
        client = make_client()
        for n, (method, kwargs, _) in enumerate(INVALID):
            client.track("Good", customer_id="ok-user", n=n)
            _call(client, method, kwargs)
        assert client.flush(10)
    finally:
        signals.element_dropped.disconnect(on_drop)
    stats = assert_accounted(client)
    expected: dict[str, int] = {}
    for _, _, reason in INVALID:
        expected[reason] = expected.get(reason, 0) + 1
    assert stats.dropped == expected
    assert [e["attributes"]["n"] for e in emulator.events()] == list(range(len(INVALID)))
    assert sorted(r for r, _ in seen) == sorted(r for _, _, r in INVALID)
    assert emulator.dropped() == []


@pytest.mark.parametrize(("method", "kwargs", "reason"), INVALID)
def test_strict_mode_raises_the_same_reasons(
    method: str, kwargs: dict[str, Any], reason: str, emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(strict=True)
    with pytest.raises(moetrack.ValidationError) as info:
        _call(client, method, kwargs)
    assert info.value.reason == reason
    assert info.value.field
    assert info.value.field in str(info.value)
    client.track("Good", customer_id="ok-user")
    assert client.flush(10)
    assert len(emulator.events()) == 1
    assert assert_accounted(client).dropped == {reason: 1}


def test_sync_mode_sends_before_returning(emulator: Emulator, make_client: ClientFactory) -> None:
    client = make_client(sync=True)
    before = set(threading.enumerate())
    client.track("Now", customer_id="sync-user")
    assert len(emulator.events()) == 1
    assert client.stats().sent == 1
    # ... on the caller's thread: no worker thread was started for it.
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("moetrack")]


def test_send_false_validates_and_counts_but_sends_nothing(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(send=False)
    client.track("Quiet", customer_id="quiet-user")
    client.track("Quiet", customer_id="1")
    assert client.flush(5)
    assert client.stats().dropped == {"send_disabled": 1, "invalid_customer_id": 1}
    assert emulator.requests() == []


def test_before_send_changes_and_drops(emulator: Emulator, make_client: ClientFactory) -> None:
    def scrub(element: dict[str, Any]) -> dict[str, Any] | None:
        if element.get("action") == "Secret":
            return None
        element["attributes"].pop("email", None)
        return element

    client = make_client(before_send=scrub)
    client.track("Secret", customer_id="bs-user")
    client.track("Open", customer_id="bs-user", email="a@b.c", keep=1)
    assert client.flush(5)
    assert [e["attributes"] for e in emulator.events()] == [{"keep": 1}]
    assert client.stats().dropped == {"before_send": 1}


def test_calls_before_init_and_without_credentials_are_counted_drops(
    moetrack_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    moetrack.track("Early", customer_id="early-user")
    moetrack.track("Early", customer_id="early-user")
    assert moetrack.get_client().stats().dropped == {"not_initialized": 2}
    for var in ("MOETRACK_APP_ID", "MOETRACK_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    client = moetrack.init()
    moetrack.track("NoKey", customer_id="early-user")
    assert client.stats().dropped == {"no_credentials": 1}
    warnings = [r for r in moetrack_logs.records if r.levelname == "WARNING"]
    assert 1 <= len(warnings) <= 3


def test_after_shutdown_calls_are_dropped_with_a_reason(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()
    client.track("Before", customer_id="late-user")
    client.shutdown(5)
    client.track("After", customer_id="late-user")
    stats = assert_accounted(client)
    assert stats.sent == 1
    assert stats.dropped == {"shutdown": 1}
    client.shutdown(5)  # idempotent
    assert [e["action"] for e in emulator.events()] == ["Before"]


def test_signals_report_batches(emulator: Emulator, make_client: ClientFactory) -> None:
    sent: list[dict[str, Any]] = []

    def on_sent(sender: Any, **kw: Any) -> None:
        sent.append(kw)

    signals.batch_sent.connect(on_sent)
    try:
        client = make_client()
        client.track("Sig", customer_id="sig-user")
        client.identify(customer_id="sig-user", a=1)
        assert client.flush(5)
    finally:
        signals.batch_sent.disconnect(on_sent)
    assert sum(s["records"] for s in sent) == 2
    assert sum(s["events"] for s in sent) == 1
    assert sum(s["users"] for s in sent) == 1
    assert json.dumps(sent)  # plain data
