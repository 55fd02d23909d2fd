"""Prefork: each child starts with an empty queue of its own and flushes when it exits."""

from __future__ import annotations

from collections import Counter

import moetrack
from moetrack.testing import Emulator
from tests.integrations.celery.app import record
from tests.integrations.celery.conftest import start_worker

TIMEOUT = 20


def test_prefork_children_start_empty_and_flush_when_they_exit(redis_broker: str) -> None:
    with Emulator() as emu:
        # A one-minute flush interval: nothing leaves a process until it flushes on exit.
        worker = start_worker(
            "prefork", emu, MOETRACK_TEST_FLUSH_INTERVAL="60", MOETRACK_TEST_TRACK_PARENT="1"
        )
        try:
            results = []
            for i in range(6):
                with moetrack.context(customer_id=f"cust-exit-{i}"):
                    results.append(record.delay("BeforeExit", i=i))
            task_pids = {r.get(timeout=TIMEOUT) for r in results}
            assert emu.events() == []
        finally:
            code = worker.stop()
            output = worker.output()
            worker.log.unlink(missing_ok=True)
        assert code == 0, output
        events = emu.events()

    actions = Counter(e["action"] for e in events)
    # The parent's record was pending when the pool forked: sent once, by the parent only.
    assert actions["ParentStarted"] == 1, events
    (parent,) = [e for e in events if e["action"] == "ParentStarted"]
    children = [e for e in events if e["action"] == "ChildStarted"]
    assert len(children) == 2
    assert {e["attributes"]["inherited"] for e in children} == {0}
    child_pids = {e["attributes"]["pid"] for e in children}
    assert parent["attributes"]["pid"] not in child_pids
    # Every task event arrived once, with its sender's customer, flushed by the child on exit.
    done = sorted(
        (e["customer_id"], e["attributes"]["i"]) for e in events if e["action"] == "BeforeExit"
    )
    assert done == [(f"cust-exit-{i}", i) for i in range(6)]
    assert task_pids <= child_pids
