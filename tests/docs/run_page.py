"""Run every example of one documentation page, the way a reader would, in this process.

``python -m tests.docs.run_page docs/getting-started.md`` starts ``moetrack devserver`` on a
free port and exports ``MOETRACK_ENDPOINT``, ``MOETRACK_APP_ID`` and ``MOETRACK_API_KEY`` for
it (what the page tells the reader to do), works in a fresh temporary directory, and then
evaluates the page's examples in order with Sybil, sharing one namespace:

- ```` ```python ```` blocks are run; a block written as a ``>>>`` session is a doctest, so
  the output it shows is compared with what the code prints or returns (``...`` matches
  anything, as in doctest's ELLIPSIS);
- ```` ```console ```` blocks are shell sessions: each ``$ command`` line (continued by a
  trailing backslash) runs in bash, and its output (stdout then stderr) must match the lines
  under it, where a line ``...`` or ``…`` stands for any number of lines and ``...`` inside
  a line for any text;
- other blocks (``bash``, ``ini``, ``text``, ``mermaid``…) are shown, not run: commands that
  install or serve until Ctrl-C, configuration files, output;
- ``<!-- skip: next -->`` skips the next example (each use says why).

A page holding ``<!-- docs-test: redis -->`` also gets a real ``redis-server`` on a free port,
exported as ``MOETRACK_BACKLOG`` and ``REDIS_URL``. A process a page starts in the background
with its pid in ``NAME.pid`` is stopped (SIGTERM) when the page ends. The exit status is 0
when every example passed; otherwise the first failure is printed with its line number. Each
page runs in its own interpreter (see ``test_examples.py``), so what one page configures
(Django, logging, the default client) never leaks into another page or into the rest of the
suite.
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parents[2]
REDIS_MARKER = "<!-- docs-test: redis -->"
COMMAND_TIMEOUT = 120.0


# -- console blocks ------------------------------------------------------------------------


def _sessions(text: str) -> Iterator[tuple[str, list[str]]]:
    """``(command, expected output lines)`` for each ``$ command`` of a console block."""
    command: list[str] | None = None
    expected: list[str] = []
    continued = False
    for line in text.splitlines():
        if continued and command is not None:
            command.append(line)
            continued = line.endswith("\\")
            continue
        if line.startswith("$ "):
            if command is not None:
                yield "\n".join(command), expected
            command, expected = [line[2:]], []
            continued = line.endswith("\\")
        elif command is not None:
            expected.append(line)
    if command is not None:
        yield "\n".join(command), expected


def _line_pattern(line: str) -> str:
    return ".*".join(re.escape(part) for part in re.split(r"\.\.\.|…", line.rstrip()))


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` fits ``expected``, where a lone ``...``/``…`` line is any lines."""
    parts = []
    for line in expected:
        if line.strip() in {"...", "…"}:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(_line_pattern(line) + r"[ \t]*\n")
    pattern = "".join(parts)
    text = "".join(line.rstrip() + "\n" for line in actual)
    return re.fullmatch(pattern, text, flags=re.DOTALL) is not None


def evaluate_console(example: Example) -> str | None:
    for command, expected in _sessions(example.parsed):
        done = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        actual = (done.stdout + done.stderr).splitlines()
        while expected and not expected[-1].strip():
            expected.pop()
        if not output_matches(expected, actual):
            return (
                f"$ {command}\nexpected:\n"
                + "\n".join(expected)
                + "\ngot:\n"
                + "\n".join(actual)
                + f"\n(exit status {done.returncode})"
            )
    return None


# -- the services a page runs against ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def devserver() -> Iterator[str]:
    """``moetrack devserver --port 0`` as a reader would run it; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moetrack", "devserver", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # each line as the server prints it, until its URL
            seen.append(line)
            found = re.search(r"emulator on (http://\S+)", line)
            if found:
                break
        else:
            raise RuntimeError("moetrack devserver ended early:\n" + "".join(seen))
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` (append-only, as the runbook asks); yields its URL."""
    program = shutil.which("redis-server")
    if program is None:
        raise RuntimeError("this page needs redis-server (scripts/test installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [
            program,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:  # polled: redis-server gives no other sign that it listens
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def stop_background(work: Path) -> None:
    """End what a page started in the background (``cmd & echo $! > NAME.pid``), if still up."""
    for pidfile in work.glob("*.pid"):
        with suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


# -- one page ------------------------------------------------------------------------------


def sybil() -> Sybil:
    return Sybil(
        parsers=[
            PythonCodeBlockParser(doctest_optionflags=doctest.ELLIPSIS),
            CodeBlockParser(language="console", evaluator=evaluate_console),
            SkipParser(),
        ],
        path=str(ROOT),
    )


def run(page: Path) -> int:
    text = page.read_text(encoding="utf-8")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="moetrack-docs-")))
        url = stack.enter_context(devserver())
        env: dict[str, Any] = {
            "MOETRACK_ENDPOINT": url,
            "MOETRACK_APP_ID": "DEMO_APP_ID",
            "MOETRACK_API_KEY": "demo-api-key",
            "COLUMNS": "100",
        }
        if REDIS_MARKER in text:
            (work / "redis").mkdir()
            url = stack.enter_context(redis_server(work / "redis"))
            env["MOETRACK_BACKLOG"] = env["REDIS_URL"] = url
        stack.callback(stop_background, work)  # before the services it may be using
        os.environ.update(env)
        os.chdir(work)
        document = sybil().parse(page)
        document.namespace["__name__"] = "__main__"
        count = 0
        for example in document.examples():
            try:
                example.evaluate()
            except Exception as exc:  # report it with the page's line, and stop
                print(f"{page}:{example.line}: example failed\n{exc}", file=sys.stderr)
                return 1
            count += 1
        import moetrack

        moetrack.shutdown(5)
        print(f"{page}: {count} examples passed")
        os.chdir(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]).resolve()))
