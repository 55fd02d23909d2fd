"""Fixtures shared by the framework integration tests: an emulator and a client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import moetrack
from moetrack.integrations import _common
from moetrack.testing import Emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[moetrack.Client]:
    """The default client, sending to the emulator; shut down after the test."""
    c = moetrack.init(emu.app_id, emu.api_key, endpoint=emu.url)
    yield c
    moetrack.shutdown(5)


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    _common.forget_warnings()
    yield
    _common.forget_warnings()
    assert not moetrack.current_context(), "a test left a moetrack context bound"


def customers(emu: Emulator, action: str | None = None) -> list[str]:
    """Flush the default client, then the customer of each accepted event (of ``action``)."""
    assert moetrack.flush(10)
    return [e["customer_id"] for e in emu.events() if action is None or e["action"] == action]
