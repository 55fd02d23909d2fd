"""A MkDocs hook: the command-line reference is generated from the argparse parsers.

``docs/reference/cli.md`` holds the marker ``<!-- cli-reference -->``; at build time it is
replaced by one section per command and subcommand, taken from the parser that ``moetrack``
itself runs (``moetrack.cli.build_parser()``, or ``moetrack.cli._parser()`` where that is the
name), so the page cannot drift from the code. ``render()`` is also used by the tests.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- cli-reference -->"
WIDTH = "88"


def root_parser() -> argparse.ArgumentParser:
    """The ``moetrack`` parser: ``build_parser()`` where it exists, else ``_parser()``."""
    from moetrack import cli

    build = getattr(cli, "build_parser", None) or cli._parser
    parser: argparse.ArgumentParser = build()
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("moetrack",)
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser``, depth first, with its command path."""
    yield path, parser
    for name, sub in _subcommands(parser):
        yield from walk(sub, (*path, name))


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        names = (
            ", ".join(f"`{s}`" for s in action.option_strings)
            or f"`{action.metavar or action.dest}`"
        )
        if action.option_strings and action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            if isinstance(metavar, tuple):
                metavar = " ".join(metavar)
            names += f" `{metavar}`"
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        if action.choices and not isinstance(action.choices, dict):
            help_text += " (one of " + ", ".join(f"`{c}`" for c in action.choices) + ")"
        rows.append(f"| {names} | {_escape(help_text)} |")
    if not rows:
        return []
    return ["| argument | meaning |", "|---|---|", *rows, ""]


def render() -> str:
    """The reference, as Markdown: a section per command, its usage and its arguments."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps the usage lines to this width
    try:
        out: list[str] = []
        for path, parser in walk(root_parser()):
            depth = min(len(path) + 1, 4)
            out.append(f"{'#' * depth} `{' '.join(path)}`")
            out.append("")
            if parser.description:
                out.append(parser.description)
                out.append("")
            out.append("```text")
            out.append(parser.format_usage().strip())
            out.append("```")
            out.append("")
            out.extend(_options_table(parser))
        return "\n".join(out)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Replace the marker with the generated reference."""
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
