"""``python -m moetrack.cli``: the ``moetrack`` command."""

from moetrack.cli import main

raise SystemExit(main())
