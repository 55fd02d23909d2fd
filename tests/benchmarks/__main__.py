"""``python -m tests.benchmarks [--quick] [--rounds N]`` from the repository root.

Creates (or reuses) ``tests/benchmarks/.venv`` with moetrack installed editable from the
repository root and the peers and matplotlib pinned in ``requirements.txt``, then runs the
whole comparison inside it. The interpreter it is started with becomes the venv's Python.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = HERE / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".moetrack-bench-installed"


def _wanted() -> str:
    digest = hashlib.sha256()
    for path in (HERE / "requirements.txt", ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _inside() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_venv(force: bool = False) -> None:
    """Create the venv and install what it needs, unless the stamp says it is current."""
    if not PYTHON.exists():
        print(f"creating {VENV.relative_to(ROOT)} with {sys.executable} …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    want = _wanted()
    if not force and STAMP.exists() and STAMP.read_text() == want:
        return
    print("installing moetrack (editable), the peers and matplotlib …", flush=True)
    subprocess.run(
        [
            str(PYTHON),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(HERE / "requirements.txt"),
            "-e",
            str(ROOT),
        ],
        check=True,
    )
    STAMP.write_text(want)


def main() -> int:
    argv = sys.argv[1:]
    force = "--reinstall" in argv
    argv = [a for a in argv if a != "--reinstall"]
    ensure_venv(force)
    os.chdir(ROOT)
    if not _inside():
        os.execv(str(PYTHON), [str(PYTHON), "-m", "tests.benchmarks", *argv])
    from .runner import command_line
    from .runner import main as run

    return run(argv, command_line(argv))


if __name__ == "__main__":
    sys.exit(main())
