"""Importing moetrack imports no framework; each integration imports only its own (and what
that framework imports: kombu, for one, imports part of Django when it is installed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import {module}
print(",".join(m for m in ("django", "flask", "celery", "starlette") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("module", "own", "others"),
    [
        ("moetrack", None, {"django", "flask", "celery", "starlette"}),
        ("moetrack.integrations.asgi", None, {"django", "flask", "celery", "starlette"}),
        ("moetrack.integrations.aws_lambda", None, {"django", "flask", "celery", "starlette"}),
        ("moetrack.integrations.flask", "flask", {"django", "celery", "starlette"}),
        ("moetrack.integrations.celery", "celery", {"flask", "starlette"}),
        ("moetrack.integrations.django", "django", {"flask", "celery", "starlette"}),
    ],
)
def test_imports(module: str, own: str | None, others: set[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = set(filter(None, done.stdout.strip().split(",")))
    assert own is None or own in loaded
    assert not loaded & others
