"""``python -m tests.benchmarks.bench_quota [--setup NAME ...]``: how much of the account's
quota the senders use, alone and together.

The quota is scaled ten times faster than the real one: 10,000 events per 6 s sliding
window (``Q`` and ``W``), enforced by the emulator (a 429 beyond it), and every sender is
told the same quota and window. Users are not limited (the events bind). Setups:

- ``local``: one process (an app's ``moetrack.Client``, its local limiter), 40,000 events;
- ``redis``: three app processes sharing the Redis limiter, 13,000 events each;
- ``mixed``: three processes sharing the Redis limiter, 13,000 events each: an app client
  (batches up to 1,000), ``moetrack relay`` draining a Redis backlog filled beforehand
  (its default batches, up to 1,000) and ``moetrack import`` of a file (batches up to
  1,000);
- ``mixed-250``: the same with the relay's batches of 250 (``--max-batch-size 250``, a
  fortieth of the quota: the relay's default before the shared limiter took any size).

Every process is started first and waits; all are let go at once. Figures, from the
emulator's request log (arrival times): ``took`` runs from the first to the last accepted
request; ``least`` is the least the quota allows for ``N`` events, ``(N / Q - 1) * W`` (a
whole quota at once, then one more per window); ``use`` is ``least / took``; ``429s``;
``worst window``: the most events accepted in any window of ``W`` seconds (``(t - W, t]``).
A redis-server (``redis-server`` on the PATH) is started on a free loopback port.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUOTA, WINDOW = 10_000, 6.0
SETUPS = ("local", "redis", "mixed", "mixed-250")

APP = textwrap.dedent(
    """
    import json, sys
    import moetrack
    endpoint, app_id, key, limiter, name, n, quota, window = sys.argv[1:9]
    options = {"limiter": limiter} if limiter else {}
    client = moetrack.Client(
        app_id, key, endpoint=endpoint, events_per_minute=int(quota), users_per_minute=None,
        rate_limit_window=float(window), retry_deadline=300.0, shutdown_timeout=300.0,
        queue_capacity=1_000_000, **options,
    )
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(int(n)):
        client.track("Bench", {"i": i, "plan": "gold"}, customer_id=f"{name}-c{i % 100}")
    ok = client.flush(timeout=300.0)
    client.shutdown()
    print(json.dumps({"ok": ok, "sent": client.stats().sent}), flush=True)
    """
)


@dataclass
class Result:
    setup: str
    events: int
    took: float
    least: float
    throttled: int
    worst: int
    requests: int
    load: tuple[float, float]

    @property
    def use(self) -> float:
        return self.least / self.took if self.took > 0 else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worst_window(stamps: list[tuple[float, int]], window: float) -> int:
    """The most units in any window ``(t - window, t]`` (one ends at each stamp)."""
    stamps = sorted(stamps)
    times = [t for t, _ in stamps]
    totals = []
    total = 0
    for _, n in stamps:
        total += n
        totals.append(total)
    worst = 0
    for i, t in enumerate(times):
        j = bisect_right(times, t - window)  # first entry inside (t - window, t]
        worst = max(worst, totals[i] - (totals[j - 1] if j else 0))
    return worst


def measure(emulator: Any, setup: str, events: int, load: tuple[float, float]) -> Result:
    log = emulator.requests()
    ok = [(r["time"], r["events"]) for r in log if r["status"] == 200 and r["events"]]
    throttled = sum(1 for r in log if r["status"] == 429)
    times = [t for t, _ in ok]
    return Result(
        setup=setup,
        events=sum(n for _, n in ok),
        took=max(times) - min(times) if times else 0.0,
        least=(events / QUOTA - 1) * WINDOW,
        throttled=throttled,
        worst=worst_window(ok, WINDOW),
        requests=len(log),
        load=load,
    )


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench_quota: timed out waiting for {what}")
        time.sleep(0.1)  # a benchmark polling the emulator's count, not a test


def delivered(emulator: Any) -> int:
    return sum(r["events"] for r in emulator.requests() if r["status"] == 200)


class Run:
    """The processes of one setup, each started waiting on its stdin (or not yet)."""

    def __init__(self, emulator: Any, tmp: Path) -> None:
        self.emulator = emulator
        self.tmp = tmp
        self.waiting: list[subprocess.Popen[str]] = []
        self.later: list[list[str]] = []
        self.procs: list[subprocess.Popen[str]] = []

    def app(self, name: str, n: int, limiter: str | None) -> None:
        e = self.emulator
        proc = subprocess.Popen(
            [sys.executable, "-c", APP, e.url, e.app_id, str(e.api_key), limiter or "", name,
             str(n), str(QUOTA), str(WINDOW)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("bench_quota: an app process did not start")
        self.waiting.append(proc)
        self.procs.append(proc)

    def command(self, *args: str) -> None:
        """A ``moetrack`` command started at the go (its start-up is not timed: ``took``
        begins at the first accepted request)."""
        e = self.emulator
        self.later.append(
            [sys.executable, "-m", "moetrack", *args, "--endpoint", e.url, "--app-id",
             e.app_id, "--api-key", str(e.api_key), "--events-per-minute", str(QUOTA),
             "--users-per-minute", "0", "--rate-limit-window", str(WINDOW)]
        )  # fmt: skip

    def go(self) -> list[subprocess.Popen[str]]:
        started: list[subprocess.Popen[str]] = []
        for args in self.later:
            log = open(self.tmp / f"cmd{len(started)}.log", "w")
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
            log.close()
            started.append(proc)
            self.procs.append(proc)
        for proc in self.waiting:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return started

    def finish(self, timeout: float) -> None:
        for proc in self.waiting:
            out, _ = proc.communicate(timeout=timeout)
            result = json.loads(out.strip().splitlines()[-1])
            if not result["ok"]:
                raise RuntimeError(f"bench_quota: an app did not deliver everything: {result}")

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def fill_backlog(emulator: Any, url: str, n: int) -> None:
    import moetrack

    client = moetrack.Client(
        emulator.app_id, emulator.api_key, endpoint=emulator.url, backlog=url,
        queue_capacity=1_000_000,
    )  # fmt: skip
    for i in range(n):
        client.track("Bench", {"i": i, "plan": "gold"}, customer_id=f"relay-c{i % 100}")
    if not client.flush(timeout=120.0):
        raise RuntimeError("bench_quota: the backlog was not filled")
    client.shutdown()


def write_import(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            row = {
                "customer_id": f"import-c{i % 100}",
                "action": "Bench",
                "attributes": {"i": i, "plan": "gold"},
                "current_time": 1_700_000_000 + i,
            }
            f.write(json.dumps(row) + "\n")
    return path


def run_setup(setup: str, redis_url: str, tmp: Path) -> Result:
    from moetrack.testing import Emulator

    with Emulator(events_per_minute=QUOTA, rate_limit_window=WINDOW) as emulator:
        run = Run(emulator, tmp)
        try:
            if setup == "local":
                total = 40_000
                run.app("a", total, None)
            elif setup == "redis":
                total = 3 * 13_000
                for name in ("a", "b", "c"):
                    run.app(name, 13_000, redis_url)
            else:
                total = 3 * 13_000
                fill_backlog(emulator, redis_url, 13_000)
                emulator.reset()  # the backlog's writer sends nothing; start a clean log
                run.app("a", 13_000, redis_url)
                data = write_import(tmp / "history.jsonl", 13_000)
                run.command("import", str(data), "--limiter", redis_url, "--restart")
                relay = ["relay", "--backlog", redis_url, "--limiter", redis_url]
                if setup == "mixed-250":
                    relay += ["--max-batch-size", "250"]
                run.command(*relay)
            load_before = os.getloadavg()[0]
            started = run.go()
            run.finish(timeout=600)
            wait_for(lambda: delivered(emulator) >= total, 600, "every event")
            for proc in started:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            load_after = os.getloadavg()[0]
            return measure(emulator, setup, total, (load_before, load_after))
        finally:
            run.kill()


def table(results: list[Result]) -> str:
    names = {
        "local": "one process, local limiter, 40,000 events",
        "redis": "three processes sharing the Redis limiter, 13,000 events each",
        "mixed": "three processes sharing the Redis limiter: app, relay, import, 13,000 each",
        "mixed-250": "the same, the relay's batches of 250",
    }
    rows = [
        "| setup | took | least the quota allows | use | 429s | most events in any 6 s window "
        "(quota 10,000) | requests | load average (start, end) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {names[r.setup]} | {r.took:.1f} s | {r.least:.1f} s | {r.use:.1%} | "
            f"{r.throttled} | {r.worst:,} | {r.requests} | {r.load[0]:.1f}, {r.load[1]:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--setup", action="append", choices=SETUPS, help="default: all")
    args = parser.parse_args(argv)
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        print("bench_quota: redis-server is not installed", file=sys.stderr)
        return 2
    import redis

    port = free_port()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            admin = redis.Redis(port=port)
            wait_for(lambda: _pings(admin), 10, "redis-server")
            for setup in args.setup or SETUPS:
                admin.flushall()
                results.append(run_setup(setup, url, Path(tmp)))
                print(table(results[-1:]).splitlines()[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    print()
    print(
        f"python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores; quota {QUOTA:,} events per {WINDOW:g} s"
    )
    print(table(results))
    return 0


def _pings(admin: Any) -> bool:
    try:
        return bool(admin.ping())
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
