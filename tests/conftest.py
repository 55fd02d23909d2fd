"""Shared fixtures: a real emulator on loopback, clients pointed at it, a key sweep."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import moetrack
from moetrack import _api
from moetrack.testing import Emulator

ClientFactory = Callable[..., moetrack.Client]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def make_client(emulator: Emulator) -> Iterator[ClientFactory]:
    """Build clients aimed at the emulator, with the options as shipped unless a test says
    otherwise; shut them down after."""
    clients: list[moetrack.Client] = []

    def make(emu: Emulator | None = None, **options: Any) -> moetrack.Client:
        emu = emu or emulator
        client = moetrack.Client(emu.app_id, emu.api_key, endpoint=emu.url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(2.0)


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    """Each test starts and ends with no default client configured."""
    yield
    client, _api._default = _api._default, None
    if client is not None:
        client.shutdown(1.0)


@pytest.fixture
def moetrack_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="moetrack")
    return caplog
