"""A producer faster than the rate limit lets anything out: memory stays bounded by
queue_capacity, the overflow is counted as queue_full, and the producer is never held up: no
call waits on anything while the worker is held by the rate limit (with on_full="block", only
a call that finds the queue full waits, and it gives up at block_timeout)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from moetrack import signals
from moetrack.testing import Emulator

from ..conftest import ClientFactory
from .conftest import SCRIPT_PRELUDE, Processes, assert_accounted, child_env
from .waits import WaitSpy, call_with_deadline

CAPACITY = 5_000
CALLS = 20 * CAPACITY

PRODUCER = """
import os, threading
from tests.reliability.waits import WaitSpy

def rss_kb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)

held = threading.Event()  # set when the worker waits for the rate limit

def on_rate_limited(sender, **kwargs):
    held.set()

moetrack.signals.rate_limited.connect(on_rate_limited)
_exit["client"] = client = moetrack.Client(
    os.environ["APP_ID"], os.environ["API_KEY"], endpoint=os.environ["ENDPOINT"],
    flush_interval=0.05, queue_capacity=int(os.environ["CAPACITY"]),
    events_per_minute=500, rate_limit_window=60.0,  # ~one batch, then a minute's wait
    shutdown_timeout=0.5,
)
client.track("Warm", customer_id="overload-user", pad="")  # start the worker, import httpx
assert client.flush(30)
baseline = rss_kb("VmRSS")
try:  # reset the peak to now (Linux >= 4.0); else the peak since start is an upper bound
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
n = 0

def offer(count):
    global n
    for _ in range(count):
        n += 1
        pad = "%08d" % n + "x" * 1000  # a distinct ~1 KB string per record
        client.track("Flood", customer_id="overload-user", n=n, pad=pad)

offer(1000)  # twice what the rate limit lets out in a minute: the worker has to wait ...
assert held.wait(30), "the rate limit never held the worker"
with WaitSpy() as spy:  # ... and while it waits, the queue fills and overflows, watched
    offer(2 * int(os.environ["CAPACITY"]))
offer(int(os.environ["CALLS"]) - n)  # the rest, unwatched (watching slows each call)
stats = client.stats()
print(json.dumps({
    "calls": n, "waits": spy.waits, "baseline_kb": baseline, "peak_kb": rss_kb("VmHWM"),
    "during": {"queued": stats.queued, "sent": stats.sent, "dropped": dict(stats.dropped),
               "failed": stats.failed, "pending": stats.pending},
}), flush=True)
"""


def test_a_producer_faster_than_the_rate_limit_stays_in_bounded_memory_and_never_blocks(
    emulator: Emulator, processes: Processes
) -> None:
    done = processes.run_script(
        SCRIPT_PRELUDE + PRODUCER,
        env=child_env(
            APP_ID=emulator.app_id,
            API_KEY=emulator.api_key or "",
            ENDPOINT=emulator.url,
            CAPACITY=str(CAPACITY),
            CALLS=str(CALLS),
        ),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    run = json.loads(lines[0])
    during = run["during"]
    calls = run["calls"]
    # Far more records were offered than the queue holds ...
    assert calls == CALLS
    # ... so almost all of them were dropped, and counted, as queue_full,
    assert set(during["dropped"]) == {"queue_full"}
    assert during["dropped"]["queue_full"] >= calls - CAPACITY - 600
    assert during["pending"] <= CAPACITY
    assert during["queued"] == (
        during["sent"] + sum(during["dropped"].values()) + during["failed"] + during["pending"]
    )
    # ... while memory grew by what CAPACITY records of ~1 KB hold: ~2.5 KB each (the record
    # and its encoded item), bounded generously at 6 KB each; the records offered would need
    # over 100 MB.
    assert run["peak_kb"] - run["baseline_kb"] < CAPACITY * 6, run
    # ... and no call waited: while the rate limit held the worker, 10,000 calls filled the
    # queue and overflowed it without a sleep, a wait, a held lock or a socket call.
    assert run["waits"] == [], run["waits"][:10]
    # At exit the rate limit still holds the rest: given up within the shutdown timeout.
    final = done.last_json()["stats"]
    assert final["pending"] == 0
    assert final["queued"] == final["sent"] + sum(final["dropped"].values()) + final["failed"]
    assert final["sent"] <= 501


def test_block_on_full_under_sustained_overload_waits_only_when_full_and_gives_up_in_time(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    block_timeout = 0.1
    client = make_client(
        queue_capacity=30,
        on_full="block",
        block_timeout=block_timeout,
        events_per_minute=10,  # one batch of 10, then the rest waits a minute
        rate_limit_window=60.0,
    )
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()
    start_together = threading.Barrier(4)
    mine = threading.local()

    def on_dropped(sender: Any, **kwargs: Any) -> None:
        mine.dropped += kwargs["count"]  # sent on the caller's thread for queue_full

    def produce(k: int) -> None:
        start_together.wait()
        for n in range(15):
            mine.dropped = 0
            with WaitSpy() as spy:
                start = time.monotonic()
                client.track("Blocked", customer_id=f"block-user-{k}", n=n)
                took = time.monotonic() - start
            with lock:
                calls.append({"waited": bool(spy.waits), "dropped": mine.dropped, "took": took})

    signals.element_dropped.connect(on_dropped, sender=client)
    try:

        def run_producers() -> None:
            threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        returned, _ = call_with_deadline(run_producers)
        assert returned, "a producer is stuck"
    finally:
        signals.element_dropped.disconnect(on_dropped)
    stats = assert_accounted(client)
    assert len(calls) == 60
    dropped = [c for c in calls if c["dropped"]]
    # The queue filled up (the rate limit holds all but 10 records for a minute) ...
    assert dropped, "the queue never filled up"
    assert stats.dropped == {"queue_full": len(dropped)}
    assert stats.pending <= 30
    # ... and only then did a call wait: each dropped call waited for room first, and gave up
    # at block_timeout: no sooner (a lower bound, which load cannot break), and not for the
    # minute that room takes to come (a generous bound: a loaded machine only adds to it).
    assert all(c["waited"] for c in dropped)
    assert all(block_timeout <= c["took"] < block_timeout + 10 for c in dropped)
    client.shutdown(0.2)  # the rate limit holds the rest for a minute: give it up now
    assert assert_accounted(client).pending == 0
