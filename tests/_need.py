"""What a test needs from outside the project: a module, a program, a service, a platform.

Locally, a test whose need is missing skips, with the reason and how to get it
(``scripts/test`` installs everything the suite uses). Under CI (``CI`` set, as CI services
do) or with ``MOETRACK_TESTS_STRICT=1``, it fails instead: a run that skipped what it was
meant to check has not passed. Each helper works inside a test or fixture, and at module
level (a package's ``__init__.py`` guards all of its tests).
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
from types import ModuleType
from typing import NoReturn

import pytest

__all__ = ["missing", "need", "need_module", "need_program", "need_service", "strict"]

HINT = "scripts/test installs what the tests need"


def strict() -> bool:
    """True under CI, or when ``MOETRACK_TESTS_STRICT`` asks for it: missing needs fail."""
    for name in ("CI", "MOETRACK_TESTS_STRICT"):
        if os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no"}:
            return True
    return False


def missing(reason: str) -> NoReturn:
    """Skip (locally) or fail (under CI) for a missing need."""
    if strict():
        pytest.fail(f"{reason}; under CI a missing need fails the run ({HINT})", pytrace=False)
    pytest.skip(f"{reason} ({HINT})", allow_module_level=True)


def need(condition: object, reason: str) -> None:
    """Go on only when ``condition`` holds; ``reason`` says what is missing otherwise."""
    if not condition:
        missing(reason)


def need_module(name: str) -> ModuleType:
    """Import and return ``name``, the way ``pytest.importorskip`` does, but strict under CI."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"needs the Python module {name!r}: {exc}")


def need_program(program: str) -> str:
    """The path of an executable (a path, or a name looked up on PATH)."""
    if os.sep in program:
        if os.path.isfile(program) and os.access(program, os.X_OK):
            return program
    else:
        found = shutil.which(program)
        if found is not None:
            return found
    missing(f"needs the program {program}")


def need_service(host: str, port: int, what: str, timeout: float = 2.0) -> None:
    """A TCP service that accepts connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        missing(f"needs {what} at {host}:{port}, which does not answer ({exc})")
