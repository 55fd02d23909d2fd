"""The house's shape: the import contracts hold and bite, and big modules are single concerns.

The contracts live in pyproject.toml (``[tool.importlinter]``); CI also runs ``lint-imports``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._need import need_program

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "moetrack"

#: Modules allowed past ~400 lines, each because it is one concern (its first docstring says
#: which). A module that grows past the bound joins this list on purpose, or is split.
SINGLE_CONCERN = {
    "moetrack/_client.py": "the Client object",
    "moetrack/_pipeline/sender.py": "the send stage: pack, pace, send, retry, settle",
    "moetrack/_wire/validate.py": "the Data API's field rules",
    "moetrack/decorators.py": "@track_event",
    "moetrack/redis/limiter.py": "the shared limiter: its script and its client",
    "moetrack/redis/source.py": "a relay's source: leased partitions and their fenced settling",
    "moetrack/testing/_checks.py": "the emulator's checks, quoted from the API document",
    "moetrack/testing/_emulator.py": "the Emulator object",
}
BOUND = 420


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    beside = Path(sys.executable).with_name("lint-imports")  # the one this Python installed
    program = need_program(str(beside) if beside.exists() else "lint-imports")
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [program, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_parent,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_the_contracts(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "moetrack", ignore=shutil.ignore_patterns("__pycache__"))
    encode = tmp_path / "moetrack" / "_wire" / "encode.py"
    encode.write_text(encode.read_text() + "\nfrom .._pipeline import queue as _upward\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "moetrack._wire is not allowed to import moetrack._pipeline" in result.stdout


def test_a_module_past_the_bound_is_a_named_single_concern() -> None:
    big = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > BOUND:
            big[path.relative_to(ROOT).as_posix()] = lines
    unnamed = {name: n for name, n in big.items() if name not in SINGLE_CONCERN}
    assert unnamed == {}, f"split these, or name their one concern in SINGLE_CONCERN: {unnamed}"
    stale = [name for name in SINGLE_CONCERN if not (ROOT / name).exists()]
    assert stale == [], f"SINGLE_CONCERN names modules that are gone: {stale}"
