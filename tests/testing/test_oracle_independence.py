"""The emulator is the oracle of most tests, so it must share no code with the client it
judges: a rule copied from the client (or imported from it) cannot catch that rule being
wrong. Its modules import nothing from ``moetrack`` outside ``moetrack.testing``, and they run
in a process where the client cannot be imported at all.

``capture()`` (``moetrack/testing/_capture.py``) is the exception by design: it wraps the
client itself, to record what the client would send, and judges nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import moetrack.testing

TESTING_DIR = Path(moetrack.testing.__file__).parent
#: Modules of moetrack.testing that are allowed to use the client: capture() and the package
#: ``__init__`` that re-exports it.
CLIENT_WRAPPERS = {"_capture.py", "__init__.py"}
ORACLE_MODULES = sorted(p.name for p in TESTING_DIR.glob("*.py") if p.name not in CLIENT_WRAPPERS)


def imported_names(source: str) -> list[tuple[int, str]]:
    """Every module an import statement names, relative ones with their leading dots."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.module is None:  # "from . import x": each name is a module of the package
                found += [(node.lineno, base + alias.name) for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def reaches_outside_testing(name: str) -> bool:
    if name.startswith(".."):  # the parent package: moetrack itself
        return True
    if name.startswith("."):
        return False
    return (name == "moetrack" or name.startswith("moetrack.")) and not (
        name == "moetrack.testing" or name.startswith("moetrack.testing.")
    )


def test_the_oracle_modules_are_the_ones_expected() -> None:
    # A new module joins the check by default; this pins the list so a rename is noticed.
    assert {"_checks.py", "_emulator.py", "_server.py", "_state.py", "_views.py"} <= set(
        ORACLE_MODULES
    )


@pytest.mark.parametrize("module", ORACLE_MODULES)
def test_oracle_module_imports_nothing_from_the_client(module: str) -> None:
    source = (TESTING_DIR / module).read_text(encoding="utf-8")
    found = imported_names(source)
    outside = [(line, name) for line, name in found if reaches_outside_testing(name)]
    assert outside == [], f"{module} imports from the client: {outside}"


def test_the_import_check_sees_what_it_must() -> None:
    source = textwrap.dedent(
        """
        import moetrack._wire.spec
        from moetrack._wire import validate as _validate
        from .. import _spec
        from .._validate import is_iso8601
        from . import _checks
        from ._server import Reply
        import moetrack.testing._checks
        if True:
            from moetrack._wire.records import prepare
        """
    )
    outside = [name for _, name in imported_names(source) if reaches_outside_testing(name)]
    assert outside == [
        "moetrack._wire.spec",
        "moetrack._wire",
        ".._spec",
        ".._validate",
        "moetrack._wire.records",
    ]


STANDALONE = r"""
import importlib
import importlib.abc
import json
import sys
import types
import urllib.request

class NoClient(importlib.abc.MetaPathFinder):
    # Any import of moetrack fails, as if the client were not installed.
    def find_spec(self, name, path=None, target=None):
        if name == "moetrack" or name.startswith("moetrack."):
            raise ModuleNotFoundError(f"no client here: {name}", name=name)
        return None

sys.meta_path.insert(0, NoClient())
package = types.ModuleType("oracle")
package.__path__ = [sys.argv[1]]
sys.modules["oracle"] = package
emulator_module = importlib.import_module("oracle._emulator")
for name in ("oracle._checks", "oracle._state", "oracle._server", "oracle._views"):
    importlib.import_module(name)

def post(emu, path, body):
    request = urllib.request.Request(
        emu.url + path,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic REVNT19BUFBfSUQ6ZGVtby1hcGkta2V5",  # DEMO_APP_ID:demo-api-key
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)

with emulator_module.Emulator(users_per_minute=5) as emu:
    body = {
        "type": "transition",
        "elements": [
            {"type": "customer", "customer_id": "user-1", "attributes": {"plan": "pro"}},
            {"type": "customer", "customer_id": "guest", "attributes": {}},
            {"type": "event", "customer_id": "user-1",
             "actions": [{"action": "Purchase", "current_time": "2020-05-31T16:33:35Z",
                          "user_timezone_offset": 19800},
                         {"action": "Late", "current_time": "2020-02-30"}]},
        ],
    }
    assert post(emu, "/v1/transition/DEMO_APP_ID", body) == (200, {"status": "success"})
    assert emu.users() == {"user-1": {"plan": "pro"}}, emu.users()
    assert [e["action"] for e in emu.events()] == ["Purchase"]
    assert [(d["reason"], d["field"]) for d in emu.dropped()] == [
        ("invalid_customer_id", "customer_id"),
        ("invalid_time", "actions[1].current_time"),
    ]
    status, answer = post(emu, "/v1/customer/DEMO_APP_ID", {"type": "customer", "customer_id": "1"})
    assert status == 400 and answer["error"]["type"] == "MissingAttributeError", answer
    many = {"type": "transition", "elements": [
        {"type": "customer", "customer_id": f"user-{i}"} for i in range(10, 16)
    ]}
    status, answer = post(emu, "/v1/transition/DEMO_APP_ID", many)
    assert status == 429 and answer["error"]["type"] == "Rate Limit Exceeded", answer

loaded = sorted(name for name in sys.modules if name.split(".")[0] == "moetrack")
assert loaded == [], loaded
print("ok")
"""


def test_the_emulator_serves_in_a_process_where_the_client_cannot_be_imported() -> None:
    # A fresh interpreter (-I: no user site, no PYTHON* variables) loads moetrack/testing's
    # oracle modules as a package of their own, with every import of moetrack refused, and
    # runs the checks, the drops and a rate limit over HTTP.
    result = subprocess.run(
        [sys.executable, "-I", "-c", STANDALONE, str(TESTING_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
