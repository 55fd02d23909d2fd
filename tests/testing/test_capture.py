"""capture(): what would be sent, recorded without HTTP."""

from __future__ import annotations

import pytest

import moetrack
from moetrack.testing import capture


def test_capture_records_elements_and_restores_the_default_client() -> None:
    before = moetrack.get_client()
    with capture() as sent, moetrack.context(customer_id="user-42", platform="ios"):
        moetrack.identify(plan="pro")
        moetrack.track("Purchase", price=3999)
        moetrack.device(platform="web", push_id="tok")
        moetrack.track("Broken", price=float("inf"))
        assert moetrack.get_client() is not before
    assert moetrack.get_client() is before
    assert sent.users == [
        {"type": "customer", "customer_id": "user-42", "attributes": {"plan": "pro"}}
    ]
    (event,) = sent.events
    assert (event["customer_id"], event["action"], event["platform"]) == (
        "user-42",
        "Purchase",
        "iOS",
    )
    assert event["attributes"] == {"price": 3999}
    assert sent.devices[0]["attributes"] == {"platform": "web", "push_id": "tok"}
    assert [reason for reason, _ in sent.dropped] == ["invalid_value"]
    assert "attributes.price" in str(sent.dropped[0][1])


def test_capture_passes_options_through() -> None:
    with capture(strict=True), pytest.raises(moetrack.ValidationError, match="customer_id"):
        moetrack.track("X", customer_id="null")
