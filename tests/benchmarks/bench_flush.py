"""``python -m tests.benchmarks.bench_flush [--rounds N]``: how long ``flush()`` takes at the
options as shipped, and how fast delivery resumes after a blip (issue 20).

Against the emulator on loopback, with a client built with nothing but its credentials and
endpoint:

- **flush**: track one event, stay idle 0.3 s (the worker goes back to waiting out its flush
  interval), then time ``flush()``; five times. Then the same with ``flush(0.5)``, counting
  the calls that said False. The loopback round trip of one request is the floor.
- **blip**: 3 s of 503s, then two dropped connections and two 429s with ``Retry-After: 1``,
  then a healthy server; one event tracked at the start. Reports the seconds until the
  emulator accepted it, and what each request met.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import moetrack
from moetrack.testing import Emulator

IDLE = 0.3


def flushes(emu: Emulator) -> tuple[list[float], list[bool]]:
    client = moetrack.Client(emu.app_id, emu.api_key, endpoint=emu.url)
    try:
        timed: list[float] = []
        for n in range(5):
            client.track("Ping", customer_id="cust-flush", n=n)
            time.sleep(IDLE)
            start = time.perf_counter()
            client.flush()
            timed.append((time.perf_counter() - start) * 1000)
        results: list[bool] = []
        for n in range(5):
            client.track("Ping", customer_id="cust-flush", n=n)
            time.sleep(IDLE)
            results.append(client.flush(0.5))
        return timed, results
    finally:
        client.shutdown()


def round_trip_ms(emu: Emulator) -> float:
    """The floor: one request's round trip through the client's own transport."""
    from moetrack._wire.transport import HTTPTransport

    transport = HTTPTransport()
    config = moetrack.Client(emu.app_id, emu.api_key, endpoint=emu.url).config
    body = b'{"type":"transition","elements":[]}'
    transport.send(config.url, body, config.headers(), 10)  # connect once
    times = []
    for _ in range(20):
        start = time.perf_counter()
        transport.send(config.url, body, config.headers(), 10)
        times.append((time.perf_counter() - start) * 1000)
    transport.close()
    return statistics.median(times)


def blip() -> tuple[float, list[str]]:
    with Emulator() as emu:
        emu.fail_for(3.0, 503)

        def after_the_503s() -> None:
            time.sleep(3.0)
            emu.fail_next(2, 429, retry_after=1)
            emu.drop_connections(2)  # spent first: dropped connections, then the 429s

        start = time.monotonic()
        threading.Thread(target=after_the_503s, daemon=True).start()
        client = moetrack.Client(emu.app_id, emu.api_key, endpoint=emu.url)
        try:
            client.track("Blip", customer_id="cust-blip")
            if not emu.wait_for_events(1, timeout=120):
                raise SystemExit("the event never arrived")
            took = time.monotonic() - start
        finally:
            client.shutdown(1)
        met = [str(r.get("fault") or r.get("status")) for r in emu.requests()]
        return took, met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for n in range(args.rounds):
        with Emulator() as emu:
            floor = round_trip_ms(emu)
            timed, results = flushes(emu)
        print(
            f"round {n + 1}: flush() after {IDLE:g}s idle: "
            + " ".join(f"{ms:.1f}" for ms in timed)
            + f" ms (max {max(timed):.1f} ms, {max(timed) / floor:.1f}x the {floor:.2f} ms "
            f"round trip); flush(0.5) False {results.count(False)} of {len(results)}"
        )
        took, met = blip()
        print(f"round {n + 1}: blip delivered after {took:.1f} s; requests met: {', '.join(met)}")


if __name__ == "__main__":
    main()
