"""pytest plugin: a fresh Data API emulator per test.

Enable it in a ``conftest.py``::

    pytest_plugins = ["moetrack.testing.pytest_plugin"]

    def test_purchase(moetrack_emulator):
        client = moetrack.Client(
            moetrack_emulator.app_id, moetrack_emulator.api_key, endpoint=moetrack_emulator.url
        )
        ...
        assert moetrack_emulator.wait_for_events(1)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._emulator import Emulator

__all__ = ["moetrack_emulator"]


@pytest.fixture
def moetrack_emulator() -> Iterator[Emulator]:
    """A started :class:`~moetrack.testing.Emulator` with the demo app, stopped after the test."""
    with Emulator() as emulator:
        yield emulator
