"""Framework integrations: ``moetrack.integrations.<framework>``.

The modules live in the project's top-level ``integrations/`` folder. A built wheel copies
them into this package; in a source checkout (an editable install) this package's search path
is extended to that folder, so the same import works in both.
"""

from __future__ import annotations

import os

_source = os.path.normpath(
    os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "integrations")
)
if os.path.isdir(_source) and _source not in __path__:
    __path__.append(_source)
