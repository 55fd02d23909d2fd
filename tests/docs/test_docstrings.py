"""Every public name has a docstring: the API reference is generated from them.

Public means: what ``__all__`` exports from ``moetrack``, ``moetrack.api``,
``moetrack.testing``, ``moetrack.testing.pytest_plugin``, ``moetrack.logging``,
``moetrack.signals``, ``moetrack.decorators`` and the integrations, and, for each exported
class, its public methods and properties defined in moetrack (not those inherited from Python
or a framework). Constants are described in their module's docstring.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .._need import need_module

MODULES = (
    "moetrack",
    "moetrack.api",
    "moetrack.testing",
    "moetrack.testing.pytest_plugin",
    "moetrack.logging",
    "moetrack.signals",
    "moetrack.decorators",
)
#: Each integration, with the framework it needs (imported strictly under CI).
INTEGRATIONS = {
    "moetrack.integrations.django": "django",
    "moetrack.integrations.flask": "flask",
    "moetrack.integrations.celery": "celery",
    "moetrack.integrations.asgi": None,
    "moetrack.integrations.aws_lambda": None,
}


def _own_doc(obj: Any) -> str | None:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue  # private, or a dunder documented by the class itself
        function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if isinstance(function, property) or inspect.isfunction(function):
            yield name, function


def public_names(module_name: str) -> Iterator[tuple[str, Any]]:
    """``(qualified name, object)`` for the module and each public name under it."""
    module = importlib.import_module(module_name)
    yield module_name, module
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        qualified = f"{module_name}.{name}"
        if inspect.ismodule(obj):
            continue  # checked where it is listed itself
        if typing.get_origin(obj) is not None:
            continue  # a type alias such as Literal[...]: described where it is used
        if not (inspect.isclass(obj) or callable(obj) or hasattr(obj, "receivers")):
            continue  # a constant
        yield qualified, obj
        if inspect.isclass(obj) and obj.__module__.startswith("moetrack"):
            for member, value in _members(obj):
                yield f"{qualified}.{member}", value


def _modules() -> list[str]:
    names = list(MODULES)
    for module, framework in INTEGRATIONS.items():
        if framework is not None:
            need_module(framework)
        names.append(module)
    return names


def test_every_public_name_has_a_docstring() -> None:
    missing = [
        name for module in _modules() for name, obj in public_names(module) if not _own_doc(obj)
    ]
    assert missing == [], "public names without a docstring:\n" + "\n".join(missing)


@pytest.mark.parametrize("module", MODULES)
def test_the_walk_finds_names(module: str) -> None:
    """The check is not vacuous: each module exposes names it looks at."""
    assert len(list(public_names(module))) > 1


def test_every_integration_is_checked_and_in_the_reference() -> None:
    # A new module in integrations/ must have its docstrings checked here, its imports checked
    # by tests/integrations/test_imports.py and a section in the API reference.
    root = Path(__file__).resolve().parents[2]
    shipped = {
        f"moetrack.integrations.{path.stem if path.is_file() else path.name}"
        for path in (root / "integrations").iterdir()
        if not path.name.startswith("_") and (path.suffix == ".py" or path.is_dir())
    }
    reference = (root / "docs" / "reference" / "api.md").read_text()
    import_checks = (root / "tests" / "integrations" / "test_imports.py").read_text()
    assert shipped - set(INTEGRATIONS) == set(), "not in INTEGRATIONS"
    assert {m for m in shipped if f'heading: "{m}"' not in reference} == set(), "not in api.md"
    assert {m for m in shipped if f'("{m}",' not in import_checks} == set(), "not import-checked"
