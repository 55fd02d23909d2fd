"""Every example on every documentation page (and in the README) runs, and shows what it prints.

Each page runs in a fresh interpreter against a real ``moetrack devserver`` (see
``run_page.py`` for the rules: which blocks run, how output is compared). A page that fails
names its line and what differed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .._need import need_program
from .run_page import REDIS_MARKER, ROOT

PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_example_on_the_page_runs_and_shows_its_output(page: Path) -> None:
    if REDIS_MARKER in page.read_text(encoding="utf-8"):
        need_program("redis-server")
    done = subprocess.run(
        [sys.executable, "-m", "tests.docs.run_page", str(page)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pages_have_examples() -> None:
    """The collection is not empty: a parser that matched nothing would pass every page."""
    from .run_page import sybil

    counts = {p.name: len(list(sybil().parse(p).examples())) for p in PAGES}
    assert sum(counts.values()) >= 30, counts
    assert counts["getting-started.md"] >= 3, counts
