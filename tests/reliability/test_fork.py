"""Process models that fork: gunicorn with --preload, and multiprocessing's "fork" Pool.

A forked child starts with an empty queue and its own worker, so each process's events
arrive exactly once and what the parent had queued before the fork is sent by the parent
only. (Celery's prefork pool is covered with the Celery integration's tests.)
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from moetrack.testing import Emulator

from .._need import need, need_module
from .conftest import SCRIPT_PRELUDE, Processes, child_env, free_port, received, wait_until

need(hasattr(os, "fork"), "needs os.fork")

REQUESTS = 60


def test_gunicorn_preload_two_workers_each_event_once_and_master_events_never_twice(
    emulator: Emulator, processes: Processes, tmp_path: Path
) -> None:
    need_module("gunicorn")
    port = free_port()
    server = processes.popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "10",
            "--log-level",
            "warning",
            "tests.reliability.wsgi_app:app",
        ],
        env=child_env(
            MOETRACK_APP_ID=emulator.app_id,
            MOETRACK_API_KEY=emulator.api_key or "",
            MOETRACK_ENDPOINT=emulator.url,
            MOETRACK_TEST_RENDEZVOUS=str(tmp_path),
        ),
    )
    base = f"http://127.0.0.1:{port}/"
    # One client for every call (building one costs ~0.1 s: its TLS context); gunicorn's sync
    # workers close each connection after the response.
    http = httpx.Client()

    def up() -> bool:
        try:
            return http.get(base, params={"rid": -1}, timeout=1).status_code == 200
        except httpx.TransportError:
            assert server.poll() is None, server.communicate()
            return False

    assert wait_until(up, timeout=30, step=0.1), "gunicorn did not come up"

    def call(rid: int) -> dict[str, Any]:
        response = http.get(base, params={"rid": rid}, timeout=10)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    try:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(call, range(REQUESTS)))
    finally:
        http.close()

    (boot_events,) = {a["boot_events"] for a in answers}
    pids = {a["pid"] for a in answers}
    master = {a["master_pid"] for a in answers}
    assert len(pids) == 2, "both workers served requests"
    assert master == {server.pid}
    assert server.pid not in pids
    # The master still held the Boot events when it forked the workers ...
    assert {a["master_pending_at_fork"] for a in answers} == {boot_events}
    # ... and no worker inherited them: its client counts only its own requests.
    assert all(a["queued_here"] <= REQUESTS + 1 for a in answers)

    # Every request (and at least one readiness probe) and the Boot events arrive ...
    assert emulator.wait_for_events(REQUESTS + 1 + boot_events, timeout=30)
    # ... and once every process has ended (SIGTERM: a graceful stop, every exit hook runs
    # and waits for its answers), nothing else can: a duplicate sent late, while serving or
    # at exit, is in what the emulator holds now.
    Processes.kill(server, grace=30)
    assert server.returncode == 0

    requests = [e for e in emulator.events() if e["action"] == "Request"]
    by_rid = Counter(e["attributes"]["rid"] for e in requests if e["attributes"]["rid"] >= 0)
    assert by_rid == Counter(range(REQUESTS))  # each request's event, exactly once
    assert {e["attributes"]["pid"] for e in requests} == pids  # served by the two workers
    for answer, rid in zip(answers, range(REQUESTS), strict=True):
        (event,) = [e for e in requests if e["attributes"]["rid"] == rid]
        assert event["attributes"]["pid"] == answer["pid"]
    # The events the master queued before forking: sent once, by the master.
    boot = emulator.events(customer_id="gunicorn-master")
    assert [e["attributes"]["n"] for e in boot] == list(range(boot_events))
    assert {e["attributes"]["pid"] for e in boot} == {server.pid}


POOL = """
import json, multiprocessing, os
_exit["client"] = client = moetrack.init(
    os.environ["APP_ID"], os.environ["API_KEY"], endpoint=os.environ["ENDPOINT"],
    flush_interval=30,  # nothing is sent before the fork, or before a child ends
)
for n in range(100):
    moetrack.track("Parent", customer_id="mp-parent", n=n)

#: The first task of each of the first three chunks waits here until all three are running:
#: a child waiting cannot take another chunk, so each of the pool's three children gets work.
everyone = multiprocessing.get_context("fork").Barrier(3)

def task(i):
    moetrack.track("Child", customer_id=f"mp-child-{i % 3}", i=i, pid=os.getpid())
    if i in (0, 5, 10):
        everyone.wait(30)
    return os.getpid()

if __name__ == "__main__":
    pending_at_fork = client.stats().pending
    with multiprocessing.get_context("fork").Pool(3) as pool:
        pids = pool.map(task, range(300), chunksize=5)
        pool.close()  # children end normally (a terminate() would kill them: see the README)
        pool.join()
    print(json.dumps({"pids": sorted(set(pids)), "pending_at_fork": pending_at_fork}))
"""


def test_multiprocessing_fork_pool_children_deliver_once_and_parent_events_are_not_duplicated(
    emulator: Emulator, processes: Processes
) -> None:
    done = processes.run_script(
        SCRIPT_PRELUDE + POOL,
        env=child_env(
            APP_ID=emulator.app_id, API_KEY=emulator.api_key or "", ENDPOINT=emulator.url
        ),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[0])
    assert result["pending_at_fork"] == 100
    assert len(result["pids"]) == 3
    # The pool's children ended through os._exit(): their events still arrived, once each.
    children = [e for c in range(3) for e in emulator.events(customer_id=f"mp-child-{c}")]
    assert sorted(e["attributes"]["i"] for e in children) == list(range(300))
    assert {e["attributes"]["pid"] for e in children} <= set(result["pids"])
    # The parent's events, queued before the fork: sent by the parent alone, once.
    assert received(emulator, "mp-parent", key="n") == list(range(100))
    parent_stats = done.last_json()["stats"]
    assert (parent_stats["sent"], parent_stats["pending"]) == (100, 0)
    assert "not delivered" not in done.stderr
