"""The ``moetrack`` console command."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import types
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moetrack import cli
from moetrack.testing import DEFAULT_API_KEY, DEFAULT_APP_ID

APP_ID = "CLI_TEST_APP"
API_KEY = "cli-test-key"
START_SECONDS = 30


def command() -> list[str]:
    """The installed console script when there is one, else the module."""
    script = Path(sys.executable).with_name("moetrack")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "moetrack.cli"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sigint_not_ignored() -> Iterator[None]:
    """Children started here get the default SIGINT disposition.

    A shell starts background jobs with SIGINT ignored and children inherit that, so Ctrl-C
    (``send_signal(SIGINT)``) would not reach a devserver started from such a test run.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Devserver:
    """A ``moetrack devserver`` subprocess on a free port."""

    def __init__(self, *args: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        with sigint_not_ignored():
            self.proc = subprocess.Popen(
                [*command(), "devserver", "--port", self.url.rsplit(":", 1)[1], *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                pytest.fail(f"devserver exited with {self.proc.returncode}:\n{out}")
            try:
                if httpx.get(f"{self.url}/_emulator/state", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"devserver did not answer on {self.url} within {START_SECONDS}s")
            time.sleep(0.05)

    def interrupt(self) -> str:
        """Ctrl-C; returns everything it printed."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=15)
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def start_devserver() -> Iterator[Callable[..., Devserver]]:
    started: list[Devserver] = []

    def start(*args: str) -> Devserver:
        server = Devserver(*args)
        started.append(server)
        server.wait_until_up()
        return server

    yield start
    for server in started:
        server.close()


def test_devserver_accepts_elements_and_shows_them(
    start_devserver: Callable[..., Devserver],
) -> None:
    server = start_devserver("--app-id", APP_ID, "--api-key", API_KEY)
    url = server.url
    response = httpx.post(
        f"{url}/v1/transition/{APP_ID}",
        json={
            "type": "transition",
            "elements": [
                {"type": "customer", "customer_id": "cli-user-7", "attributes": {"plan": "pro"}},
                {
                    "type": "event",
                    "customer_id": "cli-user-7",
                    "actions": [{"action": "Ran CLI", "attributes": {"ok": True}}],
                },
            ],
        },
        auth=(APP_ID, API_KEY),
        headers={"MOE-APPKEY": APP_ID},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "success"

    read = httpx.get(f"{url}/_emulator/users/cli-user-7", params={"app_id": APP_ID}, timeout=10)
    assert read.status_code == 200
    user = read.json()
    assert user["attributes"] == {"plan": "pro"}
    assert [e["action"] for e in user["events"]] == ["Ran CLI"]

    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="users"' in page.text

    wrong = httpx.post(
        f"{url}/v1/transition/{APP_ID}",
        json={"type": "transition", "elements": []},
        auth=(APP_ID, "wrong-key"),
        headers={"MOE-APPKEY": APP_ID},
        timeout=10,
    )
    assert wrong.status_code == 401

    # Ctrl-C stops it cleanly. It said where it listens and how to point an app at it, but
    # never echoes a key the user chose.
    out = server.interrupt()
    assert server.proc.returncode == 0, out
    assert f"MOETRACK_ENDPOINT={url}" in out
    assert f"MOETRACK_APP_ID={APP_ID}" in out
    assert API_KEY not in out
    assert "Traceback" not in out


def test_devserver_prints_the_demo_credentials(
    start_devserver: Callable[..., Devserver],
) -> None:
    server = start_devserver()
    response = httpx.post(
        f"{server.url}/v1/transition/{DEFAULT_APP_ID}",
        json={"type": "transition", "elements": [{"type": "customer", "customer_id": "demo-1"}]},
        auth=(DEFAULT_APP_ID, DEFAULT_API_KEY),
        headers={"MOE-APPKEY": DEFAULT_APP_ID},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    state = httpx.get(f"{server.url}/_emulator/state", timeout=10).json()
    assert state["app_id"] == DEFAULT_APP_ID
    assert "demo-1" in state["users"]
    out = server.interrupt()
    assert server.proc.returncode == 0, out
    assert f"{server.url}/" in out
    assert f"MOETRACK_APP_ID={DEFAULT_APP_ID}" in out
    # The public demo key is printed, ready to paste, and said to be a local throwaway.
    assert f"MOETRACK_API_KEY={DEFAULT_API_KEY}" in out
    assert f"MOETRACK_ENDPOINT={server.url} " in out
    assert "throwaway" in out


def test_help_lists_the_subcommands() -> None:
    result = subprocess.run(
        [*command(), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "devserver" in result.stdout
    assert "demo" in result.stdout

    result = subprocess.run(
        [*command(), "devserver", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for option in ("--host", "--port", "--app-id", "--api-key"):
        assert option in result.stdout


def test_the_module_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "moetrack.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "devserver" in result.stdout


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "devserver" in capsys.readouterr().out


def test_importing_the_cli_starts_nothing() -> None:
    code = (
        "import sys, threading\n"
        "import moetrack.cli\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert 'moetrack.testing._emulator' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_a_busy_port_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert cli.main(["devserver", "--port", str(port)]) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_demo_without_the_demo_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "moetrack.cli.demo", None)
    assert cli.main(["demo"]) == 2
    assert "demo" in capsys.readouterr().err


def test_demo_runs_the_demo_module(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Namespace] = []

    def fake_main(args: Namespace) -> int:
        seen.append(args)
        return 0

    def fake_register(subparsers: Any) -> None:
        subparsers.add_parser("demo").set_defaults(handler=fake_main)

    fake = types.ModuleType("moetrack.cli.demo")
    fake.register = fake_register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "moetrack.cli.demo", fake)
    assert cli.main(["demo"]) == 0
    assert len(seen) == 1
    assert seen[0].command == "demo"


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    import moetrack

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"moetrack {moetrack.__version__}"


def test_build_parser_returns_every_command() -> None:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert set(commands.choices) == {  # type: ignore[arg-type]
        "devserver",
        "demo",
        "import",
        "relay",
        "backlog",
        "doctor",
    }
