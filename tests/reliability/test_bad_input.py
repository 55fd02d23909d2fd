"""Arbitrary input never crashes the worker and never blocks the caller: each record is
delivered exactly as its normalised JSON, or dropped with a reason and the field it names —
and strict mode raises a ValidationError with that same reason and field.

The expected outcome comes from the rules as the API document and the README state them,
written here as tables (nothing is imported from the client, nor copied from it). Most
examples go through ``capture()`` (no HTTP); a smaller set goes through the background worker
to the emulator.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import moetrack
from moetrack import signals
from moetrack.testing import Emulator, capture
from moetrack.testing._checks import check_element

from .waits import WaitSpy

# -- the rules, from the API document and the README -------------------------------------------
#
# The expected outcome of every example comes from the rules below, written as tables from
# MOENGAGE_DATA_API.md (what the API takes) and the README's "Validation" section (how Python
# values become JSON), and from nothing in moetrack: a copy of the client's code could only
# agree with it.

#: "Reserved event and event attribute names: `id`, `_id`, `userId`, empty string."
RESERVED = {"id", "_id", "userId", ""}
#: README: "nested at most 16 deep"; "Integers must fit in signed 64 bits".
MAX_DEPTH = 16
INT64 = (-(2**63), 2**63 - 1)


class Refused(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason


def is_utf8(text: str) -> bool:
    """README: "strings must be valid UTF-8" (a lone surrogate has no UTF-8 form)."""
    return not any(0xD800 <= ord(char) <= 0xDFFF for char in text)


#: Attribute names, checked in this order: (what breaks the rule, reason, field it names).
NAME_RULES: list[tuple[Callable[[Any], bool], str, Callable[[Any], str]]] = [
    # README: "lists, tuples and string-keyed dicts"
    (lambda n: not isinstance(n, str), "invalid_attribute_name", lambda n: f"attributes[{n!r}]"),
    # the document's reserved names; a name of white space only is read as empty
    (
        lambda n: n in RESERVED or n.strip() == "",
        "reserved_name",
        lambda n: f"attributes.{n}" if n else "attributes",
    ),
    # README: "attribute names must be valid UTF-8"
    (lambda n: not is_utf8(n), "invalid_attribute_name", lambda n: f"attributes[{n!r}]"),
]


def as_utc_iso(v: datetime | date) -> str:
    """README: "`datetime` values are sent as ISO 8601 UTC (`2026-01-02T03:04:05Z`), naive ones
    taken as UTC"; a date is a date."""
    if not isinstance(v, datetime):
        return v.isoformat()
    utc = v if v.tzinfo is None else v.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat() + "Z"


def decimal_number(v: Decimal) -> int | float:
    """README: "`Decimal` (a JSON number: an int when integral, else a float)", "Decimals in the
    float range"."""
    if not v.is_finite():
        raise ValueError("not a number")
    if v == v.to_integral_value():
        if not INT64[0] <= v <= INT64[1]:  # compared as Decimals: int() of 1e9999999 is slow
            raise ValueError("beyond 64 bits")
        return int(v)
    number = float(v)
    if not math.isfinite(number):
        raise ValueError("beyond the float range")
    return number


def finite(v: float) -> float:
    if not math.isfinite(v):  # README: "float (finite: JSON has no NaN or Infinity)"
        raise ValueError("not finite")
    return v


def int64(v: int) -> int:
    if not INT64[0] <= v <= INT64[1]:
        raise ValueError("beyond 64 bits")
    return v


def utf8_text(v: str) -> str:
    if not is_utf8(v):
        raise ValueError("not UTF-8")
    return v


Convert = Callable[[Any], Any]
#: README, "Attribute values": the first row whose test matches says what a value becomes. A
#: converter that raises refuses the value (``invalid_value``, naming its field). Lists,
#: tuples, mappings and Enums are unpacked by ``wire_value``.
VALUE_TABLE: list[tuple[Callable[[Any], bool], Convert]] = [
    (lambda v: type(v) is str, utf8_text),
    (lambda v: v is None or type(v) is bool, lambda v: v),
    (lambda v: type(v) is int, int64),
    (lambda v: type(v) is float, finite),
    (lambda v: isinstance(v, datetime | date), as_utc_iso),
    (lambda v: isinstance(v, Decimal), decimal_number),
    (lambda v: isinstance(v, uuid.UUID), str),
    # subclasses of the scalars are sent as their plain value (an Enum is unpacked before)
    (lambda v: isinstance(v, bool), bool),
    (lambda v: isinstance(v, int), lambda v: int64(int(v))),
    (lambda v: isinstance(v, float), lambda v: finite(float(v))),
    (lambda v: isinstance(v, str), lambda v: utf8_text(str(v))),
]


def wire_value(v: Any, field: str, depth: int = 0) -> Any:
    """The value as it goes on the wire, or Refused(field, "invalid_value")."""
    if isinstance(v, Mapping | list | tuple):
        if depth >= MAX_DEPTH:  # also what ends a cycle
            raise Refused(field, "invalid_value")
        if not isinstance(v, Mapping):
            return [wire_value(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(v)]
        try:
            items = list(v.items())
        except Exception:  # a mapping that cannot be read (user code raising)
            raise Refused(field, "invalid_value") from None
        out = {}
        for key, item in items:
            if not isinstance(key, str) or not is_utf8(key):
                raise Refused(field, "invalid_value")
            out[key] = wire_value(item, f"{field}.{key}", depth + 1)
        return out
    if isinstance(v, enum.Enum):  # README: "`Enum` (its value)"
        return wire_value(v.value, field, depth + 1)
    for matches, convert in VALUE_TABLE:
        if matches(v):
            try:
                return convert(v)
            except (ValueError, OverflowError):
                raise Refused(field, "invalid_value") from None
    raise Refused(field, "invalid_value")  # README: "Anything else is refused"


def model(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    """The attributes as they go on the wire, or Refused(field, reason)."""
    out = {}
    for name, v in attrs.items():
        for breaks, reason, field in NAME_RULES:
            if breaks(name):
                raise Refused(field(name), reason)
        out[name] = wire_value(v, f"attributes.{name}")
    # README: "An element that cannot fit in one request on its own is refused"; generated
    # values are either far below a request body or far above it.
    if len(json.dumps(out, ensure_ascii=False)) > 90_000:
        raise Refused("element", "too_large")
    return out


def expected_outcome(attrs: Mapping[Any, Any]) -> tuple[str, Any]:
    try:
        return "sent", json.loads(json.dumps(model(attrs)))
    except Refused as refused:
        return "dropped", (refused.reason, refused.field)


# -- the action's own fields -------------------------------------------------------------------

#: "none of: `unknown`, `guest`, `null`, `0`, `1`, `true`, `false`, `user_attribute_unique_id`,
#: `(empty)`, `na`, `n/a`, empty string, `dummy_seller_code`, `user_id`, `id`, `customer_id`,
#: `uid`, `userid`, `none`, `-2`, `-1`, `2`."
FORBIDDEN_IDS = [
    "unknown", "guest", "null", "0", "1", "true", "false", "user_attribute_unique_id", "(empty)",
    "na", "n/a", "", "dummy_seller_code", "user_id", "id", "customer_id", "uid", "userid", "none",
    "-2", "-1", "2",
]  # fmt: skip
#: "`platform` (ANDROID, iOS, web or unknown)"; README: "any case is accepted and the canonical
#: spelling is sent".
PLATFORMS = {p.lower(): p for p in ("ANDROID", "iOS", "web", "unknown")}


def want_customer_id(v: Any) -> str:
    """ "A string of more than one character ... and none of" the forbidden values; README:
    compared after trimming, case-insensitively; integer ids become strings."""
    if v is None:
        raise Refused("customer_id", "no_customer_id")
    if type(v) is int:
        v = str(v)
    if not isinstance(v, str):
        raise Refused("customer_id", "invalid_customer_id")
    trimmed = v.strip()
    if len(trimmed) < 2 or trimmed.lower() in FORBIDDEN_IDS:
        raise Refused("customer_id", "invalid_customer_id")
    return v


def want_action_name(v: Any) -> str:
    """ "Each action: `action` (required name)"; reserved names as above."""
    if not isinstance(v, str):
        raise Refused("action", "invalid_event_name")
    if v in RESERVED or v.strip() == "":
        raise Refused("action", "reserved_name")
    return v


def want_platform(v: Any) -> str:
    canonical = PLATFORMS.get(v.lower()) if isinstance(v, str) else None
    if canonical is None:
        raise Refused("platform", "invalid_platform")
    return canonical


def want_offset(v: Any) -> int:
    """ "`user_timezone_offset` (seconds, -54000 to 54000...)"; README: "whole seconds"."""
    whole = type(v) is int or (type(v) is float and math.isfinite(v) and v == int(v))
    if not whole or not -54_000 <= v <= 54_000:
        raise Refused("user_timezone_offset", "invalid_timezone_offset")
    return int(v)


@dataclass(frozen=True)
class Iso:
    """An ISO 8601 string built from its parts, so that whether it names a real moment is
    decided by the calendar, not by a second parser: date, then optionally the separator,
    (hour, minute, second or None, fraction) and the zone ("Z" or (sign, hours, minutes, form))."""

    year: int
    month: int
    day: int
    clock: tuple[str, int, int, int | None, str] | None
    zone: str | tuple[str, int, int, str] | None

    @property
    def text(self) -> str:
        out = f"{self.year:04d}-{self.month:02d}-{self.day:02d}"
        if self.clock is not None:
            sep, hour, minute, second, fraction = self.clock
            out += f"{sep}{hour:02d}:{minute:02d}"
            if second is not None:
                out += f":{second:02d}{fraction}"
            if isinstance(self.zone, str):
                out += self.zone
            elif self.zone is not None:
                sign, hours, minutes, form = self.zone
                out += {
                    "hh:mm": f"{sign}{hours:02d}:{minutes:02d}",
                    "hhmm": f"{sign}{hours:02d}{minutes:02d}",
                    "hh": f"{sign}{hours:02d}",
                }[form]
        return out

    @property
    def names_a_moment(self) -> bool:
        hour, minute, second = (
            (self.clock[1], self.clock[2], self.clock[3]) if self.clock else (0, 0, 0)
        )
        try:
            datetime(self.year, self.month, self.day, hour, minute, second or 0)
        except ValueError:
            return False
        if self.clock is None or not isinstance(self.zone, tuple):
            return True
        _, hours, minutes, form = self.zone
        return hours <= 23 and (form == "hh" or minutes <= 59)


def want_time(key: str) -> Callable[[Any], Any]:
    """ "epoch seconds or ISO 8601"; README: `datetime` values are sent as ISO 8601 UTC. Epoch
    seconds go as a JSON number, so (README) an integral one must fit in signed 64 bits."""

    def check(v: Any) -> Any:
        if isinstance(v, datetime):
            try:
                return as_utc_iso(v)
            except OverflowError:  # an aware datetime whose UTC moment has no year 1..9999
                raise Refused(key, "invalid_time") from None
        if isinstance(v, Iso):
            if not v.names_a_moment:
                raise Refused(key, "invalid_time")
            return v.text
        if isinstance(v, str):  # not built from parts: only ever words, never a date
            raise Refused(key, "invalid_time")
        number = type(v) in (int, float) and math.isfinite(v) and 0 <= v <= INT64[1]
        if not number:
            raise Refused(key, "invalid_time")
        return int(v) if v == int(v) else v

    return check


#: track() keyword -> what the document wants of it (absent fields are not checked).
FIELD_RULES: dict[str, Callable[[Any], Any]] = {
    "customer_id": want_customer_id,
    "action": want_action_name,
    "platform": want_platform,
    "user_timezone_offset": want_offset,
    "current_time": want_time("current_time"),
    "user_time": want_time("user_time"),
}


# -- strategies -------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, "two")
    RAW = b"raw"  # an Enum whose value is not allowed


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2**70  # an int too big for 64 bits, behind an IntEnum


class Tag(str):
    pass


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


class Hostile(dict):  # type: ignore[type-arg]
    """A mapping whose items() fails: user code that raises on the worker."""

    def items(self) -> Any:
        raise RuntimeError("hostile mapping")


def cyclic_list() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def cyclic_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    return loop


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


any_char = st.characters(exclude_categories=())  # lone surrogates included
text_char = st.characters(exclude_categories=("Cs",))
names = st.text(text_char, min_size=1, max_size=8).filter(lambda n: n.strip() and n not in RESERVED)
odd_names = st.one_of(
    st.text(any_char, max_size=8),
    st.sampled_from(["id", "_id", "userId", "", " ", "a.b", "\ud800", "ok\udfff"]),
    st.integers(),
    st.none(),
)
good_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64[0], INT64[1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(text_char, max_size=12),
    st.datetimes(timezones=st.sampled_from([None, timezone.utc])),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12),
    st.uuids(),
    st.sampled_from([Color.RED, Color.PAIR, Level.LOW, Tag("tag")]),
)
edge_leaves = st.one_of(
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**40)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(any_char, max_size=12),
    st.binary(max_size=6),
    st.datetimes(
        timezones=st.sampled_from([timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
    ),
    st.decimals(),
    st.sampled_from(["1" * 400 + ".5", "-1e400", "1e9999999", "NaN", "-Infinity"]).map(Decimal),
    st.sampled_from([Color.RAW, Level.HIGH]),
    st.sampled_from([b"bytes", bytearray(b"ba"), {1, 2}, frozenset(), 1j, Opaque(), object]),
    st.builds(Hostile),
    st.builds(cyclic_list),
    st.builds(cyclic_dict),
    st.integers(12, 20).map(nested),
    st.sampled_from([150_000]).map(lambda n: "h" * n),  # alone bigger than a request body
)


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], odds: int) -> Any:
    """``good``, and ``odd`` one time in ``odds``."""
    return st.integers(1, odds).flatmap(lambda n: odd if n == 1 else good)


leaves = mostly(good_leaves, edge_leaves, 6)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(
            mostly(
                st.text(text_char, max_size=5),
                st.one_of(st.text(any_char, max_size=3), st.integers(), st.none()),
                10,
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=8,
)
attribute_maps = st.dictionaries(mostly(names, odd_names, 10), values, max_size=4)

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def any_case(word: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(word), max_size=len(word))
    return flips.map(lambda ups: "".join(c.upper() if u else c for c, u in zip(word, ups)))


def padded(word: str) -> st.SearchStrategy[str]:
    pads = st.sampled_from(["", "", " ", "\t", "  "])
    return st.tuples(pads, st.just(word), pads).map("".join)


customer_ids = st.one_of(
    st.text(text_char, min_size=2, max_size=10),
    st.sampled_from(FORBIDDEN_IDS).flatmap(any_case).flatmap(padded),
    st.text(text_char, max_size=2),
    st.integers(-3, 12),
    st.integers(),
    st.sampled_from([None, 7.5, True, b"ab", ["ab"]]),
)
action_names = st.one_of(
    st.text(text_char, min_size=1, max_size=8),
    st.sampled_from([*sorted(RESERVED), " ", "\t", "ID", "UserId"]),
    st.sampled_from([None, 42, b"Buy"]),
)
platforms = st.one_of(
    st.sampled_from(sorted(PLATFORMS.values())).flatmap(any_case),
    st.text(text_char, max_size=7),
    st.sampled_from([1, True, b"web"]),  # (None is no platform: the field left out)
)
offsets = st.one_of(
    st.integers(-60_000, 60_000),
    st.sampled_from([54_000, -54_000, 54_001, -54_001, 19_800, 19_800.0, 19_800.5, "19800"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
iso_times = st.builds(
    Iso,
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.none()
    | st.tuples(
        st.sampled_from(["T", " "]),
        st.integers(0, 25),
        st.integers(0, 61),
        st.none() | st.integers(0, 61),
        st.sampled_from(["", "", ".5", ",25", ".123456"]),
    ),
    st.none()
    | st.just("Z")
    | st.tuples(
        st.sampled_from(["+", "-"]),
        st.integers(0, 25),
        st.integers(0, 61),
        st.sampled_from(["hh:mm", "hhmm", "hh"]),
    ),
)
times = st.one_of(
    iso_times,
    st.integers(-10, 2**64),
    st.sampled_from([2**63 - 1, 2**63, 2.0**63, 1e19, 1e300, 1590404615.25, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(
        timezones=st.sampled_from(
            [None, timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
        )
    ),
    st.text(text_char, max_size=8),
    st.booleans(),
)
#: Each field of an action: absent most of the time, else a value from its strategy.
action_fields = st.fixed_dictionaries(
    {"customer_id": mostly(st.text(text_char, min_size=2, max_size=10), customer_ids, 2),
     "action": mostly(st.just("Purchase"), action_names, 2)},
    optional={
        "platform": platforms,
        "user_timezone_offset": offsets,
        "current_time": times,
        "user_time": times,
    },
)  # fmt: skip


def as_argument(v: Any) -> Any:
    return v.text if isinstance(v, Iso) else v


def expected_fields(fields: Mapping[str, Any]) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """What each field goes on the wire as, and every (reason, field) the rules refuse."""
    wire: dict[str, Any] = {}
    problems: set[tuple[str, str]] = set()
    for key, v in fields.items():
        try:
            wire[key] = FIELD_RULES[key](v)
        except Refused as refused:
            problems.add((refused.reason, refused.field))
    return wire, problems


def action_attributes(event: Mapping[str, Any]) -> Any:
    return event.get("attributes") or {}


# -- capture: the rules, on the caller's thread (sync) ------------------------------------------


@PROPERTY
@given(attribute_maps)
def test_any_attributes_are_sent_exactly_or_dropped_naming_the_field(
    attrs: dict[Any, Any],
) -> None:
    outcome, detail = expected_outcome(attrs)
    event(outcome if outcome == "sent" else f"dropped: {detail[0]}")
    with capture() as sent:
        moetrack.track("Prop", attrs, customer_id="prop-user")
    if outcome == "sent":
        assert sent.dropped == []
        (action,) = sent.events
        assert action_attributes(action) == detail
        assert [check_element(element) for element in sent.elements] == [(None, [])]
    else:
        assert sent.events == []
        ((reason, error),) = sent.dropped
        assert isinstance(error, moetrack.ValidationError), error
        assert (reason, error.field) == detail, error
        assert error.reason == reason
        assert error.field in str(error)


@PROPERTY
@given(attribute_maps)
def test_strict_mode_raises_the_same_reason_and_field(attrs: dict[Any, Any]) -> None:
    outcome, detail = expected_outcome(attrs)
    with capture(strict=True) as sent:
        if outcome == "sent":
            moetrack.track("Prop", attrs, customer_id="prop-user")
            assert [action_attributes(e) for e in sent.events] == [detail]
            return
        with pytest.raises(moetrack.ValidationError) as info:
            moetrack.track("Prop", attrs, customer_id="prop-user")
    assert (info.value.reason, info.value.field) == detail
    assert sent.events == []


def at(**fields: Any) -> dict[str, Any]:
    return {"customer_id": "user-1", "action": "Purchase", **fields}


@PROPERTY
@given(action_fields)
# Epoch seconds are a JSON number: an integral float beyond 64 bits is no more sendable than
# the int it stands for.
@example(at(current_time=2.0**63))
@example(at(user_time=1e300))
# A datetime that cannot be expressed in UTC is a bad time, not an error of the client.
@example(at(current_time=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))))
@example(at(user_time=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12)))))
@example(at(customer_id=" GuEsT\t", platform="IOS", user_timezone_offset=19800.0))
# ISO 8601 is written in ASCII digits: fullwidth or Arabic-Indic ones do not make a date.
@example(at(current_time="\uff12\uff10\uff12\uff10-05-31T10:00:00Z"))
@example(at(user_time="2020-05-\u0663\u0661"))
def test_the_action_fields_follow_the_document(fields: dict[str, Any]) -> None:
    wire, problems = expected_fields(fields)
    event("sent" if not problems else "dropped: " + ", ".join(sorted(r for r, _ in problems)))
    arguments = {key: as_argument(v) for key, v in fields.items()}
    name = arguments.pop("action")
    with capture() as sent:
        moetrack.track(name, **arguments)
    if problems:
        assert sent.events == []
        ((reason, error),) = sent.dropped
        assert isinstance(error, moetrack.ValidationError), error
        # Several fields may be wrong; the client names one of them, by its documented rule.
        assert (reason, error.field) in problems, error
        return
    assert sent.dropped == []
    ((sent_event),) = sent.events
    assert {key: sent_event.get(key) for key in wire} == wire
    # And the emulator, whose checks are written from the document too, keeps what was sent.
    assert [check_element(element) for element in sent.elements] == [(None, [])]
    if "current_time" not in fields:  # "the receive time when absent": the client sends now
        assert type(sent_event["current_time"]) is int


# -- the background worker and the emulator ------------------------------------------------------


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@settings(
    max_examples=8,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(st.lists(attribute_maps, min_size=5, max_size=25))
def test_the_worker_survives_any_batch_of_records_and_accounts_for_each(
    shared_emulator: Emulator, batch: list[dict[Any, Any]]
) -> None:
    emulator = shared_emulator
    emulator.reset()
    client = moetrack.Client(
        emulator.app_id, emulator.api_key, endpoint=emulator.url, flush_interval=0.05
    )
    seen: list[tuple[str, str]] = []

    def on_drop(sender: Any, **kw: Any) -> None:
        if sender is client:
            seen.append((kw["reason"], kw["error"].field))

    signals.element_dropped.connect(on_drop)
    try:
        # The first call starts the worker, and Thread.start waits for the thread once: made
        # here, before the calls watched below.
        client.track("Before", customer_id="prop-before")
        with WaitSpy() as spy:
            for i, attrs in enumerate(batch):
                client.track("Prop", attrs, customer_id=f"prop-{i:03d}")
        client.track("After", customer_id="prop-after")  # the worker still works after them
        assert client.flush(20)
        assert client._worker.thread is not None
        assert client._worker.thread.is_alive()
    finally:
        signals.element_dropped.disconnect(on_drop)
        client.shutdown(2)
    # The caller only queued: whatever the value (cyclic, hostile, 150 KB), no call waited on
    # anything, while the worker ran beside it: no sleep, no wait on a condition or an event,
    # no lock another thread held, no socket.
    assert spy.waits == []
    outcomes = [expected_outcome(attrs) for attrs in batch]
    stats = client.stats()
    assert stats.queued == stats.sent + sum(stats.dropped.values()) + stats.failed + stats.pending
    assert stats.sent == 2 + sum(o == "sent" for o, _ in outcomes)
    assert (stats.failed, stats.pending) == (0, 0)
    assert Counter(seen) == Counter(d for o, d in outcomes if o == "dropped")
    assert stats.dropped == Counter(d[0] for o, d in outcomes if o == "dropped")
    for i, (outcome, detail) in enumerate(outcomes):
        events = emulator.events(customer_id=f"prop-{i:03d}")
        if outcome == "sent":
            assert [action_attributes(e) for e in events] == [detail]
        else:
            assert events == []
    assert len(emulator.events(customer_id="prop-before")) == 1
    assert len(emulator.events(customer_id="prop-after")) == 1
    assert emulator.dropped() == []


# -- user code that raises on the worker ----------------------------------------------------------


class ExitingMapping(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise SystemExit("an attribute value that calls sys.exit() on the worker")


def exiting_before_send(element: dict[str, Any]) -> dict[str, Any]:
    if element.get("action") == "Exit":
        raise SystemExit(1)
    return element


def test_user_code_raising_even_systemexit_on_the_worker_never_ends_it(
    emulator: Emulator,
) -> None:
    client = moetrack.Client(
        emulator.app_id,
        emulator.api_key,
        endpoint=emulator.url,
        flush_interval=0.05,
        before_send=exiting_before_send,
    )
    try:
        client.track("Exit", customer_id="exit-user")
        client.track("Value", {"v": ExitingMapping(a=1)}, customer_id="exit-user")
        client.track("Fine", customer_id="exit-user")
        assert client.flush(5)
        assert client._worker.thread is not None
        assert client._worker.thread.is_alive()
        client.track("Later", customer_id="exit-user")
        assert client.flush(5)
    finally:
        client.shutdown(2)
    stats = client.stats()
    assert (stats.sent, stats.dropped) == (2, {"error": 2})
    assert [e["action"] for e in emulator.events()] == ["Fine", "Later"]


@pytest.mark.parametrize(
    "when",
    [
        pytest.param("a batch fails", id="batch-failed"),
        pytest.param(
            "a record is dropped",
            id="record-dropped",
        ),
    ],
)
def test_an_on_error_callback_that_calls_sys_exit_never_ends_the_worker(
    when: str, emulator: Emulator
) -> None:

    def on_error(error: moetrack.MoetrackError) -> None:
        raise SystemExit(2)  # "stop the script on the first error" - from the worker thread

    client = moetrack.Client(
        emulator.app_id,
        emulator.api_key,
        endpoint=emulator.url,
        flush_interval=0.05,
        on_error=on_error,
    )
    try:
        if when == "a batch fails":
            emulator.fail_next(1, 400)
            client.track("Refused", customer_id="exit-user")
            assert client.flush(5) is False  # settled: refused
        else:  # prepared together with the records after it
            client.track("Dropped", customer_id="1")
        for n in range(3):
            client.track("Fine", customer_id="exit-user", n=n)
        assert client.flush(2)
        assert client._worker.thread is not None
        assert client._worker.thread.is_alive()
    finally:
        client.shutdown(0.5)
    assert client.stats().sent == 3
    assert [e["attributes"]["n"] for e in emulator.events()] == [0, 1, 2]
