"""Where moetrack's time goes in the throughput figure: cProfile of both of its threads.

``python -m tests.benchmarks.profile_moetrack [--events N] [--top K]`` (inside the benchmark
venv; ``python -m tests.benchmarks`` creates it) starts a sink, tracks the benchmark event N
times with the worker delivering, and prints the heaviest functions of the caller thread and
of the worker thread separately, plus how often the hot path woke the worker. cProfile slows
everything several-fold; read the shares and the call counts, not the absolute times.
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
from typing import Any

from .measure import BATCH, compile_loops, control, wait_for
from .runner import SinkProcess


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.profile_moetrack")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--contender", default="moetrack", choices=["moetrack", "moetrack-kwargs"])
    parser.add_argument(
        "--wall", action="store_true", help="no cProfile: only the wall-time split of the worker"
    )
    args = parser.parse_args(argv)

    import moetrack
    from moetrack import _transport, _worker

    worker_profile = cProfile.Profile()
    original_run = _worker.Worker._run

    def profiled_run(self: Any) -> None:
        if args.wall:
            original_run(self)
        else:
            worker_profile.runcall(original_run, self)

    _worker.Worker._run = profiled_run  # type: ignore[method-assign]

    # Wall time the worker spends in its two phases, measured without cProfile's overhead.
    spent = {"drain": 0.0, "send": 0.0, "drain_calls": 0, "send_calls": 0}
    original_drain = _worker.Worker.drain
    original_send = _transport.HTTPTransport.send

    def timed_drain(self: Any) -> None:
        t = time.perf_counter()
        try:
            original_drain(self)
        finally:
            if threading.current_thread().name == "moetrack-worker":
                spent["drain"] += time.perf_counter() - t
                spent["drain_calls"] += 1

    def timed_send(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return original_send(self, *a, **k)
        finally:
            spent["send"] += time.perf_counter() - t
            spent["send_calls"] += 1

    _worker.Worker.drain = timed_drain  # type: ignore[method-assign]
    _transport.HTTPTransport.send = timed_send  # type: ignore[method-assign]

    sink = SinkProcess(sys.executable)
    try:
        client = moetrack.Client(
            "BENCH_APP",
            "bench-key",
            endpoint=sink.url,
            users_per_minute=None,
            events_per_minute=None,
            queue_capacity=4_000_000,
        )
        wake = client._worker.wake
        wakes = 0
        original_set = wake.set

        def counting_set() -> None:
            nonlocal wakes
            wakes += 1
            original_set()

        wake.set = counting_set  # type: ignore[method-assign]
        timed, _ = compile_loops(args.contender)
        i = timed(client.track, 0, 10, [])
        client.flush()
        wait_for(sink.url, 10 * BATCH, 60)
        caller_profile = cProfile.Profile()
        samples: list[int] = []
        for key in spent:
            spent[key] = 0
        cpu0 = os.times()
        t0 = time.monotonic()
        if args.wall:
            timed(client.track, i, args.events // BATCH, samples)
        else:
            caller_profile.runcall(timed, client.track, i, args.events // BATCH, samples)
        loop = time.monotonic() - t0
        client.flush()
        done = wait_for(sink.url, 10 * BATCH + args.events, 600)
        wall = done["reached_at"] - t0
        cpu1 = os.times()
        client.shutdown(5)
        counted = control(sink.url, "/_count")
    finally:
        sink.stop()

    print(f"{args.events:,} events: caller loop {loop:.2f}s, delivered after {wall:.2f}s "
          f"(profiled), {counted['requests']} requests; the hot path set the worker's wake "
          f"event {wakes:,} times ({wakes / args.events:.2f} per call)")  # fmt: skip
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    print(f"wall {wall:.2f}s, process CPU {cpu:.2f}s ({cpu / wall:.0%} of one core); worker: "
          f"{spent['drain']:.2f}s preparing in {spent['drain_calls']} drains, "
          f"{spent['send']:.2f}s in {spent['send_calls']} transport.send calls "
          f"({spent['send'] / max(1, spent['send_calls']) * 1e3:.1f} ms each), the rest "
          f"packing, waiting or idle")  # fmt: skip
    if args.wall:
        return 0
    for name, profile in (("caller thread", caller_profile), ("worker thread", worker_profile)):
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"\n===== {name}: by own time =====")
        print(out.getvalue().split("\n", 6)[-1])
    print(f"threads alive at the end: {threading.active_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
