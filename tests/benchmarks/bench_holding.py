"""``python -m tests.benchmarks.bench_holding [--rounds N] [--events N] [--quick]``: what a
waiting event costs (issue 25): its bytes, the RSS a burst adds, and the time a full garbage
collection takes while events wait.

Every measurement is a fresh interpreter. The event is the one of the main benchmark
(``"Purchase"`` with five attributes, spelled as in ``measure.CALLS``; one customer, or 1,000
in turn). Events wait in one of two ways:

- ``paused``: a few events are delivered, then the loopback sink is paused (``/_pause``): it
  reads every request and answers none, so the client's requests hang (``timeout=120`` for
  every SDK, so none is abandoned while measuring);
- ``quota``: moetrack only, ``events_per_minute=1``: one event spends the minute's budget and
  the rest waits on the client's limiter, while the worker takes and prepares what it may.

Figures:

- **bytes per waiting event**: ``tracemalloc`` started once the client is warm; track N events
  (100,000 by default), wait until the SDK's thread has taken what it takes (its queue depth
  unchanged for 0.5 s), ``gc.collect()``, then the traced current size / N. Also the objects
  the collector tracks (``len(gc.get_objects())``) per waiting event. ``floor`` is a
  ``deque`` of tuples holding the caller's dict, as ``measure.make_floor`` builds them.
  Segment and PostHog keep their defaults but ``max_queue_size`` (raised) and ``timeout``.
- **full collection**: ``gc.collect()`` timed from the ``start`` to the ``stop`` callback in
  ``gc.callbacks`` (generation 2), median of 5, with none waiting (the client warm) and then
  with N waiting, in the same process; no ``tracemalloc``.
- **burst**: moetrack with ``max_queue_bytes`` at its default (64 MiB) and the sink paused is
  offered about ten times that in distinct events with a 90 KB attribute (as
  ``tests/reliability/test_memory_bound.py`` does); peak RSS growth (``VmHWM`` after its reset
  through ``/proc/self/clear_refs``, minus ``VmRSS`` before; ``VmRSS`` also sampled every 5
  ms) / ``max_queue_bytes``. The peers bound their queues by count, not bytes: not compared.

Targets (issue 25): at most 250 B per waiting event; RSS growth at most 1.5 times
``max_queue_bytes``; a full collection with N waiting at most 1 ms longer than with none.
Results: ``results/holding.md`` and ``results/holding.json`` (``--json PATH`` elsewhere).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shlex
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .__main__ import output_options, save, settings_and_errors
from .measure import (
    CALLS,
    QUEUE_SIZE,
    compile_loop,
    control,
    customer_ids,
    make_floor,
    moetrack_stats,
    proc_status,
    reset_peak,
    send_result,
    wait_for,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"

MAX_QUEUE_BYTES = 64 * 1024 * 1024  # moetrack's default max_queue_bytes
BLOB_BYTES = 90_000
BURST_FACTOR = 10
TIMEOUT = 120.0
WARM = 100
GC_REPEAT = 5

TARGET_BYTES = 250.0
TARGET_RSS_RATIO = 1.5
TARGET_GC_MS = 1.0

#: (contender, mode) of every bytes and gc measurement.
HOLDERS: tuple[tuple[str, str], ...] = (
    ("moetrack", "paused"),
    ("moetrack", "quota"),
    ("segment", "paused"),
    ("posthog", "paused"),
    ("floor", "-"),
)

SETTINGS: dict[str, str] = {
    "moetrack/paused": (
        f"users_per_minute=None, events_per_minute=None, queue_capacity={QUEUE_SIZE:,}, "
        f"max_queue_bytes=4 GiB, timeout={TIMEOUT:g}; the sink paused after {WARM} events"
    ),
    "moetrack/quota": (
        f"users_per_minute=None, events_per_minute=1, queue_capacity={QUEUE_SIZE:,}, "
        "max_queue_bytes=4 GiB; one event delivered, the rest waits on the limiter"
    ),
    "segment/paused": f"max_queue_size={QUEUE_SIZE:,}, timeout={TIMEOUT:g}; the sink paused",
    "posthog/paused": f"max_queue_size={QUEUE_SIZE:,}, timeout={TIMEOUT:g}; the sink paused",
    "floor/-": "deque.append of a 13-field tuple holding the caller's dict (measure.make_floor)",
    "burst": (
        f"moetrack: users_per_minute=None, events_per_minute=None, max_queue_bytes="
        f"{MAX_QUEUE_BYTES:,} (the default), timeout={TIMEOUT:g}; the sink paused; "
        f"{BURST_FACTOR}x max_queue_bytes offered in events with a distinct "
        f"{BLOB_BYTES // 1000} KB attribute, customers u-0 … u-49"
    ),
}

# -- one measurement (a fresh interpreter) ---------------------------------------------------


class Holder:
    """A contender ready to hold events: its call, and how deep its queue is now."""

    def __init__(
        self, track: Callable[..., Any], call: str, depth: Callable[[], Any], client: Any
    ) -> None:
        self.track = track
        self.call = call
        self.depth = depth
        self.client = client


def make(contender: str, mode: str, sink: str) -> Holder:
    if contender == "moetrack":
        import moetrack

        client = moetrack.Client(
            "BENCH_APP",
            "bench-key",
            endpoint=sink,
            users_per_minute=None,
            events_per_minute=1 if mode == "quota" else None,
            queue_capacity=QUEUE_SIZE,
            max_queue_bytes=4 * 1024**3,
            timeout=TIMEOUT,
        )

        def depth() -> Any:
            s = client.stats()
            return (getattr(s, "queue_depth", None), getattr(s, "pending", None))

        return Holder(client.track, CALLS["moetrack"], depth, client)
    if contender == "segment":
        import segment.analytics as analytics

        seg = analytics.Client(
            "bench-write-key", host=sink, max_queue_size=QUEUE_SIZE, timeout=TIMEOUT
        )
        return Holder(seg.track, CALLS["segment"], seg.queue.qsize, seg)
    if contender == "posthog":
        from posthog import Posthog

        ph = Posthog("phc_bench", host=sink, max_queue_size=QUEUE_SIZE, timeout=TIMEOUT)
        return Holder(ph.capture, CALLS["posthog"], ph.queue.qsize, ph)
    if contender == "floor":
        floor, _ = make_floor()
        return Holder(floor, CALLS["floor"], lambda: 0, None)
    raise SystemExit(f"unknown contender {contender!r}")


def settle(depth: Callable[[], Any], timeout: float = 60.0) -> tuple[float, Any]:
    """Wait until ``depth()`` has not changed for 0.5 s; the seconds it took and the depth."""
    start = time.monotonic()
    last = depth()
    still = 0
    while time.monotonic() - start < timeout and still < 5:
        time.sleep(0.1)
        now = depth()
        still = still + 1 if now == last else 0
        last = now
    return time.monotonic() - start, last


def full_gc_ms(times: int = GC_REPEAT) -> list[float]:
    """``gc.collect()`` timed from its ``start`` to its ``stop`` callback, ``times`` times."""
    marks: dict[str, float] = {}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") == 2:
            marks[phase] = time.perf_counter()

    gc.callbacks.append(callback)
    try:
        out = []
        for _ in range(times):
            marks.clear()
            gc.collect()
            out.append((marks["stop"] - marks["start"]) * 1e3)
        return out
    finally:
        gc.callbacks.remove(callback)


def warm(holder: Holder, contender: str, mode: str, sink: str, ids: list[str]) -> int:
    """Deliver the first events, then make the rest wait; the next loop counter."""
    loop = compile_loop(holder.call)
    if contender == "floor":
        return loop(holder.track, 0, WARM, ids)
    if mode == "quota":
        i = loop(holder.track, 0, 1, ids)
        wait_for(sink, 1, 60)
        time.sleep(0.2)
        return i
    i = loop(holder.track, 0, WARM, ids)
    wait_for(sink, WARM, 60)
    time.sleep(0.2)
    control(sink, "/_pause")
    return i


def hold(
    kind: str, contender: str, mode: str, sink: str, events: int, customers: int
) -> dict[str, Any]:
    """``bytes``: tracemalloc's bytes per waiting event; ``gc``: full collections, none vs N."""
    holder = make(contender, mode, sink)
    ids = customer_ids(customers)
    loop = compile_loop(holder.call)
    i = warm(holder, contender, mode, sink, ids)
    settle(holder.depth, 10)
    gc.collect()
    result: dict[str, Any] = {
        "kind": kind,
        "contender": contender,
        "mode": mode,
        "customers": customers,
        "events": events,
    }
    objects0 = len(gc.get_objects())
    if kind == "gc":
        result["gc_none_ms"] = full_gc_ms()
    else:
        tracemalloc.start()
    t0 = time.monotonic()
    loop(holder.track, i, events, ids)
    result["loop_s"] = time.monotonic() - t0
    result["settle_s"], result["depth_at_measure"] = settle(holder.depth)
    gc.collect()
    if kind == "bytes":
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result.update(
            traced_bytes=current,
            traced_peak=peak,
            bytes_per_event=current / events,
            peak_bytes_per_event=peak / events,
        )
    else:
        result["gc_held_ms"] = full_gc_ms()
        none = statistics.median(result["gc_none_ms"])
        held = statistics.median(result["gc_held_ms"])
        result.update(gc_none_median_ms=none, gc_held_median_ms=held, gc_delta_ms=held - none)
    result["gc_objects_per_event"] = (len(gc.get_objects()) - objects0) / events
    if contender == "moetrack":
        result["moetrack_stats"] = moetrack_stats(holder.client)
    return result


def burst(sink: str, factor: float) -> dict[str, Any]:
    """RSS growth while ``factor`` times ``max_queue_bytes`` is offered to a paused sink."""
    import moetrack

    control(sink, "/_pause")
    client = moetrack.Client(
        "BENCH_APP",
        "bench-key",
        endpoint=sink,
        users_per_minute=None,
        events_per_minute=None,
        max_queue_bytes=MAX_QUEUE_BYTES,
        timeout=TIMEOUT,
    )
    client.track("Warm", customer_id="u-warm", blob="x" * BLOB_BYTES)
    client.flush(0.5)  # the sink holds it: a request in flight, the worker started
    gc.collect()
    peak_reset = reset_peak()
    before = proc_status()
    sampled = [before["VmRSS"]]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = proc_status()["VmRSS"]
            if rss > sampled[0]:
                sampled[0] = rss
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    n = math.ceil(factor * MAX_QUEUE_BYTES / BLOB_BYTES)
    t0 = time.monotonic()
    for k in range(n):
        blob = os.urandom(BLOB_BYTES // 2).hex()  # a distinct 90 KB string each time
        client.track("Big", customer_id=f"u-{k % 50}", blob=blob)
        del blob
    loop_s = time.monotonic() - t0
    time.sleep(1.0)  # let the worker take what it takes
    done.set()
    sampler.join()
    after = proc_status()
    growth = after["VmHWM"] - before["VmRSS"]
    return {
        "kind": "burst",
        "events": n,
        "offered_bytes": n * BLOB_BYTES,
        "factor": factor,
        "max_queue_bytes": MAX_QUEUE_BYTES,
        "peak_reset": peak_reset,
        "rss_before": before["VmRSS"],
        "hwm_after": after["VmHWM"],
        "rss_after": after["VmRSS"],
        "peak_growth": growth,
        "sampled_peak_growth": sampled[0] - before["VmRSS"],
        "settled_growth": after["VmRSS"] - before["VmRSS"],
        "ratio": growth / MAX_QUEUE_BYTES,
        "sampled_ratio": (sampled[0] - before["VmRSS"]) / MAX_QUEUE_BYTES,
        "loop_s": loop_s,
        "moetrack_stats": moetrack_stats(client),
    }


# -- the run ---------------------------------------------------------------------------------


def key(r: dict[str, Any]) -> str:
    if r["kind"] == "burst":
        return "burst"
    return f"{r['kind']}/{r['contender']}/{r['mode']}/{r['customers']}"


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if "error" not in r:
            groups.setdefault(key(r), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for k, rs in groups.items():
        row: dict[str, Any] = {"rounds": len(rs)}
        for name in (
            "bytes_per_event",
            "peak_bytes_per_event",
            "gc_objects_per_event",
            "gc_none_median_ms",
            "gc_held_median_ms",
            "gc_delta_ms",
            "ratio",
            "sampled_ratio",
            "peak_growth",
            "settled_growth",
            "offered_bytes",
        ):
            values = [float(r[name]) for r in rs if name in r]
            if values:
                row[name] = med(values)
                row[name + "_range"] = [min(values), max(values)]
        last = rs[-1]
        for name in ("contender", "mode", "customers", "kind", "depth_at_measure"):
            if name in last:
                row[name] = last[name]
        stats = last.get("moetrack_stats")
        if stats:
            row["moetrack_stats"] = stats
        out[k] = row
    return out


def targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for k, row in sorted(summary.items()):
        if k.startswith("bytes/moetrack/"):
            value = row["bytes_per_event"]
            out.append(
                {
                    "target": f"bytes per waiting event ({row['mode']}, "
                    f"{row['customers']} customer(s))",
                    "goal": f"<= {TARGET_BYTES:g} B",
                    "value": f"{value:,.0f} B",
                    "pass": value <= TARGET_BYTES,
                }
            )
    for k, row in sorted(summary.items()):
        if k.startswith("gc/moetrack/"):
            value = row["gc_delta_ms"]
            out.append(
                {
                    "target": f"full collection, N waiting minus none ({row['mode']})",
                    "goal": f"<= +{TARGET_GC_MS:g} ms",
                    "value": f"{value:+.2f} ms",
                    "pass": value <= TARGET_GC_MS,
                }
            )
    burst_row = summary.get("burst")
    if burst_row:
        value = burst_row["ratio"]
        out.append(
            {
                "target": "peak RSS growth / max_queue_bytes, 10x burst",
                "goal": f"<= {TARGET_RSS_RATIO:g}x",
                "value": f"{value:.2f}x",
                "pass": value <= TARGET_RSS_RATIO,
            }
        )
    return out


def _range(row: dict[str, Any], name: str, fmt: str) -> str:
    lo, hi = row[name + "_range"]
    return f"{fmt.format(row[name])} [{fmt.format(lo)}..{fmt.format(hi)}]"


def _section(
    doc: dict[str, Any],
    kind: str,
    heading: str,
    header: str,
    cells: Callable[[dict[str, Any]], str],
) -> list[str]:
    """One table of per-contender rows of ``kind``; nothing when the run did not measure it."""
    rows = []
    for contender, mode in HOLDERS:
        for customers in doc["customers"]:
            row = doc["summary"].get(f"{kind}/{contender}/{mode}/{customers}")
            if row is not None:
                rows.append(f"| {contender} | {mode} | {customers} | {cells(row)} |")
    if not rows:
        return []
    return ["", heading, "", header, "|---" * header.count(" | ") + "|---|", *rows]


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    s = doc["summary"]
    n = doc["events"]
    lines = [
        "# Holding: what a waiting event costs",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, load average at "
        f"start {m['load_average']}, at end {doc.get('load_average_end')}; {doc['date']}. "
        f"moetrack {m['versions'].get('moetrack')}, segment-analytics-python "
        f"{m['versions'].get('segment-analytics-python')}, posthog "
        f"{m['versions'].get('posthog')}.",
        "",
        f"{doc['rounds']} round(s), each measurement a fresh interpreter, in rotating order; "
        f"N = {n:,} events; medians over rounds [min..max].",
        "",
        "## Targets",
        "",
        "| target | goal | measured | |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t['target']} | {t['goal']} | {t['value']} | {'PASS' if t['pass'] else 'MISS'} |"
        for t in doc["targets"]
    ]
    lines += _section(
        doc,
        "bytes",
        f"## Bytes per waiting event (tracemalloc, N = {n:,})",
        "| contender | waits | customers | B/event | GC-tracked objects/event | "
        "queue depth when measured |",
        lambda row: (
            f"{_range(row, 'bytes_per_event', '{:,.0f}')} | "
            f"{row['gc_objects_per_event']:.2f} | {row.get('depth_at_measure')}"
        ),
    )
    lines += _section(
        doc,
        "gc",
        f"## Full collection (gc.collect(), median of {GC_REPEAT}), none vs N = {n:,} waiting",
        "| contender | waits | customers | none ms | N waiting ms | difference ms | "
        "GC-tracked objects/event |",
        lambda row: (
            f"{row['gc_none_median_ms']:.2f} | {row['gc_held_median_ms']:.2f} | "
            f"{_range(row, 'gc_delta_ms', '{:+.2f}')} | {row['gc_objects_per_event']:.2f}"
        ),
    )
    row = s.get("burst")
    if row:
        st = row.get("moetrack_stats", {})
        lines += [
            "",
            "## Burst: peak RSS growth / max_queue_bytes",
            "",
            "| offered | max_queue_bytes | peak growth (VmHWM) | ratio | sampled VmRSS ratio "
            "| settled growth | dropped |",
            "|---|---|---|---|---|---|---|",
            f"| {row['offered_bytes'] / 1e6:,.0f} MB | {MAX_QUEUE_BYTES / 2**20:.0f} MiB | "
            f"{row['peak_growth'] / 1e6:,.0f} MB | {_range(row, 'ratio', '{:.2f}')} | "
            f"{row['sampled_ratio']:.2f} | {row['settled_growth'] / 1e6:,.0f} MB | "
            f"{', '.join(f'{k} {v:,}' for k, v in st.get('dropped', {}).items()) or '0'} |",
        ]
    lines += [
        "",
        *settings_and_errors(
            [f"- `{k}`: {v}" for k, v in SETTINGS.items()],
            [f"{r.get('job')}: {r['error']}" for r in doc["results"] if "error" in r],
        ),
    ]
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_holding", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    parser.add_argument("--events", type=int, default=None, help="N (100,000; quick 20,000)")
    parser.add_argument("--burst-factor", type=float, default=BURST_FACTOR)
    parser.add_argument("--figures", default="bytes,gc,burst", help="comma-separated subset")
    parser.add_argument("--quick", action="store_true", help="1 round, N = 20,000")
    output_options(parser, RESULTS / "holding.json")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def jobs(figures: set[str], factor: float) -> list[list[str]]:
    out: list[list[str]] = []
    if "bytes" in figures:
        for contender, mode in HOLDERS:
            for customers in (1, 1000):
                out.append(["bytes", contender, mode, str(customers)])
    if "gc" in figures:
        out += [["gc", contender, mode, "1000"] for contender, mode in HOLDERS]
    if "burst" in figures:
        out.append(["burst", str(factor)])
    return out


def run(args: argparse.Namespace, command: str) -> int:
    from .runner import SinkProcess, machine, rotate, run_python

    rounds = args.rounds or (1 if args.quick else 3)
    events = args.events or (20_000 if args.quick else 100_000)
    figures = {f for f in args.figures.split(",") if f}
    todo = jobs(figures, args.burst_factor)
    python = sys.executable
    doc: dict[str, Any] = {
        "command": command,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": rounds,
        "events": events,
        "customers": [1, 1000],
        "settings": SETTINGS,
        "targets_wanted": {
            "bytes_per_event": TARGET_BYTES,
            "rss_ratio": TARGET_RSS_RATIO,
            "gc_delta_ms": TARGET_GC_MS,
        },
        "load_average_rounds": [],
        "results": [],
    }
    sink = SinkProcess(python)
    try:
        for n in range(rounds):
            doc["load_average_rounds"].append([round(x, 2) for x in os.getloadavg()])
            for job in rotate(todo, n * 3):
                sink.control("/_reset")
                result = run_python(
                    python,
                    [
                        "-m",
                        "tests.benchmarks.bench_holding",
                        "--sink",
                        sink.url,
                        "--events",
                        str(events),
                        "--one",
                        *job,
                    ],
                    timeout=600,
                )
                time.sleep(0.2)
                sink.control("/_reset")
                result["job"] = " ".join(job)
                result["round"] = n
                doc["results"].append(result)
                print(f"round {n + 1} {result['job']}: {brief(result)}", flush=True)
    finally:
        sink.stop()
    doc["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["summary"] = summarize(doc["results"])
    doc["targets"] = targets(doc["summary"])
    save(doc, Path(args.json), Path(args.md) if args.md else None, render)
    return 0


def brief(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"ERROR {r['error']}"
    if r["kind"] == "bytes":
        return (
            f"{r['bytes_per_event']:,.0f} B/event, {r['gc_objects_per_event']:.2f} "
            f"tracked objects/event, depth {r['depth_at_measure']}"
        )
    if r["kind"] == "gc":
        return (
            f"full gc {r['gc_none_median_ms']:.2f} ms none, {r['gc_held_median_ms']:.2f} ms "
            f"with {r['events']:,} waiting ({r['gc_delta_ms']:+.2f} ms)"
        )
    st = r.get("moetrack_stats", {})
    return (
        f"peak growth {r['peak_growth'] / 1e6:,.0f} MB = {r['ratio']:.2f}x max_queue_bytes "
        f"(sampled {r['sampled_ratio']:.2f}x); dropped {st.get('dropped')}"
    )


def main() -> int:
    argv = sys.argv[1:]
    args = parse(argv)
    if args.one:
        if args.one[0] == "burst":
            result = burst(args.sink, float(args.one[1]))
        else:
            kind, contender, mode, customers = args.one
            result = hold(kind, contender, mode, args.sink, args.events, int(customers))
        send_result(result)
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        doc["summary"] = summarize(doc["results"])
        doc["targets"] = targets(doc["summary"])
        md = Path(args.md) if args.md else Path(args.from_json).with_suffix(".md")
        md.write_text(render(doc))
        print(f"wrote {md}")
        return 0
    from .__main__ import in_venv

    in_venv("tests.benchmarks.bench_holding", argv, args.reinstall)
    return run(args, shlex.join(["python", "-m", "tests.benchmarks.bench_holding", *argv]))


if __name__ == "__main__":
    sys.exit(main())
