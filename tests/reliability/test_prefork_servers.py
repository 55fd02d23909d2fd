"""Preforking servers: uWSGI (prefork and --lazy-apps) and gunicorn --preload, for real.

uWSGI forks its workers from C, so Python's at-fork hooks never run there: a child used to
inherit a worker whose thread did not exist, and delivered nothing. Every request's event
must arrive while the server runs, exactly once; nothing may arrive twice after SIGTERM;
the events the master tracked before forking arrive once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from moetrack.testing import Emulator

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REQUESTS = 100
BOOT_EVENTS = 10  # tests/reliability/prefork_app.py


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(server: str, port: int) -> list[str]:
    if server.startswith("uwsgi"):
        exe = BIN / "uwsgi"
        if not exe.exists():
            pytest.fail("uwsgi is missing: the dev extra installs the pyuwsgi wheel")
        cmd = [
            str(exe),
            "--master",
            "--processes",
            "2",
            "--http-socket",
            f"127.0.0.1:{port}",
            "--module",
            "tests.reliability.prefork_app:application",
            "--die-on-term",
            "--disable-logging",
        ]
        return [*cmd, "--lazy-apps"] if server == "uwsgi-lazy-apps" else cmd
    exe = BIN / "gunicorn"
    if not exe.exists():
        pytest.fail("gunicorn is missing: the dev extra installs it")
    return [
        str(exe),
        "--preload",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "tests.reliability.prefork_app:app",
    ]


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        body: bytes = response.read()
        return body


@pytest.mark.slow
@pytest.mark.parametrize("server", ["uwsgi-prefork", "uwsgi-lazy-apps", "gunicorn-preload"])
def test_every_request_event_arrives_while_running_once_and_never_again_after_sigterm(
    emulator: Emulator, server: str, tmp_path: Path
) -> None:
    port = _free_port()
    env = dict(
        os.environ,
        MOETRACK_ENDPOINT=emulator.url,
        MOETRACK_APP_ID=emulator.app_id,
        MOETRACK_API_KEY=str(emulator.api_key),
        PYTHONPATH=str(ROOT),
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            _command(server, port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{server} exited early:\n{log.read_text()}")
            try:
                _get(port, "/")
            except OSError:
                return False
            return True

        assert emulator.wait_for(up, timeout=60), f"{server} did not come up:\n{log.read_text()}"
        for rid in range(REQUESTS):
            _get(port, f"/?rid={rid}")

        def requests_seen() -> Counter[int]:
            return Counter(
                e["attributes"]["rid"] for e in emulator.events() if e["action"] == "Request"
            )

        # While the server runs: every request's event arrives (the flush interval is 0.2 s).
        assert emulator.wait_for(lambda: len(requests_seen()) == REQUESTS, timeout=60), (
            f"{len(requests_seen())} of {REQUESTS} request events arrived while {server} ran"
        )
        before_stop = len(emulator.requests())
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    seen = requests_seen()
    assert sorted(seen) == list(range(REQUESTS))
    assert max(seen.values()) == 1, "a request's event arrived twice"
    boot = Counter(
        (e["attributes"]["pid"], e["attributes"]["n"])
        for e in emulator.events()
        if e["action"] == "Boot"
    )
    assert boot, "the events tracked at import never arrived"
    assert max(boot.values()) == 1, "an event tracked before the fork arrived twice"
    loaded_in = {pid for pid, _ in boot}
    # Loaded once in the master (prefork, --preload), or once in each worker (--lazy-apps).
    assert len(boot) == BOOT_EVENTS * len(loaded_in)
    if server != "uwsgi-lazy-apps":
        assert len(loaded_in) == 1
    assert len(emulator.requests()) >= before_stop
