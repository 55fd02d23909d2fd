"""The command-line reference is generated from the parsers ``moetrack`` runs."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import moetrack.cli

HOOK = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "cli_reference.py"


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference_hook", HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_command_and_option_of_the_parser_is_on_the_page() -> None:
    hook = load_hook()
    page = hook.on_page_markdown(f"# Command line\n\n{hook.MARKER}\n", page=None)
    assert hook.MARKER not in page
    for path, parser in hook.walk(hook.root_parser()):
        assert f"`{' '.join(path)}`" in page, path
        for action in parser._actions:
            for option in action.option_strings:
                if option not in {"-h", "--help"}:
                    assert f"`{option}`" in page, (path, option)
    for command in ("devserver", "demo", "import", "relay", "backlog status", "doctor"):
        assert f"`moetrack {command}`" in page


def test_the_hook_prefers_build_parser_and_falls_back_to_the_private_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = load_hook()
    marker = argparse.ArgumentParser(prog="moetrack", description="from build_parser")
    monkeypatch.setattr(moetrack.cli, "build_parser", lambda: marker, raising=False)
    assert hook.root_parser() is marker
    monkeypatch.delattr(moetrack.cli, "build_parser")
    monkeypatch.setattr(moetrack.cli, "_parser", lambda: marker, raising=False)
    assert hook.root_parser() is marker
