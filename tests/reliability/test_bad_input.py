"""Arbitrary input never crashes the worker and never blocks the caller: each record is
delivered exactly as its normalised JSON, or dropped with a reason and the field it names —
and strict mode raises a ValidationError with that same reason and field.

The expected outcome comes from a small model of the README's validation rules, written
independently of moetrack/_validate.py. Most examples go through ``capture()`` (no HTTP);
a smaller set goes through the background worker to the emulator.
"""

from __future__ import annotations

import enum
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import moetrack
from moetrack import signals
from moetrack.testing import Emulator, capture

MAX_DEPTH = 16
INT64 = (-(2**63), 2**63 - 1)
RESERVED = {"id", "_id", "userId", ""}


# -- a model of the rules (README, "Validation") ----------------------------------------------


class Refused(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason


def _utf8(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(field, "invalid_value") from None


def _utc(v: datetime | date) -> str:
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            try:
                v = v.astimezone(timezone.utc).replace(tzinfo=None)
            except OverflowError:
                raise Refused("", "invalid_value") from None
        return v.isoformat() + "Z"
    return v.isoformat()


def _int(v: int, field: str) -> int:
    if not INT64[0] <= v <= INT64[1]:
        raise Refused(field, "invalid_value")
    return v


def _finite(v: float, field: str) -> float:
    if not math.isfinite(v):
        raise Refused(field, "invalid_value")
    return v


def model_value(v: Any, field: str, depth: int = 0) -> Any:
    t = type(v)
    if t is str:
        _utf8(v, field)
        return v
    if t is bool or v is None:
        return v
    if t is int:
        return _int(v, field)
    if t is float:
        return _finite(v, field)
    if depth >= MAX_DEPTH:  # also what ends a cycle
        raise Refused(field, "invalid_value")
    if isinstance(v, Hostile):
        raise Refused(field, "invalid_value")
    if isinstance(v, dict):
        out = {}
        for k, item in v.items():
            if not isinstance(k, str):
                raise Refused(field, "invalid_value")
            _utf8(k, field)
            out[k] = model_value(item, f"{field}.{k}", depth + 1)
        return out
    if isinstance(v, list | tuple):
        return [model_value(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(v)]
    if isinstance(v, enum.Enum):
        return model_value(v.value, field, depth + 1)
    if isinstance(v, str):
        return model_value(str(v), field, depth)
    if isinstance(v, datetime | date):
        try:
            return _utc(v)
        except Refused:
            raise Refused(field, "invalid_value") from None
    if isinstance(v, Decimal):
        if not v.is_finite():
            raise Refused(field, "invalid_value")
        if v == v.to_integral_value():
            if v.adjusted() >= 19:  # at least 1e19: int() of 1e9999999 would take minutes
                raise Refused(field, "invalid_value")
            return _int(int(v), field)
        return _finite(float(v), field)
    if isinstance(v, uuid.UUID):
        return str(v)
    raise Refused(field, "invalid_value")


def model(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    """The attributes as they go on the wire, or Refused(field, reason)."""
    out = {}
    for name, v in attrs.items():
        if not isinstance(name, str):
            raise Refused(f"attributes[{name!r}]", "invalid_attribute_name")
        if name in RESERVED or not name.strip():
            raise Refused(f"attributes.{name}" if name else "attributes", "reserved_name")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused(f"attributes[{name!r}]", "invalid_attribute_name") from None
        out[name] = model_value(v, f"attributes.{name}")
    if len(json.dumps(out, ensure_ascii=False)) > 90_000:  # generated sizes stay far from it
        raise Refused("element", "too_large")
    return out


def expected_outcome(attrs: Mapping[Any, Any]) -> tuple[str, Any]:
    try:
        return "sent", json.loads(json.dumps(model(attrs)))
    except Refused as refused:
        return "dropped", (refused.reason, refused.field)


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
        slowest = 0.0
        for i, attrs in enumerate(batch):
            start = time.perf_counter()
            client.track("Prop", attrs, customer_id=f"prop-{i:03d}")
            slowest = max(slowest, time.perf_counter() - start)
        client.track("After", customer_id="prop-after")  # the worker still works after them
        assert client.flush(20)
        assert client._worker.thread is not None
        assert client._worker.thread.is_alive()
    finally:
        signals.element_dropped.disconnect(on_drop)
        client.shutdown(2)
    # The caller only queued: a cyclic, hostile or 150 KB value costs it nothing.
    assert slowest < 0.05
    outcomes = [expected_outcome(attrs) for attrs in batch]
    stats = client.stats()
    assert stats.queued == stats.sent + sum(stats.dropped.values()) + stats.failed + stats.pending
    assert stats.sent == 1 + sum(o == "sent" for o, _ in outcomes)
    assert (stats.failed, stats.pending) == (0, 0)
    assert Counter(seen) == Counter(d for o, d in outcomes if o == "dropped")
    assert stats.dropped == Counter(d[0] for o, d in outcomes if o == "dropped")
    for i, (outcome, detail) in enumerate(outcomes):
        events = emulator.events(customer_id=f"prop-{i:03d}")
        if outcome == "sent":
            assert [action_attributes(e) for e in events] == [detail]
        else:
            assert events == []
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
            assert client.flush(5)
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
