"""``python -m tests.benchmarks.bench_backlog [--events N]``: the durable backlog's costs.

Starts its own redis-server (``appendonly no``; a free port, a temporary directory) and
measures, in this interpreter:

- **producer**: a client with ``backlog=`` tracking N events (one customer of 100, five
  attributes): the caller's time per ``track()``, and the process CPU per event until
  ``flush()`` says everything is stored (caller plus worker, which validates, encodes and
  appends);
- **relay round trips**: a relay (quota on but far above what is sent, so the shared limiter
  runs) sending the backlog through a transport that answers 200 at once: Redis round trips
  made by the sending thread per request of about 100 KB, from the first request on (the
  heartbeat thread's lease renewals, a few per lease period, are not counted; target: 3 or
  fewer);
- **relay throughput** with the quota off: events delivered per second.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

import moetrack
from moetrack._config import Config
from moetrack._report import Reporter
from moetrack._wire.transport import Response
from moetrack.redis.relay import Relay

APP = "BENCHAPP01"
KEY = "bench-key"


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--dir",
            directory,
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)  # waiting for the new server to listen
    raise RuntimeError("redis-server did not start")


class OK:
    """A transport that answers 200 at once and counts what it got."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        self.requests += 1
        self.bytes += len(body)
        return Response(200, {}, b'{"status":"success"}')

    def close(self) -> None:
        pass


def produce(url: str, n: int) -> dict[str, float]:
    client = moetrack.Client(APP, KEY, endpoint="http://127.0.0.1:9", backlog=url)
    caller = 0.0
    cpu0 = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        client.track(
            "Purchase",
            customer_id=f"customer-{i % 100}",
            product="Widget",
            price=9.99,
            quantity=2,
            gift=False,
            coupon="SPRING",
        )
        caller += time.perf_counter() - t
    assert client.flush(120)
    cpu = time.process_time() - cpu0
    stats = client.stats()
    client.shutdown(5)
    assert stats.sent == n, stats
    return {"caller_ns": caller / n * 1e9, "cpu_us": cpu / n * 1e6}


def relay(url: str, n: int, quota: int | None) -> dict[str, float]:
    import redis.connection

    transport = OK()
    config = Config.build(
        APP,
        KEY,
        endpoint="http://127.0.0.1:9",
        backlog=url,
        limiter=url,
        events_per_minute=quota,
        users_per_minute=None,
        retry_deadline=3600.0,
    )
    r = Relay(config, Reporter(None, None, config.secrets()), transport=transport, lease_ttl=3)
    sender_thread: dict[str, int] = {}
    trips = {"n": 0}
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        # Counted from the first request on: the start (groups, leases, claims) and the
        # exit (lease handover) happen once per relay, not per batch.
        if threading.get_ident() == sender_thread.get("id") and transport.requests:
            trips["n"] += 1
        original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    done = threading.Event()

    def watch() -> None:
        while r.source.delivered < n:
            time.sleep(0.01)  # polling the relay's counter for the end of the run
        r.request_stop(5)
        done.set()

    def run() -> None:
        sender_thread["id"] = threading.get_ident()
        r.run()

    t0 = time.perf_counter()
    threading.Thread(target=watch, daemon=True).start()
    runner = threading.Thread(target=run)
    runner.start()
    runner.join()
    elapsed = time.perf_counter() - t0
    redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    return {
        "requests": transport.requests,
        "mean_body": transport.bytes / max(1, transport.requests),
        "trips_per_request": trips["n"] / max(1, transport.requests),
        "events_per_s": n / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(tmp)
        try:
            p = produce(url, n)
            print(f"producer, backlog mode, {n:,} events:")
            print(f"  track() on the caller: {p['caller_ns']:,.0f} ns per event")
            print(f"  process CPU (caller + worker) until stored: {p['cpu_us']:.1f} µs per event")
            q = relay(url, n, quota=10**9)
            print("relay, shared limiter on (quota far above the load):")
            print(
                f"  {q['requests']:,.0f} requests, mean body {q['mean_body']:,.0f} B, "
                f"{q['trips_per_request']:.2f} Redis round trips per request (target <= 3)"
            )
            produce(url, n)
            t = relay(url, n, quota=None)
            print("relay, quota off:")
            print(
                f"  {t['events_per_s']:,.0f} events/s delivered ({t['requests']:,.0f} requests, "
                f"{t['trips_per_request']:.2f} round trips each)"
            )
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
