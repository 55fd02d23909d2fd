"""``python -m moetrack``: the ``moetrack`` command."""

from moetrack.cli import main

raise SystemExit(main())
