"""The sender's context reaches tasks run by real solo and prefork workers over Redis."""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from celery import chain
from moetrack.integrations.celery import HEADER

import moetrack
from moetrack.testing import Emulator
from tests.integrations.celery.app import add, context, fan_out, flaky, record
from tests.integrations.celery.conftest import Worker

TIMEOUT = 20


def events(emu: Emulator, n: int, action: str | None = None) -> list[dict[str, Any]]:
    def matching() -> list[dict[str, Any]]:
        return [e for e in emu.events() if action is None or e["action"] == action]

    assert emu.wait_for(lambda: len(matching()) >= n, timeout=TIMEOUT), emu.events()
    return matching()


def test_delay_and_apply_async_carry_the_customer(worker: Worker, emu: Emulator) -> None:
    with moetrack.context(customer_id="cust-delay", attributes={"plan": "gold"}):
        first = record.delay("Delayed", n=1)
    with moetrack.context(customer_id="cust-apply", app_version="2.1.0", platform="ANDROID"):
        second = record.apply_async(("Applied",), {"n": 2}, countdown=0)
    pids = {first.get(timeout=TIMEOUT), second.get(timeout=TIMEOUT)}
    got = {e["action"]: e for e in events(emu, 2)}
    assert got["Delayed"]["customer_id"] == "cust-delay"
    assert got["Delayed"]["attributes"] == {"plan": "gold", "n": 1, "pid": first.result}
    assert got["Applied"]["customer_id"] == "cust-apply"
    assert got["Applied"]["app_version"] == "2.1.0"
    assert got["Applied"]["platform"] == "ANDROID"
    assert os.getpid() not in pids


def test_the_context_is_bound_only_while_the_task_runs(worker: Worker) -> None:
    with moetrack.context(customer_id="cust-ctx", user_timezone_offset=19800):
        inside = context.delay().get(timeout=TIMEOUT)
    after = context.delay().get(timeout=TIMEOUT)
    assert inside == {"customer_id": "cust-ctx", "user_timezone_offset": 19800}
    assert after == {}


def test_a_lazily_bound_customer_is_resolved_when_the_task_is_sent(
    worker: Worker, emu: Emulator
) -> None:
    with moetrack.context(customer_id=lambda: "cust-lazy"):
        record.delay("Lazy").get(timeout=TIMEOUT)
    assert [e["customer_id"] for e in events(emu, 1)] == ["cust-lazy"]


def test_a_chain_carries_the_customer_through_every_step(worker: Worker, emu: Emulator) -> None:
    with moetrack.context(customer_id="cust-chain"):
        result = chain(add.s(1, 2), add.s(3), add.s(4)).apply_async()
    assert result.get(timeout=TIMEOUT) == 10
    steps = events(emu, 3, "ChainStep")
    # Prefork children deliver independently: compare in the order of the steps.
    assert sorted((e["customer_id"], e["attributes"]["total"]) for e in steps) == [
        ("cust-chain", 3),
        ("cust-chain", 6),
        ("cust-chain", 10),
    ]


def test_a_retried_task_keeps_the_customer(worker: Worker, emu: Emulator) -> None:
    with moetrack.context(customer_id="cust-retry"):
        assert flaky.delay().get(timeout=TIMEOUT) == 1
    attempts = events(emu, 2, "Attempt")
    assert sorted((e["customer_id"], e["attributes"]["retries"]) for e in attempts) == [
        ("cust-retry", 0),
        ("cust-retry", 1),
    ]


def test_tasks_sent_from_a_task_carry_the_customer_on(worker: Worker, emu: Emulator) -> None:
    with moetrack.context(customer_id="cust-fan"):
        fan_out.delay(3).get(timeout=TIMEOUT)
    fanned = events(emu, 3, "FannedOut")
    assert {e["customer_id"] for e in fanned} == {"cust-fan"}


def test_a_task_sent_without_context_has_no_header() -> None:
    from moetrack.integrations.celery import context_from_headers, context_to_headers

    assert context_to_headers() is None
    with moetrack.context(customer_id="c-1", attributes={"when": date(2024, 1, 2)}):
        data = context_to_headers()
    assert data == {"customer_id": "c-1", "attributes": {"when": "2024-01-02"}}
    assert context_from_headers({**data, "unknown": 1}) == data
    assert HEADER == "moetrack_context"
