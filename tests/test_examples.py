"""Each app under examples/ starts and sends its events, with the right customer, to an
emulator."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import moetrack
from moetrack.testing import Emulator

from ._need import need_module

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator, with the MOETRACK_* variables the READMEs export pointing at it."""
    with Emulator() as emulator:
        monkeypatch.setenv("MOETRACK_APP_ID", emulator.app_id)
        monkeypatch.setenv("MOETRACK_API_KEY", emulator.api_key or "")
        monkeypatch.setenv("MOETRACK_ENDPOINT", emulator.url)
        yield emulator
        moetrack.shutdown(5)


def load(path: Path, name: str) -> ModuleType:
    """Import an example module from its file, with its folder importable (as when run)."""
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


def actions_of(emu: Emulator) -> list[tuple[str, str]]:
    assert moetrack.flush(10)
    return [(e["customer_id"], e["action"]) for e in emu.events()]


def test_django_example(emu: Emulator, tmp_path: Path) -> None:
    need_module("django")
    site = EXAMPLES / "django_app"
    env = {**os.environ, "EXAMPLE_DJANGO_DB": str(tmp_path / "db.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for command in (["check"], ["migrate", "--verbosity", "0"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            check=False,
            cwd=site,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    script = textwrap.dedent(
        """
        import os, django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")
        django.setup()
        from django.test import Client
        import moetrack
        browser = Client()
        assert browser.get("/").status_code == 200
        assert browser.get("/login/alice/").status_code == 200
        assert browser.get("/buy/").status_code == 200
        assert moetrack.flush(10)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(e["customer_id"], e["action"]) for e in emu.events()] == [
        ("alice", "Signed In"),
        ("alice", "Purchase"),
    ]
    assert emu.user("alice") == {"first_name": "Alice"}


def test_flask_example(emu: Emulator) -> None:
    need_module("flask_login")
    example = load(EXAMPLES / "flask_app" / "app.py", "moetrack_example_flask")
    web = example.app.test_client()
    assert web.get("/").status_code == 200
    assert web.get("/login/alice").get_data(as_text=True) == "signed in as alice\n"
    assert web.get("/buy").status_code == 200
    assert actions_of(emu) == [("alice", "Signed In"), ("alice", "Purchase")]


def test_asgi_example(emu: Emulator) -> None:
    need_module("starlette")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's test client prefers httpx2 to httpx
        from starlette.testclient import TestClient

    example = load(EXAMPLES / "asgi_app" / "app.py", "moetrack_example_asgi")
    with TestClient(example.app) as web:
        assert web.get("/").status_code == 200
        assert web.get("/buy", headers={"X-User": "alice"}).status_code == 200
        assert actions_of(emu) == [("alice", "Purchase")]


def test_celery_example(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sent through an in-memory broker; the message carries the customer to the task."""
    need_module("celery")
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    tasks = load(EXAMPLES / "celery_app" / "tasks.py", "tasks")
    try:
        send = load(EXAMPLES / "celery_app" / "send.py", "moetrack_example_celery_send")
        send.main()
        moetrack.init(flush_interval=0.05)  # what the worker does at start
        with tasks.app.connection_for_read() as connection:
            queue = connection.SimpleQueue("celery")
            messages: list[Any] = [queue.get(timeout=2) for _ in range(3)]
            queue.close()
        for message in messages:
            message.ack()
            # Run each task as a worker would, outside any context: only the header names
            # the customer.
            args, kwargs, _ = message.decode()
            tasks.send_receipt.apply(args, kwargs, headers=message.headers)
    finally:
        sys.modules.pop("tasks", None)
    assert sorted(actions_of(emu)) == [
        ("alice", "Receipt Sent"),
        ("bob", "Receipt Sent"),
        ("carol", "Receipt Sent"),
    ]
