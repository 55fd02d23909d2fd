"""A real redis-server per test, on a free port in a temporary directory, so tests can kill it.

The machine's shared Redis on 6379 is never touched here. Under CI a missing redis-server
fails the run (see ``tests/_need.py`` for the rule); locally it skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process: ``start()``, ``kill()`` (SIGKILL), ``restart()``."""

    def __init__(self, directory: Path, *, port: int | None = None, args: tuple[str, ...] = ()):
        self.dir = directory
        self.port = port or free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--logfile",
                str(self.dir / "redis.log"),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()}")
            if self.ping():
                return self
            time.sleep(0.02)  # polling the new server's port until it answers
        raise RuntimeError("redis-server did not answer within 20 s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()


def _need_redis_server() -> None:
    if os.path.exists(REDIS_SERVER):
        return
    reason = "redis-server is not installed (scripts/test installs it)"
    if os.environ.get("CI") or os.environ.get("MOETRACK_TESTS_STRICT"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers: ``redis_factory(args=("--appendonly", "yes"))``."""
    _need_redis_server()
    servers: list[RedisServer] = []

    def make(*, args: tuple[str, ...] = ()) -> RedisServer:
        d = tmp_path / f"redis{len(servers)}"
        d.mkdir()
        server = RedisServer(d, args=args).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """One plain redis-server (nothing kept on disk)."""
    return redis_factory()
