"""Runs every figure for every contender, round after round, and summarises.

Each contender-measurement is a fresh interpreter (:mod:`tests.benchmarks.measure`); the
contenders take turns within a round and the order rotates from round to round, so a slow
moment of the machine does not always land on the same one. One sink process serves the
whole run and is reset before each measurement.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .measure import SETTINGS, control

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"
MAX_BATCH_BYTES = 100_000  # moetrack's default max_batch_bytes (the API's body limit)

PEERS = ("segment", "posthog")


@dataclass
class Sizes:
    """How much each measurement does. Every contender of a figure tracks the same number of
    events, in both workloads (one customer, and ``customers`` customers in turn)."""

    events: int = 40_000
    threads_events: int = 40_000
    threads: int = 8
    memory_events: int = 40_000
    customers: int = 1000
    decorator_calls: int = 100_000
    import_runs: int = 3
    blast_seconds: float = 1.5
    warmup: int = 1_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            events=5_000,
            threads_events=4_000,
            memory_events=5_000,
            decorator_calls=20_000,
            import_runs=3,
            blast_seconds=0.5,
            warmup=500,
        )


@dataclass
class Job:
    figure: str  # the key results are filed under
    contender: str  # the row name
    measure_as: str  # the contender name measure.py knows
    events: int
    extra: list[str] = field(default_factory=list)
    kind: str = ""  # the figure measure.py runs, when it differs from ``figure``


#: The figure key of the many-customers workload of figures 1-3.
MANY = "track-many"


def plan(sizes: Sizes, figures: set[str]) -> list[list[Job]]:
    """Groups of jobs; the contenders of one group take turns."""
    groups: list[list[Job]] = []
    n = sizes.events
    if "track" in figures:
        groups.append(
            [
                Job("track", "moetrack", "moetrack", n),
                Job("track", "segment", "segment", n),
                Job("track", "posthog", "posthog", n),
                Job("track", "floor", "floor", n),
                Job("track", "handler", "handler", n),
                Job("track", "moetrack-kwargs", "moetrack-kwargs", n),
                Job("track", "floor-inline", "floor-inline", n),
                Job("track", "logging-discard", "logging-discard", n),
                Job("track", "timer", "timer", n),
            ]
        )
        many = ["--customers", str(sizes.customers)]
        groups.append(
            [
                Job(MANY, c, c, n, many, kind="track")
                for c in ("moetrack", "segment", "posthog", "handler")
            ]
        )
    if "threads" in figures:
        t = ["--threads", str(sizes.threads)]
        groups.append(
            [
                Job("threads", c, c, sizes.threads_events, t)
                for c in ("moetrack", "segment", "posthog", "floor")
            ]
        )
    if "memory" in figures:
        m = sizes.memory_events
        groups.append(
            [
                Job("memory", "moetrack", "moetrack", m),
                Job("memory", "segment", "segment", m),
                Job("memory", "posthog", "posthog", m),
                Job("memory", "moetrack-ratelimited", "moetrack", m, ["--rate-limited"]),
            ]
        )
    if "decorator" in figures:
        groups.append(
            [
                Job("decorator", "track_event", "track_event", sizes.decorator_calls),
                Job("decorator", "bare-call", "bare-call", sizes.decorator_calls),
            ]
        )
    return groups


IMPORTS: dict[str, str] = {
    "bare": "",
    "moetrack": "import moetrack",
    "segment": "import segment.analytics",
    "posthog": "import posthog",
}


def rotate(items: Sequence[Any], k: int) -> list[Any]:
    k %= len(items)
    return list(items[k:]) + list(items[:k])


# -- processes ---------------------------------------------------------------------------------


class SinkProcess:
    def __init__(self, python: str) -> None:
        self.proc = subprocess.Popen(
            [python, "-m", "tests.benchmarks.sink", "serve", "0"],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            self.proc.kill()
            raise RuntimeError("the sink did not start")
        self.url = f"http://127.0.0.1:{line[1]}"

    def control(self, path: str) -> dict[str, Any]:
        return control(self.url, path)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def child_env() -> dict[str, str]:
    """The environment of every measured interpreter: this one's, except that bytecode is
    cached as on any installed system (a PYTHONDONTWRITEBYTECODE=1 shell would make each
    fresh interpreter compile moetrack's editable sources again, but not the peers' wheels,
    which pip compiled at install time)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_python(python: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python args`` in a fresh interpreter and parse its ``RESULT`` line."""
    try:
        done = subprocess.run(
            [python, *args],
            check=False,
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


def measure(python: str, sink: SinkProcess, job: Job, sizes: Sizes) -> dict[str, Any]:
    sink.control("/_reset")
    args = [
        "-m",
        "tests.benchmarks.measure",
        job.kind or job.figure,
        job.measure_as,
        "--sink",
        sink.url,
        "--events",
        str(job.events),
        "--warmup",
        str(sizes.warmup),
        *job.extra,
    ]
    result = run_python(python, args, timeout=900)
    result["n"] = job.events
    time.sleep(0.2)  # let the sink finish what the process left behind before the reset
    sink.control("/_reset")
    return result


def import_once(python: str, name: str) -> dict[str, Any]:
    stmt = IMPORTS[name]
    code = (
        "import time as _t; _s = _t.perf_counter()\n"
        f"{stmt}\n"
        "_e = _t.perf_counter(); print('RESULT {\"import_ms\": %.4f}' % ((_e - _s) * 1e3))"
    )
    start = time.perf_counter()
    result = run_python(python, ["-c", code], timeout=120)
    result["wall_ms"] = (time.perf_counter() - start) * 1e3
    return result


def blast(python: str, sink: SinkProcess, seconds: float) -> list[dict[str, Any]]:
    out = []
    for kind in ("tiny", "moetrack", "segment"):
        sink.control("/_reset")
        result = run_python(
            python,
            ["-m", "tests.benchmarks.sink", "blast", sink.url, str(seconds), kind],
            timeout=120,
        )
        if "error" not in result:
            counted = sink.control("/_count")
            result["sink_counted_events"] = counted["events"]
        out.append(result)
    sink.control("/_reset")
    return out


# -- summary -----------------------------------------------------------------------------------


def dig(result: dict[str, Any] | None, path: str) -> float | None:
    value: Any = result
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def med(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(clean) if clean else None


@dataclass
class Row:
    figure: str
    title: str
    contender: str
    n: str
    unit: str
    rounds: list[float | None]
    median: float | None
    ratio: float | None = None  # moetrack / this (overall medians)
    ratios: list[float | None] = field(default_factory=list)
    note: str = ""


@dataclass
class Metric:
    key: str
    title: str
    figure: str
    path: str
    unit: str
    contenders: list[str]
    reference: str = "moetrack"


CALLER = ["moetrack", "floor", "floor-inline", "moetrack-kwargs", "segment", "posthog", "timer"]
DELIVERING = ["moetrack", "moetrack-kwargs", "handler", "segment", "posthog"]
PEER_ROWS = ["moetrack", "segment", "posthog"]
ONE = "one customer"
THOUSAND = "1,000 customers in turn"

METRICS = [
    Metric("caller_median", f"1. track() caller cost, {ONE}, median per call", "track",
           "caller.median_ns", "ns", CALLER),
    Metric("caller_median_many", f"1. track() caller cost, {THOUSAND}, median per call", MANY,
           "caller.median_ns", "ns", PEER_ROWS),
    Metric("caller_p99", f"1. track() caller cost, {ONE}, p99 per call", "track",
           "caller.p99_ns", "ns", CALLER),
    Metric("caller_p99_many", f"1. track() caller cost, {THOUSAND}, p99 per call", MANY,
           "caller.p99_ns", "ns", PEER_ROWS),
    Metric("cpu", f"2. process CPU per delivered event, {ONE}", "track", "cpu_us_per_event",
           "µs", DELIVERING),
    Metric("cpu_many", f"2. process CPU per delivered event, {THOUSAND}", MANY,
           "cpu_us_per_event", "µs", [*PEER_ROWS, "handler"]),
    Metric("throughput", f"3. delivered events per second, {ONE}", "track", "events_per_s",
           "ev/s", DELIVERING),
    Metric("throughput_many", f"3. delivered events per second, {THOUSAND}", MANY,
           "events_per_s", "ev/s", [*PEER_ROWS, "handler"]),
    Metric("events_per_request", f"3. events per request, {ONE}", "track",
           "events_per_request", "ev", PEER_ROWS),
    Metric("events_per_request_many", f"3. events per request, {THOUSAND}", MANY,
           "events_per_request", "ev", PEER_ROWS),
    Metric("body_bytes", f"3. mean body bytes per request, {ONE}", "track", "mean_body_bytes",
           "B", PEER_ROWS),
    Metric("body_bytes_many", f"3. mean body bytes per request, {THOUSAND}", MANY,
           "mean_body_bytes", "B", PEER_ROWS),
    Metric("memory", "4. memory per waiting event (peak RSS growth / held)", "memory",
           "bytes_per_event_peak", "B", ["moetrack", "moetrack-ratelimited", "segment", "posthog"]),
    Metric("import_wall", "5. fresh interpreter running the import (wall)", "import", "wall_ms",
           "ms", ["moetrack", "bare", "segment", "posthog"]),
    Metric("import_ms", "5. the import statement itself (perf_counter)", "import", "import_ms",
           "ms", ["moetrack", "segment", "posthog"]),
    Metric("decorator", "6. call of an empty function, median", "decorator", "caller.median_ns",
           "ns", ["track_event", "bare-call"], reference="track_event"),
    Metric("threads_median", "7. track() caller cost, 8 threads, median per call", "threads",
           "caller.median_ns", "ns", ["moetrack", "floor", "segment", "posthog"]),
    Metric("threads_p99", "7. track() caller cost, 8 threads, p99 per call", "threads",
           "caller.p99_ns", "ns", ["moetrack", "floor", "segment", "posthog"]),
    Metric("handler_median", f"8. log.info() through EventHandler, {ONE}, median per call",
           "track", "caller.median_ns", "ns", ["handler", "moetrack", "logging-discard"],
           reference="handler"),
    Metric("handler_p99", f"8. log.info() through EventHandler, {ONE}, p99 per call", "track",
           "caller.p99_ns", "ns", ["handler", "moetrack", "logging-discard"],
           reference="handler"),
]  # fmt: skip


def rows_for(metric: Metric, rounds: list[dict[str, dict[str, Any]]]) -> list[Row]:
    def values(contender: str) -> list[float | None]:
        return [dig(r.get(metric.figure, {}).get(contender), metric.path) for r in rounds]

    def overall(contender: str) -> float | None:
        if metric.figure == "import":  # the median of every fresh interpreter, pooled
            runs = [
                x for r in rounds for x in r.get("import", {}).get(contender, {}).get("runs", [])
            ]
            return med([dig(x, metric.path) for x in runs])
        return med(values(contender))

    ref = values(metric.reference)
    ref_med = overall(metric.reference)
    out = []
    for contender in metric.contenders:
        vals = values(contender)
        if all(v is None for v in vals) and not any(
            contender in r.get(metric.figure, {}) for r in rounds
        ):
            continue
        m = overall(contender)
        ratios = [(a / b) if a is not None and b else None for a, b in zip(ref, vals, strict=True)]
        ns = {
            int(r[metric.figure][contender].get("n", 0))
            for r in rounds
            if contender in r.get(metric.figure, {})
        }
        if metric.figure == "import":  # every fresh interpreter, pooled over the rounds
            ns = {
                sum(
                    int(r["import"][contender].get("n", 0))
                    for r in rounds
                    if contender in r.get("import", {})
                )
            }
        note = ""
        errors = [
            r[metric.figure][contender].get("error")
            for r in rounds
            if contender in r.get(metric.figure, {})
        ]
        errors = [e for e in errors if e]
        if errors:
            note = f"error: {errors[0]}"
        missing = [
            r[metric.figure][contender].get("reason", "not available")
            for r in rounds
            if r.get(metric.figure, {}).get(contender, {}).get("available") is False
        ]
        if missing:
            note = f"n/a: {missing[0]}"
        out.append(
            Row(
                figure=metric.key,
                title=metric.title,
                contender=contender,
                n=",".join(f"{x:,}" for x in sorted(ns)) if ns else "",
                unit=metric.unit,
                rounds=vals,
                median=m,
                ratio=(ref_med / m) if ref_med is not None and m else None,
                ratios=ratios,
                note=note,
            )
        )
    return out


@dataclass
class Target:
    name: str
    measured: float | None
    needed: str
    passed: bool | None
    detail: str
    per_round: list[float | None] = field(default_factory=list)


def targets(summary: dict[str, dict[str, Row]]) -> list[Target]:
    def row(key: str, contender: str) -> Row | None:
        return summary.get(key, {}).get(contender)

    def ratio_target(
        name: str,
        key: str,
        num: str,
        den: str,
        op: str,
        bound: float,
        fmt: str,
        detail: str,
    ) -> Target:
        a, b = row(key, num), row(key, den)
        if a is None or b is None or a.median is None or not b.median:
            return Target(name, None, f"{op} {bound:g}", None, "not measured")
        value = a.median / b.median
        per_round = [(x / y) if x is not None and y else None for x, y in zip(a.rounds, b.rounds)]
        ok = value <= bound if op == "≤" else value >= bound
        return Target(name, value, f"{op} {bound:g}", ok, detail.format(fmt.format(value)),
                      per_round)  # fmt: skip

    out = [
        ratio_target(
            "track() caller median ≤ 3.5x the floor",
            "caller_median",
            "moetrack",
            "floor",
            "≤",
            3.5,
            "{:.2f}x",
            "moetrack median is {} the floor's",
        ),
        ratio_target(
            "track() ≥ 30x cheaper than Segment's track",
            "caller_median",
            "segment",
            "moetrack",
            "≥",
            30,
            "{:.1f}x",
            "Segment's median call costs {} moetrack's",
        ),
        ratio_target(
            "CPU per delivered event ≥ 15x lower than Segment's",
            "cpu",
            "segment",
            "moetrack",
            "≥",
            15,
            "{:.1f}x",
            "Segment spends {} moetrack's CPU per event",
        ),
        ratio_target(
            "CPU per delivered event ≥ 25x lower than PostHog's",
            "cpu",
            "posthog",
            "moetrack",
            "≥",
            25,
            "{:.1f}x",
            "PostHog spends {} moetrack's CPU per event",
        ),
        ratio_target(
            "delivered events/s ≥ 10x Segment's",
            "throughput",
            "moetrack",
            "segment",
            "≥",
            10,
            "{:.1f}x",
            "moetrack delivers {} Segment's events per second",
        ),
    ]
    body = row("body_bytes", "moetrack")
    if body is not None and body.median is not None:
        fill = body.median / MAX_BATCH_BYTES
        out.append(
            Target(
                "moetrack bodies ≥ 90% full at volume",
                fill,
                "≥ 0.9",
                fill >= 0.9,
                f"mean body {body.median:,.0f} B of {MAX_BATCH_BYTES:,} ({fill:.1%})",
                [(v / MAX_BATCH_BYTES if v is not None else None) for v in body.rounds],
            )
        )
    mems = [row("memory", c) for c in ("moetrack", "moetrack-ratelimited")]
    mem_vals = [m.median for m in mems if m is not None and m.median is not None]
    if mem_vals:
        worst = max(mem_vals)
        parts = [
            f"{m.contender}: {m.median:,.0f} B"
            for m in mems
            if m is not None and m.median is not None
        ]
        base = mems[0]
        out.append(
            Target(
                "memory per waiting event ≤ 300 bytes",
                worst,
                "≤ 300",
                worst <= 300,
                "worst of " + "; ".join(parts),
                base.rounds if base is not None else [],
            )
        )
    moe, bare = row("import_wall", "moetrack"), row("import_wall", "bare")
    if moe and bare and moe.median is not None and bare.median is not None:
        added = moe.median - bare.median
        per_round = [
            (a - b) if a is not None and b is not None else None
            for a, b in zip(moe.rounds, bare.rounds, strict=True)
        ]
        out.append(
            Target(
                "`import moetrack` adds ≤ 25 ms over a bare interpreter",
                added,
                "≤ 25",
                added <= 25,
                f"{moe.median:.1f} ms vs {bare.median:.1f} ms bare: +{added:.1f} ms",
                per_round,
            )
        )
    return out


# -- machine -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in ("moetrack", "segment-analytics-python", "posthog", "httpx", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        import moetrack._wire.encode as enc

        encoder = "orjson" if "orjson" in getattr(enc.dumps, "__module__", "") else "json"
    except Exception:
        encoder = "unknown"
    return {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions,
        "moetrack_encoder": encoder,
    }


# -- main --------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks",
        description="moetrack next to segment-analytics-python and posthog, in one run.",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick: 1)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument(
        "--figures",
        default="track,threads,memory,import,decorator",
        help="comma-separated subset of track,threads,memory,import,decorator",
    )
    parser.add_argument("--out", default=str(RESULTS), help="where latest.* are written")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help="measure nothing: rebuild the tables, latest.md and latest.png from a saved JSON",
    )
    parser.add_argument("--reinstall", action="store_true", help="reinstall the benchmark venv")
    return parser.parse_args(argv)


def main(argv: list[str], command: str) -> int:
    args = parse(argv)
    if args.from_json:
        return rewrite(Path(args.from_json), Path(args.out), chart=not args.no_chart)
    sizes = Sizes.quick() if args.quick else Sizes()
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    figures = {f.strip() for f in args.figures.split(",") if f.strip()}
    python = sys.executable
    started = time.monotonic()
    info = machine()
    print(
        f"moetrack benchmarks: {rounds} round(s){' (quick)' if args.quick else ''}, "
        f"Python {info['python']}, {info['cpu']}, {info['cores']} cores",
        flush=True,
    )
    if info["load_average"][0] > 0.5:
        print(
            f"note: load average {info['load_average'][0]:.2f} before starting; other "
            "processes use the CPU and will add noise",
            flush=True,
        )
    sink = SinkProcess(python)
    say: Callable[[str], None] = lambda s: print(s, flush=True)  # noqa: E731
    try:
        say(f"sink at {sink.url}; measuring its ceiling …")
        ceiling = blast(python, sink, sizes.blast_seconds)
        for c in ceiling:
            if "error" in c:
                say(f"  blast {c.get('kind', '?')}: {c['error']}")
            else:
                say(
                    f"  {c['kind']:>8} bodies ({c['body_bytes']:,} B): "
                    f"{c['requests_per_s']:,.0f} req/s, {c['events_per_s']:,.0f} events/s"
                )
        groups = plan(sizes, figures)
        all_rounds: list[dict[str, dict[str, Any]]] = []
        for r in range(rounds):
            this: dict[str, dict[str, Any]] = {}
            this["_load_average"] = {"start": [round(x, 2) for x in os.getloadavg()]}
            say(f"round {r + 1}/{rounds} (load average {this['_load_average']['start'][0]:.2f})")
            for group in groups:
                for job in rotate(group, r):
                    t0 = time.monotonic()
                    result = measure(python, sink, job, sizes)
                    this.setdefault(job.figure, {})[job.contender] = result
                    say(f"  {job.figure:<9} {job.contender:<21} {brief(job.figure, result)}"
                        f"  [{time.monotonic() - t0:.1f}s]")  # fmt: skip
            if "import" in figures:
                samples: dict[str, list[dict[str, Any]]] = {k: [] for k in IMPORTS}
                for k in range(sizes.import_runs + 1):
                    for name in rotate(list(IMPORTS), r + k):
                        res = import_once(python, name)
                        if k:  # the first pass only warms the bytecode caches
                            samples[name].append(res)
                imp: dict[str, Any] = {}
                for name, runs in samples.items():
                    imp[name] = {
                        "n": len(runs),
                        "wall_ms": med([dig(x, "wall_ms") for x in runs]),
                        "import_ms": med([dig(x, "import_ms") for x in runs]),
                        "runs": runs,
                    }
                    if any("error" in x for x in runs):
                        imp[name]["error"] = next(x["error"] for x in runs if "error" in x)
                this["import"] = imp
                say(
                    "  import    "
                    + ", ".join(
                        f"{n}: {v['wall_ms'] or 0:.0f} ms wall, {v['import_ms'] or 0:.1f} ms import"
                        for n, v in imp.items()
                    )
                )
            all_rounds.append(this)
    finally:
        sink.stop()
    elapsed = time.monotonic() - started
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    doc = {
        "command": command,
        "machine": info,
        "rounds": rounds,
        "quick": args.quick,
        "sizes": asdict(sizes),
        "settings": SETTINGS,
        "elapsed_s": elapsed,
        "sink_ceiling": ceiling,
        "raw": all_rounds,
    }
    return write_results(doc, Path(args.out), chart=not args.no_chart)


def write_results(doc: dict[str, Any], out: Path, *, chart: bool) -> int:
    """Summarise ``doc["raw"]``, print the tables, write latest.json/.md/.png into ``out``."""
    from . import report

    all_rounds: list[dict[str, dict[str, Any]]] = doc["raw"]
    for r in all_rounds:  # derived values
        for res in [*r.get("track", {}).values(), *r.get(MANY, {}).values()]:
            if res.get("requests"):
                res["events_per_request"] = res["events"] / res["requests"]
    summary: dict[str, dict[str, Row]] = {}
    for metric in METRICS:
        summary[metric.key] = {row.contender: row for row in rows_for(metric, all_rounds)}
    add_ceiling_rows(summary, doc["sink_ceiling"])
    checks = targets(summary)
    doc["summary"] = {k: [asdict(r) for r in v.values()] for k, v in summary.items()}
    doc["targets"] = [asdict(t) for t in checks]
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(report.terminal(doc, METRICS, summary, checks))
    (out / "latest.md").write_text(report.markdown(doc, METRICS, summary, checks))
    if chart:
        try:
            report.chart(doc, summary, checks, out / "latest.png")
        except Exception as exc:  # the numbers are written already; say why there is no PNG
            print(f"no chart: {type(exc).__name__}: {exc}")
    png = f", {out / 'latest.png'}" if chart else ""
    print(f"wrote {out / 'latest.json'}, {out / 'latest.md'}{png}")
    return 0


def rewrite(path: Path, out: Path, *, chart: bool) -> int:
    """Rebuild the tables, the markdown and the chart from a saved latest.json."""
    doc = json.loads(path.read_text())
    return write_results(doc, out, chart=chart)


def add_ceiling_rows(summary: dict[str, dict[str, Row]], ceiling: list[dict[str, Any]]) -> None:
    """The sink's own ceiling as rows of the throughput table, next to the contenders."""
    table = summary.get("throughput")
    if table is None:
        return
    moe = table.get("moetrack")
    for blast_result in ceiling:
        kind = blast_result.get("kind")
        rate = blast_result.get("events_per_s")
        if kind not in {"moetrack", "segment"} or not rate:
            continue
        name = f"sink-ceiling-{kind}"
        table[name] = Row(
            figure="throughput",
            title=table[next(iter(table))].title,
            contender=name,
            n=f"{blast_result['events']:,}",
            unit="ev/s",
            rounds=[rate],
            median=rate,
            ratio=(moe.median / rate) if moe is not None and moe.median else None,
            ratios=[],
            note="one blaster, one keep-alive connection",
        )


def brief(figure: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + str(result["error"])[:160]
    if result.get("available") is False:
        return f"n/a ({result.get('reason', 'not available')})"
    if figure in {"track", MANY}:
        s = (
            f"caller median {dig(result, 'caller.median_ns') or 0:,.0f} ns, "
            f"p99 {dig(result, 'caller.p99_ns') or 0:,.0f} ns"
        )
        if "events_per_s" in result:
            s += (
                f", {result['events_per_s']:,.0f} ev/s, "
                f"{result['cpu_us_per_event']:.1f} µs CPU/ev, {result['requests']} req, "
                f"waited {result.get('runqueue_wait_s', 0):.2f}s for a CPU"
            )
        return s
    if figure == "threads":
        return (
            f"median {dig(result, 'caller.median_ns') or 0:,.0f} ns, "
            f"p99 {dig(result, 'caller.p99_ns') or 0:,.0f} ns"
        )
    if figure == "memory":
        return (
            f"{result['bytes_per_event_peak']:,.0f} B/event peak "
            f"({result['held']:,} held, settled {result['bytes_per_event_settled']:,.0f} B)"
        )
    if figure == "decorator":
        return f"median {dig(result, 'caller.median_ns') or 0:,.0f} ns"
    return ""


def command_line(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "tests.benchmarks", *argv])
