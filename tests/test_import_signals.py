"""``moetrack import`` stopped by SIGTERM mid-run, then run again: a real process, the real
emulator holding the answer to the request in flight.

One SIGTERM (or Ctrl-C: see ``test_import_terminal.py``) lets the request in flight finish,
saves its acknowledgement and stops: the rerun sends nothing twice. A second one stops at
once: the rerun sends again at most the batch that was in flight.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from moetrack.testing import Emulator

TOTAL = 1_000
#: Paced so the import takes several windows: 100 events now, 100 more each second.
PACE = ("--events-per-minute", "100", "--rate-limit-window", "1")


def write_history(path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(TOTAL):
            row = {"customer_id": f"cust-{i % 7}", "action": "Purchase", "attributes": {"n": i}}
            f.write(json.dumps(row) + "\n")
    return path


class Import:
    """``moetrack import`` in its own process, off a terminal; stderr read as it comes."""

    def __init__(self, emulator: Emulator, data: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOETRACK_")}
        env["PYTHONUNBUFFERED"] = "1"
        args = [
            sys.executable, "-m", "moetrack", "import", str(data), *PACE,
            "--endpoint", emulator.url,
            "--app-id", emulator.app_id,
            "--api-key", str(emulator.api_key),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stderr, self.err), (self.proc.stdout, []))
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: IO[str] | None, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._changed:
                sink.append(line)
                self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.err)

    def wait_for_stderr(self, text: str, timeout: float = 60.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: text in "".join(self.err), timeout)

    def finish(self, timeout: float = 120.0) -> int:
        status = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def hold_the_next_request(emulator: Emulator, seconds: float) -> dict[str, Any]:
    """Once a request was answered, the server stores the next one and holds its answer for
    ``seconds``: that request is in flight. Returns its log entry."""
    assert emulator.wait_for(lambda: len(emulator.requests()) >= 1, timeout=60), emulator
    emulator.delay(seconds, n=1)
    assert emulator.wait_for(
        lambda: any(r["fault"] == "delay" for r in emulator.requests()), timeout=60
    ), emulator
    return next(r for r in emulator.requests() if r["fault"] == "delay")


def n_numbers(emulator: Emulator) -> list[int]:
    return sorted(e["attributes"]["n"] for e in emulator.events())


def test_sigterm_finishes_the_request_in_flight_and_the_rerun_sends_nothing_twice(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_rate_limits(events_per_minute=100, window=1)
    data = write_history(tmp_path / "history.jsonl")
    run = Import(emulator, data)
    try:
        hold_the_next_request(emulator, 4)
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_for_stderr("stopping after the request in flight"), run.stderr
        status = run.finish()
    finally:
        run.kill()
    assert status == 2, run.stderr
    assert "could not finish: interrupted" in run.stderr
    assert "timed out" not in run.stderr  # the answer came, within the request's timeout
    requests = emulator.requests()
    assert requests[-1]["fault"] == "delay"  # nothing was sent after the request in flight
    assert all(r["status"] == 200 for r in requests)
    before = n_numbers(emulator)
    assert 0 < len(before) < TOTAL
    state = json.loads((tmp_path / "history.jsonl.moetrack-import").read_text())
    assert state["position"][2] == len(before)  # its acknowledgement was saved

    rerun = Import(emulator, data)
    try:
        status = rerun.finish()
    finally:
        rerun.kill()
    assert status == 0, rerun.stderr
    assert f"resuming history.jsonl after line {len(before):,}" in rerun.stderr
    assert collections.Counter(n_numbers(emulator)) == dict.fromkeys(range(TOTAL), 1)


def test_a_second_sigterm_stops_at_once_and_the_rerun_repeats_at_most_the_batch_in_flight(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_rate_limits(events_per_minute=100, window=1)
    data = write_history(tmp_path / "history.jsonl")
    run = Import(emulator, data)
    try:
        # The answer is held far longer than the request's timeout (10 s): an import that
        # waited for it would time out, and say so.
        in_flight = hold_the_next_request(emulator, 60)
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait_for_stderr("stopping after the request in flight"), run.stderr
        run.proc.send_signal(signal.SIGTERM)
        status = run.finish()
    finally:
        run.kill()
    assert status == 2, run.stderr
    assert "could not finish: interrupted" in run.stderr
    assert "timed out" not in run.stderr  # it did not wait for the answer
    assert "stopping now; the next run sends the request in flight" in run.stderr
    emulator.clear_faults()
    before = n_numbers(emulator)
    assert 0 < len(before) < TOTAL

    rerun = Import(emulator, data)
    try:
        status = rerun.finish()
    finally:
        rerun.kill()
    assert status == 0, rerun.stderr
    counts = collections.Counter(n_numbers(emulator))
    assert set(counts) == set(range(TOTAL))  # nothing lost
    twice = sorted(n for n, c in counts.items() if c > 1)
    assert all(c <= 2 for c in counts.values())
    # Sent twice: only the batch whose answer never came (it was stored: the last ones).
    assert len(twice) <= in_flight["events"]
    assert twice == before[len(before) - len(twice) :]


def test_a_second_signal_while_the_first_is_being_reported_still_stops_at_once(
    monkeypatch: Any,
) -> None:
    """The second Ctrl-C can arrive while the first one's handler is still writing its line
    (a Python handler runs between two bytecodes, so it nests inside the first). The second
    must still stop at once: the first has already asked for the stop before it says so."""
    from moetrack._pipeline.source import Stop
    from moetrack.bulk import run as bulk_run

    class Source:
        def __init__(self) -> None:
            self.stop = Stop()

        def interrupt(self) -> None:
            self.stop.request(drain=False)

    said: list[str] = []

    def write_err(text: str) -> None:
        said.append(text)
        if len(said) == 1:  # the second signal, delivered while the first is reported
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(bulk_run, "write_err", write_err)
    source = Source()
    restore = bulk_run._on_signals(source)  # type: ignore[arg-type]
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        restore()
    assert source.stop.requested
    assert source.stop.expired(), said  # the second signal stopped it at once
    assert any("stopping now" in line for line in said), said
