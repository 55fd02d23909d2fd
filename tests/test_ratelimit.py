from __future__ import annotations

import pytest

from moetrack._ratelimit import WindowLimit
from moetrack._retry import RetryPolicy


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


def test_no_limit_never_waits_and_oversized_requests_are_refused() -> None:
    assert WindowLimit(None).wait_time(10**9, 0.0) == 0.0
    with pytest.raises(ValueError):
        WindowLimit(5).wait_time(6, 0.0)


def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff=0.5, backoff_max=4.0)
    for attempt in range(10):
        d = policy.delay(attempt)
        cap = min(4.0, 0.5 * 2**attempt)
        assert cap / 2 <= d <= cap
    assert policy.delay(5, retry_after=7.0) == 7.0
    assert RetryPolicy.is_retryable(503)
    assert RetryPolicy.is_retryable(429)
    assert not RetryPolicy.is_retryable(401)
    assert not RetryPolicy.is_retryable(413)
