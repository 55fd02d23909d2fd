"""The shared limiter against a real redis-server: the window promise, one round trip per
batch, the shared pause, the fallback while Redis is away, fork safety."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from moetrack._config import Config
from moetrack._pipeline.backends import make_limiter
from moetrack._pipeline.limiter import LocalLimiter
from moetrack.redis import limiter as _redis_limiter
from moetrack.redis.connection import redact_url, url_password
from moetrack.redis.limiter import RedisLimiter

from .._need import need_module
from .conftest import RedisServer

redis = need_module("redis")


def raw(server: RedisServer, password: str | None = None) -> Any:
    return redis.Redis(host="127.0.0.1", port=server.port, password=password)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)  # polling a condition
    return condition()


# --- parameters --------------------------------------------------------------------------


def test_the_parameters_are_the_quota_and_the_window_alone() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", "app", 1_000, 10_000, 60.0)
    assert limiter.parameters == (60_000_000, 1_000_000, 1_000, 10_000)  # W, L (1 s), quotas
    limiter = RedisLimiter("redis://127.0.0.1:1/0", "app", None, 600, 6.0, allowance=0.1)
    assert limiter.parameters == (6_000_000, 100_000, 0, 600)


def test_display_url_hides_the_password() -> None:
    assert redact_url("redis://:s3cret@host:6380/1") == "redis://:***@host:6380/1"
    assert redact_url("rediss://user:s3cret@h/0") == "rediss://user:***@h/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
    # redis-py also takes the password as a query parameter
    assert redact_url("redis://host:6379/0?password=s3cret&db=2") == (
        "redis://host:6379/0?password=***&db=2"
    )
    assert url_password("redis://host/0?password=s3cret") == "s3cret"
    assert redact_url("redis://:a@host/0?password=b") == "redis://:***@host/0?password=***"


# --- the window promise ----------------------------------------------------------------


def _drive(
    url: str,
    seconds: float,
    seed: int,
    grants: list[tuple[int, int, int]],
    sizes: tuple[int, int],
    **kw: Any,
) -> None:
    """One process's sender: random batches (up to ``sizes`` users and events), each asked
    for until granted, as a sender does; now and then one as large as a whole quota."""
    limiter = RedisLimiter(url, "app", **kw)
    rng = random.Random(seed)
    quota_users, quota_events = kw["users_per_minute"], kw["events_per_minute"]
    window = kw["window"]
    start = time.monotonic()
    end = start + seconds

    def quiet() -> None:
        # Every three windows, one is quiet for every sender (the bucket fills up), and the
        # next two are a rush (a full bucket, then the steady pace): the worst case.
        phase = (time.monotonic() - start) / window % 3
        if phase < 1:
            time.sleep((1 - phase) * window)

    while time.monotonic() < end:
        if rng.random() < 0.04:
            users, events = quota_users, quota_events
        else:
            users, events = rng.randint(0, sizes[0]), rng.randint(1, sizes[1])
        while True:
            quiet()
            wait = limiter.acquire(users, events)
            if wait <= 0:
                break
            time.sleep(wait)  # the limiter's own answer paces, as in the sender
        grants.append((limiter.last_grant, users, events))
        limiter.answered()
    limiter.close()


def _worst_window(grants: list[tuple[int, int]], span_us: int) -> int:
    """Most units in any closed window ``[t, t + span]`` (one starts at each grant)."""
    grants = sorted(grants)
    worst, total, j = 0, 0, 0
    for t, n in grants:
        total += n
        while grants[j][0] < t - span_us:
            total -= grants[j][1]
            j += 1
        worst = max(worst, total)
    return worst


def test_no_window_exceeds_the_quota(redis_server: RedisServer) -> None:
    """Four senders on one Redis, allowance 0 (the tightest case), batches taken whole: no
    closed window of the quota's length, on Redis's clock, ever holds more than the quota."""
    window = 0.4
    settings = {
        "users_per_minute": 60,
        "events_per_minute": 400,
        "window": window,
        "allowance": 0.0,
    }
    grants: list[tuple[int, int, int]] = []
    threads = [
        threading.Thread(
            target=_drive, args=(redis_server.url, 3.6, seed, grants, (5, 40)), kwargs=settings
        )
        for seed in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(grants) > 20
    span = int(window * 1_000_000)
    worst_users = _worst_window([(t, u) for t, u, _ in grants], span)
    worst_events = _worst_window([(t, e) for t, _, e in grants], span)
    assert worst_users <= 60, worst_users
    assert worst_events <= 400, worst_events
    # The check has teeth: the same grants over two windows do exceed one quota.
    assert _worst_window([(t, e) for t, _, e in grants], 2 * span) > 400


def test_a_grant_counts_until_its_answer_or_the_allowance(redis_server: RedisServer) -> None:
    """A grant holds its units for a window after the allowance, until its sender reports
    (with its next acquire) when the answer came: then for a window after that."""
    limiter = RedisLimiter(redis_server.url, "app", None, 10, 1.0, allowance=0.5)
    other = RedisLimiter(redis_server.url, "app", None, 10, 1.0, allowance=0.5)
    clock = [10_000_000]
    limiter.clock = other.clock = lambda: clock[0]
    assert limiter.acquire(0, 10) == 0.0
    clock[0] += 100_000  # answered 0.1 s after its grant
    limiter.answered()
    clock[0] += 50_000  # the second half of a 413 split, answered 0.05 s later
    limiter.answered()
    clock[0] += 50_000
    # Not reported yet: the allowance holds. Then reported: a window after the answer.
    assert other.acquire(0, 1) == pytest.approx(1.3, abs=2e-6)
    assert limiter.acquire(0, 1) == pytest.approx(0.95, abs=2e-6)
    assert other.acquire(0, 1) == pytest.approx(0.95, abs=2e-6)
    limiter.close()
    other.close()


def test_a_report_never_moves_a_grant_before_it_was_granted(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis's clock steps back (a wall clock set back): the script's clock holds still
    until it catches up, while this process's clock goes on. The answer, reported as "so long
    ago" on this process's clock, would then fall before the grant and free its units early;
    it counts from the grant at the earliest."""
    limiter = RedisLimiter(redis_server.url, "app", None, 10, 1.0, allowance=0.0)
    redis_clock, local_clock = [10_000_000], [500_000_000]
    limiter.clock = lambda: redis_clock[0]
    monkeypatch.setattr(limiter, "_micros", lambda: local_clock[0])
    assert limiter.acquire(0, 10) == 0.0  # granted at 10.0 s on the script's clock
    local_clock[0] += 100_000
    limiter.answered()  # 0.1 s later
    redis_clock[0] = 9_600_000  # Redis's clock is set back by half a second...
    local_clock[0] += 400_000  # ...and the next acquire comes 0.4 s after the answer
    # The script's clock still says 10.0 s: the answer "0.4 s ago" would be at 9.6 s.
    assert limiter.acquire(0, 1) == pytest.approx(1.0, abs=2e-6)  # from the grant, not 0.6 s
    limiter.close()


def test_a_grant_still_counts_at_exactly_a_window_after_it(redis_server: RedisServer) -> None:
    """Windows are closed: a request counted at ``c`` and one at ``c + W`` fall in the same
    window ``[c, c + W]``, so a grant leaves only once it is more than a window old. (Seen in
    test_no_window_exceeds_the_quota_whatever_the_batch_sizes: a grant exactly a window after
    another, 404 and 408 in a window of 400.)"""
    limiter = RedisLimiter(redis_server.url, "app", None, 10, 1.0, allowance=0.0)
    clock = [10_000_000]
    limiter.clock = lambda: clock[0]
    assert limiter.acquire(0, 10) == 0.0  # granted at 10.0 s, never answered: counted then
    clock[0] = 11_000_000  # exactly one window later
    wait = limiter.acquire(0, 1)
    assert wait > 0, "granted at the window's far edge: that window holds 11"
    clock[0] += round(wait * 1_000_000)  # the wait it gave is enough
    assert limiter.acquire(0, 1) == 0.0
    limiter.close()


def test_both_quotas_are_charged_together_or_not_at_all(redis_server: RedisServer) -> None:
    limiter = RedisLimiter(redis_server.url, "app", 10, 1_000, 60.0)
    r = raw(redis_server)
    # users: 10 a minute. The first batch takes them all; the second waits for the users.
    assert limiter.acquire(10, 5) == 0.0
    events = r.zrange("mt:{app}:window:events", 0, -1)
    wait = limiter.acquire(1, 5)
    assert 60 < wait <= 61
    assert r.zrange("mt:{app}:window:events", 0, -1) == events  # the events were not charged
    for key in ("mt:{app}:window:users", "mt:{app}:window:events"):
        assert r.pttl(key) > 0  # every key expires: nothing is left behind
    limiter.close()


# --- one round trip per batch -------------------------------------------------------------


def _round_trips(
    server: RedisServer, limiter: RedisLimiter, action: Callable[[], None]
) -> list[str]:
    """The commands the limiter sent while ``action`` ran, as MONITOR saw them (the commands
    a script runs inside the server are not round trips, and are left out)."""
    address = limiter._redis.client_info()["addr"]
    r = raw(server)
    marker = "moetrack-end-of-action"
    with r.monitor() as monitor:
        action()
        raw(server).echo(marker)
        sent: list[str] = []
        while True:
            command = monitor.next_command()
            if marker in command["command"]:
                return sent
            if f"{command['client_address']}:{command['client_port']}" == address:
                sent.append(command["command"].split()[0].upper())


def test_one_round_trip_per_acquire(redis_server: RedisServer) -> None:
    limiter = RedisLimiter(redis_server.url, "app", 100_000, 100_000, 60.0)
    limiter.acquire(1, 1)  # connects and caches the script

    def batches() -> None:
        for _ in range(25):
            assert limiter.acquire(2, 7) == 0.0
            limiter.answered()

    assert _round_trips(redis_server, limiter, batches) == ["EVALSHA"] * 25
    # A server that lost its scripts (a restart, SCRIPT FLUSH) costs one more, once.
    raw(redis_server).script_flush()
    assert _round_trips(redis_server, limiter, batches) == ["EVALSHA", "EVAL"] + ["EVALSHA"] * 24
    # Part of a batch (its head that fits now) is one round trip too.
    assert _round_trips(redis_server, limiter, lambda: limiter.acquire_some([-2, 7], 3)) == [
        "EVALSHA"
    ]
    # A 429's pause is one round trip too.
    assert _round_trips(redis_server, limiter, lambda: limiter.pause(1.0)) == ["EVALSHA"]
    limiter.close()


# --- the shared pause ---------------------------------------------------------------------


def test_a_429_pauses_every_process(redis_server: RedisServer) -> None:
    one = RedisLimiter(redis_server.url, "app", 1_000, 10_000, 60.0)
    other = RedisLimiter(redis_server.url, "app", 1_000, 10_000, 60.0)
    elsewhere = RedisLimiter(redis_server.url, "another-app", 1_000, 10_000, 60.0)
    assert other.acquire(1, 1) == 0.0
    one.pause(3.0)
    wait = other.acquire(1, 1)
    assert 0 < wait <= 3.0
    assert elsewhere.acquire(1, 1) == 0.0  # a pause belongs to its app id
    # A shorter pause never shortens a longer one.
    one.pause(0.5)
    assert other.acquire(1, 1) > 0.5
    assert 0 < raw(redis_server).pttl("mt:{app}:pause") <= 3000
    for limiter in (one, other, elsewhere):
        limiter.close()


# --- Redis away: the local fallback -------------------------------------------------------


def test_fallback_while_redis_is_down_then_back(
    redis_factory: Callable[..., RedisServer],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_redis_limiter, "RETRY_INTERVAL", 0.2)
    # A user with a password (the default user stays open, for the fixture's own PING).
    server = redis_factory(args=("--user", "moe", "on", ">s3cret-pw", "~*", "&*", "+@all"))
    url = f"redis://moe:s3cret-pw@127.0.0.1:{server.port}/0"
    fallback = LocalLimiter(None, 5, 60.0)
    limiter = RedisLimiter(url, "app", None, 10_000, 60.0, fallback=fallback)
    caplog.set_level(logging.INFO, logger="moetrack")
    assert limiter.acquire(0, 1) == 0.0
    assert limiter.round_trips == 1

    server.kill()
    grants = 0
    for _ in range(10):
        if limiter.acquire(0, 1) == 0.0:
            grants += 1
            limiter.answered()
    assert grants == 5  # the local limiter paces alone: 5 a minute
    assert limiter.fallback_acquires == 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unreachable" in warnings[0].getMessage()
    assert "redis://moe:***@127.0.0.1" in warnings[0].getMessage()
    assert "s3cret-pw" not in caplog.text

    server.start()
    assert wait_until(lambda: limiter.acquire(0, 1) == 0.0 and limiter.round_trips > 1)
    back = [r for r in caplog.records if "is back" in r.getMessage()]
    assert len(back) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert "s3cret-pw" not in caplog.text
    limiter.close()


def test_pause_while_redis_is_down_still_pauses_locally(redis_server: RedisServer) -> None:
    limiter = RedisLimiter(redis_server.url, "app", 1_000, 10_000, 60.0)
    redis_server.kill()
    limiter.pause(2.0)
    assert 0 < limiter.acquire(1, 1) <= 2.0


# --- wiring, fork, import cost ------------------------------------------------------------


def test_make_limiter_builds_it_from_the_config(redis_server: RedisServer) -> None:
    config = Config.build(
        "APPID123",
        "key",
        endpoint="http://127.0.0.1:1",
        limiter=redis_server.url,
        events_per_minute=600,
        users_per_minute=None,
        rate_limit_window=6.0,
        max_batch_size=50,
    )
    limiter = make_limiter(config)
    assert isinstance(limiter, RedisLimiter)
    assert isinstance(limiter.fallback, LocalLimiter)
    assert limiter.keys == (
        "mt:{APPID123}:window:users",
        "mt:{APPID123}:window:events",
        "mt:{APPID123}:pause",
        "mt:{APPID123}:window",
    )
    assert limiter.parameters == (6_000_000, 250_000, 0, 600)  # W, L (at least 0.25 s), quotas
    assert limiter.acquire(3, 3) == 0.0
    assert raw(redis_server).exists("mt:{APPID123}:window:events")
    assert not raw(redis_server).exists("mt:{APPID123}:window:users")  # that quota is off
    limiter.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_uses_its_own_connection(redis_server: RedisServer) -> None:
    limiter = RedisLimiter(redis_server.url, "app", 1_000, 10_000, 60.0)
    assert limiter.acquire(1, 1) == 0.0
    parent_id = limiter._redis.client_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection id and whether acquire works
        try:
            ok = limiter.acquire(1, 1) == 0.0 and limiter.round_trips == 2
            os.write(write, f"{limiter._redis.client_id()} {int(ok)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child_id, ok = f.read().split()
    os.waitpid(pid, 0)
    assert ok == "1"
    assert int(child_id) != parent_id
    assert limiter._redis.client_id() == parent_id  # the parent's socket was left alone
    assert limiter.acquire(1, 1) == 0.0
    limiter.close()


def test_import_moetrack_does_not_import_redis() -> None:
    code = "import sys, moetrack; sys.exit('redis' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- end to end: four producer processes, one quota ---------------------------------------

PRODUCER = """
import json, sys
import moetrack

endpoint, app_id, api_key, limiter, index, count, quota, window = sys.argv[1:]
options = dict(limiter=limiter) if limiter else {}
client = moetrack.Client(
    app_id, api_key, endpoint=endpoint, events_per_minute=int(quota), users_per_minute=None,
    rate_limit_window=float(window), retry_deadline=30.0, max_batch_size=100,
    shutdown_timeout=120.0, **options,
)
print("ready", flush=True)
sys.stdin.readline()  # every producer starts its burst at once
for i in range(int(count)):
    client.track("burst", {"i": i}, customer_id=f"p{index}-c{i % 40}")
client.flush(timeout=120.0)
client.shutdown()
print(json.dumps(client.stats()), flush=True)
"""


@pytest.mark.slow
def test_four_producers_share_one_quota(redis_server: RedisServer) -> None:
    """``limiter=`` alone, four processes each tracking a burst against one quota (1,000
    events per 6 s, as the emulator enforces it): no 429, nothing lost."""
    from moetrack.testing import Emulator

    producers, per_producer, quota, window = 4, 500, 1_000, 6.0
    with Emulator(events_per_minute=quota, rate_limit_window=window) as emulator:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    PRODUCER,
                    emulator.url,
                    emulator.app_id,
                    emulator.api_key or "",
                    redis_server.url,
                    str(index),
                    str(per_producer),
                    str(quota),
                    str(window),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(producers)
        ]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=180)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * producers, outputs
        statuses = [r["status"] for r in emulator.requests()]
        events = emulator.events()
    assert statuses.count(429) == 0, statuses
    assert len(events) == producers * per_producer
    delivered = {(e["customer_id"].split("-")[0], e["attributes"]["i"]) for e in events}
    assert len(delivered) == producers * per_producer  # every event, once


def test_no_window_exceeds_the_quota_whatever_the_batch_sizes(redis_server: RedisServer) -> None:
    """A relay's small batches beside an app's larger ones, on one key: a relay streaming
    batches of 10 back to back, an app now and then taking all it is given, one event at a
    time. Still no window of the quota's length holds more than the quota."""
    window, quota = 2.0, 400
    grants: list[tuple[int, int]] = []
    lock = threading.Lock()
    end = time.monotonic() + 4 * window

    def sender(size: int, greedy: bool) -> None:
        limiter = RedisLimiter(redis_server.url, "app", None, quota, window, allowance=0.0)
        while time.monotonic() < end:
            wait = limiter.acquire(0, size)
            if wait > 0:
                if greedy:  # the app comes back a while later, for all it can get
                    time.sleep(window * 1.1)
                else:
                    time.sleep(wait)  # the limiter's own answer paces, as in the sender
                continue
            with lock:
                grants.append((limiter.last_grant, size))
            limiter.answered()
        limiter.close()
        with lock:
            fallbacks.append(limiter.fallback_acquires)

    fallbacks: list[int] = []
    threads = [
        threading.Thread(target=sender, args=(10, False)),
        threading.Thread(target=sender, args=(1, True)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Every grant went through Redis (a grant of the local fallback has no time on its clock).
    assert fallbacks == [0, 0]
    span = int(window * 1_000_000)
    assert _worst_window(grants, span) <= quota, _worst_window(grants, span)
