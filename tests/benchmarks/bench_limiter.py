"""``python -m tests.benchmarks.bench_limiter [--calls N] [--repeat R]``: the shared limiter's
cost per batch next to the local one.

Starts a redis-server (``redis-server`` on the PATH) on a free loopback port in a temporary
directory, then times, best of ``--repeat``:

- ``LocalLimiter.acquire`` + ``answered`` (this process's sliding windows);
- ``RedisLimiter.acquire`` + ``answered``, granted (quotas far above the load), batches of
  637 events and 12 users;
- ``RedisLimiter.acquire`` refused (a paused key: the script answers the wait);
- a bare ``PING`` on the same connection: the loopback round trip, the floor.

And counts the Redis commands sent per batch (``INFO commandstats``: EVALSHA and EVAL calls
against the number of batches; the commands a script runs inside Redis are no round trips).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import redis

from moetrack._pipeline.limiter import LocalLimiter
from moetrack.redis.limiter import RedisLimiter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def best_per_call(fn: Callable[[], object], calls: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        print("bench_limiter: redis-server is not installed", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            admin = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    admin.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)  # waiting for the new server to answer
            version = admin.info("server")["redis_version"]
            big = 10**12
            local = LocalLimiter(big, big, 60.0)
            # A burst far above the load: every call of the timed loop is granted.
            shared = RedisLimiter(url, "bench", big, big, 60.0)
            paused = RedisLimiter(url, "bench-paused", big, big, 60.0)
            paused.pause(3600.0)
            assert paused.acquire(12, 637) > 0
            refusals = 0

            def local_batch() -> None:
                local.acquire(12, 637)
                local.answered()

            def shared_batch() -> None:
                nonlocal refusals
                if shared.acquire(12, 637) > 0:
                    refusals += 1
                shared.answered()

            def refused() -> None:
                paused.acquire(12, 637)

            conn = shared._redis

            stats_before = admin.info("commandstats")
            shared_s = best_per_call(shared_batch, args.calls, args.repeat)
            stats_after = admin.info("commandstats")
            batches = args.calls * args.repeat

            def calls(stats: dict[str, dict[str, int]], name: str) -> int:
                return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))

            sent = sum(calls(stats_after, n) - calls(stats_before, n) for n in ("evalsha", "eval"))
            local_s = best_per_call(local_batch, args.calls, args.repeat)
            refused_s = best_per_call(refused, args.calls, args.repeat)
            ping_s = best_per_call(conn.ping, args.calls, args.repeat)
            assert shared.fallback_acquires == 0
            assert refusals == 0, refusals
        finally:
            proc.terminate()
            proc.wait(10)
    hiredis = getattr(redis.utils, "HIREDIS_AVAILABLE", False)
    print(
        f"moetrack limiter benchmark: Redis {version} on loopback, redis-py {redis.__version__}"
        f"{' with hiredis' if hiredis else ''}, Python {platform.python_version()}, "
        f"best of {args.repeat} x {args.calls:,} calls, batches of 12 users and 637 events\n"
    )
    print("| Limiter | Time per batch | Redis round trips per batch |")
    print("|---|---|---|")
    print(f"| LocalLimiter (acquire + answered) | {local_s * 1e6:.1f} µs | 0 |")
    print(
        f"| RedisLimiter, granted (acquire + answered) | {shared_s * 1e6:.0f} µs "
        f"| {sent / batches:.2f} |"
    )
    print(f"| RedisLimiter, refused while paused | {refused_s * 1e6:.0f} µs | 1 |")
    print(f"| PING on the same connection (the floor) | {ping_s * 1e6:.0f} µs | 1 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
