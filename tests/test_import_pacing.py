"""``moetrack import`` killed and run again at once stays within the quota.

The server counts what the killed process sent in the current window, the request in flight
included. The resumed process must count it too: the pacing window is saved in the state
file before each request goes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moetrack.testing import Emulator

from .test_import import import_process, kill_with_a_request_in_flight

#: The account's quota, 10,000 events a minute, scaled to 1,000 per 6 s window; batches of a
#: tenth of it, as the CLI's defaults are (1,000 of 10,000).
QUOTA, WINDOW, BATCH = 1_000, 6.0, 100
TOTAL = 2_500


def write_events(path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(TOTAL):
            row = {"customer_id": f"cust-{i % 7}", "action": "Purchase", "attributes": {"n": i}}
            f.write(json.dumps(row) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("rerun_args", [(), ("--restart",)], ids=["resume", "restart"])
def test_sigkill_then_an_immediate_rerun_earns_no_429(
    tmp_path: Path, emulator: Emulator, rerun_args: tuple[str, ...]
) -> None:
    emulator.set_rate_limits(events_per_minute=QUOTA, window=WINDOW)
    data = write_events(tmp_path / "h.jsonl")
    args = (
        data, "--events-per-minute", str(QUOTA), "--rate-limit-window", str(WINDOW),
        "--batch-size", str(BATCH),
    )  # fmt: skip

    proc = import_process(emulator, *args)
    # Three requests answered, then one stored by the server and held: counted, in flight.
    kill_with_a_request_in_flight(emulator, proc, after=3)
    assert not [r for r in emulator.requests() if r["status"] == 429]

    rerun = import_process(emulator, *args, *rerun_args)  # at once
    _, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err
    assert ("resuming" in err) == (not rerun_args)
    statuses = [r["status"] for r in emulator.requests()]
    assert statuses.count(429) == 0, statuses
    numbers = {e["attributes"]["n"] for e in emulator.events()}
    assert numbers == set(range(TOTAL))
