"""Test helpers: a local MoEngage Data API emulator and a pytest plugin for it.

::

    from moetrack.testing import Emulator

    with Emulator() as emu:
        ...  # send to emu.url with emu.app_id / emu.api_key
        assert emu.wait_for_events(1)

In a test suite, ``pytest_plugins = ["moetrack.testing.pytest_plugin"]`` provides the
``moetrack_emulator`` fixture. ``python -m moetrack.testing`` runs the emulator with its web
page until Ctrl-C.
"""

from __future__ import annotations

from ._capture import Captured, CaptureTransport, capture
from ._emulator import DEFAULT_API_KEY, DEFAULT_APP_ID, App, AppStatus, Emulator, serve

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_APP_ID",
    "App",
    "AppStatus",
    "CaptureTransport",
    "Captured",
    "Emulator",
    "capture",
    "serve",
]
