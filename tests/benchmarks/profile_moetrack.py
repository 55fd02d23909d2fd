"""Where moetrack's time goes in the throughput figure: cProfile of each of its threads.

``python -m tests.benchmarks.profile_moetrack [--events N] [--top K] [--customers C]``
(inside the benchmark venv; ``python -m tests.benchmarks`` creates it) starts a sink, tracks
the benchmark event N times while moetrack delivers, and prints the heaviest functions of
the caller thread and of every thread moetrack started, separately. cProfile slows
everything several-fold; read the shares and the call counts, not the absolute times.
``--wall`` skips cProfile and prints only the wall and CPU times and how long the transport
spent in ``send``.

It uses the public API only (``Client(transport=...)`` wraps the HTTP transport to time
``send``), so it keeps working whatever the worker's internals look like; the one private
name it reaches for, the default HTTP transport class, it looks up tolerantly.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from .measure import QUEUE_SIZE, compile_loops, control, customer_ids, samples, wait_for
from .runner import SinkProcess


class TimedTransport:
    """Wraps a transport and adds up the wall time of its ``send`` calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Any:
        t = time.perf_counter()
        try:
            return self.inner.send(url, body, headers, timeout)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1

    def close(self) -> None:
        self.inner.close()


def default_transport() -> Any:
    """moetrack's own HTTP transport, or None (then the client builds its default)."""
    try:
        from moetrack._wire import transport as _transport
    except ImportError:
        return None
    cls = getattr(_transport, "HTTPTransport", None)
    return cls() if cls is not None else None


class ThreadProfiles:
    """A cProfile per thread started while installed, keyed by the thread's name."""

    def __init__(self) -> None:
        self.profiles: dict[str, cProfile.Profile] = {}
        self.lock = threading.Lock()

    def _start(self, *_: Any) -> None:
        # Runs once in each new thread (threading's profile hook), then cProfile replaces it.
        profile = cProfile.Profile()
        name = threading.current_thread().name
        with self.lock:
            key, k = name, 1
            while key in self.profiles:
                k += 1
                key = f"{name} #{k}"
            self.profiles[key] = profile
        profile.enable()

    def install(self) -> None:
        threading.setprofile(self._start)

    def uninstall(self) -> None:
        threading.setprofile(None)
        with self.lock:
            for profile in self.profiles.values():
                profile.disable()  # only stops it when called on its own thread; harmless


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.profile_moetrack")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--customers", type=int, default=1)
    parser.add_argument("--contender", default="moetrack", choices=["moetrack", "moetrack-kwargs"])
    parser.add_argument(
        "--wall", action="store_true", help="no cProfile: only wall, CPU and transport time"
    )
    args = parser.parse_args(argv)

    import moetrack

    threads = ThreadProfiles()
    if not args.wall:
        threads.install()
    inner = default_transport()
    transport = TimedTransport(inner) if inner is not None else None
    ids = customer_ids(args.customers)
    warm = 1_000

    options: dict[str, Any] = {"transport": transport} if transport is not None else {}
    sink = SinkProcess(sys.executable)
    try:
        client = moetrack.Client(
            "BENCH_APP",
            "bench-key",
            endpoint=sink.url,
            users_per_minute=None,
            events_per_minute=None,
            queue_capacity=QUEUE_SIZE,
            **options,
        )
        timed, _ = compile_loops(args.contender)
        i = timed(client.track, 0, warm, samples(), ids)
        client.flush()
        wait_for(sink.url, warm, 60)
        if transport is not None:
            transport.seconds, transport.calls = 0.0, 0
        caller_profile = cProfile.Profile()
        out = samples()
        cpu0 = os.times()
        t0 = time.monotonic()
        if args.wall:
            timed(client.track, i, args.events, out, ids)
        else:
            caller_profile.runcall(timed, client.track, i, args.events, out, ids)
        loop = time.monotonic() - t0
        client.flush()
        done = wait_for(sink.url, warm + args.events, 600)
        wall = done["reached_at"] - t0
        cpu1 = os.times()
        client.shutdown(5)
        threads.uninstall()
        counted = control(sink.url, "/_count")
    finally:
        sink.stop()

    print(f"{args.events:,} events, {args.customers} customer(s): caller loop {loop:.2f}s, "
          f"delivered after {wall:.2f}s{'' if args.wall else ' (profiled)'}, "
          f"{counted['requests']} requests")  # fmt: skip
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    line = f"wall {wall:.2f}s, process CPU {cpu:.2f}s ({cpu / wall:.0%} of one core)"
    if transport is not None:
        line += (
            f"; transport.send: {transport.seconds:.2f}s in {transport.calls} calls "
            f"({transport.seconds / max(1, transport.calls) * 1e3:.1f} ms each), the rest of "
            "moetrack's threads' time preparing, waiting or idle"
        )
    print(line)
    if args.wall:
        return 0
    profiles = [("caller thread", caller_profile)]
    profiles += [(f"thread {name!r}", p) for name, p in sorted(threads.profiles.items())]
    for name, profile in profiles:
        text = io.StringIO()
        try:
            stats = pstats.Stats(profile, stream=text)
        except TypeError:  # a thread that never ran a profiled call
            continue
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"\n===== {name}: by own time =====")
        print(text.getvalue().split("\n", 6)[-1])
    print(f"threads alive at the end: {threading.active_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
