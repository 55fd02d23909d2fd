"""Helpers of the reliability suite: the accounting invariant (checked at the end and sampled
while faults are active), exactly-once checks against the emulator, waits on conditions,
subprocess runners that time a whole process and always clean up after it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import moetrack
from moetrack.testing import Emulator

REPO = Path(__file__).resolve().parents[2]


def accounted(stats: moetrack.Stats) -> bool:
    return stats.queued == stats.sent + sum(stats.dropped.values()) + stats.failed + stats.pending


def stored(emulator: Emulator) -> int:
    """How many distinct events the server stored (a duplicate counts once)."""
    return len({json.dumps(e, sort_keys=True, default=str) for e in emulator.events()})


def assert_accounted(client: moetrack.Client, emulator: Emulator | None = None) -> moetrack.Stats:
    """The client's own sum holds, and (with ``emulator``) what it counts as sent is what
    the server stored: a check that shares no counter with the client's arithmetic."""
    stats = client.stats()
    assert accounted(stats), stats
    if emulator is not None:
        assert stats.sent == stored(emulator), (stats, stored(emulator))
    return stats


class Sampler:
    """Reads ``client.stats()`` every few milliseconds on its own thread while a fault is
    active, and keeps every snapshot that breaks the accounting invariant or, with
    ``emulator``, counts as sent more than the server has stored so far (the client counts a
    batch as sent only after the server answered it, so the server is never behind)."""

    def __init__(
        self, client: moetrack.Client, emulator: Emulator | None = None, interval: float = 0.002
    ) -> None:
        self.client = client
        self.emulator = emulator
        self.interval = interval
        self.samples = 0
        self.violations: list[moetrack.Stats] = []
        self.max_pending = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            stats = self.client.stats()
            self.samples += 1
            self.max_pending = max(self.max_pending, stats.pending)
            if not accounted(stats):
                self.violations.append(stats)
            elif self.emulator is not None and stats.sent > len(self.emulator.events()):
                self.violations.append(stats)
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # At least MIN_SAMPLES, however busy the machine (a fast block would end with few).
        wait_until(lambda: self.samples >= self.MIN_SAMPLES, timeout=30)
        self._stop.set()
        self._thread.join(30)

    MIN_SAMPLES = 10

    def check(self, min_samples: int = MIN_SAMPLES) -> None:
        assert self.violations == [], self.violations[:3]
        assert self.samples >= min_samples, f"only {self.samples} samples were taken"


def track_numbered(
    client: moetrack.Client,
    n: int,
    customers: Sequence[str],
    action: str = "Numbered",
    **attrs: Any,
) -> dict[str, list[int]]:
    """Track ``n`` events round-robin over ``customers`` with ``seq`` numbers; returns what
    each customer should receive, in order."""
    expected: dict[str, list[int]] = {c: [] for c in customers}
    for seq in range(n):
        customer = customers[seq % len(customers)]
        client.track(action, customer_id=customer, seq=seq, **attrs)
        expected[customer].append(seq)
    return expected


def received(emulator: Emulator, customer_id: str, key: str = "seq") -> list[Any]:
    return [e["attributes"][key] for e in emulator.events(customer_id=customer_id)]


def assert_exactly_once_in_order(emulator: Emulator, expected: dict[str, list[int]]) -> None:
    for customer, seqs in expected.items():
        got = received(emulator, customer)
        if got != seqs:
            counts = Counter(got)
            missing = sorted(set(seqs) - set(got))
            twice = sorted(s for s, c in counts.items() if c > 1)
            pytest.fail(
                f"{customer}: {len(got)} received for {len(seqs)} tracked; "
                f"missing {missing[:10]}, duplicated {twice[:10]}"
            )
    assert emulator.dropped() == []


def free_port() -> int:
    """A loopback port nothing listens on (bound and released; SO_REUSEADDR on the emulator
    lets it be taken again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Wait until ``predicate()`` holds (``timeout`` is a deadline for failure, not a timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# -- subprocesses -----------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOETRACK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    def last_json(self) -> dict[str, Any]:
        """The last stdout line that is a JSON object (what the script reported)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]
        raise AssertionError(f"no JSON line in stdout:\n{self.stdout}\n{self.stderr}")


class Processes:
    """Starts subprocesses in their own process group and kills what is left at teardown."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[str]] = []

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        kwargs.setdefault("env", child_env())
        kwargs.setdefault("cwd", str(REPO))
        proc = subprocess.Popen(
            args,
            stdout=kwargs.pop("stdout", subprocess.PIPE),
            stderr=kwargs.pop("stderr", subprocess.PIPE),
            text=True,
            start_new_session=True,
            **kwargs,
        )
        self._started.append(proc)
        return proc

    def run_script(self, code: str, *, timeout: float = 60.0, **kwargs: Any) -> Finished:
        """Run ``code`` with this Python and time the whole process."""
        start = time.monotonic()
        proc = self.popen([sys.executable, "-c", textwrap.dedent(code)], **kwargs)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            stdout, stderr = proc.communicate()
            pytest.fail(f"the script did not end in {timeout}s:\n{stdout}\n{stderr}")
        return Finished(proc.returncode, stdout, stderr, time.monotonic() - start)

    @staticmethod
    def kill(proc: subprocess.Popen[str], grace: float = 5.0) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def cleanup(self) -> None:
        for proc in self._started:
            self.kill(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()


#: Imported first by the scripts run in subprocesses: reports the client's stats as the very
#: last thing the process does (atexit runs handlers last-registered first, so registering
#: before moetrack is imported puts this after moetrack's own exit hook), and the time the
#: exit hook took.
SCRIPT_PRELUDE = """
import atexit, json, logging, sys, time

_exit = {}

def _report():
    client = _exit.get("client")
    stats = client.stats() if client is not None else None
    print(json.dumps({
        "hook_seconds": time.monotonic() - _exit.get("start", time.monotonic()),
        "extra": _exit.get("extra"),
        "stats": None if stats is None else {
            "queued": stats.queued, "sent": stats.sent, "dropped": dict(stats.dropped),
            "failed": stats.failed, "pending": stats.pending, "requests": stats.requests,
            "retried": stats.retried,
        },
    }), flush=True)

atexit.register(_report)
import moetrack
atexit.register(lambda: _exit.setdefault("start", time.monotonic()))
logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                    format="%(levelname)s %(name)s %(message)s")
"""
