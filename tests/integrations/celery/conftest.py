"""Real Celery workers (solo and prefork) on a real Redis broker, sending to an emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from moetrack.testing import Emulator

ROOT = Path(__file__).resolve().parents[3]
BROKER = os.environ.get("MOETRACK_TEST_REDIS", "redis://127.0.0.1:6379/7")
QUEUE = f"moetrack-tests-{uuid.uuid4().hex[:8]}"
# The test process sends to the queue the worker listens on (read by app.py at import).
os.environ["MOETRACK_TEST_BROKER"] = BROKER
os.environ["MOETRACK_TEST_QUEUE"] = QUEUE


@pytest.fixture(scope="session")
def redis_broker() -> str:
    """The broker URL; fails (does not skip) when Redis is not running."""
    import redis

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.exceptions.RedisError as exc:
        problem = str(exc)
    else:
        return BROKER
    pytest.fail(
        f"the Celery tests need Redis at {BROKER} (broker and result backend), and it is not "
        f"reachable ({problem})\nStart it, e.g. `redis-server --port 6379 --daemonize yes`.",
        pytrace=False,
    )


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    name: str
    log: Path
    emu: Emulator
    env: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        """Warm shutdown (SIGTERM), then SIGKILL to the whole group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        # Prefork children left behind by a killed parent: the group is ours alone.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.process.returncode


def start_worker(pool: str, emu: Emulator, **env: str) -> Worker:
    from tests.integrations.celery.app import app

    name = f"moetrack-{pool}-{uuid.uuid4().hex[:6]}@localhost"
    log = Path(tempfile.mkstemp(prefix=f"moetrack-celery-{pool}-", suffix=".log")[1])
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MOETRACK_APP_ID": emu.app_id,
        "MOETRACK_API_KEY": emu.api_key or "",
        "MOETRACK_ENDPOINT": emu.url,
        **env,
    }
    command = [sys.executable, "-m", "celery", "-A", "tests.integrations.celery.app", "worker"]
    command += ["--pool", pool, "-Q", QUEUE, "-n", name, "--loglevel", "INFO"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if pool == "prefork":
        command += ["--concurrency", "2"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(process, name, log, emu, env)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(f"the {pool} worker exited with {process.returncode}:\n{worker.output()}")
        if app.control.ping(destination=[name], timeout=0.5):
            return worker
        if time.monotonic() > deadline:
            worker.stop()
            pytest.fail(f"the {pool} worker did not answer a ping in 30 s:\n{worker.output()}")


@pytest.fixture(scope="module", params=["solo", "prefork"])
def worker(request: Any, redis_broker: str) -> Iterator[Worker]:
    """A running worker of each pool kind, with its own emulator."""
    with Emulator() as emu:
        w = start_worker(request.param, emu)
        try:
            yield w
        finally:
            code = w.stop()
            text = w.output()
            w.log.unlink(missing_ok=True)
            assert code == 0, text
            assert "Traceback" not in text, text


@pytest.fixture
def emu(worker: Worker) -> Emulator:
    """The worker's emulator, emptied for each test."""
    worker.emu.reset()
    return worker.emu
