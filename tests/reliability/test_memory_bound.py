"""The byte bound on what waits in memory (``max_queue_bytes``), measured in a real process.

540 MB of distinct 90 KB records offered to a server that hangs: the record bound alone
(100,000) let them all in, and the process grew by about 900 MB. With the byte bound
(64 MiB by default) the process grows by less than 250 MB, the caller never blocks, and
every record that did not fit is counted as ``queue_full``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from moetrack.testing import Emulator

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import moetrack

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    endpoint, app_id, api_key = sys.argv[1:4]
    client = moetrack.Client(app_id, api_key, endpoint=endpoint, flush_interval=0.05,
                             timeout=120.0, shutdown_timeout=0.5)
    client.track("Warm", customer_id="u-warm", blob="x" * 90_000)
    client.flush(timeout=0.5)      # the server hangs: this returns False, a request in flight
    before = rss()
    n = 6_000
    for i in range(n):
        blob = os.urandom(45_000).hex()          # a distinct 90 KB string each time
        client.track("Big", customer_id=f"u-{i % 50}", blob=blob)
        del blob
    after = rss()
    stats = client.stats()
    print(json.dumps({"growth": after - before, "dropped": dict(stats.dropped),
                      "queued": stats.queued, "pending": stats.pending, "sent": stats.sent,
                      "failed": stats.failed, "n": n + 1}))
    sys.stdout.flush()
    os._exit(0)
    """
)


@pytest.mark.slow
def test_540_mb_offered_to_a_hanging_server_grows_the_process_by_less_than_250_mb(
    emulator: Emulator,
) -> None:
    emulator.pause()
    try:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, emulator.url, emulator.app_id, str(emulator.api_key)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
    finally:
        emulator.resume()
    result = json.loads(out.strip().splitlines()[-1])
    print("memory bound:", result)
    assert result["growth"] < 250 * 1024 * 1024, result
    dropped = result["dropped"].get("queue_full", 0)
    assert dropped > 0, result
    # Every record is accounted for: waiting, or dropped as queue_full (nothing sent yet).
    assert result["queued"] == result["n"]
    assert result["pending"] + dropped + result["sent"] + result["failed"] == result["n"]
