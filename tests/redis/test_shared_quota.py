"""Senders of different kinds and batch sizes share one quota through the Redis limiter.

A real redis-server, the emulator enforcing the quota, ``moetrack relay`` as a real process
(batches of 25, a fortieth of the quota) and an app's :class:`moetrack.Client` in this
process (batches up to the whole quota), both as shipped but for the quota, the window and
the relay's batch size.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from bisect import bisect_right
from collections import Counter
from pathlib import Path

import moetrack
from moetrack.testing import Emulator

from .conftest import RedisServer

#: The account's quota as the emulator enforces it and every sender is told (scaled: 6 s).
QUOTA, WINDOW = 1_000, 6.0
RELAYED, TRACKED = 1_500, 1_500


def most_in_any_window(log: list[dict[str, object]], window: float) -> int:
    """The most events accepted in any window ``(t - window, t]`` of the request log."""
    stamps = sorted((float(r["time"]), int(r["events"])) for r in log if r["status"] == 200)  # type: ignore[arg-type]
    times = [t for t, _ in stamps]
    totals, total = [], 0
    for _, n in stamps:
        total += n
        totals.append(total)
    worst = 0
    for i, t in enumerate(times):
        j = bisect_right(times, t - window)
        worst = max(worst, totals[i] - (totals[j - 1] if j else 0))
    return worst


def test_most_in_any_window_counts_half_open_windows() -> None:
    log: list[dict[str, object]] = [
        {"time": 0.0, "events": 5, "status": 200},
        {"time": 6.0, "events": 5, "status": 200},  # (0, 6]: the first is out
        {"time": 6.5, "events": 7, "status": 200},
        {"time": 6.6, "events": 9, "status": 429},
    ]
    assert most_in_any_window(log, 6.0) == 12


def test_a_relay_and_an_app_with_other_batch_sizes_keep_every_window(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The relay sends batches of 25 (a fortieth of the quota), the app up to
    1,000: together no window of the emulator's log holds more than the quota, and none of
    their requests earns a 429."""
    with Emulator(events_per_minute=QUOTA, rate_limit_window=WINDOW) as emu:
        writer = moetrack.Client(
            emu.app_id, emu.api_key, endpoint=emu.url, backlog=redis_server.url
        )
        for i in range(RELAYED):
            writer.track("Relayed", {"i": i}, customer_id=f"r{i % 10}")
        assert writer.flush(30)
        writer.shutdown(5)
        app = moetrack.Client(
            emu.app_id,
            emu.api_key,
            endpoint=emu.url,
            limiter=redis_server.url,
            events_per_minute=QUOTA,
            users_per_minute=None,
            rate_limit_window=WINDOW,
            retry_deadline=120.0,
        )
        log_path = tmp_path / "relay.log"
        with open(log_path, "wb") as log:
            relay = subprocess.Popen(
                [
                    sys.executable, "-m", "moetrack", "relay",
                    "--backlog", redis_server.url,
                    "--endpoint", emu.url,
                    "--app-id", emu.app_id,
                    "--api-key", str(emu.api_key),
                    "--events-per-minute", str(QUOTA),
                    "--users-per-minute", "0",
                    "--rate-limit-window", str(WINDOW),
                    "--max-batch-size", "25",  # not the default: other sizes than the app's
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            for i in range(TRACKED):
                app.track("Tracked", {"i": i}, customer_id=f"a{i % 10}")
            assert app.flush(120)
            assert emu.wait_for(lambda: len(emu.events()) >= RELAYED + TRACKED, timeout=120)
        finally:
            relay.send_signal(signal.SIGTERM)
            relay.wait(30)
            app.shutdown(5)
        log_requests = emu.requests()
        events = emu.events()
    statuses = Counter(r["status"] for r in log_requests)
    sizes = Counter(r["events"] for r in log_requests)
    assert statuses[429] == 0, (statuses, log_path.read_text())
    worst = most_in_any_window(log_requests, WINDOW)
    assert worst <= QUOTA, (worst, sizes)
    kinds = Counter(e["action"] for e in events)
    assert kinds == {"Relayed": RELAYED, "Tracked": TRACKED}
