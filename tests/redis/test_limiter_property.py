"""The shared limiter's window, as a property: random senders with their own batch sizes,
random clocks (the same instant, small and large steps, a clock stepping back), every grant
and refusal checked against a naive count of the grants so far.

The subject is the limiter's model (the script's algorithm in Python, fast: many examples)
and the real Lua script on a real redis-server, driven through :class:`RedisLimiter` with
the clock passed in (fewer examples); the script must answer as the model does.

Checked on every call: a grant is the longest head of the batch that fits (its units plus
those in the window ``(t - span, t]`` within each quota), and at least ``least`` records or
the whole batch; a refusal comes only when the first ``least`` records do not fit, with the
exact wait: they fit after it, not a microsecond before. After the run, every window of the
span holds at most the quota (or one grant alone, larger than a whole quota).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moetrack.redis.limiter import RedisLimiter

from .._need import need_module
from .conftest import RedisServer, _need_redis_server

need_module("redis")

Acquire = Callable[[int, Sequence[int], int], tuple[int, int]]


class Model:
    """The script's algorithm in Python: per quota, the grants as ``(stamp, units)``."""

    def __init__(self, span: int, quotas: tuple[int, int]) -> None:
        self.span = span
        self.quotas = quotas
        self.windows: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
        self.seen = 0  # the latest time seen: the clock never steps back

    def acquire(self, now: int, batch: Sequence[int], least: int) -> tuple[int, int]:
        now = self.seen = max(self.seen, now)
        used = []
        for i, window in enumerate(self.windows):
            window[:] = [(s, n) for s, n in window if s > now - self.span]
            used.append(sum(n for _, n in window) if self.quotas[i] else 0)
        room = [q - u if q else 1 << 60 for q, u in zip(self.quotas, used, strict=True)]
        take, records = units(batch, room)
        need, _ = units(batch, None, least)
        if records < least and records < sum(map(abs, batch)):
            if any(
                q and n and min(n, q) > r for q, n, r in zip(self.quotas, need, room, strict=True)
            ):
                wait = 1
                for i, window in enumerate(self.windows):
                    q = self.quotas[i]
                    excess = used[i] + min(need[i], q) - q
                    if q and need[i] and excess > 0:
                        for s, n in sorted(window, key=lambda g: g[0]):
                            excess -= n
                            if excess <= 0:
                                wait = max(wait, s + self.span - now)
                                break
                return 0, wait
            take, records = need, least
        for i, window in enumerate(self.windows):
            if self.quotas[i] and take[i]:
                stamp = max([now, *(s for s, _ in window)])
                window.append((stamp, take[i]))
        return records, 0


def units(
    batch: Sequence[int], room: Sequence[int] | None, least: int | None = None
) -> tuple[list[int], int]:
    """The users and events of the longest head within ``room`` (or of ``least`` records)."""
    took = [0, 0]
    left = least if least is not None else 1 << 62
    for run in batch:
        kind, k = (0, -run) if run < 0 else (1, run)
        fit = min(k, left) if room is None else max(0, min(k, room[kind] - took[kind]))
        took[kind] += fit
        left -= fit
        if fit < k or left <= 0:
            break
    return took, took[0] + took[1]


@dataclass
class Checker:
    """A naive account of every grant, on each quota's own stamps."""

    span: int
    quotas: tuple[int, int]
    grants: tuple[list[tuple[int, int]], list[tuple[int, int]]] = field(
        default_factory=lambda: ([], [])
    )

    def used(self, i: int, now: int) -> int:
        return sum(n for s, n in self.grants[i] if s > now - self.span)

    def fits(self, now: int, need: Sequence[int], *, alone: bool = False) -> bool:
        """Whether ``need`` (users, events) fits now; ``alone``: a head larger than a whole
        quota counts as the quota (it goes once the window is empty)."""
        return all(
            not q or not n or self.used(i, now) + (min(n, q) if alone else n) <= q
            for i, (q, n) in enumerate(zip(self.quotas, need, strict=True))
        )

    def call(self, now: int, batch: Sequence[int], least: int, answer: tuple[int, int]) -> None:
        granted, wait = answer
        total = sum(map(abs, batch))
        if wait:
            assert granted == 0
            need, _ = units(batch, None, least)
            assert not self.fits(now, need, alone=True), (now, batch, least, answer)
            assert self.fits(now + wait, need, alone=True), "the wait is too short"
            assert not self.fits(now + wait - 1, need, alone=True), "the wait is too long"
            return
        assert granted == total or granted >= least, (batch, least, answer)
        head, n = units(batch, None, granted)
        assert n == granted
        if granted < total:  # the next record would not have fitted
            more, _ = units(batch, None, granted + 1)
            assert not self.fits(now, more), (now, batch, answer)
        assert self.fits(now, head) or (granted == least and self.fits(now, head, alone=True)), (
            now,
            batch,
            answer,
        )
        for i, q in enumerate(self.quotas):
            if q and head[i]:
                stamp = max([now, *(s for s, _ in self.grants[i])])
                self.grants[i].append((stamp, head[i]))

    def check_windows(self) -> None:
        for i, q in enumerate(self.quotas):
            if not q:
                continue
            for end, _ in self.grants[i]:
                inside = [n for s, n in self.grants[i] if end - self.span < s <= end]
                assert sum(inside) <= q or len(inside) == 1, (i, end, inside)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    span = draw(st.integers(1, 50))
    users = draw(st.sampled_from([0, 0, 1, 3, 10, 40]))
    events = draw(st.integers(1, 60))
    senders = draw(st.lists(st.integers(1, 80), min_size=1, max_size=4))  # batch size caps
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        who = draw(st.integers(0, len(senders) - 1))
        dt = draw(st.one_of(st.just(0), st.integers(1, span * 2), st.integers(-span, -1)))
        runs = draw(
            st.lists(st.integers(-senders[who], senders[who]).filter(bool), min_size=1, max_size=4)
        )
        least = draw(st.integers(1, sum(map(abs, runs))))
        steps.append((dt, runs, least))
    return {"span": span, "quotas": (users, events), "steps": steps}


def drive(scenario: dict[str, Any], acquire: Acquire) -> Checker:
    checker = Checker(scenario["span"], scenario["quotas"])
    now, seen = 10**9, 0
    for dt, runs, least in scenario["steps"]:
        now = max(1, now + dt)
        answer = acquire(now, runs, least)
        seen = max(seen, now)  # the limiter's clock: it never steps back
        checker.call(seen, runs, least, answer)
    checker.check_windows()
    return checker


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_the_model_keeps_every_window_and_wastes_no_room(scenario: dict[str, Any]) -> None:
    model = Model(scenario["span"], scenario["quotas"])
    drive(scenario, model.acquire)


# --- the real script ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    _need_redis_server()
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


_apps = itertools.count()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios())
def test_the_script_answers_as_the_model(
    shared_redis: RedisServer, scenario: dict[str, Any]
) -> None:
    users, events = scenario["quotas"]
    # The span in µs is W + L; W = span - 1 µs and L = 1 µs give it exactly.
    span = scenario["span"]
    limiter = RedisLimiter(
        shared_redis.url,
        f"prop{next(_apps)}",
        users or None,
        events,
        (span - 1) / 1_000_000,
        allowance=1 / 1_000_000,
    )
    assert limiter.parameters == (span, users, events)
    model = Model(span, scenario["quotas"])
    clock = [0]
    limiter.clock = lambda: clock[0]

    def both(now: int, batch: Sequence[int], least: int) -> tuple[int, int]:
        clock[0] = now
        granted, wait = limiter.acquire_some(batch, least)
        answer = (granted, round(wait * 1_000_000))
        assert answer == model.acquire(now, batch, least), (now, batch, least)
        return answer

    try:
        drive(scenario, both)
        assert limiter.fallback_acquires == 0
    finally:
        limiter.close()
