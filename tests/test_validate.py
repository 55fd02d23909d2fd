"""The rules of DESIGN §3, one by one, as the client applies them."""

from __future__ import annotations

import enum
import math
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from moetrack import ValidationError
from moetrack._context import Ctx
from moetrack._wire import spec as _spec
from moetrack._wire import validate as _validate
from moetrack._wire.records import DEVICE, EVENT, USER, prepare


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize("bad", sorted(_spec.FORBIDDEN_CUSTOMER_IDS))
def test_every_forbidden_customer_id_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        _validate.customer_id(f"  {bad.upper()} ")
    assert info.value.field == "customer_id"
    assert info.value.reason == "invalid_customer_id"


@pytest.mark.parametrize("bad", [0, 1, 5, 9, "7", "x", " a "])
def test_one_character_ids_are_refused_with_the_rule(bad: object) -> None:
    with pytest.raises(ValidationError, match="longer than one character"):
        _validate.customer_id(bad)


def test_integer_ids_become_strings_and_good_ids_pass() -> None:
    assert _validate.customer_id(42) == "42"
    assert _validate.customer_id("user-1") == "user-1"
    assert _validate.customer_id(uuid.UUID(int=1)) == str(uuid.UUID(int=1))


@pytest.mark.parametrize("bad", [True, 4.5, b"ab", ["ab"]])
def test_customer_id_types(bad: object) -> None:
    with pytest.raises(ValidationError, match="customer_id"):
        _validate.customer_id(bad)


def test_missing_customer_id_has_its_own_reason() -> None:
    with pytest.raises(ValidationError) as info:
        _validate.customer_id(None)
    assert info.value.reason == "no_customer_id"


@pytest.mark.parametrize(
    ("given", "sent"),
    [("android", "ANDROID"), ("IOS", "iOS"), ("Web", "web"), ("UNKNOWN", "unknown")],
)
def test_event_platforms_in_any_case(given: str, sent: str) -> None:
    assert _validate.event_platform(given) == sent


def test_device_platform_refuses_unknown() -> None:
    assert _validate.device_platform("ios") == "iOS"
    with pytest.raises(ValidationError, match="ANDROID, iOS, web"):
        _validate.device_platform("unknown")


@pytest.mark.parametrize("good", [-54000, 0, 19800, 54000, 3600.0])
def test_timezone_offset_range(good: float) -> None:
    assert _validate.timezone_offset(good) == int(good)


@pytest.mark.parametrize("bad", [-54001, 54001, 1.5, "19800", True])
def test_timezone_offset_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="user_timezone_offset"):
        _validate.timezone_offset(bad)


def test_times() -> None:
    assert _validate.timestamp(1590404615, "current_time") == 1590404615
    assert _validate.timestamp(1590404615.0, "current_time") == 1590404615
    assert _validate.timestamp("2020-05-31T16:33:35Z", "t") == "2020-05-31T16:33:35Z"
    aware = datetime(2020, 5, 31, 22, 3, 35, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert _validate.timestamp(aware, "t") == "2020-05-31T16:33:35Z"
    naive = datetime(2020, 5, 31, 16, 33, 35, 120000)
    assert _validate.timestamp(naive, "t") == "2020-05-31T16:33:35.120000Z"
    for bad in ("yesterday", -1, math.nan, math.inf, True, [1]):
        with pytest.raises(ValidationError, match="current_time"):
            _validate.timestamp(bad, "current_time")


def test_values_normalise_exactly() -> None:
    u = uuid.uuid4()
    got = _validate.attributes(
        {
            "d": Decimal("39.99"),
            "n": Decimal("4000"),
            "u": u,
            "e": Color.RED,
            "i": Level.HIGH,
            "day": date(2026, 1, 2),
            "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
            "nested": {"list": [1, (2, 3), {"x": None}], "ok": True},
        },
        _spec.RESERVED_EVENT_NAMES,
    )
    assert got == {
        "d": 39.99,
        "n": 4000,
        "u": str(u),
        "e": "red",
        "i": 3,
        "day": "2026-01-02",
        "at": "2026-01-02T03:04:05Z",
        "nested": {"list": [1, [2, 3], {"x": None}], "ok": True},
    }
    assert type(got["i"]) is int


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        (math.nan, "attributes.x", "finite"),
        (math.inf, "attributes.x", "finite"),
        (Decimal("NaN"), "attributes.x", "finite"),
        (b"bytes", "attributes.x", "type bytes"),
        (object(), "attributes.x", "type object"),
        ({1: "a"}, "attributes.x", "keys must be strings"),
        ("bad \udc80 text", "attributes.x", "UTF-8"),
        ([1, {"deep": set()}], "attributes.x[1].deep", "type set"),
    ],
)
def test_bad_values_name_the_field(value: object, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        _validate.attributes({"x": value}, _spec.RESERVED_EVENT_NAMES)
    assert info.value.field == field
    assert words in str(info.value)


def test_cyclic_structures_are_refused_not_recursed_forever() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(ValidationError, match="deeper"):
        _validate.attributes({"loop": cyclic}, _spec.RESERVED_EVENT_NAMES)


@pytest.mark.parametrize("name", ["id", "_id", "userId", ""])
def test_reserved_event_attribute_names(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        _validate.attributes({name: 1}, _spec.RESERVED_EVENT_NAMES)
    assert info.value.reason == "reserved_name"


def test_user_id_attribute_is_reserved_for_events_only() -> None:
    assert _validate.attributes({"userId": 1}, _spec.RESERVED_USER_NAMES) == {"userId": 1}


@pytest.mark.parametrize("name", ["id", "_id", "userId", "", "  "])
def test_reserved_event_names(name: str) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        _validate.event_name(name)


def _event(**kw: object) -> tuple[object, ...]:
    base = {
        "action": "Buy",
        "mapping": None,
        "attrs": {},
        "cid": "user-1",
        "did": None,
        "platform": None,
        "app_version": None,
        "ctime": None,
        "utime": None,
        "tz": None,
    }
    base.update(kw)
    return (
        EVENT,
        Ctx({}),
        1_700_000_000.5,
        base["action"],
        base["mapping"],
        base["attrs"],
        base["cid"],
        base["did"],
        base["platform"],
        base["app_version"],
        base["ctime"],
        base["utime"],
        base["tz"],
    )


def test_an_event_record_becomes_one_action() -> None:
    item = prepare(_event(attrs={"price": 3999}, platform="ios", tz=19800), 100_000)
    assert item.payload == (
        b'{"action":"Buy","attributes":{"price":3999},"platform":"iOS",'
        b'"current_time":1700000000,"user_timezone_offset":19800}'
    )


def test_explicit_arguments_beat_the_context_and_attributes_merge() -> None:
    ctx = Ctx({"customer_id": "ctx-user", "platform": "web", "attributes": {"a": 1, "b": 1}})
    record = (
        EVENT,
        ctx,
        1.0,
        "Buy",
        {"b": 2, "c": 2},
        {"c": 3},
        "explicit",
        None,
        None,
        None,
        None,
        None,
        None,
    )
    item = prepare(record, 100_000)
    assert item.customer_id == "explicit"
    assert b'"attributes":{"a":1,"b":2,"c":3}' in item.payload
    assert b'"platform":"web"' in item.payload


def test_device_needs_platform_and_push_id() -> None:
    ok = (DEVICE, Ctx({}), 1.0, None, {"platform": "android", "push_id": "p"}, "user-1", "dev-1")
    assert b'"platform":"ANDROID"' in prepare(ok, 100_000).payload
    with pytest.raises(ValidationError, match="push_id"):
        prepare((DEVICE, Ctx({}), 1.0, None, {"platform": "web"}, "user-1", None), 100_000)
    with pytest.raises(ValidationError, match="platform"):
        prepare((DEVICE, Ctx({}), 1.0, None, {"push_id": "p"}, "user-1", None), 100_000)


def test_an_element_too_large_for_one_request_is_refused() -> None:
    record = (USER, Ctx({}), 1.0, None, {"blob": "x" * 2_000}, "user-1")
    with pytest.raises(ValidationError) as info:
        prepare(record, 1_500)
    assert info.value.reason == "too_large"
    assert len(prepare(record, 100_000).payload) > 2_000


@pytest.mark.parametrize(
    ("customer", "device"),
    [
        ("user-1", None),
        ("user-\u0001\u0002\u0003\u0004", 'dev-"\u0005'),  # escaped in JSON: 6 and 2 bytes
        ("\u0915\u0916\u0917-user", "\U0001f600"),  # 3 and 4 bytes in UTF-8
    ],
)
def test_an_event_that_fills_a_body_exactly_fits_and_one_byte_more_does_not(
    customer: str, device: str | None
) -> None:
    """The limit is measured on the body the event would need on its own, its ids encoded
    as JSON (escapes and UTF-8 included): at the limit it is taken, one byte over refused."""
    from moetrack._wire.encode import Packer

    def event(text: str) -> tuple[object, ...]:
        return (EVENT, Ctx({}), 1.0, "E", None, {"t": text}, customer, device,
                None, None, None, None, None)  # fmt: skip

    item = prepare(event(""), 100_000)
    packer = Packer(100_000, 10)
    assert packer.add(item)
    limit = len(packer.take().body) + 500
    assert prepare(event("x" * 500), limit).payload.endswith(b"}")
    with pytest.raises(ValidationError) as info:
        prepare(event("x" * 501), limit)
    assert info.value.reason == "too_large"


def test_before_send_can_change_or_drop() -> None:
    from moetrack._wire.records import Dropped

    def rename(e: dict[str, object]) -> dict[str, object]:
        return {**e, "action": "Renamed"}

    assert b'"action":"Renamed"' in prepare(_event(), 100_000, rename).payload
    with pytest.raises(Dropped):
        prepare(_event(), 100_000, lambda e: None)
