"""What goes on the queue, and the wire items the worker turns it into.

The caller's thread builds a *record*: a plain tuple, the cheapest object Python makes,
holding the call's arguments, the context object and the time. Nothing is validated or
copied beyond the top-level attribute mapping. The worker turns each record into an
:class:`Item`: the validated element already encoded as JSON bytes, so a backlog waiting on
a rate limit or an outage holds compact bytes rather than Python objects.

Record layouts (index 0 is the kind)::

    (EVENT,  ctx, t, action, attributes, attrs, customer_id, device_id, platform,
             app_version, current_time, user_time, user_timezone_offset)
    (USER,   ctx, t, attributes, attrs, customer_id)
    (DEVICE, ctx, t, attributes, attrs, customer_id, device_id)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._context import Ctx
from .._exceptions import ValidationError
from . import encode as _encode
from . import spec as _spec
from . import validate as _validate
from .encode import min_body_size
from .item import DEVICE, EVENT, USER, Item

__all__ = ["DEVICE", "EVENT", "USER", "Item", "Record", "prepare"]

Record = tuple[Any, ...]
BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]


class Dropped(Exception):
    """``before_send`` returned None: the record is dropped on purpose (not an error)."""


def _merge_attrs(
    ctx: Ctx, mapping: Mapping[str, Any] | None, attrs: Mapping[str, Any]
) -> dict[str, Any]:
    base = ctx.attributes
    if base is None and mapping is None:
        return dict(attrs)
    merged: dict[str, Any] = dict(base) if base is not None else {}
    if mapping is not None:
        merged.update(mapping)
    merged.update(attrs)
    return merged


def as_element(record: Record) -> dict[str, Any]:
    """The record as the dict ``before_send`` sees: context applied, nothing validated."""
    kind = record[0]
    ctx: Ctx = record[1]
    if kind == EVENT:
        (_, _, t, action, mapping, attrs, cid, did, platform, app_version, ctime, utime, tz) = (
            record
        )
        element: dict[str, Any] = {
            "type": "event",
            "customer_id": cid if cid is not None else ctx.customer_id,
            "device_id": did if did is not None else ctx.device_id,
            "action": action,
            "attributes": _merge_attrs(ctx, mapping, attrs),
            "platform": platform if platform is not None else ctx.platform,
            "app_version": app_version if app_version is not None else ctx.app_version,
            "current_time": ctime if ctime is not None else int(t),
            "user_time": utime,
            "user_timezone_offset": tz if tz is not None else ctx.user_timezone_offset,
        }
        return element
    if kind == USER:
        (_, _, _, mapping, attrs, cid) = record
        return {
            "type": "customer",
            "customer_id": cid if cid is not None else ctx.customer_id,
            "attributes": _merge_user_attrs(mapping, attrs),
        }
    (_, _, _, mapping, attrs, cid, did) = record
    return {
        "type": "device",
        "customer_id": cid if cid is not None else ctx.customer_id,
        "device_id": did if did is not None else ctx.device_id,
        "attributes": _merge_user_attrs(mapping, attrs),
    }


def _merge_user_attrs(
    mapping: Mapping[str, Any] | None, attrs: Mapping[str, Any]
) -> dict[str, Any]:
    # Context attributes are event defaults (DESIGN §1); users and devices take only their own.
    if mapping is None:
        return dict(attrs)
    return {**mapping, **attrs}


def prepare(record: Record, max_bytes: int, before_send: BeforeSend | None = None) -> Item:
    """Validate and encode one record. Raises ValidationError (or Dropped)."""
    if before_send is None and record[0] == EVENT:
        return _event_record(record, max_bytes)
    element = as_element(record)
    if before_send is not None:
        changed = before_send(element)
        if changed is None:
            raise Dropped()
        if not isinstance(changed, Mapping):
            raise ValidationError(
                "before_send",
                f"must return a dict or None, got {type(changed).__name__}",
                "invalid",
            )
        element = dict(changed)
    kind = element.get("type")
    if kind == "event":
        return _event(element, max_bytes)
    if kind == "customer":
        return _user(element, max_bytes)
    if kind == "device":
        return _device(element, max_bytes)
    raise ValidationError("type", f"must be customer, device or event, got {kind!r}", "invalid")


def _mapping(value: Any, field: str = "attributes") -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(
            field, f"must be a mapping, got {type(value).__name__}", "invalid_value"
        )
    return value


#: Distinct strings a remembered check keeps; past this it forgets them all.
_REMEMBERED_MAX = 4096


def _remembered(check: Callable[[Any], str]) -> Callable[[Any], str]:
    """``check``, with the strings it accepted remembered: most records repeat a few
    customers and event names. Anything but a plain ``str`` is checked every time (an int
    or a str subclass may equal a remembered string and still be refused)."""
    valid_strings: dict[str, str] = {}

    def remembered(value: Any) -> str:
        if type(value) is not str:
            return check(value)
        valid = valid_strings.get(value)
        if valid is None:
            valid = check(value)
            if len(valid_strings) >= _REMEMBERED_MAX:
                valid_strings.clear()
            valid_strings[value] = valid
        return valid

    return remembered


_customer_id = _remembered(_validate.customer_id)
_event_name = _remembered(_validate.event_name)


#: An event whose action, customer id and device id are this much under the body limit
#: fits an empty body whatever their encoding: a character takes at most 6 bytes in JSON
#: (an escape), and a body's fixed text around one event is under 128 bytes.
_ESCAPED = 6
_FRAME = 128


def _fits_event(cid: str, did: str | None, payload: bytes, max_bytes: int) -> None:
    """``_fits`` for an event, measured only when it might not fit."""
    if len(payload) + _ESCAPED * (len(cid) + (len(did) if did is not None else 0)) + _FRAME > (
        max_bytes
    ):
        _fits(min_body_size(EVENT, cid, did, payload), max_bytes)


def _event_record(record: Record, max_bytes: int) -> Item:
    """The event path without ``before_send``: no intermediate element dict."""
    (_, ctx, t, action, mapping, attrs, cid, did, platform, app_version, ctime, utime, tz) = record
    cid = _customer_id(cid if cid is not None else ctx.customer_id)
    if did is None:
        did = ctx.device_id
    if did is not None:
        did = _validate.device_id(did)
    out: dict[str, Any] = {"action": _event_name(action)}
    merged = (
        attrs if ctx.attributes is None and mapping is None else _merge_attrs(ctx, mapping, attrs)
    )
    if merged:
        out["attributes"] = _validate.attributes(merged, _spec.RESERVED_EVENT_NAMES)
    if platform is None:
        platform = ctx.platform
    if platform is not None:
        out["platform"] = _validate.event_platform(platform)
    if app_version is None:
        app_version = ctx.app_version
    if app_version is not None:
        out["app_version"] = _text(app_version, "app_version")
    out["current_time"] = int(t) if ctime is None else _validate.timestamp(ctime, "current_time")
    if utime is not None:
        out["user_time"] = _validate.timestamp(utime, "user_time")
    if tz is None:
        tz = ctx.user_timezone_offset
    if tz is not None:
        out["user_timezone_offset"] = _validate.timezone_offset(tz)
    payload = _encode.dumps(out)
    _fits_event(cid, did, payload, max_bytes)
    return Item(EVENT, cid, did, payload)


def _event(e: Mapping[str, Any], max_bytes: int) -> Item:
    cid = _customer_id(e.get("customer_id"))
    did = _validate.device_id(e.get("device_id"))
    action: dict[str, Any] = {"action": _validate.event_name(e.get("action"))}
    attrs = _validate.attributes(_mapping(e.get("attributes")), _spec.RESERVED_EVENT_NAMES)
    if attrs:
        action["attributes"] = attrs
    if (platform := e.get("platform")) is not None:
        action["platform"] = _validate.event_platform(platform)
    if (app_version := e.get("app_version")) is not None:
        action["app_version"] = _text(app_version, "app_version")
    if (ctime := e.get("current_time")) is not None:
        action["current_time"] = _validate.timestamp(ctime, "current_time")
    if (utime := e.get("user_time")) is not None:
        action["user_time"] = _validate.timestamp(utime, "user_time")
    if (tz := e.get("user_timezone_offset")) is not None:
        action["user_timezone_offset"] = _validate.timezone_offset(tz)
    payload = _encode.dumps(action)
    _fits_event(cid, did, payload, max_bytes)
    return Item(EVENT, cid, did, payload)


def _user(e: Mapping[str, Any], max_bytes: int) -> Item:
    cid = _validate.customer_id(e.get("customer_id"))
    attrs = _validate.attributes(_mapping(e.get("attributes")), _spec.RESERVED_USER_NAMES)
    element: dict[str, Any] = {"type": "customer", "customer_id": cid}
    if attrs:
        element["attributes"] = attrs
    payload = _encode.dumps(element)
    _fits(min_body_size(USER, cid, None, payload), max_bytes)
    return Item(USER, cid, None, payload)


def _device(e: Mapping[str, Any], max_bytes: int) -> Item:
    cid = _validate.customer_id(e.get("customer_id"))
    did = _validate.device_id(e.get("device_id"))
    raw = dict(_mapping(e.get("attributes")))
    platform = _validate.device_platform(raw.get("platform"))
    if raw.get("push_id") in (None, ""):
        raise ValidationError("attributes.push_id", "is required for a device", "invalid_device")
    raw["platform"] = platform
    attrs = _validate.attributes(raw, _spec.RESERVED_USER_NAMES)
    element: dict[str, Any] = {"type": "device", "customer_id": cid}
    if did is not None:
        element["device_id"] = did
    element["attributes"] = attrs
    payload = _encode.dumps(element)
    _fits(min_body_size(DEVICE, cid, did, payload), max_bytes)
    return Item(DEVICE, cid, did, payload)


def _text(value: Any, field: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValidationError(
            field, f"must be a string, got {type(value).__name__}", "invalid_value"
        )
    _validate.value(value, field)
    return value


def _fits(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValidationError(
            "element",
            f"needs a {size:,}-byte request on its own, over the {max_bytes:,}-byte limit",
            "too_large",
        )


#: Fields each element type of the Data API takes (``shared/MOENGAGE_DATA_API.md``).
_ELEMENT_FIELDS: dict[str, frozenset[str]] = {
    "customer": frozenset({"type", "customer_id", "attributes"}),
    "device": frozenset({"type", "customer_id", "device_id", "attributes"}),
    "event": frozenset({"type", "customer_id", "device_id", "actions"}),
}
ACTION_FIELDS = frozenset(
    {
        "action",
        "attributes",
        "platform",
        "app_version",
        "current_time",
        "user_time",
        "user_timezone_offset",
    }
)


def from_element(element: Mapping[str, Any], max_bytes: int) -> list[Item]:
    """Validate one Data API element as a file or a request gives it; one item per action.

    ``{"type": "customer" | "device" | "event", ...}`` exactly as the API document defines
    it; an event element's ``actions`` list becomes one :class:`Item` per action. Times are
    kept as given. Raises :class:`ValidationError` naming the first problem (a field the
    element type does not have is ``unknown_field``).
    """
    kind = element.get("type")
    fields = _ELEMENT_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        if kind is None:
            raise ValidationError("type", "is required (customer, device or event)", "invalid")
        raise ValidationError("type", f"must be customer, device or event, got {kind!r}", "invalid")
    if not fields.issuperset(element):
        extra = next(k for k in element if k not in fields)
        raise ValidationError(str(extra), f"is not a field of a {kind} element", "unknown_field")
    if kind == "customer":
        return [_user(element, max_bytes)]
    if kind == "device":
        return [_device(element, max_bytes)]
    actions = element.get("actions")
    if not isinstance(actions, list) or not actions:
        raise ValidationError(
            "actions",
            "must be a non-empty list of actions"
            + (
                ""
                if actions is None or isinstance(actions, list)
                else f", got {type(actions).__name__}"
            ),
            "invalid",
        )
    cid = element.get("customer_id")
    did = element.get("device_id")
    items = []
    for i, action in enumerate(actions):
        if not isinstance(action, Mapping):
            raise ValidationError(
                f"actions[{i}]", f"must be an object, got {type(action).__name__}", "invalid"
            )
        if not ACTION_FIELDS.issuperset(action):
            extra = next(k for k in action if k not in ACTION_FIELDS)
            raise ValidationError(
                f"actions[{i}].{extra}", "is not a field of an action", "unknown_field"
            )
        flat = dict(action)
        flat["customer_id"] = cid
        flat["device_id"] = did
        try:
            items.append(_event(flat, max_bytes))
        except ValidationError as exc:
            if exc.field in ("customer_id", "device_id"):
                raise
            raise ValidationError(f"actions[{i}].{exc.field}", exc.rule, exc.reason) from None
    return items
