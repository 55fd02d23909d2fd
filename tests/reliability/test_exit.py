"""Every way a process ends flushes what it queued within the shutdown timeout; with a server
that hangs, it still ends in time and says how many records were lost. Each case runs in its
own Python process, timed from the outside and from inside the exit hook."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from moetrack.testing import Emulator

from .conftest import SCRIPT_PRELUDE, Finished, Processes, child_env, received

EVENTS = 2_000

#: Tracks EVENTS events that are still queued (flush_interval=30) when the process ends the
#: way MODE says.
EXITING = """
import os, signal
mode = os.environ["MODE"]
_exit["client"] = client = moetrack.init(
    os.environ["APP_ID"], os.environ["API_KEY"], endpoint=os.environ["ENDPOINT"],
    flush_interval=30, shutdown_timeout=float(os.environ["SHUTDOWN_TIMEOUT"]),
    timeout=60,  # a hung request would hold the exit for a minute without the bound
)
if mode == "sigterm":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
with moetrack.context(customer_id="exit-user"):
    for n in range(int(os.environ["EVENTS"])):
        moetrack.track("Exit", n=n)
assert client.stats().pending > 0, "nothing left for the exit hook to do"
if mode == "sys.exit(3)":
    sys.exit(3)
if mode == "unhandled exception":
    raise RuntimeError("the application crashed")
if mode == "sigterm":
    print("ready", flush=True)
    while True:
        signal.pause()  # until SIGTERM
"""

EXPECTED_CODE = {"normal exit": 0, "sys.exit(3)": 3, "unhandled exception": 1, "sigterm": 0}


def run_exiting(
    processes: Processes, emulator: Emulator, mode: str, shutdown_timeout: float
) -> Finished:
    """Run EXITING; for "sigterm", the time is measured from the signal to the end."""
    env = child_env(
        MODE=mode,
        APP_ID=emulator.app_id,
        API_KEY=emulator.api_key or "",
        ENDPOINT=emulator.url,
        SHUTDOWN_TIMEOUT=str(shutdown_timeout),
        EVENTS=str(EVENTS),
    )
    if mode != "sigterm":
        return processes.run_script(SCRIPT_PRELUDE + EXITING, env=env, timeout=30)
    proc = processes.popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT_PRELUDE + EXITING)], env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not end after SIGTERM")
    return Finished(proc.returncode, stdout, stderr, time.monotonic() - start)


def mode_id(mode: str) -> str:
    return mode.replace(" ", "-").replace(".", "-").replace("(", "-").rstrip(")")


@pytest.mark.parametrize("mode", list(EXPECTED_CODE), ids=mode_id)
def test_every_exit_path_flushes_everything_once_within_the_shutdown_timeout(
    mode: str, emulator: Emulator, processes: Processes
) -> None:
    # A deadline for failure, not a timing: everything is delivered well before it, however
    # busy the machine; a hook that ran into it would say what it could not deliver.
    shutdown_timeout = 30.0
    done = run_exiting(processes, emulator, mode, shutdown_timeout)
    assert done.returncode == EXPECTED_CODE[mode], done.stderr
    if mode == "unhandled exception":
        assert "RuntimeError: the application crashed" in done.stderr
    result: dict[str, Any] = done.last_json()
    assert result["hook_seconds"] < shutdown_timeout
    stats = result["stats"]
    assert (stats["queued"], stats["sent"], stats["failed"], stats["pending"]) == (
        EVENTS,
        EVENTS,
        0,
        0,
    )
    assert stats["dropped"] == {}
    # Received by the time the process is gone: exactly once, in order.
    assert received(emulator, "exit-user", key="n") == list(range(EVENTS))
    assert "not delivered" not in done.stderr


@pytest.mark.parametrize("mode", ["normal exit", "sigterm"], ids=mode_id)
def test_with_a_hung_server_the_process_still_ends_in_time_and_says_what_was_lost(
    mode: str, emulator: Emulator, processes: Processes
) -> None:
    shutdown_timeout = 1.5
    emulator.pause()
    done = run_exiting(processes, emulator, mode, shutdown_timeout)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = done.last_json()
    # The exit hook kept to the shutdown timeout. The bound is the promise itself: at least the
    # timeout (the hook tried until then; a lower bound, which load cannot break), and far less
    # than the 60 s a hung request would hold it without the bound (generous: a loaded machine
    # only adds to it) ...
    assert shutdown_timeout - 0.1 <= result["hook_seconds"] <= shutdown_timeout + 10
    if mode == "sigterm":  # from the signal to the end of the process
        assert done.elapsed <= shutdown_timeout + 15
    stats = result["stats"]
    assert (stats["queued"], stats["sent"]) == (EVENTS, 0)
    assert stats["failed"] + stats["pending"] == EVENTS
    # ... and the log said how many records were lost, in one record.
    lost = [int(n) for n in re.findall(r"(\d+) records not delivered", done.stderr)]
    assert lost == [EVENTS], done.stderr
