"""A producer faster than the rate limit lets anything out: memory stays bounded by
queue_capacity, the overflow is counted as queue_full, and the producer is never held up
(with on_full="block", a call waits at most block_timeout)."""

from __future__ import annotations

import json
import threading
import time

from moetrack.testing import Emulator

from ..conftest import ClientFactory
from .conftest import SCRIPT_PRELUDE, Processes, assert_accounted, child_env

CAPACITY = 5_000

PRODUCER = """
import os

def rss_kb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)

_exit["client"] = client = moetrack.Client(
    os.environ["APP_ID"], os.environ["API_KEY"], endpoint=os.environ["ENDPOINT"],
    flush_interval=0.05, queue_capacity=int(os.environ["CAPACITY"]),
    events_per_minute=500, rate_limit_window=60.0,  # ~one batch, then a minute's wait
    shutdown_timeout=0.5,
)
client.track("Warm", customer_id="overload-user", pad="")  # start the worker, import httpx
time.sleep(0.5)
baseline = rss_kb("VmRSS")
try:  # reset the peak to now (Linux >= 4.0); else the peak since start is an upper bound
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
slowest, calls, n = 0.0, 0, 0
end = time.monotonic() + float(os.environ["SECONDS"])
perf = time.perf_counter
while time.monotonic() < end:
    for _ in range(1000):
        n += 1
        pad = "%08d" % n + "x" * 1000  # a distinct ~1 KB string per record
        start = perf()
        client.track("Flood", customer_id="overload-user", n=n, pad=pad)
        slowest = max(slowest, perf() - start)
    calls += 1000
stats = client.stats()
print(json.dumps({
    "calls": calls, "slowest": slowest, "baseline_kb": baseline, "peak_kb": rss_kb("VmHWM"),
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
            SECONDS="2.5",
        ),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    run = json.loads(lines[0])
    during = run["during"]
    calls = run["calls"]
    # Far more records were offered than the queue holds ...
    assert calls >= 20 * CAPACITY, run
    # ... so almost all of them were dropped, and counted, as queue_full,
    assert set(during["dropped"]) == {"queue_full"}
    assert during["dropped"]["queue_full"] >= calls - CAPACITY - 600
    assert during["pending"] <= CAPACITY
    assert during["queued"] == (
        during["sent"] + sum(during["dropped"].values()) + during["failed"] + during["pending"]
    )
    # ... while memory grew by what CAPACITY records of ~1 KB hold: ~2.5 KB each (the record
    # and its encoded item), bounded generously at 6 KB each; the records offered would need
    # over 250 MB.
    assert run["peak_kb"] - run["baseline_kb"] < CAPACITY * 6, run
    # ... and no call waited: a dropped record costs the caller a counter update.
    assert run["slowest"] < 0.1, run
    # At exit the rate limit still holds the rest: given up within the shutdown timeout.
    final = done.last_json()["stats"]
    assert final["pending"] == 0
    assert final["queued"] == final["sent"] + sum(final["dropped"].values()) + final["failed"]
    assert final["sent"] <= 501


def test_block_on_full_under_sustained_overload_waits_at_most_block_timeout_per_call(
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
    waits: list[float] = []
    lock = threading.Lock()
    start_together = threading.Barrier(4)

    def produce(k: int) -> None:
        mine = []
        start_together.wait()
        for n in range(15):
            start = time.monotonic()
            client.track("Blocked", customer_id=f"block-user-{k}", n=n)
            mine.append(time.monotonic() - start)
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stats = assert_accounted(client)
    assert len(waits) == 60
    blocked = [w for w in waits if w >= block_timeout * 0.9]
    assert blocked, "the queue never filled up"
    assert max(waits) < block_timeout + 0.15  # block_timeout, plus scheduling slack
    assert stats.dropped == {"queue_full": len(blocked)}
    assert stats.pending <= 30
    client.shutdown(0.2)  # the rate limit holds the rest for a minute: give it up now
    assert assert_accounted(client).pending == 0
