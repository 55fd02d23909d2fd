"""The app side of the durable backlog: BacklogWriter against a real redis-server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from moetrack._config import Config
from moetrack._pipeline.source import Stop
from moetrack._report import Reporter
from moetrack.redis.backlog import BacklogWriter
from moetrack.redis.connection import DEFAULT_PARTITIONS, Keys, partition_of

from ..faults.proxy import FaultProxy
from ._fakes import ListSource, event
from .conftest import RedisServer

APP = "APPBACKLOG01"


def writer_for(server: RedisServer, **options: Any) -> BacklogWriter:
    options.setdefault("retry_backoff", 0.01)
    config = Config.build(
        APP, "key-for-tests", endpoint="http://127.0.0.1:9", backlog=server.url, **options
    )
    return BacklogWriter(config, Reporter(None, None, config.secrets()))


def entries(server: RedisServer) -> dict[int, list[dict[bytes, bytes]]]:
    r = redis.Redis.from_url(server.url)
    keys = Keys(APP)
    out = {n: [f for _, f in r.xrange(keys.partition(n))] for n in range(DEFAULT_PARTITIONS)}
    r.close()
    return out


def test_stored_items_are_acked_and_land_in_their_customers_partition(
    redis_server: RedisServer,
) -> None:
    writer = writer_for(redis_server)
    items = [event(f"c{i % 7}", i, device="d1" if i % 2 else None) for i in range(1200)]
    source = ListSource(items)
    writer.run_once(source, Stop())
    assert source.acked == items
    assert not source.failed
    assert not source.released
    assert writer.requests == 3  # chunks of 500
    assert writer.bytes == sum(len(i.payload) for i in items)

    stored = entries(redis_server)
    assert sum(len(v) for v in stored.values()) == 1200
    for n, fields in stored.items():
        for f in fields:
            assert partition_of(f[b"customer_id"].decode(), DEFAULT_PARTITIONS) == n
    # Order per customer is the order taken; device_id is absent when None.
    for c in range(7):
        cid = f"c{c}".encode()
        n = partition_of(f"c{c}", DEFAULT_PARTITIONS)
        mine = [f for f in stored[n] if f[b"customer_id"] == cid]
        expected = [i for i in items if i.customer_id == f"c{c}"]
        assert [f[b"payload"] for f in mine] == [i.payload for i in expected]
        assert [f.get(b"device_id") for f in mine] == [
            i.device_id.encode() if i.device_id else None for i in expected
        ]
        assert {f[b"kind"] for f in mine} == {b"0"}


def test_partition_count_is_recorded_and_kept(redis_server: RedisServer) -> None:
    r = redis.Redis.from_url(redis_server.url)
    r.hset(Keys(APP).meta, "partitions", 3)
    writer = writer_for(redis_server)
    writer.run_once(ListSource([event("someone", 1)]), Stop())
    n = partition_of("someone", 3)
    assert r.xlen(Keys(APP).partition(n)) == 1
    assert r.hget(Keys(APP).meta, "partitions") == b"3"


def test_over_the_cap_new_items_are_dropped_as_backlog_full(redis_server: RedisServer) -> None:
    writer = writer_for(redis_server, backlog_max_entries=10)
    items = [event(f"c{i}", i) for i in range(15)]
    source = ListSource(items)
    writer.run_once(source, Stop())
    assert source.acked == items[:10]
    assert [i for i, _, _ in source.failed] == items[10:]
    assert {reason for _, _, reason in source.failed} == {"backlog_full"}
    assert "backlog_max_entries" in str(source.failed[0][1])
    source2 = ListSource([event("late", 1)])
    writer.run_once(source2, Stop())
    assert [reason for _, _, reason in source2.failed] == ["backlog_full"]
    assert sum(len(v) for v in entries(redis_server).values()) == 10


def test_while_redis_is_down_items_wait_unacked_and_move_when_it_is_back(
    redis_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moetrack")
    server = redis_factory(args=("--appendonly", "yes", "--appendfsync", "always"))
    writer = writer_for(server)
    source = ListSource([event("a", 0)])
    stop = Stop()
    thread = threading.Thread(target=writer.run, args=(source, stop))
    thread.start()
    try:
        assert source.wait_for(lambda: len(source.acked) == 1)
        server.kill()
        source.put(*[event("a", i) for i in range(1, 50)])
        # Nothing is acknowledged while Redis is down: the writer waits through the source.
        assert source.wait_for(lambda: source.waits >= 3)
        assert len(source.acked) == 1
        server.start()
        assert source.wait_for(lambda: len(source.acked) == 50)
    finally:
        source.end()
        thread.join(10)
    assert not thread.is_alive()
    assert not source.failed
    assert not source.released
    stored = entries(server)[partition_of("a", DEFAULT_PARTITIONS)]
    assert [f[b"payload"] for f in stored] == [i.payload for i in source.acked]
    down = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(down) == 1
    assert "key-for-tests" not in caplog.text


def test_a_stop_deadline_while_redis_is_down_releases_the_items(
    redis_server: RedisServer,
) -> None:
    writer = writer_for(redis_server)
    redis_server.kill()
    source = ListSource([event("a", i) for i in range(5)])
    stop = Stop()
    stop.request(timeout=0.3)
    writer.run(source, stop)
    assert len(source.released) == 5
    assert not source.acked
    assert not source.failed


def test_a_forked_child_uses_its_own_connection(redis_server: RedisServer) -> None:
    import os

    writer = writer_for(redis_server)
    writer.run_once(ListSource([event("parent", 0)]), Stop())
    pid = os.fork()
    if pid == 0:  # the child stores through a connection of its own
        code = 1
        try:
            src = ListSource([event("child", 1)])
            writer.run_once(src, Stop())
            code = 0 if len(src.acked) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.run_once(ListSource([event("parent", 2)]), Stop())
    assert sum(len(v) for v in entries(redis_server).values()) == 3
    writer.close()


def test_a_client_with_a_backlog_flushes_once_stored_and_counts_backlog_full(
    redis_server: RedisServer,
) -> None:
    import moetrack

    client = moetrack.Client(
        APP,
        "key-for-tests",
        endpoint="http://127.0.0.1:9",  # nothing listens: only the backlog is written
        backlog=redis_server.url,
        backlog_max_entries=30,
        flush_interval=0.05,
    )
    try:
        for i in range(20):
            client.track("Step", customer_id=f"cust{i % 3}", seq=i)
        assert client.flush(10)
        assert sum(len(v) for v in entries(redis_server).values()) == 20
        for i in range(20):
            client.track("Step", customer_id=f"cust{i % 3}", seq=i)
        assert client.flush(10)
        stats = client.stats()
        assert stats.sent == 30
        assert stats.dropped == {"backlog_full": 10}
    finally:
        client.shutdown(2)


def test_an_append_answered_after_the_socket_timeout_is_stored_once(
    redis_server: RedisServer,
) -> None:
    """The append script ran, its answer came too late: the retry must store nothing twice."""
    with FaultProxy(redis_server.port) as proxy:
        # socket_timeout in the URL (0.5 s) is honoured: the proxy holds answers longer.
        url = f"redis://127.0.0.1:{proxy.port}/0?socket_timeout=0.5"
        config = Config.build(
            APP, "key-for-tests", endpoint="http://127.0.0.1:9", backlog=url, retry_backoff=0.01
        )
        writer = BacklogWriter(config, Reporter(None, None, config.secrets()))
        first = ListSource([event("a", 0)])
        writer.run_once(first, Stop())  # connected, partitions read
        assert len(first.acked) == 1
        proxy.delay(3.0)  # every answer from Redis comes 3 s late from now on
        source = ListSource([event("a", i) for i in range(1, 101)])
        thread = threading.Thread(target=writer.run_once, args=(source, Stop()))
        thread.start()
        try:
            # The writer timed out (the script ran; its answer is held) and waits to retry.
            assert source.wait_for(lambda: source.waits >= 1)
            proxy.heal()
            assert source.wait_for(lambda: len(source.acked) == 100)
        finally:
            proxy.heal()
            thread.join(20)
        writer.close()
    stored = [f[b"payload"] for f in entries(redis_server)[partition_of("a", DEFAULT_PARTITIONS)]]
    assert len(stored) == 101
    assert len(set(stored)) == 101


def test_the_timeouts_in_the_url_win_over_the_default_cap(redis_server: RedisServer) -> None:
    url = f"{redis_server.url}?socket_timeout=30&socket_connect_timeout=20"
    config = Config.build(APP, "key-for-tests", endpoint="http://127.0.0.1:9", backlog=url)
    writer = BacklogWriter(config, Reporter(None, None, config.secrets()))
    writer.run_once(ListSource([event("a", 0)]), Stop())
    assert writer._client is not None
    kwargs = writer._client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (30.0, 20.0)
    writer.close()
