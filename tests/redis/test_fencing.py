"""Fencing: a relay that lost a partition's lease sends, settles and deletes nothing of it.

Relays run in this process (RelaySource, Relay) where a test needs to look inside, and as
real ``moetrack relay`` processes where a test freezes one (SIGSTOP) for longer than its
lease.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

import moetrack
from moetrack._config import Config
from moetrack._exceptions import APIError, DeliveryError
from moetrack._pipeline.source import Stop
from moetrack._report import Reporter
from moetrack._wire.transport import HTTPTransport, Response
from moetrack.redis.backlog import BacklogWriter
from moetrack.redis.connection import DEFAULT_PARTITIONS, Keys, partition_of
from moetrack.redis.leases import GROUP
from moetrack.redis.relay import Relay
from moetrack.redis.source import RelaySource
from moetrack.testing import Emulator

from ..faults.procs import freeze, kill_9, wake
from ._fakes import ListSource, event
from .conftest import RedisServer

APP = "APPFENCING01"
CLI = [sys.executable, "-m", "moetrack.cli"]


def config_for(url: str, **options: Any) -> Config:
    return Config.build(APP, "key-for-tests", endpoint="http://127.0.0.1:9", backlog=url, **options)


def store(url: str, items: list[Any]) -> None:
    config = config_for(url)
    writer = BacklogWriter(config, Reporter(None, None, config.secrets()))
    source = ListSource(items)
    writer.run_once(source, Stop())
    assert len(source.acked) == len(items)
    writer.close()


def source_for(url: str, relay_id: str, **options: Any) -> RelaySource:
    config = config_for(url, **options)
    # A long lease: nothing renews or moves while the test looks (the test moves it itself).
    return RelaySource(
        config, Reporter(None, None, config.secrets()), Stop(), relay_id=relay_id, lease_ttl=60
    )


def take_all(source: RelaySource, n: int) -> list[Any]:
    got: list[Any] = []
    for _ in range(100):
        items = source.take(n - len(got), 0.5)
        got += items or []
        if len(got) >= n:
            break
    return got


def test_a_relay_that_lost_its_lease_acknowledges_and_dead_letters_nothing(
    redis_server: RedisServer,
) -> None:
    store(redis_server.url, [event("a", i) for i in range(20)])
    n = partition_of("a", DEFAULT_PARTITIONS)
    keys = Keys(APP)
    r = redis.Redis.from_url(redis_server.url)
    source = source_for(redis_server.url, "relay-a")
    source.start()
    try:
        items = take_all(source, 20)
        assert len(items) == 20
        # Its lease expired meanwhile and another relay took the partition over.
        r.set(keys.lease(n), "relay-b#999")
        source.ack(items[:10])
        refused = APIError("bad", status=400)
        source.fail(items[10:], DeliveryError("refused", count=10, cause=refused))
        assert r.xlen(keys.partition(n)) == 20  # nothing deleted
        assert r.xlen(keys.dead) == 0  # nothing dead-lettered
        assert r.xpending(keys.partition(n), GROUP)["pending"] == 20  # nothing acknowledged
    finally:
        source.close()
        r.close()


def test_a_claim_never_deletes_the_consumer_of_a_live_relay(redis_server: RedisServer) -> None:
    store(redis_server.url, [event(f"c{i}", i) for i in range(40)])
    keys = Keys(APP)
    r = redis.Redis.from_url(redis_server.url)
    first = source_for(redis_server.url, "relay-a")
    first.start()
    second = source_for(redis_server.url, "relay-b")
    try:
        items = take_all(first, 40)
        first.ack(items)  # relay-a is a consumer of every partition, with nothing pending
        n = first.owned()[0]
        r.delete(keys.lease(n))  # its lease of one partition ran out; relay-a is alive
        second.start()  # takes that partition and claims it
        assert n in second.owned()
        names = {c["name"] for c in r.xinfo_consumers(keys.partition(n), GROUP)}
        assert b"relay-a" in names or "relay-a" in names
    finally:
        second.close()
        first.close()
        r.close()


def test_settling_is_one_script_call(redis_server: RedisServer) -> None:
    """XACK and XDEL never travel as separate commands a cut connection could split."""
    store(redis_server.url, [event("a", i) for i in range(10)])
    monitor = redis.Redis.from_url(redis_server.url)
    source = source_for(redis_server.url, "relay-a")
    source.start()
    try:
        items = take_all(source, 10)
        with monitor.monitor() as m:
            source.ack(items)
            seen = []
            for _ in range(50):
                command = m.next_command()
                seen.append(command)
                if "XDEL" in command["command"].upper():
                    break
    finally:
        source.close()
        monitor.close()
    direct = [c["command"] for c in seen if c.get("client_type") != "lua"]
    assert not [c for c in direct if c.upper().startswith(("XACK", "XDEL"))], direct


class FailingEvery:
    """The HTTP transport, except that every ``k``-th request is answered 503 (once)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.count = 0
        self.inner = HTTPTransport()

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        self.count += 1
        if self.count % self.k == 0:
            return Response(503, {}, b'{"status": "fail"}')
        return self.inner.send(url, body, headers, timeout)

    def close(self) -> None:
        self.inner.close()


def test_the_relay_class_retries_a_batch_as_long_as_the_command_does(
    redis_server: RedisServer,
) -> None:
    config = config_for(redis_server.url)
    relay = Relay(config, Reporter(None, None, config.secrets()))
    try:
        assert relay.sender.policy.deadline == 7 * 24 * 3600
    finally:
        relay.source.close()


def test_a_batch_given_up_never_lets_later_entries_of_its_customers_pass(
    redis_server: RedisServer,
) -> None:
    customers = [f"c{i}" for i in range(8)]
    with Emulator() as emu:
        config = Config.build(
            emu.app_id,
            str(emu.api_key),
            endpoint=emu.url,
            backlog=redis_server.url,
            max_batch_size=20,
            # Given up at once: the first retry's backoff (>= 0.1 s) is past the deadline.
            retry_backoff=0.2,
            retry_deadline=0.1,
        )
        writer = BacklogWriter(config, Reporter(None, None, config.secrets()))
        source = ListSource([event(c, i) for i in range(37) for c in customers])
        writer.run_once(source, Stop())
        relay = Relay(
            config,
            Reporter(None, None, config.secrets()),
            transport=FailingEvery(5),
            retry_deadline=0.1,
        )
        thread = threading.Thread(target=relay.run)
        thread.start()
        try:
            assert emu.wait_for(lambda: len({_key(e) for e in emu.events()}) == 8 * 37, 60)
        finally:
            relay.request_stop(5)
            thread.join(20)
        events = emu.events()
    assert relay.source.deferred > 0  # batches were given up, and sent later
    for customer in customers:
        got = [e["attributes"]["n"] for e in events if e["customer_id"] == customer]
        firsts = list(dict.fromkeys(got))
        assert firsts == sorted(firsts), (customer, firsts)


def _key(e: dict[str, Any]) -> tuple[str, int]:
    return (e["customer_id"], e["attributes"]["n"])


# -- a relay frozen for longer than its lease ---------------------------------------------------


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        wake(proc) if proc.poll() is None else None
        kill_9(proc)


def test_a_relay_frozen_past_its_lease_sends_nothing_stale_when_it_wakes(
    redis_server: RedisServer, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    total, customers = 1200, 8
    r = redis.Redis.from_url(redis_server.url)
    with Emulator(events_per_minute=1200, rate_limit_window=6.0) as emu:
        keys = Keys(emu.app_id)
        client = moetrack.Client(
            emu.app_id, emu.api_key, endpoint=emu.url, backlog=redis_server.url, flush_interval=0.05
        )
        for i in range(total):
            client.track("Step", customer_id=f"c{i % customers}", seq=i)
        assert client.flush(20)
        client.shutdown(5)

        def start(name: str) -> subprocess.Popen[bytes]:
            log = open(tmp_path / f"{name}.log", "wb")
            proc = subprocess.Popen(
                [
                    *CLI,
                    "relay",
                    "--backlog",
                    redis_server.url,
                    "--endpoint",
                    emu.url,
                    "--app-id",
                    emu.app_id,
                    "--api-key",
                    str(emu.api_key),
                    "--lease-ttl",
                    "1",
                    "--claim-idle",
                    "1",
                    "--timeout",
                    "5",
                    "--max-batch-size",
                    "50",
                    "--events-per-minute",
                    "1200",
                    "--users-per-minute",
                    "0",
                    "--rate-limit-window",
                    "6",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            procs.append(proc)
            return proc

        def holders() -> list[str]:
            values = [r.get(keys.lease(n)) for n in range(DEFAULT_PARTITIONS)]
            return [v.decode().split("#")[0] for v in values if v]

        def owners() -> set[str]:
            return set(holders())

        emu.delay(2.0, n=1)  # the first request is stored, its answer held
        first = start("first")
        assert emu.wait_for(lambda: any(q["fault"] == "delay" for q in emu.requests()), 30)
        (first_id,) = owners()
        freeze(first)  # a long GC pause, a frozen VM: mid-request, with entries read ahead
        in_flight = {_seq(e) for e in emu.events()}
        second = start("second")
        # The second relay takes every partition over once the first one's leases expire,
        # and sends what the first had read (claimed once idle) and more.
        assert emu.wait_for(lambda: len(o := owners()) == 1 and first_id not in o, 30)
        assert emu.wait_for(lambda: len(emu.events()) >= len(in_flight) + 500, 30)
        wake(first)
        # The woken relay gets its share back (half of the partitions) ...
        assert emu.wait_for(lambda: holders().count(first_id) == DEFAULT_PARTITIONS // 2, 30)
        # ... and everything arrives.
        assert emu.wait_for(lambda: len({_seq(e) for e in emu.events()}) == total, 60), (
            tmp_path / "first.log"
        ).read_text() + (tmp_path / "second.log").read_text()
        events = emu.events()
        assert second.poll() is None
        assert first.poll() is None
    r.close()
    counts = Counter(_seq(e) for e in events)
    duplicated = sum(n - 1 for n in counts.values())
    print(f"duplicated {duplicated} of {len(events)} events")
    # Only the batch in flight when the first relay froze may come twice.
    assert {k for k, n in counts.items() if n > 1} <= in_flight
    assert duplicated <= 50, duplicated
    for c in range(customers):
        got = [e["attributes"]["seq"] for e in events if e["customer_id"] == f"c{c}"]
        firsts = list(dict.fromkeys(got))
        assert firsts == sorted(firsts), c


def _seq(e: dict[str, Any]) -> tuple[str, int]:
    return (e["customer_id"], e["attributes"]["seq"])
