"""``moetrack import --limiter URL`` shares the account's quota with the apps that are running.

A real redis-server, the real emulator enforcing the quota, ``moetrack import`` as a real
process, and an app's :class:`moetrack.Client` in this process tracking at the same time.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import moetrack
from moetrack.testing import Emulator

from .conftest import RedisServer

#: The account's quota as the emulator enforces it, and as both sides are told.
QUOTA, WINDOW = 600, 6.0
#: Every process sharing a quota uses the same batch size (the limiter's burst).
BATCH = 60
IMPORTED, TRACKED = 1_500, 600


def write_history(path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(IMPORTED):
            row = {
                "customer_id": f"hist-{i % 25}",
                "action": "Imported",
                "attributes": {"n": i},
                "current_time": 1_700_000_000 + i,
            }
            f.write(json.dumps(row) + "\n")
    return path


def start_import(emulator: Emulator, data: Path, limiter: str | None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("MOETRACK_LIMITER", None)
    args = [
        sys.executable, "-m", "moetrack", "import", str(data),
        "--endpoint", emulator.url,
        "--app-id", emulator.app_id,
        "--api-key", str(emulator.api_key),
        "--events-per-minute", str(QUOTA),
        "--rate-limit-window", str(WINDOW),
        "--batch-size", str(BATCH),
        "--progress-interval", "1",
    ]  # fmt: skip
    if limiter is not None:
        args += ["--limiter", limiter]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def app_client(emulator: Emulator, limiter: str | None) -> moetrack.Client:
    options = {} if limiter is None else {"limiter": limiter}
    return moetrack.Client(
        emulator.app_id,
        emulator.api_key,
        endpoint=emulator.url,
        events_per_minute=QUOTA,
        rate_limit_window=WINDOW,
        max_batch_size=BATCH,
        flush_interval=0.05,
        retry_deadline=120.0,
        shutdown_timeout=1.0,
        **options,
    )


def track_alongside(emulator: Emulator, client: moetrack.Client) -> None:
    """Once the import is sending, the app tracks its own events."""
    assert emulator.wait_for(lambda: len(emulator.requests()) >= 1, timeout=60), emulator
    for i in range(TRACKED):
        client.track("Live", {"i": i}, customer_id=f"app-{i % 20}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.slow
def test_import_and_a_running_app_share_one_quota_through_the_limiter(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    data = write_history(tmp_path / "history.jsonl")
    with Emulator(events_per_minute=QUOTA, rate_limit_window=WINDOW) as emulator:
        proc = start_import(emulator, data, redis_server.url)
        client = app_client(emulator, redis_server.url)
        try:
            track_alongside(emulator, client)
            assert client.flush(timeout=180.0)
            out, err = proc.communicate(timeout=180)
        finally:
            client.shutdown()
            stop(proc)
        statuses = collections.Counter(r["status"] for r in emulator.requests())
        events = emulator.events()

    assert proc.returncode == 0, err
    assert set(statuses) == {200}, statuses  # no 429, nor anything else
    imported = collections.Counter(
        e["attributes"]["n"] for e in events if e["action"] == "Imported"
    )
    tracked = collections.Counter(e["attributes"]["i"] for e in events if e["action"] == "Live")
    assert imported == dict.fromkeys(range(IMPORTED), 1)  # every imported event, once
    assert tracked == dict.fromkeys(range(TRACKED), 1)  # every tracked event, once
    assert len(events) == IMPORTED + TRACKED
    assert out.splitlines()[1].split()[:4] == ["events", "1,500", "1,500", "0"]


@pytest.mark.slow
def test_without_the_limiter_each_side_takes_the_whole_quota_and_earns_429s(
    tmp_path: Path,
) -> None:
    # The counterpart: both pace themselves alone at the account's quota. The import sends a
    # quota every window for three windows; the app's burst lands in one of them.
    data = write_history(tmp_path / "history.jsonl")
    with Emulator(events_per_minute=QUOTA, rate_limit_window=WINDOW) as emulator:
        proc = start_import(emulator, data, None)
        client = app_client(emulator, None)
        try:
            track_alongside(emulator, client)
            assert emulator.wait_for(
                lambda: any(r["status"] == 429 for r in emulator.requests()), timeout=120
            ), emulator
        finally:
            proc.send_signal(signal.SIGTERM)
            client.shutdown(0.5)
            try:
                proc.communicate(timeout=60)
            finally:
                stop(proc)
