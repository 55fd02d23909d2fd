"""moetrack: send users, devices and events to the MoEngage Data API from Python servers."""

from __future__ import annotations

from ._exceptions import *  # noqa: F403
from ._exceptions import __all__ as _exc_all

__all__ = sorted(_exc_all)
