"""``python -m tests.benchmarks.bench_requests [--rounds N] [--seconds S] [--rates 300,600]
[--quick]``: what a request pays for tracking.

A web app whose view calls ``track()`` three times (:mod:`tests.benchmarks.req_apps`) runs
under a real server, one process per measurement, with each tracking variant in turn:
no tracking, moetrack with pacing off, moetrack at its defaults (it waits on the quota of
10,000 events/min, so its queue grows during the run), Segment and PostHog. Every SDK sends
to the harness's sink (:mod:`tests.benchmarks.sink`), which answers 200 at once.

Setups (``--setups``; the default is the three the targets and the issue name):

- ``sync@R``: Flask under gunicorn, one ``sync`` worker (a new connection per request);
- ``gthread@R``: Flask under gunicorn, one ``gthread`` worker with 4 threads (keep-alive);
- ``uvicorn@R``: FastAPI under uvicorn, one worker (keep-alive, an ``async def`` view).

``--rates 300,600`` runs every server (``--servers``) at each of those rates instead.

The load generator is an open loop in its own process (asyncio, raw HTTP/1.1): request
``k`` is due at ``t0 + k / rate``, whatever the server does; a connection is taken from the
idle ones or opened when none is idle, so the generator never waits on the server before
sending. Latency runs from the due time to the last byte of the answer, so queueing is not
hidden. The generator's own lateness (send lag: start of the request - due time) is
recorded. Each measurement: start the server, a warm-up at the same rate (``--warmup``),
then ``--seconds`` of load. The server's CPU per request is the utime + stime of its process
tree (``/proc``) after - before the load phase, / requests. Each round runs every setup, and
within it every variant, in shuffled order; the report gives medians over rounds, the p99
increase over no tracking in the same round, and its spread over rounds.

Results: ``results/requests.md``, ``results/requests.json`` (every raw figure) and
``results/requests.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"

SERVERS = ("sync", "gthread", "uvicorn")
DEFAULT_SETUPS = ("sync@600", "gthread@300", "uvicorn@300")
#: The setups the target is judged at, for both moetrack variants.
TARGET_SETUPS = ("sync@600", "gthread@300")
TARGET_VARIANTS = ("moetrack-nopacing", "moetrack-defaults")
CUSTOMERS = 1000

# -- the load generator (its own process) ---------------------------------------------------


def _rank(values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted ``values``."""
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, int(-(-q * len(values) // 1)) - 1))
    return values[k]


def _summary_ms(seconds: list[float]) -> dict[str, float]:
    s = sorted(seconds)
    return {
        "p50_ms": _rank(s, 0.50) * 1e3,
        "p99_ms": _rank(s, 0.99) * 1e3,
        "p999_ms": _rank(s, 0.999) * 1e3,
        "max_ms": (s[-1] if s else float("nan")) * 1e3,
        "mean_ms": (statistics.fmean(s) if s else float("nan")) * 1e3,
    }


class Generator:
    def __init__(self, host: str, port: int, conns: int) -> None:
        self.host, self.port, self.conns = host, port, conns
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def prime(self) -> None:
        for _ in range(self.conns):
            self.idle.append(await asyncio.open_connection(self.host, self.port))
            self.opened += 1

    async def one(
        self, k: int, due: float, lat: list[float], lag: list[float], errors: list[str]
    ) -> None:
        lag.append(time.perf_counter() - due)
        request = f"GET /order/c{k % CUSTOMERS} HTTP/1.1\r\nHost: bench\r\n\r\n".encode("ascii")
        conn = self.idle.pop() if self.idle else None
        if conn is not None and conn[0].at_eof():
            conn[1].close()  # the server closed this idle keep-alive connection
            conn = None
        for attempt in (0, 1):
            reused = conn is not None
            try:
                if conn is None:
                    conn = await asyncio.open_connection(self.host, self.port)
                    self.opened += 1
                status, close = await self.exchange(conn, request)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if conn is not None:
                    conn[1].close()
                conn = None
                if reused and attempt == 0:
                    continue  # closed by the server while idle: once more, on a new one
                errors.append(type(exc).__name__)
                return
            end = time.perf_counter()
            if status != "200":
                errors.append(f"status {status}")
                close = True
            else:
                lat.append(end - due)
            if close:
                conn[1].close()
            else:
                self.idle.append(conn)
            return

    @staticmethod
    async def exchange(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
    ) -> tuple[str, bool]:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)[1]
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        await reader.readexactly(length)
        return status, close

    async def phase(self, rate: float, seconds: float) -> dict[str, Any]:
        lat: list[float] = []
        lag: list[float] = []
        errors: list[str] = []
        tasks: set[asyncio.Task[None]] = set()
        n = int(rate * seconds)
        t0 = time.perf_counter() + 0.02
        k = 0
        while k < n:
            due = t0 + k / rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            task = asyncio.create_task(self.one(k, due, lat, lag, errors))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        sent_by = time.perf_counter()
        if tasks:
            await asyncio.wait(set(tasks), timeout=30)
        missing = n - len(lat) - len(errors)
        out: dict[str, Any] = {
            "requests": n,
            "answered": len(lat),
            "errors": len(errors) + max(0, missing),
            "error_kinds": sorted(set(errors)),
            "send_seconds": sent_by - t0,
            "connections_opened": self.opened,
            **_summary_ms(lat),
        }
        lags = sorted(lag)
        out["send_lag_p50_ms"] = _rank(lags, 0.50) * 1e3
        out["send_lag_p99_ms"] = _rank(lags, 0.99) * 1e3
        out["send_lag_max_ms"] = (lags[-1] if lags else float("nan")) * 1e3
        return out


async def _generate(
    host: str, port: int, *, rate: float, seconds: float, warmup: float, conns: int
) -> None:
    gen = Generator(host, port, conns)
    await gen.prime()
    if warmup > 0:
        await gen.phase(rate, warmup)
    print("WARMED", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    gen.opened = 0
    result = await gen.phase(rate, seconds)
    print("RESULT " + json.dumps(result), flush=True)


# -- the servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(server: str, port: int) -> list[str]:
    py = sys.executable
    bind = f"127.0.0.1:{port}"
    if server == "sync":
        return [py, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", bind, "--backlog", "2048",
                "--log-level", "warning", "tests.benchmarks.req_apps:flask_app"]  # fmt: skip
    if server == "gthread":
        return [py, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4", "-b", bind,
                "--backlog", "2048", "--log-level", "warning",
                "tests.benchmarks.req_apps:flask_app"]  # fmt: skip
    if server == "uvicorn":
        return [py, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--no-access-log", "--log-level", "warning", "--backlog", "2048",
                "tests.benchmarks.req_apps:fastapi_app"]  # fmt: skip
    raise SystemExit(f"unknown server {server!r}; one of {', '.join(SERVERS)}")


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and every descendant, from ``/proc``."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(times.get(pid, 0.0) for pid in tree)


def wait_ready(port: int, timeout: float = 30.0) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server on port {port} did not answer within {timeout:g}s")
        time.sleep(0.1)  # polling a server that is starting


def kill_group(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def measure_one(
    sink: Any, setup: str, variant: str, seconds: float, warmup: float
) -> dict[str, Any]:
    server, rate_text = setup.split("@")
    rate = float(rate_text)
    port = free_port()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(BENCH_VARIANT=variant, BENCH_SINK=sink.url, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        server_command(server, port), cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    gen: subprocess.Popen[str] | None = None
    try:
        wait_ready(port)
        sink.control("/_reset")
        gen = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.bench_requests", "--generate",
             f"127.0.0.1:{port}", str(rate), str(seconds), str(warmup),
             # the sync worker serves one connection at a time, reading its first request
             # before it accepts the next: an idle open connection would block it
             "0" if server == "sync" else "64"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert gen.stdin is not None
        assert gen.stdout is not None
        if gen.stdout.readline().strip() != "WARMED":
            raise RuntimeError("the load generator did not warm up")
        sink.control("/_reset")
        load = os.getloadavg()[0]
        cpu0 = tree_cpu_seconds(proc.pid)
        gen.stdin.write("go\n")
        gen.stdin.flush()
        line = gen.stdout.readline()
        cpu1 = tree_cpu_seconds(proc.pid)
        if not line.startswith("RESULT "):
            raise RuntimeError("the load generator gave no result")
        result: dict[str, Any] = json.loads(line[7:])
        counted = sink.control("/_count")
        gen.wait(10)
        result.update(
            setup=setup,
            variant=variant,
            rate=rate,
            seconds=seconds,
            server_cpu_s=cpu1 - cpu0,
            cpu_us_per_request=(cpu1 - cpu0) / max(1, result["answered"]) * 1e6,
            sink_events=counted.get("events"),
            sink_requests=counted.get("requests"),
            load_average=round(load, 2),
        )
        return result
    except Exception as exc:
        err = ""
        if proc.poll() is not None and proc.stderr is not None:
            err = " | ".join(proc.stderr.read().strip().splitlines()[-3:])
        return {"setup": setup, "variant": variant, "error": f"{exc} {err}".strip()}
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait(10)
        kill_group(proc)


# -- the run ---------------------------------------------------------------------------------


def med(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(clean) if clean else None


def summarize(runs: list[dict[str, Any]], setups: list[str], variants: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setup in setups:
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for r in runs:
            if r["setup"] == setup and "error" not in r:
                by_round.setdefault(r["round"], {})[r["variant"]] = r
        rows: dict[str, Any] = {}
        none_p99 = med([b["none"]["p99_ms"] for b in by_round.values() if "none" in b])
        for variant in variants:
            mine = [b[variant] for b in by_round.values() if variant in b]
            inc = [
                b[variant]["p99_ms"] - b["none"]["p99_ms"]
                for b in by_round.values()
                if variant in b and "none" in b
            ]
            pct = [
                (b[variant]["p99_ms"] / b["none"]["p99_ms"] - 1) * 100
                for b in by_round.values()
                if variant in b and "none" in b and b["none"]["p99_ms"] > 0
            ]
            row: dict[str, Any] = {"rounds": len(mine)}
            for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "cpu_us_per_request",
                        "send_lag_p99_ms", "send_lag_max_ms"):  # fmt: skip
                row[key] = med([m[key] for m in mine])
            row["errors"] = sum(m["errors"] for m in mine)
            rate = float(setup.split("@")[1])
            cpu = row["cpu_us_per_request"]
            row["server_busy_pct"] = None if cpu is None else cpu * rate / 1e4
            row["sink_events_per_s"] = med(
                [m["sink_events"] / m["seconds"] for m in mine if m.get("sink_events") is not None]
            )
            row["p99_increase_ms"] = med(inc)
            row["p99_increase_rounds_ms"] = inc
            row["p99_increase_pct"] = med(pct)
            if variant in TARGET_VARIANTS and setup in TARGET_SETUPS and none_p99 is not None:
                limit = max(0.05 * none_p99, 0.1)
                row["target_limit_ms"] = limit
                row["target_met"] = row["p99_increase_ms"] is not None and (
                    row["p99_increase_ms"] <= limit
                )
            rows[variant] = row
        out[setup] = rows
    return out


def machine() -> dict[str, Any]:
    from .runner import machine as harness_machine

    info = harness_machine()
    from importlib import metadata

    for dist in ("flask", "gunicorn", "fastapi", "uvicorn"):
        try:
            info["versions"][dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info["versions"][dist] = None
    return info


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _signed(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:+.{digits}f}"


def render_md(data: dict[str, Any], image: str = "requests.png") -> str:
    info = data["machine"]
    lines = [
        "# What a request pays for tracking",
        "",
        f"Command: `{data['command']}` ({data['rounds']} round(s), {data['seconds']:g} s of load "
        f"per measurement after {data['warmup']:g} s of warm-up; took "
        f"{data['took_s'] / 60:.1f} min).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"{info['platform']}; {info['date']}. Load average (1 min) at the start "
        f"{info['load_average'][0]:.2f}, at the end {data['load_average_end'][0]:.2f}; at "
        "the start of each round: "
        + ", ".join(f"{x:.2f}" for x in data["round_load"])
        + ". Other work may run on this machine at the same time.",
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v is not None)
        + ".",
        "",
        "Each view calls `track()` three times. Latency runs from each request's scheduled "
        "send time (open loop) to the end of its answer. Figures are medians over rounds; "
        "*p99 vs none* is the increase over no tracking in the same round (median, then every "
        "round). CPU is the server's process tree (utime + stime) per request; *server busy*: "
        "that CPU x rate, in % of one core (near 100 %, the single worker saturates and "
        "requests queue). *sink ev/s*: "
        "events the sink received per second of load. *send lag*: the generator's lateness "
        "at send time (p99 / max), the same for every variant when the generator keeps up.",
        "",
    ]
    for setup, rows in data["summary"].items():
        lines += [
            f"## {setup}",
            "",
            "| variant | p50 ms | p99 ms | p99.9 ms | max ms | p99 vs none ms (rounds) "
            "| p99 vs none % | CPU µs/req | server busy % | sink ev/s | send lag p99 / max ms "
            "| errors | target |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for variant, row in rows.items():
            rounds = ", ".join(_signed(x) for x in row["p99_increase_rounds_ms"])
            target = ""
            if "target_met" in row:
                target = (
                    f"{'PASS' if row['target_met'] else 'MISS'} (≤ +{row['target_limit_ms']:.2f})"
                )
            inc = "—" if variant == "none" else f"{_signed(row['p99_increase_ms'])} ({rounds})"
            pct = "—" if variant == "none" else _signed(row["p99_increase_pct"], 0)
            lines.append(
                f"| {variant} | {_f(row['p50_ms'])} | {_f(row['p99_ms'])} | "
                f"{_f(row['p999_ms'])} | {_f(row['max_ms'])} | {inc} | {pct} | "
                f"{_f(row['cpu_us_per_request'], 0)} | {_f(row['server_busy_pct'], 0)} | "
                f"{_f(row['sink_events_per_s'], 0)} | "
                f"{_f(row['send_lag_p99_ms'])} / {_f(row['send_lag_max_ms'])} | "
                f"{row['errors']} | {target} |"
            )
        lines.append("")
    errors = [r for r in data["runs"] if "error" in r]
    if errors:
        lines += ["## Failed measurements", ""]
        lines += [
            f"- round {r['round']}, {r['setup']}, {r['variant']}: {r['error']}" for r in errors
        ]
        lines.append("")
    lines += [
        "Target: moetrack's p99 at most 5 % or 0.1 ms above no tracking, whichever is larger, "
        "at sync@600 and gthread@300, with pacing off (`moetrack-nopacing`) and at the "
        "defaults (`moetrack-defaults`).",
        "",
        f"![p99 increase over no tracking]({image})",
        "",
    ]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = data["summary"]
    setups = list(summary)
    variants = [v for v in data["variants"] if v != "none"]
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(setups)), 4.2))
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        xs, ys, lo, hi = [], [], [], []
        for j, setup in enumerate(setups):
            row = summary[setup].get(variant)
            if not row or row["p99_increase_ms"] is None:
                continue
            rounds = row["p99_increase_rounds_ms"]
            xs.append(j + (i - (len(variants) - 1) / 2) * width)
            ys.append(row["p99_increase_ms"])
            lo.append(row["p99_increase_ms"] - min(rounds))
            hi.append(max(rounds) - row["p99_increase_ms"])
        ax.bar(xs, ys, width, label=variant, yerr=[lo, hi], capsize=2)
    for j, setup in enumerate(setups):
        limit = next(
            (r["target_limit_ms"] for r in summary[setup].values() if "target_limit_ms" in r), None
        )
        if limit is not None:
            ax.hlines(limit, j - 0.45, j + 0.45, colors="black", linestyles="dashed", linewidth=1)
    ax.axhline(0, color="grey", linewidth=0.8)
    # an overloaded setup adds seconds where the others add milliseconds: linear to 1 ms,
    # logarithmic beyond
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks(range(len(setups)), setups)
    ax.set_ylabel("p99 increase over no tracking (ms)")
    ax.set_title(
        f"What a request pays: 3 track() calls per request\n"
        f"(median of {data['rounds']} rounds, bars: min to max; dashed: target)",
        fontsize=9,
    )
    if variants:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_requests")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=30.0, help="load per measurement")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up before each measurement")
    p.add_argument("--rates", help="e.g. 300,600: every --servers at each rate")
    p.add_argument("--servers", default=",".join(SERVERS), help="with --rates")
    p.add_argument(
        "--setups", help=f"e.g. sync@600,gthread@300 (default {','.join(DEFAULT_SETUPS)})"
    )
    p.add_argument("--variants", help="a subset of the variants (default all)")
    p.add_argument("--quick", action="store_true", help="1 round, 5 s per measurement")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS / "requests"), help="path without suffix")
    p.add_argument("--from-json", help="re-render the table and plot of a results JSON")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    from .req_apps import VARIANTS
    from .runner import SinkProcess

    args = parse_args(argv)
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        data["summary"] = summarize(data["runs"], data["setups"], data["variants"])
        write(data, Path(args.out))
        return 0
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 5.0, 1.0
    if args.setups:
        setups = args.setups.split(",")
    elif args.rates:
        setups = [f"{s}@{r}" for s in args.servers.split(",") for r in args.rates.split(",")]
    else:
        setups = list(DEFAULT_SETUPS)
    variants = args.variants.split(",") if args.variants else list(VARIANTS)
    if "none" not in variants:
        variants.insert(0, "none")
    rng = random.Random(args.seed)
    command = shlex.join(["python", "-m", "tests.benchmarks.bench_requests", *argv])
    info = machine()
    print(f"{command}\n{info['cpu']}, {info['cores']} cores, load {info['load_average']}")
    start = time.monotonic()
    runs: list[dict[str, Any]] = []
    round_load: list[float] = []
    sink = SinkProcess(sys.executable)
    try:
        for r in range(args.rounds):
            round_load.append(round(os.getloadavg()[0], 2))
            print(f"round {r + 1}/{args.rounds} (load average {round_load[-1]:.2f})", flush=True)
            order = list(setups)
            rng.shuffle(order)
            for setup in order:
                vs = list(variants)
                rng.shuffle(vs)
                for variant in vs:
                    result = measure_one(sink, setup, variant, args.seconds, args.warmup)
                    result["round"] = r
                    runs.append(result)
                    if "error" in result:
                        print(f"  {setup:12} {variant:18} ERROR {result['error']}", flush=True)
                    else:
                        print(
                            f"  {setup:12} {variant:18} p50 {result['p50_ms']:6.2f} "
                            f"p99 {result['p99_ms']:6.2f} p99.9 {result['p999_ms']:7.2f} "
                            f"max {result['max_ms']:7.2f} ms  cpu "
                            f"{result['cpu_us_per_request']:5.0f} µs/req  lag p99 "
                            f"{result['send_lag_p99_ms']:.2f} max {result['send_lag_max_ms']:.2f}"
                            f" ms  err {result['errors']}  load {result['load_average']:.2f}",
                            flush=True,
                        )
    finally:
        sink.stop()
    data = {
        "command": command,
        "machine": info,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "setups": setups,
        "variants": variants,
        "round_load": round_load,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "took_s": time.monotonic() - start,
        "runs": runs,
        "summary": summarize(runs, setups, variants),
    }
    write(data, Path(args.out))
    return 0


def write(data: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    md = render_md(data, out.with_suffix(".png").name)
    out.with_suffix(".md").write_text(md)
    plot(data, out.with_suffix(".png"))
    print()
    print(md)


def entry() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--generate"]:
        host, port = argv[1].rsplit(":", 1)
        rate, seconds, warmup, conns = float(argv[2]), float(argv[3]), float(argv[4]), int(argv[5])
        asyncio.run(
            _generate(host, int(port), rate=rate, seconds=seconds, warmup=warmup, conns=conns)
        )
        return 0
    from .__main__ import in_venv

    in_venv("tests.benchmarks.bench_requests", argv)
    return main(argv)


if __name__ == "__main__":
    sys.exit(entry())
