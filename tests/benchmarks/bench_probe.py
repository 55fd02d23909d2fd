"""``python -m tests.benchmarks.bench_probe [--rounds N] [--seconds S] [--rates R,...]``: how
late a thread that only sleeps wakes up while another thread tracks (issue 25).

Every measurement is a fresh interpreter with two threads besides the main one:

- **the probe** loops ``time.sleep(0.001)`` and records how late each wake-up is
  (``perf_counter`` before and after; lateness = elapsed - 1 ms). A wake-up is late when the
  thread had to wait for the GIL: the interpreter hands it over only every switch interval
  (5 ms, left as it is: a library must not change ``sys.setswitchinterval``, so neither does
  this benchmark);
- **the producer** tracks at a fixed rate (1,800 and 6,000 events/s by default), in bursts of
  three calls (a request that tracks three times) paced by ``perf_counter``: it sleeps until
  the next burst is due and, when behind, catches up without sleeping (an open loop).

The event is the one of the main benchmark (``"Purchase"`` with five attributes, the
customer ``ids[i % 1000]`` of 1,000 in turn; ``--customers 1`` for one), spelled as in
``measure.CALLS``. The variants:

- ``none``: the same loop calling a function that does nothing, with ``track()``'s signature;
- ``moetrack-nopacing``: ``moetrack.Client`` with ``users_per_minute=None,
  events_per_minute=None``, everything else at its defaults;
- ``moetrack-defaults``: ``moetrack.Client`` with its defaults: the sender waits on the
  quota (10,000 events/min) and the queue grows; records the bounds refuse are reported
  (``client.stats().dropped``);
- ``segment`` and ``posthog``: as ``measure.build`` makes them (defaults, ``max_queue_size``
  raised).

Every SDK sends to the loopback sink (``sink.py``), which answers 200 at once. Each round runs
every variant at every rate, the order rotating from round to round; the tables give the
median over rounds (and the range) of: wake-ups more than 2 ms and more than 1 ms late per
10 s, p99 and max lateness, and the process's CPU (user + system, % of one core).
Results: ``results/probe.md`` and ``results/probe.json`` (``--json PATH`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .__main__ import output_options, save, settings_and_errors
from .measure import (
    CALLS,
    QUEUE_SIZE,
    SETTINGS,
    build,
    compile_loop,
    customer_ids,
    moetrack_stats,
    runqueue_wait,
    send_result,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"

VARIANTS = ("none", "moetrack-nopacing", "moetrack-defaults", "segment", "posthog")
RATES = (1_800, 6_000)
BURST = 3
PERIOD = 0.001  # the probe's sleep
LATE_MS = (2.0, 1.0)

VARIANT_SETTINGS: dict[str, str] = {
    "none": "no SDK: the producer calls a function that does nothing, with track()'s signature",
    "moetrack-nopacing": (
        "moetrack.Client(app_id, api_key, endpoint=<sink>, users_per_minute=None, "
        "events_per_minute=None); everything else at its defaults"
    ),
    "moetrack-defaults": (
        "moetrack.Client(app_id, api_key, endpoint=<sink>): every option at its default "
        "(pacing on, queue_capacity and max_queue_bytes at their defaults)"
    ),
    "segment": SETTINGS["segment"],
    "posthog": f"max_queue_size={QUEUE_SIZE:,}",
}


def nothing(action: str, attributes: Any = None, /, *, customer_id: Any = None) -> None:
    """The ``none`` variant's call: track()'s signature, no work."""


# -- one measurement (a fresh interpreter) ---------------------------------------------------


def make(variant: str, sink: str) -> tuple[Callable[..., Any], str, Any]:
    """The callable, the call's source and the client (None for ``none``)."""
    if variant == "none":
        return nothing, CALLS["moetrack"], None
    if variant in {"moetrack-nopacing", "moetrack-defaults"}:
        import moetrack

        options: dict[str, Any] = {}
        if variant == "moetrack-nopacing":
            options = {"users_per_minute": None, "events_per_minute": None}
        client = moetrack.Client("BENCH_APP", "bench-key", endpoint=sink, **options)
        return client.track, CALLS["moetrack"], client
    built = build(variant, sink)
    return built.track, CALLS[variant], built.client


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(q * len(sorted_values) + 0.999999) - 1))
    return sorted_values[k]


def one(variant: str, sink: str, rate: int, seconds: float, customers: int) -> dict[str, Any]:
    track, call, client = make(variant, sink)
    burst = compile_loop(call)
    ids = customer_ids(customers)
    # Warm up: the SDK's thread started, a connection made, the loop's code run once.
    i = burst(track, 0, 50, ids)
    time.sleep(0.5)

    lateness = array("d")
    stop = threading.Event()
    produced = [0]
    behind_max = [0.0]
    ready = threading.Barrier(3)

    def probe() -> None:
        pc, sleep, add = time.perf_counter, time.sleep, lateness.append
        ready.wait()
        while not stop.is_set():
            t0 = pc()
            sleep(PERIOD)
            add(pc() - t0 - PERIOD)

    def producer() -> None:
        pc, sleep = time.perf_counter, time.sleep
        interval = BURST / rate
        n = i
        ready.wait()
        start = pc()
        k = 0
        worst = 0.0
        while not stop.is_set():
            due = start + k * interval
            delay = due - pc()
            if delay > 0:
                sleep(delay)
            elif -delay > worst:
                worst = -delay
            n = burst(track, n, BURST, ids)
            k += 1
        produced[0] = k * BURST
        behind_max[0] = worst

    threads = [threading.Thread(target=probe), threading.Thread(target=producer)]
    for t in threads:
        t.start()
    wait0 = runqueue_wait()
    cpu0 = time.process_time()
    ready.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for t in threads:
        t.join()
    late = sorted(lateness)
    scale = 10.0 / wall
    result: dict[str, Any] = {
        "variant": variant,
        "rate": rate,
        "seconds": wall,
        "customers": customers,
        "wakeups": len(late),
        "late_2ms_per_10s": sum(1 for x in late if x > 0.002) * scale,
        "late_1ms_per_10s": sum(1 for x in late if x > 0.001) * scale,
        "p50_ms": percentile(late, 0.50) * 1e3,
        "p99_ms": percentile(late, 0.99) * 1e3,
        "max_ms": (late[-1] if late else float("nan")) * 1e3,
        "cpu_pct": cpu / wall * 100,
        "events": produced[0],
        "events_per_s": produced[0] / wall,
        "producer_behind_max_ms": behind_max[0] * 1e3,
        "runqueue_wait_s": runqueue_wait() - wait0,
        "switchinterval_s": sys.getswitchinterval(),
    }
    if variant.startswith("moetrack") and client is not None:
        result["moetrack_stats"] = moetrack_stats(client)
    return result


# -- the run ---------------------------------------------------------------------------------

METRICS: tuple[tuple[str, str, str], ...] = (
    ("late_2ms_per_10s", ">2 ms late /10 s", "{:.0f}"),
    ("late_1ms_per_10s", ">1 ms late /10 s", "{:.0f}"),
    ("p99_ms", "p99 ms", "{:.3f}"),
    ("max_ms", "max ms", "{:.1f}"),
    ("cpu_pct", "CPU %", "{:.0f}"),
    ("events_per_s", "events/s", "{:,.0f}"),
)


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ``variant@rate``: the median and range over rounds of every metric."""
    out: dict[str, dict[str, Any]] = {}
    keys = sorted({(r["rate"], r["variant"]) for r in results if "error" not in r})
    for rate, variant in keys:
        mine = [r for r in results if r.get("variant") == variant and r.get("rate") == rate]
        mine = [r for r in mine if "error" not in r]
        row: dict[str, Any] = {"variant": variant, "rate": rate, "rounds": len(mine)}
        for key, _, _ in METRICS:
            values = [float(r[key]) for r in mine]
            row[key] = statistics.median(values)
            row[key + "_range"] = [min(values), max(values)]
        dropped: dict[str, int] = {}
        for r in mine:
            for reason, n in (r.get("moetrack_stats") or {}).get("dropped", {}).items():
                dropped[reason] = max(dropped.get(reason, 0), n)
        if variant.startswith("moetrack"):
            row["dropped_max"] = dropped
            row["queue_depth_end"] = statistics.median(
                float((r.get("moetrack_stats") or {}).get("queue_depth", 0)) for r in mine
            )
        out[f"{variant}@{rate}"] = row
    return out


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# Probe: late wake-ups of a thread that sleeps 1 ms, beside a thread that tracks",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"load average at start {m['load_average']}, at end {doc.get('load_average_end')}; "
        f"{doc['date']}. moetrack {m['versions'].get('moetrack')}, "
        f"segment-analytics-python {m['versions'].get('segment-analytics-python')}, "
        f"posthog {m['versions'].get('posthog')}.",
        "",
        f"{doc['rounds']} rounds of {doc['seconds']:g} s per variant and rate, in rotating order; "
        f"bursts of {BURST} calls, {doc['customers']} customer(s) in turn; "
        "medians over rounds, [min..max] for the late counts. Switch interval left at "
        f"{doc['switchinterval_s'] * 1e3:g} ms.",
        "",
    ]
    summary = doc["summary"]
    for rate in doc["rates"]:
        lines += [
            f"## {rate:,} events/s",
            "",
            "| variant | " + " | ".join(label for _, label, _ in METRICS) + " | dropped |",
            "|---" * (len(METRICS) + 2) + "|",
        ]
        for variant in doc["variants"]:
            row = summary.get(f"{variant}@{rate}")
            if row is None:
                lines.append(f"| {variant} | " + "n/a | " * (len(METRICS) + 1))
                continue
            cells = []
            for key, _, fmt in METRICS:
                cell = fmt.format(row[key])
                if key.startswith("late_"):
                    lo, hi = row[key + "_range"]
                    cell += f" [{lo:.0f}..{hi:.0f}]"
                cells.append(cell)
            dropped = row.get("dropped_max")
            drop_cell = (
                "—"
                if dropped is None
                else (", ".join(f"{k} {v:,}" for k, v in dropped.items()) or "0")
            )
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {drop_cell} |")
        lines.append("")
    lines += settings_and_errors(
        [f"- `{v}`: {VARIANT_SETTINGS[v]}" for v in doc["variants"]],
        [
            f"{r.get('variant')}@{r.get('rate')}: {r['error']}"
            for r in doc["results"]
            if "error" in r
        ],
    )
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_probe", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick 1)")
    parser.add_argument("--seconds", type=float, default=None, help="per measurement (10)")
    parser.add_argument("--rates", default=None, help="events/s, comma-separated (1800,6000)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--customers", type=int, default=1000, help="customers in turn (1000)")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s: a smoke run")
    output_options(parser, RESULTS / "probe.json")
    parser.add_argument("--one", metavar="VARIANT", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace, command: str) -> int:
    from .runner import SinkProcess, machine, rotate, run_python

    rounds = args.rounds or (1 if args.quick else 5)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    rates = [int(r) for r in (args.rates or ",".join(map(str, RATES))).split(",")]
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    python = sys.executable
    doc: dict[str, Any] = {
        "command": command,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": rounds,
        "seconds": seconds,
        "rates": rates,
        "variants": variants,
        "customers": args.customers,
        "burst": BURST,
        "switchinterval_s": sys.getswitchinterval(),
        "settings": {v: VARIANT_SETTINGS[v] for v in variants},
        "load_average_rounds": [],
        "results": [],
    }
    sink = SinkProcess(python)
    try:
        for n in range(rounds):
            doc["load_average_rounds"].append([round(x, 2) for x in os.getloadavg()])
            order = rates if n % 2 == 0 else rates[::-1]
            for rate in order:
                for variant in rotate(variants, n + rates.index(rate)):
                    sink.control("/_reset")
                    result = run_python(
                        python,
                        [
                            "-m",
                            "tests.benchmarks.bench_probe",
                            "--one",
                            variant,
                            "--rate",
                            str(rate),
                            "--seconds",
                            str(seconds),
                            "--customers",
                            str(args.customers),
                            "--sink",
                            sink.url,
                        ],
                        timeout=seconds + 120,
                    )
                    result.setdefault("variant", variant)
                    result.setdefault("rate", rate)
                    result["round"] = n
                    doc["results"].append(result)
                    if "error" in result:
                        print(f"round {n + 1} {variant}@{rate}: {result['error']}", flush=True)
                    else:
                        print(
                            f"round {n + 1} {variant:>18}@{rate}: "
                            f">2ms {result['late_2ms_per_10s']:5.0f}/10s  "
                            f">1ms {result['late_1ms_per_10s']:5.0f}/10s  "
                            f"p99 {result['p99_ms']:.3f} ms  max {result['max_ms']:.1f} ms  "
                            f"cpu {result['cpu_pct']:.0f}%  {result['events_per_s']:,.0f} ev/s",
                            flush=True,
                        )
    finally:
        sink.stop()
    doc["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["summary"] = summarize(doc["results"])
    save(doc, Path(args.json), Path(args.md) if args.md else None, render)
    return 0


def main() -> int:
    argv = sys.argv[1:]
    args = parse(argv)
    if args.one:
        send_result(one(args.one, args.sink, args.rate, args.seconds, args.customers))
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        doc["settings"] = {v: VARIANT_SETTINGS[v] for v in doc["variants"]}
        Path(args.from_json).write_text(json.dumps(doc, indent=1) + "\n")
        md = Path(args.md) if args.md else Path(args.from_json).with_suffix(".md")
        md.write_text(render(doc))
        print(f"wrote {md}")
        return 0
    from .__main__ import in_venv

    in_venv("tests.benchmarks.bench_probe", argv, args.reinstall)
    return run(args, shlex.join(["python", "-m", "tests.benchmarks.bench_probe", *argv]))


if __name__ == "__main__":
    sys.exit(main())
