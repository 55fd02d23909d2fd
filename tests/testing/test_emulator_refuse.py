"""``Emulator.refuse_elements``: a server that refuses a whole request for one chosen element."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from moetrack.testing import App, Emulator

from .test_emulator import APP, KEY, assert_fail, customer, send


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator([App(APP, KEY)]) as emulator:
        yield emulator


@pytest.fixture
def http(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=5) as client:
        yield client


def transition(http: httpx.Client, *elements: object) -> httpx.Response:
    return send(
        http, {"type": "transition", "elements": list(elements)}, path=f"/v1/transition/{APP}"
    )


def test_a_request_holding_a_chosen_element_is_refused_whole(
    emu: Emulator, http: httpx.Client
) -> None:
    emu.refuse_elements(lambda e: e.get("customer_id") == "bad-1", "plan is expected to be string")
    assert_fail(
        transition(http, customer("good-1"), customer("bad-1")),
        400,
        "MissingAttributeError",
        "plan is expected to be string",
    )
    assert emu.users() == {}  # nothing of it is stored
    assert emu.requests()[-1]["fault"] == "refuse_elements"
    assert transition(http, customer("good-1")).status_code == 200
    assert list(emu.users()) == ["good-1"]

    emu.clear_faults()
    assert transition(http, customer("bad-1")).status_code == 200
    assert sorted(emu.users()) == ["bad-1", "good-1"]
