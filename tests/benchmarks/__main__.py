"""``python -m tests.benchmarks [--quick] [--rounds N]`` from the repository root.

Creates (or reuses) ``tests/benchmarks/.venv`` with moetrack installed editable from the
repository root and the peers and matplotlib pinned in ``requirements.txt``, then runs the
whole comparison inside it. The interpreter it is started with becomes the venv's Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def in_venv(module: str, argv: list[str], reinstall: bool = False) -> None:
    """Make sure the venv is current and run ``python -m module *argv`` inside it: from
    outside, this replaces the process; inside, it returns (in the repository root)."""
    ensure_venv(reinstall)
    os.chdir(ROOT)
    if not _inside():
        argv = [a for a in argv if a != "--reinstall"]
        os.execv(str(PYTHON), [str(PYTHON), "-m", module, *argv])


def save(doc: dict[str, Any], out: Path, md: Path | None, render: Callable[[Any], str]) -> None:
    """Write a benchmark's results JSON, and its table beside it (or at ``md``), and print
    the table."""
    md = md or out.with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    text = render(doc)
    md.write_text(text)
    print()
    print(text)
    print(f"wrote {out} and {md}")


def output_options(parser: argparse.ArgumentParser, default_json: Path) -> None:
    """The options every benchmark with a results JSON takes."""
    parser.add_argument("--json", default=str(default_json), help="results JSON")
    parser.add_argument("--md", default=None, help="results table (default: --json as .md)")
    parser.add_argument("--reinstall", action="store_true", help="reinstall the benchmark venv")
    parser.add_argument(
        "--from-json", metavar="PATH", help="measure nothing: rewrite the table from a saved JSON"
    )


def settings_and_errors(settings: list[str], errors: list[str]) -> list[str]:
    """The end of a results table (after a blank line): how each variant was set up, and
    what failed."""
    lines = ["## Settings", "", *settings]
    if errors:
        lines += ["", "## Errors", "", *(f"- {e}" for e in errors)]
    return lines


def main() -> int:
    argv = sys.argv[1:]
    force = "--reinstall" in argv
    argv = [a for a in argv if a != "--reinstall"]
    in_venv("tests.benchmarks", argv, force)
    from .runner import command_line
    from .runner import main as run

    return run(argv, command_line(argv))


if __name__ == "__main__":
    sys.exit(main())
