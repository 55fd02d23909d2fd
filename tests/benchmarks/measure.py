"""One contender-measurement, run in a fresh interpreter by the runner.

``python -m tests.benchmarks.measure FIGURE CONTENDER --sink URL [options]`` prints one line
``RESULT {json}`` and leaves with ``os._exit(0)`` (no exit hooks: every figure has finished
what it measures by then, and the sink is reset before the next measurement).

The event is the same for everyone: ``"Purchase"`` for customer ``"bench-user-1"`` with five
attributes (str, int, float, bool, ISO date string) in a dict literal built inside the timed
call, the int derived from the loop counter. The calls are compiled from the source strings
in :data:`CALLS` into the same loop, so every contender pays the same loop and timer costs.
Each SDK keeps its defaults except what lets it hold the whole run without dropping (queue
sizes) and, for moetrack, rate limits off (``users_per_minute=None, events_per_minute=None``).
"""

from __future__ import annotations

import argparse
import contextvars
import gc
import http.client
import json
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

#: Calls timed per perf_counter_ns sample; a sample divided by this is one call's cost.
BATCH = 100
#: Big enough that no contender drops anything in any figure.
QUEUE_SIZE = 4_000_000

_ATTRS = (
    '{"plan": "pro", "quantity": i, "price": 39.99, "gift": False, '
    '"ordered_at": "2024-05-01T10:00:00Z"}'
)

#: The call each contender makes, as source; ``track`` is the bound method (or function).
CALLS: dict[str, str] = {
    "moetrack": f'track("Purchase", {_ATTRS}, customer_id="bench-user-1")',
    "moetrack-kwargs": (
        'track("Purchase", customer_id="bench-user-1", plan="pro", quantity=i, price=39.99, '
        'gift=False, ordered_at="2024-05-01T10:00:00Z")'
    ),
    "segment": f'track(user_id="bench-user-1", event="Purchase", properties={_ATTRS})',
    "posthog": f'track("Purchase", distinct_id="bench-user-1", properties={_ATTRS})',
    "floor": f'track("Purchase", {_ATTRS}, customer_id="bench-user-1")',
    "floor-inline": (
        f'append((0, get(), now(), "Purchase", {_ATTRS}, None, "bench-user-1", '
        "None, None, None, None, None, None))"
    ),
    "bare-call": "track()",
    "track_event": "track()",
}

_TIMED = """
def timed(track, start, batches, out, get=None, now=None, append=None):
    pc = perf_counter_ns
    i = start
    for _ in range(batches):
        t0 = pc()
        for i in range(i, i + BATCH):
            {call}
        out.append(pc() - t0)
        i += 1
    return i


def untimed(track, start, count, get=None, now=None, append=None):
    for i in range(start, start + count):
        {call}
    return start + count
"""


def compile_loops(contender: str) -> tuple[Callable[..., int], Callable[..., int]]:
    """The timed and untimed loops with ``contender``'s call inlined."""
    namespace: dict[str, Any] = {"perf_counter_ns": time.perf_counter_ns, "BATCH": BATCH}
    source = _TIMED.replace("{call}", CALLS[contender])
    exec(compile(source, f"<loop {contender}>", "exec"), namespace)
    return namespace["timed"], namespace["untimed"]


# -- the floor -------------------------------------------------------------------------------


def make_floor() -> tuple[Callable[..., None], dict[str, Any]]:
    """The least a track() can do: read a ContextVar, take the time, append a tuple.

    The tuple has the layout of a moetrack event record, holding the caller's mapping as is
    (no copy, no check). ``floor`` is that work behind a call with track()'s calling
    convention; ``floor-inline`` does the same work with no call at all.
    """
    var: contextvars.ContextVar[object] = contextvars.ContextVar("bench", default=object())
    queue: deque[tuple[Any, ...]] = deque()
    get = var.get
    now = time.time
    append = queue.append

    def floor(action: str, attributes: Any = None, /, *, customer_id: Any = None) -> None:
        append(
            (0, get(), now(), action, attributes, None, customer_id, None, None, None, None,
             None, None)
        )  # fmt: skip

    return floor, {"get": get, "now": now, "append": append}


# -- the contenders --------------------------------------------------------------------------


class Built:
    """A contender ready to track: the callable, how to flush, and extras for the loops."""

    def __init__(
        self,
        track: Callable[..., Any],
        flush: Callable[[], Any] | None = None,
        extra: dict[str, Any] | None = None,
        client: Any = None,
    ) -> None:
        self.track = track
        self.flush = flush
        self.extra = extra or {}
        self.client = client


def build(contender: str, sink: str, *, rate_limited: bool = False) -> Built:
    if contender in {"moetrack", "moetrack-kwargs"}:
        import moetrack

        client = moetrack.Client(
            "BENCH_APP",
            "bench-key",
            endpoint=sink,
            users_per_minute=None,
            events_per_minute=1 if rate_limited else None,
            queue_capacity=QUEUE_SIZE,
        )
        return Built(client.track, client.flush, client=client)
    if contender == "segment":
        import segment.analytics as analytics

        client = analytics.Client("bench-write-key", host=sink, max_queue_size=QUEUE_SIZE)
        return Built(client.track, client.flush, client=client)
    if contender == "posthog":
        from posthog import Posthog

        client = Posthog("phc_bench", host=sink, max_queue_size=QUEUE_SIZE)
        return Built(client.capture, lambda: client.flush(timeout_seconds=None), client=client)
    if contender in {"floor", "floor-inline"}:
        floor, extra = make_floor()
        return Built(floor, None, extra if contender == "floor-inline" else None)
    raise SystemExit(f"unknown contender {contender!r}")


# -- the sink's control endpoint -------------------------------------------------------------


def control(sink: str, path: str, timeout: float = 30.0) -> dict[str, Any]:
    parts = urlsplit(sink)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", path)
        answer: dict[str, Any] = json.loads(conn.getresponse().read())
        return answer
    finally:
        conn.close()


def wait_for(sink: str, events: int, timeout: float) -> dict[str, Any]:
    answer = control(sink, f"/_wait?events={events}&timeout={timeout}", timeout + 10)
    if not answer.get("reached"):
        raise SystemExit(
            f"the sink counted {answer.get('events')} of {events} events in {timeout:g}s"
        )
    return answer


# -- statistics ------------------------------------------------------------------------------


def summarize(samples: list[int]) -> dict[str, Any]:
    """Per-call ns from batch samples: median, p99 (nearest rank), mean."""
    s = sorted(samples)
    n = len(s)
    if not n:
        return {"batches": 0}
    mid = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    p99 = s[max(0, math.ceil(0.99 * n) - 1)]
    return {
        "batches": n,
        "calls": n * BATCH,
        "median_ns": mid / BATCH,
        "p99_ns": p99 / BATCH,
        "mean_ns": sum(s) / n / BATCH,
        "min_ns": s[0] / BATCH,
    }


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def runqueue_wait() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (schedstat):
    how much other load on the machine held the measurement back."""
    total = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return total / 1e9


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -- figures ---------------------------------------------------------------------------------


def fig_track(contender: str, sink: str, events: int, warmup: int, wait: float) -> dict[str, Any]:
    """Figures 1-3: caller cost per call, then CPU per event and delivery to the sink."""
    built = build(contender, sink)
    timed, _ = compile_loops(contender)
    i = timed(built.track, 0, warmup // BATCH, [], **built.extra)
    delivers = built.flush is not None
    if delivers:
        assert built.flush is not None
        built.flush()
        wait_for(sink, warmup, wait)
        base = control(sink, "/_count")
    gc.collect()
    samples: list[int] = []
    wait0 = runqueue_wait()
    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    timed(built.track, i, events // BATCH, samples, **built.extra)
    t_loop = time.monotonic()
    result: dict[str, Any] = {
        "caller": summarize(samples),
        "loop_s": t_loop - t0,
        "runqueue_wait_loop_s": runqueue_wait() - wait0,
    }
    n = (events // BATCH) * BATCH
    if delivers:
        assert built.flush is not None
        built.flush()
        t_flush = time.monotonic()
        done = wait_for(sink, warmup + n, wait)
        cpu = cpu_seconds() - cpu0
        wall = done["reached_at"] - t0
        requests = done["requests"] - base["requests"]
        body = done["bytes"] - base["bytes"]
        result.update(
            events=n,
            delivered=done["events"] - base["events"],
            wall_s=wall,
            flush_returned_s=t_flush - t0,
            events_per_s=n / wall,
            cpu_s=cpu,
            cpu_us_per_event=cpu / n * 1e6,
            runqueue_wait_s=runqueue_wait() - wait0,
            requests=requests,
            mean_body_bytes=body / requests if requests else 0,
            max_body_bytes=done["max_body"],
            paths=done["paths"],
        )
        if contender.startswith("moetrack"):
            stats = built.client.stats()
            result["moetrack_stats"] = {
                "sent": stats.sent,
                "dropped": dict(stats.dropped),
                "failed": stats.failed,
                "requests": stats.requests,
            }
    return result


def fig_threads(
    contender: str, sink: str, threads: int, per_thread: int, warmup: int
) -> dict[str, Any]:
    """Figure 7: the caller cost while ``threads`` threads track at once."""
    built = build(contender, sink)
    timed, _ = compile_loops(contender)
    timed(built.track, 0, warmup // BATCH, [], **built.extra)
    gc.collect()
    barrier = threading.Barrier(threads + 1)
    samples: list[list[int]] = [[] for _ in range(threads)]

    def run(k: int) -> None:
        barrier.wait()
        timed(built.track, (k + 1) * 10_000_000, per_thread // BATCH, samples[k], **built.extra)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.monotonic()
    for w in workers:
        w.join()
    wall = time.monotonic() - t0
    merged = [s for per in samples for s in per]
    calls = len(merged) * BATCH
    return {
        "caller": summarize(merged),
        "threads": threads,
        "wall_s": wall,
        "calls_per_s": calls / wall,
    }


def fig_memory(
    contender: str, sink: str, events: int, warmup: int, wait: float, rate_limited: bool
) -> dict[str, Any]:
    """Figure 4: RSS growth while ``events`` wait (sink paused, or moetrack rate-limited)."""
    built = build(contender, sink, rate_limited=rate_limited)
    _, untimed = compile_loops(contender)
    if rate_limited:
        # One event spends the minute's budget of one; everything after it waits.
        i = untimed(built.track, 0, 1, **built.extra)
        wait_for(sink, 1, wait)
        warm = 1
    else:
        i = untimed(built.track, 0, warmup, **built.extra)
        assert built.flush is not None
        built.flush()
        wait_for(sink, warmup, wait)
        warm = warmup
        control(sink, "/_pause")
    gc.collect()
    peak_reset = reset_peak()
    before = proc_status()
    t0 = time.monotonic()
    untimed(built.track, i, events, **built.extra)
    loop_s = time.monotonic() - t0
    time.sleep(1.0)  # let the SDK's thread take what it takes from the queue
    after = proc_status()
    counted = control(sink, "/_count")
    delivered = counted["events"] - warm
    held = events - max(0, delivered)
    grow_peak = after["VmHWM"] - before["VmRSS"]
    grow_now = after["VmRSS"] - before["VmRSS"]
    result: dict[str, Any] = {
        "events": events,
        "held": held,
        "delivered_meanwhile": delivered,
        "rss_before": before["VmRSS"],
        "hwm_after": after["VmHWM"],
        "rss_after": after["VmRSS"],
        "peak_reset": peak_reset,
        "bytes_per_event_peak": grow_peak / held,
        "bytes_per_event_settled": grow_now / held,
        "loop_s": loop_s,
        "mode": "rate-limited" if rate_limited else "sink paused",
    }
    if contender.startswith("moetrack"):
        stats = built.client.stats()
        result["moetrack_stats"] = {
            "queue_depth": stats.queue_depth,
            "pending": stats.pending,
            "dropped": dict(stats.dropped),
        }
    return result


def fig_decorator(contender: str, sink: str, calls: int, warmup: int) -> dict[str, Any]:
    """Figure 6: a call of an empty function, bare or under ``@moetrack.track_event``."""
    import moetrack

    def work() -> None:
        pass

    func: Callable[[], None] = work
    if contender == "track_event":
        if not hasattr(moetrack, "track_event"):
            return {"available": False}
        moetrack.init(
            "BENCH_APP",
            "bench-key",
            endpoint=sink,
            users_per_minute=None,
            events_per_minute=None,
            queue_capacity=QUEUE_SIZE,
        )
        moetrack.bind(customer_id="bench-user-1")
        func = moetrack.track_event("Purchase")(work)
    timed, _ = compile_loops(contender)
    i = timed(func, 0, warmup // BATCH, [])
    gc.collect()
    samples: list[int] = []
    timed(func, i, calls // BATCH, samples)
    result: dict[str, Any] = {"available": True, "caller": summarize(samples)}
    if contender == "track_event":
        moetrack.flush(30)
        stats = moetrack.get_client().stats()
        result["moetrack_stats"] = {"sent": stats.sent, "dropped": dict(stats.dropped)}
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.measure")
    parser.add_argument("figure", choices=["track", "threads", "memory", "decorator"])
    parser.add_argument("contender", choices=sorted(CALLS))
    parser.add_argument("--sink", required=True)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--wait", type=float, default=180.0)
    parser.add_argument("--rate-limited", action="store_true")
    parser.add_argument("--profile", metavar="FILE", help="cProfile this measurement to FILE")
    args = parser.parse_args(argv)

    def run() -> dict[str, Any]:
        if args.figure == "track":
            return fig_track(args.contender, args.sink, args.events, args.warmup, args.wait)
        if args.figure == "threads":
            return fig_threads(
                args.contender, args.sink, args.threads, args.events // args.threads, args.warmup
            )
        if args.figure == "memory":
            return fig_memory(
                args.contender, args.sink, args.events, args.warmup, args.wait, args.rate_limited
            )
        return fig_decorator(args.contender, args.sink, args.events, args.warmup)

    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(run)
        profiler.dump_stats(args.profile)
    else:
        result = run()
    result["python"] = sys.version.split()[0]
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
