"""``moetrack import`` on a terminal: the real command under a pseudo-terminal.

The command's stdin, stdout and stderr are the slave side of a pty, which is also its
controlling terminal (so a Ctrl-C typed there is a real SIGINT); the test reads what a user
would see from the master side.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from moetrack.testing import Emulator

#: Makes the pty the controlling terminal of the new session, then runs the command.
LAUNCH = (
    "import fcntl, os, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
)
#: What a terminal shows of control sequences: nothing (colours, cursor moves, modes).
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r")


def visible(text: str) -> str:
    return _CONTROL.sub("", text)


class Terminal:
    """One command running on a fresh pseudo-terminal of ``columns`` x ``rows``."""

    def __init__(self, args: list[str], env: dict[str, str], columns: int = 80) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        env = {**env, "TERM": "xterm", "COLUMNS": str(columns), "LINES": "40"}
        for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self.closed = False

    @property
    def output(self) -> str:
        """Everything the command wrote so far, as written."""
        return self.raw.decode("utf-8", "replace")

    @property
    def screen(self) -> str:
        """What it wrote, control sequences left out."""
        return visible(self.output)

    @property
    def tail(self) -> str:
        """The end of the screen (for a failure's message)."""
        return self.screen[-3000:]

    def _read(self, deadline: float) -> bool:
        """Read what is there (waiting until ``deadline``); False once the command is gone."""
        if self.closed:
            return False
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError as exc:  # EIO: every process holding the slave side has exited
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        return True

    def expect(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match[str]:
        """Read until ``pattern`` appears on the screen (from ``start``); fail at the deadline."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.screen, start)
            if match is not None:
                return match
            if time.monotonic() >= deadline or not self._read(deadline):
                pytest.fail(f"{pattern!r} never appeared; the terminal showed:\n{self.tail}")

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 120.0) -> int:
        """Read to the end; the exit status."""
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            if time.monotonic() >= deadline:
                pytest.fail(f"the command did not end; the terminal showed:\n{self.tail}")
        return self.proc.wait(max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        os.close(self.master)


def write_history(path: Path, n: int, bad_lines: tuple[int, ...] = ()) -> Path:
    """``n`` events as flat track rows; the line numbers in ``bad_lines`` are not JSON."""
    with open(path, "w", encoding="utf-8") as f:
        i = 0
        for line in range(1, n + len(bad_lines) + 1):
            if line in bad_lines:
                f.write("{not json\n")
                continue
            row = {"customer_id": f"cust-{i % 7}", "action": "Purchase", "attributes": {"n": i}}
            f.write(json.dumps(row) + "\n")
            i += 1
    return path


def import_args(emulator: Emulator, *args: str | Path) -> list[str]:
    return [
        "-m", "moetrack", "import", *map(str, args),
        "--endpoint", emulator.url,
        "--app-id", emulator.app_id,
        "--api-key", str(emulator.api_key),
    ]  # fmt: skip


def base_env(pythonpath: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOETRACK_")}
    env["PYTHONUNBUFFERED"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return env


def n_numbers(events: list[dict[str, Any]]) -> list[int]:
    return sorted(e["attributes"]["n"] for e in events)


#: The progress line: rows read (and how far into the input), sent, refused, rate, ETA.
PROGRESS = (
    r"read (?P<read>[\d,]+) \(\d+%\), sent (?P<sent>[\d,]+), refused (?P<refused>\d+), "
    r"[\d,]+/s, ETA \d+:\d\d at the quota"
)
#: The same once something was sent.
SENDING = PROGRESS.replace(r"(?P<sent>[\d,]+)", r"(?P<sent>[1-9][\d,]*)")

#: Paced so the import takes several windows: 100 events now, 100 more per window.
PACE = ("--events-per-minute", "100", "--rate-limit-window", "2")


def start_paused_midway(emulator: Emulator, tmp_path: Path, env: dict[str, str]) -> Terminal:
    """An import of 300 events (and one bad line) whose first request was answered and
    whose next one the server holds: it is mid-run until ``emulator.resume()``."""
    emulator.set_rate_limits(events_per_minute=100, window=2)
    data = write_history(tmp_path / "history.jsonl", 300, bad_lines=(2,))
    term = Terminal(import_args(emulator, data, *PACE, "--progress-interval", "0.2"), env)
    assert emulator.wait_for(lambda: len(emulator.requests()) >= 1, timeout=60), term.screen
    emulator.pause()
    return term


def test_on_a_terminal_a_live_display_while_running_and_a_summary_table_at_the_end(
    tmp_path: Path, emulator: Emulator
) -> None:
    term = start_paused_midway(emulator, tmp_path, base_env())
    try:
        shown = term.expect(SENDING)
        assert shown["refused"] == "1"
        assert term.proc.poll() is None  # mid-run: the server holds a request
        assert "━" in term.screen  # the progress bar
        assert "\x1b[" in term.output  # drawn in place, not printed line after line
        assert "moetrack import: read" not in term.screen  # not the plain lines
        emulator.resume()
        status = term.finish()
    finally:
        emulator.resume()
        term.close()
    assert status == 1, term.screen  # one row refused, the rest sent
    screen = term.screen
    # The display's last state, then the summary table (drawn with box characters).
    assert re.search(r"read 301 \(100%\), sent 300, refused 1", screen), screen
    table = screen[screen.index("kind") :]
    rows = [
        [cell.strip() for cell in line.strip()[1:-1].split("│")]
        for line in table.splitlines()
        if line.strip().startswith("│")
    ]
    assert ["events", "300", "300", "0", ""] in rows, table
    assert ["unknown", "1", "0", "1", "malformed_json 1"] in rows, table
    assert ["total", "301", "300", "1", ""] in rows, table
    assert "┃" in table  # rich's header row
    assert n_numbers(emulator.events()) == list(range(300))


def test_on_a_terminal_without_rich_plain_lines_and_a_plain_table(
    tmp_path: Path, emulator: Emulator
) -> None:
    # "rich is not installed": a package of that name that cannot be imported comes first.
    missing = tmp_path / "no-rich" / "rich"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError(\"No module named 'rich'\")\n")
    term = start_paused_midway(emulator, tmp_path, base_env(missing.parent))
    try:
        first = term.expect("moetrack import: " + SENDING)
        term.expect("moetrack import: " + SENDING, start=first.end())  # again, a line each time
        assert term.proc.poll() is None  # mid-run: the server holds a request
        emulator.resume()
        status = term.finish()
    finally:
        emulator.resume()
        term.close()
    assert status == 1, term.output
    output = term.output
    assert "\x1b" not in output  # no control sequence at all
    lines = [line for line in output.replace("\r\n", "\n").split("\n") if line]
    progress = [line for line in lines if line.startswith("moetrack import: read ")]
    assert all(re.fullmatch("moetrack import: " + PROGRESS, line) for line in progress), progress
    table = lines[lines.index(next(line for line in lines if line.startswith("kind"))) :]
    assert [line.split() for line in table] == [
        ["kind", "read", "sent", "refused", "refused", "by", "reason"],
        ["events", "300", "300", "0"],
        ["unknown", "1", "0", "1", "malformed_json", "1"],
        ["total", "301", "300", "1"],
    ]
    assert n_numbers(emulator.events()) == list(range(300))


def test_ctrl_c_on_the_terminal_finishes_the_request_in_flight_and_the_rerun_continues(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_rate_limits(events_per_minute=100, window=1)
    data = write_history(tmp_path / "history.jsonl", 1_000)
    args = import_args(emulator, data, "--events-per-minute", "100", "--rate-limit-window", "1")
    term = Terminal(args, base_env())
    try:
        assert emulator.wait_for(lambda: len(emulator.requests()) >= 1, timeout=60), term.screen
        # The server stores the next request and holds its answer: it is in flight.
        emulator.delay(4, n=1)
        assert emulator.wait_for(
            lambda: any(r["fault"] == "delay" for r in emulator.requests()), timeout=60
        ), term.screen
        term.type(b"\x03")  # Ctrl-C, as typed: the terminal sends SIGINT
        term.expect("stopping after the request in flight")
        status = term.finish()
    finally:
        term.close()
    assert status == 2, term.screen
    assert "could not finish: interrupted" in term.screen
    assert "run the same command again to continue" in term.screen
    requests = emulator.requests()
    assert requests[-1]["fault"] == "delay"  # nothing was sent after the request in flight
    assert all(r["status"] == 200 for r in requests)
    before = n_numbers(emulator.events())
    assert 0 < len(before) < 1_000

    rerun = Terminal(args, base_env())
    try:
        status = rerun.finish()
    finally:
        rerun.close()
    assert status == 0, rerun.screen
    assert f"resuming history.jsonl after line {len(before):,}" in rerun.screen
    counts = collections.Counter(n_numbers(emulator.events()))
    # The request in flight was answered and saved before the stop: nothing twice.
    assert counts == dict.fromkeys(range(1_000), 1)
