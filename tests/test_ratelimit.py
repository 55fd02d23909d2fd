from __future__ import annotations

import pytest

from moetrack._pipeline.limiter import WindowLimit
from moetrack._pipeline.retry import RetryPolicy


def test_sliding_window_never_allows_more_than_the_limit_in_any_window() -> None:
    limit = WindowLimit(10, window=60.0)
    now = 0.0
    sent: list[tuple[float, int]] = []
    for _ in range(200):
        wait = limit.wait_time(3, now)
        now += wait
        limit.spend(3, now)
        sent.append((now, 3))
        now += 0.5
    for start, _ in sent:
        in_window = sum(n for t, n in sent if start <= t < start + 60.0)
        assert in_window <= 10


def test_no_limit_never_waits_and_an_oversized_batch_goes_alone_once_the_window_is_empty() -> None:
    assert WindowLimit(None).wait_time(10**9, 0.0) == 0.0
    limit = WindowLimit(5, window=60.0)
    assert limit.wait_time(6, 0.0) == 0.0  # an empty window: it goes alone (it never raises)
    limit.spend(2, 0.0)
    assert limit.wait_time(6, 10.0) == 50.0  # waits until the window is empty again


def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff=0.5, backoff_max=4.0)
    for attempt in range(10):
        d = policy.delay(attempt)
        cap = min(4.0, 0.5 * 2**attempt)
        assert cap / 2 <= d <= cap
    assert policy.delay(5, retry_after=7.0) == 7.0


def test_a_short_retry_after_never_makes_a_retry_sooner_than_the_backoff_step() -> None:
    policy = RetryPolicy(backoff=0.5, backoff_max=30.0)
    for attempt in range(8):
        step_floor = min(30.0, 0.5 * 2**attempt) / 2
        assert policy.delay(attempt, retry_after=0.0) >= step_floor
        assert policy.delay(attempt, retry_after=0.1) >= step_floor
    assert policy.delay(0, retry_after=20.0) == 20.0  # a longer one is honoured as given


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 507, 599])
def test_statuses_that_may_succeed_later_are_retried(status: int) -> None:
    assert RetryPolicy.is_retryable(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 501, 505])
def test_other_4xx_and_501_505_are_permanent(status: int) -> None:
    assert not RetryPolicy.is_retryable(status)
