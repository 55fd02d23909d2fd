"""The package as users get it: public names, a light import, a wheel that carries integrations."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import moetrack

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_complete() -> None:
    assert moetrack.__all__ == sorted(moetrack.__all__)
    for name in moetrack.__all__:
        getattr(moetrack, name)  # lazily imported names appear on first access
    public = {n for n in vars(moetrack) if not n.startswith("_")}
    assert set(moetrack.__all__) <= public
    for name in moetrack.__all__:
        obj = getattr(moetrack, name)
        if isinstance(obj, type) or callable(obj):
            assert getattr(obj, "__module__", "moetrack") == "moetrack", name


def test_import_is_light() -> None:
    code = (
        "import sys, moetrack\n"
        "heavy = {'httpx', 'django', 'flask', 'celery', 'redis', 'orjson', 'starlette',"
        " 'asyncio', 'wrapt'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_py_typed_ships() -> None:
    assert (ROOT / "moetrack" / "py.typed").is_file()


def test_integrations_import_from_the_source_tree() -> None:
    import moetrack.integrations

    assert str(ROOT / "integrations") in moetrack.integrations.__path__
    names = {p.stem for p in (ROOT / "integrations").glob("*.py")}
    names |= {p.parent.name for p in (ROOT / "integrations").glob("*/__init__.py")}
    assert {"django", "flask", "celery", "asgi"} <= names


def test_a_built_wheel_carries_the_integrations(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("moetrack-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    # Dependencies come from this environment's site-packages; moetrack itself only from the wheel.
    deps = sysconfig.get_paths()["purelib"]
    code = (
        "import moetrack, moetrack.integrations.django as d, moetrack.integrations.flask as f,"
        " moetrack.integrations.celery as c, moetrack.integrations.asgi as a, moetrack.testing;"
        "from moetrack.testing._page import render_page;"
        "assert 'use strict' in render_page() and ':root' in render_page(), 'page data missing';"
        "print(moetrack.__file__); print(d.__file__); print(a.__file__)"
    )
    out = subprocess.run(
        [str(python), "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": deps},
    )
    files = out.stdout.split()
    assert all(str(env_dir) in f for f in files), files
    assert files[1].endswith(os.path.join("moetrack", "integrations", "django", "__init__.py"))
