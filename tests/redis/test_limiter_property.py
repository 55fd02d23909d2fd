"""The shared limiter's window, as a property: random senders with their own batch sizes,
random clocks (the same instant, small and large steps, a clock stepping back), every grant
and refusal checked against a naive count of the grants so far.

The subject is the limiter's model (the script's algorithm in Python, fast: many examples)
and the real Lua script on a real redis-server, driven through :class:`RedisLimiter` with
the clock passed in (fewer examples); the script must answer as the model does.

Checked on every call: a grant is the longest head of the batch that fits (its units plus
those in the closed window ``[t - span, t]`` within each quota), and at least ``least``
records or the whole batch; a refusal comes only when the first ``least`` records do not fit,
with the exact wait: they fit after it, not a microsecond before. After the run, every window
of the span holds at most the quota (or one grant alone, larger than a whole quota).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
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


class Model:
    """The script's algorithm in Python: per quota, the grants as ``{seq: [score, units]}``."""

    def __init__(self, window: int, allowance: int, quotas: tuple[int, int]) -> None:
        self.window = window
        self.allowance = allowance
        self.quotas = quotas
        self.grants: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})
        self.seqs = [0, 0]
        self.seen = 0  # the latest time seen: the clock never steps back

    def acquire(
        self, now: int, batch: Sequence[int], least: int, reports: Sequence[Sequence[int]]
    ) -> tuple[int, int, int, int]:
        now = self.seen = max(self.seen, now)
        for *grant, elapsed in reports:
            for i in range(2):
                seq, units_ = grant[2 * i], grant[2 * i + 1]
                entry = self.grants[i].get(seq)
                if seq and entry is not None and entry[1] == units_:
                    entry[0] = min(entry[0], now - elapsed)
        used = []
        for i, grants in enumerate(self.grants):
            for seq in [q for q, (score, _) in grants.items() if score < now - self.window]:
                del grants[seq]
            used.append(sum(n for _, n in grants.values()) if self.quotas[i] else 0)
        room = [q - u if q else 1 << 60 for q, u in zip(self.quotas, used, strict=True)]
        take, records = units(batch, room)
        need, _ = units(batch, None, least)
        if records < least and records < sum(map(abs, batch)):
            if any(
                q and n and min(n, q) > r for q, n, r in zip(self.quotas, need, room, strict=True)
            ):
                wait = 1
                for i, grants in enumerate(self.grants):
                    q = self.quotas[i]
                    excess = used[i] + min(need[i], q) - q
                    if q and need[i] and excess > 0:
                        for score, n in sorted(grants.values()):
                            excess -= n
                            if excess <= 0:
                                wait = max(wait, score + self.window + 1 - now)
                                break
                return 0, wait, 0, 0
            take, records = need, least
        seqs = [0, 0]
        for i, grants in enumerate(self.grants):
            if self.quotas[i] and take[i]:
                self.seqs[i] += take[i]
                seqs[i] = self.seqs[i]
                grants[seqs[i]] = [now + self.allowance, take[i]]
        return records, 0, seqs[0], seqs[1]


class ModelSender:
    """One process's side of the model, as :class:`RedisLimiter` keeps it: the grant in flight
    alone, reported with the next acquire once answered."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.flight = 0
        self.alone: tuple[int, int, int, int] | None = None
        self.answered_at: list[tuple[int, int, int, int, int]] = []

    def acquire(self, now: int, batch: Sequence[int], least: int) -> tuple[int, int]:
        reports = [(*g, now - at) for *g, at in self.answered_at]
        self.answered_at = []
        granted, wait, users_seq, events_seq = self.model.acquire(now, batch, least, reports)
        if not wait:
            self.flight += 1
            if self.flight == 1:
                u, e = units(batch, None, granted)[0]
                self.alone = (users_seq, u, events_seq, e)
            else:
                self.alone = None
        return granted, wait

    def answered(self, now: int) -> None:
        if self.flight:
            self.flight -= 1
            if not self.flight and self.alone is not None:
                self.answered_at.append((*self.alone, now))
            self.alone = None


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
class Grant:
    sender: int
    at: int
    units: list[int]
    alone: bool  # the sender's only request in flight: its answer is reported
    answered: int | None = None  # when its answer came (the server counted it by then)
    reported: bool = False  # the answer reached the script (with the sender's next acquire)

    def counted_until(self, allowance: int, *, known: bool) -> int:
        """The latest moment the server may count it: the allowance, or its answer (only
        once reported, when ``known``)."""
        end = self.at + allowance
        if self.alone and self.answered is not None and (self.reported or not known):
            end = min(end, self.answered)
        return end


@dataclass
class Checker:
    """A naive account of every grant and answer."""

    window: int
    allowance: int
    quotas: tuple[int, int]
    grants: list[Grant] = field(default_factory=list)

    def used(self, i: int, now: int) -> int:
        return sum(
            g.units[i]
            for g in self.grants
            if g.counted_until(self.allowance, known=True) >= now - self.window
        )

    def fits(self, now: int, need: Sequence[int], *, alone: bool = False) -> bool:
        """Whether ``need`` (users, events) fits now; ``alone``: a head larger than a whole
        quota counts as the quota (it goes once the window is empty)."""
        return all(
            not q or not n or self.used(i, now) + (min(n, q) if alone else n) <= q
            for i, (q, n) in enumerate(zip(self.quotas, need, strict=True))
        )

    def answer(self, sender: int, now: int) -> None:
        flying = [g for g in self.grants if g.sender == sender and g.answered is None]
        if flying:
            flying[0].answered = now

    def call(
        self, sender: int, now: int, batch: Sequence[int], least: int, answer: tuple[int, int]
    ) -> None:
        for g in self.grants:
            if g.sender == sender and g.answered is not None:
                g.reported = True
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
        flying = any(g.sender == sender and g.answered is None for g in self.grants)
        for g in self.grants:
            if g.sender == sender and g.answered is None:
                g.alone = False  # two in flight at once: neither is reported
        self.grants.append(Grant(sender, now, head, alone=not flying))

    def check_windows(self) -> None:
        """Every closed window ``[b, b + W]`` of the server's: a request may be counted at
        any moment from its grant until its answer (or the allowance); the worst windows
        begin at a grant. At most the quota in each, or one grant alone."""
        for i, q in enumerate(self.quotas):
            if not q:
                continue
            for j, last in enumerate(self.grants):
                inside = [
                    g.units[i]
                    for g in self.grants[: j + 1]
                    if g.units[i]
                    and g.counted_until(self.allowance, known=False) >= last.at - self.window
                ]
                assert sum(inside) <= q or len(inside) == 1, (i, last, inside)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    window = draw(st.integers(1, 50))
    allowance = draw(st.integers(0, 10))
    users = draw(st.sampled_from([0, 0, 1, 3, 10, 40]))
    events = draw(st.integers(1, 60))
    senders = draw(st.lists(st.integers(1, 80), min_size=1, max_size=4))  # batch size caps
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        who = draw(st.integers(0, len(senders) - 1))
        dt = draw(st.one_of(st.just(0), st.integers(1, 4), st.integers(1, window * 2)))
        runs = draw(
            st.lists(st.integers(-senders[who], senders[who]).filter(bool), min_size=1, max_size=4)
        )
        least = draw(st.integers(1, sum(map(abs, runs))))
        overlap = draw(st.integers(0, 9)) == 0  # sync mode: a second request in flight
        steps.append((who, dt, runs, least, overlap))
    return {
        "window": window,
        "allowance": allowance,
        "quotas": (users, events),
        "senders": len(senders),
        "steps": steps,
    }


class Subject:
    """What the property drives: per sender, ``acquire`` and ``answered`` at a time."""

    def acquire(self, sender: int, now: int, batch: Sequence[int], least: int) -> tuple[int, int]:
        raise NotImplementedError

    def answered(self, sender: int, now: int) -> None:
        raise NotImplementedError


def drive(scenario: dict[str, Any], subject: Subject) -> Checker:
    checker = Checker(scenario["window"], scenario["allowance"], scenario["quotas"])
    flying = [0] * scenario["senders"]
    now = 10**9
    for who, dt, runs, least, overlap in scenario["steps"]:
        now += dt
        if flying[who] and not overlap:  # stop and wait: this sender's answer comes first
            subject.answered(who, now)
            checker.answer(who, now)
            flying[who] -= 1
            continue
        answer = subject.acquire(who, now, runs, least)
        checker.call(who, now, runs, least, answer)
        if not answer[1]:
            flying[who] += 1
    checker.check_windows()
    return checker


class ModelSubject(Subject):
    def __init__(self, scenario: dict[str, Any]) -> None:
        model = Model(scenario["window"], scenario["allowance"], scenario["quotas"])
        self.senders = [ModelSender(model) for _ in range(scenario["senders"])]

    def acquire(self, sender: int, now: int, batch: Sequence[int], least: int) -> tuple[int, int]:
        return self.senders[sender].acquire(now, batch, least)

    def answered(self, sender: int, now: int) -> None:
        self.senders[sender].answered(now)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_the_model_keeps_every_window_and_wastes_no_room(scenario: dict[str, Any]) -> None:
    drive(scenario, ModelSubject(scenario))


# --- the real script ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    _need_redis_server()
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


_apps = itertools.count()


class ScriptSubject(Subject):
    """The real script: one :class:`RedisLimiter` per sender on one app id, the clock
    passed in; every answer checked against the model's."""

    def __init__(self, server: RedisServer, scenario: dict[str, Any]) -> None:
        users, events = scenario["quotas"]
        app = f"prop{next(_apps)}"
        self.clock = [0]
        self.limiters = []
        for _ in range(scenario["senders"]):
            limiter = RedisLimiter(
                server.url,
                app,
                users or None,
                events,
                scenario["window"] / 1_000_000,
                allowance=scenario["allowance"] / 1_000_000,
            )
            limiter.clock = lambda: self.clock[0]
            self.limiters.append(limiter)
        self.model = ModelSubject(scenario)

    def acquire(self, sender: int, now: int, batch: Sequence[int], least: int) -> tuple[int, int]:
        self.clock[0] = now
        granted, wait = self.limiters[sender].acquire_some(batch, least)
        answer = (granted, round(wait * 1_000_000))
        assert answer == self.model.acquire(sender, now, batch, least), (now, batch, least)
        return answer

    def answered(self, sender: int, now: int) -> None:
        self.clock[0] = now
        self.limiters[sender].answered()
        self.model.answered(sender, now)

    def close(self) -> None:
        for limiter in self.limiters:
            assert limiter.fallback_acquires == 0
            limiter.close()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios())
def test_the_script_answers_as_the_model(
    shared_redis: RedisServer, scenario: dict[str, Any]
) -> None:
    subject = ScriptSubject(shared_redis, scenario)
    try:
        drive(scenario, subject)
    finally:
        subject.close()


def test_the_clock_never_steps_back(shared_redis: RedisServer) -> None:
    """Should Redis's clock step back, the script keeps the latest time it has seen: the
    grants stay in their windows."""
    limiter = RedisLimiter(shared_redis.url, f"prop{next(_apps)}", None, 10, 1.0, allowance=0.0)
    clock = [5_000_000]
    limiter.clock = lambda: clock[0]
    assert limiter.acquire(0, 10) == 0.0
    limiter.answered()
    clock[0] -= 3_000_000  # three seconds back
    assert limiter.acquire(0, 1) == pytest.approx(1.0, abs=2e-6)  # as if no time had passed
    clock[0] += 3_500_000  # half a second after the grant, on the script's clock
    assert limiter.acquire(0, 1) == pytest.approx(0.5, abs=2e-6)
    limiter.close()
