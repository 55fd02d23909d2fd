"""A griffe extension: moetrack's docstrings read well as Markdown in the API reference.

The docstrings are written for ``help()`` and Sphinx-style readers: ``:func:`~moetrack.init```
roles, double-backquoted literals and ``::`` before an indented example. mkdocstrings renders
docstrings as Markdown, so this rewrites each docstring, once loaded, into its Markdown
equivalent (the source is untouched): a role becomes inline code of its target's last name
(full name without ``~``), ``x`` becomes `x`, and a paragraph ending in ``::`` ends in ``:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`")
_LITERAL = re.compile(r"``([^`]+)``")


def _role(match: re.Match[str]) -> str:
    tilde, target, explicit = match.groups()
    name = (explicit or target).strip()
    if tilde:
        name = name.rsplit(".", 1)[-1]
    return f"`{name}`"


def to_markdown(text: str) -> str:
    text = _ROLE.sub(_role, text)
    text = _LITERAL.sub(r"`\1`", text)
    lines = []
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped == "::":
            continue
        lines.append(stripped[:-1] if stripped.endswith("::") else line)
    return "\n".join(lines)


class MarkdownDocstrings(griffe.Extension):
    """Rewrite every loaded docstring from reST habits to Markdown."""

    def on_object(self, *, obj: griffe.Object, loader: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
