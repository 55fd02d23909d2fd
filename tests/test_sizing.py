"""Batches sized to the moment: when the pace binds, a sender sends the head of its batch that
the limiter can grant now, instead of waiting until the whole batch fits."""

from __future__ import annotations

from moetrack._pipeline.limiter import LocalLimiter, head
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
