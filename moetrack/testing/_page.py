"""The emulator's read-only web page, served at ``GET /``.

The page is written as real files beside this module, shipped as package data and read with
:mod:`importlib.resources`: ``page/index.html`` (the document), ``page/page.css`` and
``page/page.js``. They are served as one self-contained HTML document (the CSS and the
vanilla JavaScript inline, no external assets, a Content-Security-Policy that admits exactly
those two by hash) that polls the emulator's JSON read API on the same origin about once a
second and shows what the emulator accepted (users with their merged attributes and event
timelines, devices), what it dropped and why, and every request it answered.

Every value that came from a request is put into the page with ``textContent``, never parsed
as HTML, so an attribute such as ``<img src=x onerror=...>`` shows as text. The page reads no
credentials and renders only named fields, so the API key and the ``Authorization`` header
never reach it.

Stable hooks for tests: ``#users`` (rows ``tr[data-customer-id]``), ``#user-detail``,
``#events`` (rows ``[data-action]``), ``#devices`` (rows ``[data-device-id]``), ``#dropped``
(rows ``[data-reason]``), ``#requests`` (rows ``[data-status]``), summary numbers
``[data-count=users|devices|events|dropped|requests]``, ``#status`` (``data-state`` is
``live`` or ``offline``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources

__all__ = ["render_page"]

_FOLDER = "page"


def _read(name: str) -> str:
    return (resources.files(__package__) / _FOLDER / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


@functools.cache
def render_page() -> str:
    """The whole page: ``index.html`` with its CSS and script inline, under a CSP."""
    css, js = _read("page.css"), _read("page.js")
    # Defence in depth behind textContent: only this page's own script and style run, nothing
    # is loaded from elsewhere, and the only network access is the same-origin JSON API.
    csp = (
        "default-src 'none'; "
        f"script-src {_sha256(js)}; "
        f"style-src {_sha256(css)}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    return (
        _read("index.html")
        .replace("{{csp}}", csp)
        .replace("{{page.css}}", css)
        .replace("{{page.js}}", js)
    )
