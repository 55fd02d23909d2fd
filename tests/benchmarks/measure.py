"""One contender-measurement, run in a fresh interpreter by the runner.

``python -m tests.benchmarks.measure FIGURE CONTENDER --sink URL [options]`` prints one line
``RESULT {json}`` and leaves with ``os._exit(0)`` (no exit hooks: every figure has finished
what it measures by then, and the sink is reset before the next measurement).

The event is the same for everyone: ``"Purchase"`` with five attributes (str, int, float,
bool, ISO date string) in a dict literal built inside the timed call, the int derived from
the loop counter, for the customer ``ids[i % 1000]``. ``ids`` holds one customer repeated
(``--customers 1``) or ``bench-user-1`` … ``bench-user-1000`` in turn (``--customers
1000``), so consecutive events never share a customer. The calls are compiled from the
source strings in :data:`CALLS` into the same loop, so every contender pays the same loop and
timer costs. Each call is timed on its own with a pair of ``perf_counter_ns()`` reads; the
``timer`` contender times an empty statement, the cost of that pair.

Each SDK keeps its defaults except what lets it hold the whole run without dropping (queue
sizes) and, for moetrack, rate limits off (see :data:`SETTINGS`).
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
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

#: Big enough that no contender drops anything in any figure.
QUEUE_SIZE = 4_000_000
#: Length of the customer-id table the calls index with ``i % 1000``.
ID_SLOTS = 1000

#: What each SDK is configured with beyond its defaults, for the results to state.
SETTINGS: dict[str, str] = {
    "moetrack": (
        f"users_per_minute=None, events_per_minute=None (client-side rate limits off; the "
        f"defaults, 1,000 users/min and 10,000 events/min, would hold delivery to 167 "
        f"events/s), queue_capacity={QUEUE_SIZE:,}"
    ),
    "moetrack-ratelimited": (
        f"events_per_minute=1, users_per_minute=None, queue_capacity={QUEUE_SIZE:,}: the "
        "backlog waits on the limiter"
    ),
    "segment": f"max_queue_size={QUEUE_SIZE:,}",
    "posthog": f"max_queue_size={QUEUE_SIZE:,}, flush(timeout_seconds=None)",
    "handler": (
        "logging.getLogger('bench.events') at INFO, propagate=False, with "
        "moetrack.logging.EventHandler(client=<the moetrack client above>)"
    ),
    "logging-discard": (
        "the same logger with a logging.Handler whose emit() does nothing: what logging "
        "itself costs"
    ),
}

_ATTRS = (
    '{"plan": "pro", "quantity": i, "price": 39.99, "gift": False, '
    '"ordered_at": "2024-05-01T10:00:00Z"}'
)
_EXTRA = (
    '{"customer_id": ids[i % 1000], "plan": "pro", "quantity": i, "price": 39.99, '
    '"gift": False, "ordered_at": "2024-05-01T10:00:00Z"}'
)

#: The call each contender makes, as source; ``track`` is the bound method (or function).
CALLS: dict[str, str] = {
    "moetrack": f'track("Purchase", {_ATTRS}, customer_id=ids[i % 1000])',
    "moetrack-kwargs": (
        'track("Purchase", customer_id=ids[i % 1000], plan="pro", quantity=i, price=39.99, '
        'gift=False, ordered_at="2024-05-01T10:00:00Z")'
    ),
    "segment": f'track(user_id=ids[i % 1000], event="Purchase", properties={_ATTRS})',
    "posthog": f'track("Purchase", distinct_id=ids[i % 1000], properties={_ATTRS})',
    "floor": f'track("Purchase", {_ATTRS}, customer_id=ids[i % 1000])',
    "floor-inline": (
        f'append((0, get(), now(), "Purchase", {_ATTRS}, None, ids[i % 1000], '
        "None, None, None, None, None, None))"
    ),
    "timer": "pass",
    "handler": f'track("Purchase", extra={_EXTRA})',
    "logging-discard": f'track("Purchase", extra={_EXTRA})',
    "bare-call": "track()",
    "track_event": "track()",
}

#: Contenders whose ``Built.client`` is a moetrack Client.
MOETRACK_CLIENTS = {"moetrack", "moetrack-kwargs", "handler"}

_LOOPS = """
def timed(track, start, count, out, ids, get=None, now=None, append=None):
    pc = perf_counter_ns
    put = out.append
    for i in range(start, start + count):
        t0 = pc()
        {call}
        put(pc() - t0)
    return start + count


def untimed(track, start, count, ids, get=None, now=None, append=None):
    for i in range(start, start + count):
        {call}
    return start + count
"""


_LOOP = """
def loop(track, start, count, ids):
    for i in range(start, start + count):
        {call}
    return start + count
"""


def compile_loop(call: str) -> Callable[[Any, int, int, list[str]], int]:
    """``loop(track, start, count, ids)``: ``call`` for ``i`` in ``start … start+count``,
    compiled so that the loop itself costs what a plain ``for`` costs."""
    namespace: dict[str, Any] = {}
    exec(compile(_LOOP.replace("{call}", call), "<loop>", "exec"), namespace)
    fn: Callable[[Any, int, int, list[str]], int] = namespace["loop"]
    return fn


def send_result(result: dict[str, Any]) -> NoReturn:
    """End a measurement's child process: its result as the ``RESULT`` line that
    ``runner.run_python`` reads, then exit at once (no SDK's exit hook runs)."""
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def compile_loops(contender: str) -> tuple[Callable[..., int], Callable[..., int]]:
    """The timed and untimed loops with ``contender``'s call inlined.

    ``timed(track, start, count, out, ids, **extra)`` appends each call's nanoseconds to
    ``out`` (an ``array("q")``) and returns the next loop counter.
    """
    namespace: dict[str, Any] = {"perf_counter_ns": time.perf_counter_ns}
    source = _LOOPS.replace("{call}", CALLS[contender])
    exec(compile(source, f"<loop {contender}>", "exec"), namespace)
    return namespace["timed"], namespace["untimed"]


def customer_ids(customers: int) -> list[str]:
    """The table the calls index with ``i % 1000``: ``customers`` distinct ids in turn."""
    if not 1 <= customers <= ID_SLOTS:
        raise SystemExit(f"--customers must be 1 … {ID_SLOTS}")
    return [f"bench-user-{k % customers + 1}" for k in range(ID_SLOTS)]


def samples() -> array[int]:
    return array("q")


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


class Unavailable(Exception):
    """The contender cannot be built with the moetrack in this tree (the reason is shown)."""


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


def moetrack_client(sink: str, *, rate_limited: bool = False) -> Any:
    import moetrack

    return moetrack.Client(
        "BENCH_APP",
        "bench-key",
        endpoint=sink,
        users_per_minute=None,
        events_per_minute=1 if rate_limited else None,
        queue_capacity=QUEUE_SIZE,
    )


def _bench_logger(handler: Any) -> Any:
    import logging

    logger = logging.getLogger("bench.events")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


def build(contender: str, sink: str, *, rate_limited: bool = False) -> Built:
    if contender in {"moetrack", "moetrack-kwargs"}:
        client = moetrack_client(sink, rate_limited=rate_limited)
        return Built(client.track, client.flush, client=client)
    if contender == "handler":
        try:
            from moetrack.logging import EventHandler
        except ImportError as exc:
            raise Unavailable(f"moetrack.logging.EventHandler cannot be imported ({exc})") from exc
        client = moetrack_client(sink, rate_limited=rate_limited)
        logger = _bench_logger(EventHandler(client=client))
        return Built(logger.info, client.flush, client=client)
    if contender == "logging-discard":
        import logging

        class Discard(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                pass

        return Built(_bench_logger(Discard()).info)
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
    if contender == "timer":
        return Built(lambda: None)
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


def _rank(s: Sequence[int], q: float) -> int:
    """The nearest-rank ``q`` quantile of the sorted ``s``."""
    return s[max(0, math.ceil(q * len(s)) - 1)]


def summarize(timings: Sequence[int]) -> dict[str, Any]:
    """Single-call nanoseconds: median, p99, p99.9 (nearest rank), mean, min, max."""
    s = sorted(timings)
    n = len(s)
    if not n:
        return {"calls": 0}
    mid = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return {
        "calls": n,
        "median_ns": mid,
        "p99_ns": _rank(s, 0.99),
        "p999_ns": _rank(s, 0.999),
        "mean_ns": sum(s) / n,
        "min_ns": s[0],
        "max_ns": s[-1],
    }


def cpu_seconds() -> float:
    """User + system CPU of the whole process (every thread), at nanosecond resolution."""
    return time.process_time()


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


def moetrack_stats(client: Any) -> dict[str, Any]:
    stats = client.stats()
    out: dict[str, Any] = {}
    for name in ("sent", "failed", "requests", "queue_depth", "pending"):
        if hasattr(stats, name):
            out[name] = getattr(stats, name)
    if hasattr(stats, "dropped"):
        out["dropped"] = dict(stats.dropped)
    return out


# -- figures ---------------------------------------------------------------------------------


def fig_track(
    contender: str, sink: str, events: int, warmup: int, wait: float, customers: int
) -> dict[str, Any]:
    """Figures 1-3: caller cost per call, then CPU per event and delivery to the sink."""
    built = build(contender, sink)
    timed, _ = compile_loops(contender)
    ids = customer_ids(customers)
    i = timed(built.track, 0, warmup, samples(), ids, **built.extra)
    delivers = built.flush is not None
    if delivers:
        assert built.flush is not None
        built.flush()
        wait_for(sink, warmup, wait)
        base = control(sink, "/_count")
    gc.collect()
    out = samples()
    wait0 = runqueue_wait()
    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    timed(built.track, i, events, out, ids, **built.extra)
    t_loop = time.monotonic()
    result: dict[str, Any] = {
        "caller": summarize(out),
        "customers": customers,
        "loop_s": t_loop - t0,
        "runqueue_wait_loop_s": runqueue_wait() - wait0,
    }
    if delivers:
        assert built.flush is not None
        built.flush()
        t_flush = time.monotonic()
        done = wait_for(sink, warmup + events, wait)
        cpu = cpu_seconds() - cpu0
        wall = done["reached_at"] - t0
        requests = done["requests"] - base["requests"]
        body = done["bytes"] - base["bytes"]
        result.update(
            events=events,
            delivered=done["events"] - base["events"],
            wall_s=wall,
            flush_returned_s=t_flush - t0,
            events_per_s=events / wall,
            cpu_s=cpu,
            cpu_us_per_event=cpu / events * 1e6,
            runqueue_wait_s=runqueue_wait() - wait0,
            requests=requests,
            mean_body_bytes=body / requests if requests else 0,
            max_body_bytes=done["max_body"],
            paths=done["paths"],
        )
        if contender in MOETRACK_CLIENTS:
            result["moetrack_stats"] = moetrack_stats(built.client)
    return result


def fig_threads(
    contender: str, sink: str, threads: int, per_thread: int, warmup: int, customers: int
) -> dict[str, Any]:
    """Figure 7: the caller cost while ``threads`` threads track at once."""
    built = build(contender, sink)
    timed, _ = compile_loops(contender)
    ids = customer_ids(customers)
    timed(built.track, 0, warmup, samples(), ids, **built.extra)
    gc.collect()
    barrier = threading.Barrier(threads + 1)
    outs = [samples() for _ in range(threads)]

    def run(k: int) -> None:
        barrier.wait()
        timed(built.track, (k + 1) * 10_000_000, per_thread, outs[k], ids, **built.extra)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.monotonic()
    for w in workers:
        w.join()
    wall = time.monotonic() - t0
    merged = [x for per in outs for x in per]
    return {
        "caller": summarize(merged),
        "threads": threads,
        "wall_s": wall,
        "calls_per_s": len(merged) / wall,
    }


def fig_memory(
    contender: str,
    sink: str,
    events: int,
    warmup: int,
    wait: float,
    rate_limited: bool,
    customers: int,
) -> dict[str, Any]:
    """Figure 4: RSS growth while ``events`` wait (sink paused, or moetrack rate-limited)."""
    built = build(contender, sink, rate_limited=rate_limited)
    _, untimed = compile_loops(contender)
    ids = customer_ids(customers)
    if rate_limited:
        # One event spends the minute's budget of one; everything after it waits.
        i = untimed(built.track, 0, 1, ids, **built.extra)
        wait_for(sink, 1, wait)
        warm = 1
    else:
        i = untimed(built.track, 0, warmup, ids, **built.extra)
        assert built.flush is not None
        built.flush()
        wait_for(sink, warmup, wait)
        warm = warmup
        control(sink, "/_pause")
    gc.collect()
    peak_reset = reset_peak()
    before = proc_status()
    t0 = time.monotonic()
    untimed(built.track, i, events, ids, **built.extra)
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
    if contender in MOETRACK_CLIENTS:
        result["moetrack_stats"] = moetrack_stats(built.client)
    return result


def fig_decorator(contender: str, sink: str, calls: int, warmup: int) -> dict[str, Any]:
    """Figure 6: a call of an empty function, bare or under ``@moetrack.track_event``."""
    import moetrack

    def work() -> None:
        pass

    func: Callable[[], None] = work
    if contender == "track_event":
        if not hasattr(moetrack, "track_event"):
            raise Unavailable("moetrack.track_event does not exist")
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
    ids = customer_ids(1)
    i = timed(func, 0, warmup, samples(), ids)
    gc.collect()
    out = samples()
    timed(func, i, calls, out, ids)
    result: dict[str, Any] = {"caller": summarize(out)}
    if contender == "track_event":
        moetrack.flush(30)
        result["moetrack_stats"] = moetrack_stats(moetrack.get_client())
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.measure")
    parser.add_argument("figure", choices=["track", "threads", "memory", "decorator"])
    parser.add_argument("contender", choices=sorted(CALLS))
    parser.add_argument("--sink", required=True)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--customers", type=int, default=1)
    parser.add_argument("--wait", type=float, default=90.0)
    parser.add_argument("--rate-limited", action="store_true")
    parser.add_argument("--profile", metavar="FILE", help="cProfile this measurement to FILE")
    args = parser.parse_args(argv)

    def run() -> dict[str, Any]:
        if args.figure == "track":
            return fig_track(
                args.contender, args.sink, args.events, args.warmup, args.wait, args.customers
            )
        if args.figure == "threads":
            return fig_threads(
                args.contender,
                args.sink,
                args.threads,
                args.events // args.threads,
                args.warmup,
                args.customers,
            )
        if args.figure == "memory":
            return fig_memory(
                args.contender,
                args.sink,
                args.events,
                args.warmup,
                args.wait,
                args.rate_limited,
                args.customers,
            )
        return fig_decorator(args.contender, args.sink, args.events, args.warmup)

    try:
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(run)
            profiler.dump_stats(args.profile)
        else:
            result = run()
        result["available"] = True
    except Unavailable as exc:
        result = {"available": False, "reason": str(exc)}
    result["python"] = sys.version.split()[0]
    send_result(result)


if __name__ == "__main__":
    main(sys.argv[1:])
