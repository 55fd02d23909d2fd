"""``moetrack doctor`` against real redis-servers started with different settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from moetrack.cli import main

from .._need import need_module
from .conftest import RedisServer

need_module("redis")

Factory = Callable[..., RedisServer]
DURABLE = ("--appendonly", "yes", "--maxmemory-policy", "noeviction")


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(["doctor", *argv])
    return status, capsys.readouterr().out


def test_a_durable_backlog_is_well(redis_factory: Factory, capsys: pytest.CaptureFixture[str]):
    server = redis_factory(args=DURABLE)
    status, out = doctor(capsys, "--backlog", server.url)
    assert status == 0, out
    assert "appendonly yes" in out
    assert "appendfsync everysec" in out
    assert "about the last second of writes" in out
    assert "noeviction" in out
    assert "All is well." in out


def test_appendfsync_always_loses_nothing(
    redis_factory: Factory, capsys: pytest.CaptureFixture[str]
):
    server = redis_factory(args=(*DURABLE, "--appendfsync", "always"))
    status, out = doctor(capsys, "--backlog", server.url)
    assert status == 0, out
    assert "loses nothing acknowledged" in out


def test_no_aof_warns_that_a_restart_empties_the_backlog(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
):
    status, out = doctor(capsys, "--backlog", redis_server.url)
    assert status == 1, out
    assert "a restart empties the backlog" in out
    assert "Set appendonly yes" in out
    assert "1 warning." in out


def test_snapshots_only_lose_what_came_after_the_last_one(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
):
    import redis

    redis.Redis(port=redis_server.port).config_set("save", "900 1")
    status, out = doctor(capsys, "--backlog", redis_server.url)
    assert status == 1, out
    assert "save 900 1" in out
    assert "loses every entry written since" in out


@pytest.mark.parametrize(
    ("policy", "deletes"),
    [("allkeys-lru", "silently deletes any key"), ("volatile-ttl", "keys that expire")],
)
def test_an_evicting_policy_warns(
    redis_factory: Factory, capsys: pytest.CaptureFixture[str], policy: str, deletes: str
):
    server = redis_factory(
        args=("--appendonly", "yes", "--maxmemory-policy", policy, "--maxmemory", "64mb")
    )
    status, out = doctor(capsys, "--backlog", server.url)
    assert status == 1, out
    assert f"maxmemory-policy {policy}" in out
    assert deletes in out
    assert "backlog entries included" in out
    assert "67,108,864 bytes" in out


def test_appendfsync_no_warns(redis_factory: Factory, capsys: pytest.CaptureFixture[str]):
    server = redis_factory(args=(*DURABLE, "--appendfsync", "no"))
    status, out = doctor(capsys, "--backlog", server.url)
    assert status == 1, out
    assert "appendfsync no" in out


def test_config_disabled_reads_info_instead(
    redis_factory: Factory, capsys: pytest.CaptureFixture[str]
):
    # Managed services often disable CONFIG; INFO still tells AOF and the eviction policy.
    server = redis_factory(args=(*DURABLE, "--rename-command", "CONFIG", ""))
    status, out = doctor(capsys, "--backlog", server.url)
    assert status == 0, out
    assert "appendonly yes" in out
    assert "appendfsync unknown" in out


def test_unreachable_exits_2_without_the_password(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
):
    redis_server.kill()
    url = f"redis://moe:hunter2-secret@127.0.0.1:{redis_server.port}/0"
    status, out = doctor(capsys, "--backlog", url)
    assert status == 2
    assert "cannot reach the backlog's Redis" in out
    assert "redis://moe:***@127.0.0.1" in out
    assert "Connection refused" in out
    assert "hunter2-secret" not in out


def test_the_limiter_needs_no_persistence(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
):
    status, out = doctor(capsys, "--limiter", redis_server.url)
    assert status == 0, out
    assert "Lua scripts run" in out
    assert "persistence does not matter to the limiter" in out


def test_the_limiter_warns_of_eviction(redis_factory: Factory, capsys: pytest.CaptureFixture[str]):
    server = redis_factory(args=("--maxmemory-policy", "volatile-lru"))
    status, out = doctor(capsys, "--limiter", server.url)
    assert status == 1, out
    assert "the limiter's counters included" in out


def test_backlog_and_limiter_together_report_the_worst(
    redis_factory: Factory, capsys: pytest.CaptureFixture[str]
):
    durable = redis_factory(args=DURABLE)
    plain = redis_factory()
    status, out = doctor(capsys, "--backlog", durable.url, "--limiter", plain.url)
    assert status == 0, out
    plain.kill()
    status, out = doctor(capsys, "--backlog", durable.url, "--limiter", plain.url)
    assert status == 2
    assert "All is well." in out  # the backlog's report comes first
    assert "cannot reach the limiter's Redis" in out


def test_doctor_needs_a_url(capsys: pytest.CaptureFixture[str]):
    assert main(["doctor"]) == 2
    assert "--backlog" in capsys.readouterr().err
