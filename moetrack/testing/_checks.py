"""The emulator's checks, written from the Data API document alone.

This module is the oracle of the test suite, so it shares nothing with the client it judges:
it imports nothing from ``moetrack``, and every rule below is stated next to the sentence of
the vendor's Data API page (``MOENGAGE_DATA_API.md`` digests it) it comes from. Where the
page is silent or ambiguous the emulator takes the stricter reading, so that what passes
here passes the real API too; each such choice is said where it is made.

Everything here is pure: functions take what arrived (headers, bytes, parsed JSON) and either
return what the request means or raise :class:`Refused` carrying a row of the documented
error table.

An element rule that fails is a :class:`Problem`: a short ``reason`` code, the ``field`` it
concerns (a dotted path inside the element; empty for the element as a whole) and what the
field was ``expected`` to be. The single-element endpoints turn the first problem into a 400
``MissingAttributeError`` ("{field} is expected to be {expected}"); Bulk Import records it as a
drop and answers 200 ("All bulk API requests return a 200 response code").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NamedTuple

__all__ = [
    "APP_ID_HEADER",
    "BODY_LIMIT",
    "DEVICE_PLATFORMS",
    "ELEMENT_TYPES",
    "ENDPOINTS",
    "ERRORS",
    "EVENT_PLATFORMS",
    "FORBIDDEN_CUSTOMER_IDS",
    "RESERVED_DEVICE_ATTRIBUTE_NAMES",
    "RESERVED_EVENT_NAMES",
    "RESERVED_USER_ATTRIBUTE_NAMES",
    "TIMEZONE_OFFSET_LIMIT",
    "ElementCheck",
    "ErrorRow",
    "Problem",
    "Refused",
    "check_body",
    "check_content_type",
    "check_element",
    "count_users_and_events",
    "error_row_for_status",
    "is_iso8601",
    "parse_authorization",
    "parse_body",
]


# --- the document's facts -------------------------------------------------------------------

#: "POST https://api-01.moengage.com/v1/customer/<APP ID>" and the device, event and
#: transition (Bulk Import) paths alike: path segment -> the body ``type`` it takes.
ENDPOINTS: Mapping[str, str] = {
    "customer": "customer",
    "device": "device",
    "event": "event",
    "transition": "transition",
}
#: "A single bulk import API contains users, devices and events together."
ELEMENT_TYPES = ("customer", "device", "event")

#: "Set the MOE-APPKEY header available at Settings > App Settings > Account Settings > APP ID"
APP_ID_HEADER = "MOE-APPKEY"

#: "413 | Payload too large | The payload can not exceed 128KB": what the server refuses, with
#: KB as 1,024 bytes. The page also asks senders to keep bodies to 100KB ("The maximum limit
#: for the request body is 100KB"); that is the client's rule to keep, and a test asks for it
#: with ``Emulator(max_body_bytes=100_000)``.
BODY_LIMIT = 128 * 1024

#: "Any string of more than one characters is allowed for customer_id except the following
#: values - ['unknown', 'guest', 'null', '0', '1', 'true', 'false', 'user_attribute_unique_id',
#: '(empty)', 'na', 'n/a', '', 'dummy_seller_code', 'user_id', 'id', 'customer_id', 'uid',
#: 'userid', 'none', '-2', '-1', '2']"
#: The page does not say how values are compared; the stricter reading compares them after
#: trimming white space and ignoring case ("Unknown", " null ").
FORBIDDEN_CUSTOMER_IDS = frozenset(
    ['unknown', 'guest', 'null', '0', '1', 'true', 'false', 'user_attribute_unique_id',
     '(empty)', 'na', 'n/a', '', 'dummy_seller_code', 'user_id', 'id', 'customer_id', 'uid',
     'userid', 'none', '-2', '-1', '2']
)  # fmt: skip

#: '"id", "_id", and "" keywords are blocked and do not use as user attribute names.'
RESERVED_USER_ATTRIBUTE_NAMES = frozenset({"id", "_id", ""})
#: '"id", "_id", "" keywords are blocked and do not use in device attribute names.'
RESERVED_DEVICE_ATTRIBUTE_NAMES = frozenset({"id", "_id", ""})
#: '"id", "_id", "userId", "" keywords are blocked and do not use in event attribute names.'
#: (under "Reserved keywords for event and event attribute names": event names too)
RESERVED_EVENT_NAMES = frozenset({"id", "_id", "userId", ""})

#: Device "platform ... Allowed values are ANDROID, iOS or web." Spelled exactly so: the page
#: names no other spelling.
DEVICE_PLATFORMS = ("ANDROID", "iOS", "web")
#: Event "platform ... Allowed values are ANDROID, iOS, web or unknown."
EVENT_PLATFORMS = ("ANDROID", "iOS", "web", "unknown")

#: "user_timezone_offset should have a value in seconds which can be between -54000 to 54000."
TIMEZONE_OFFSET_LIMIT = 54_000


# --- the error table ------------------------------------------------------------------------


class ErrorRow(NamedTuple):
    """One row of the documented error table."""

    status: int
    type: str
    message: str


#: The error table of the Data API page, row by row, under short names.
ERRORS: dict[str, ErrorRow] = {
    "missing_content_type": ErrorRow(
        400, "Missing header value", "The Content-Type Header is required"
    ),
    "empty_body": ErrorRow(400, "Empty request body", "A valid JSON document is required"),
    "malformed_json": ErrorRow(
        400,
        "Malformed JSON",
        "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8.",
    ),
    "blacklisted": ErrorRow(
        400, "Blacklisted", "Your account is blacklisted, Please contact MoEngage."
    ),
    "invalid_app_id": ErrorRow(400, "InvalidParams", "given app_id is invalid."),
    "app_id_required": ErrorRow(400, "ParamsRequired", "app_id is required in path/query params."),
    "not_an_object": ErrorRow(400, "Body type is not JSON", "A valid JSON document is required."),
    "missing_attribute": ErrorRow(
        400, "MissingAttributeError", "{key} is expected to be {datatype}"
    ),
    "auth_header_required": ErrorRow(
        401, "Authentication Required", "Authentication Header Required"
    ),
    "no_identity": ErrorRow(401, "Authentication required", "No identity information found"),
    "invalid_identity": ErrorRow(
        401, "Authentication required", "Invalid identity information found"
    ),
    "app_key_missing": ErrorRow(
        401, "Authentication required", "APP_KEY missing in the authentication header"
    ),
    "app_secret_missing": ErrorRow(
        401, "Authentication required", "APP_SECRET missing in the authentication header"
    ),
    "secret_mismatch": ErrorRow(
        401,
        "Authentication required",
        "App Secret key mismatch. Please login to the dashboard to verify key",
    ),
    "invalid_auth_app_id": ErrorRow(
        401, "Authentication required", "Invalid APP_ID used in Authentication Header"
    ),
    "suspended": ErrorRow(403, "Account Suspended", "Account Suspended"),
    "temporarily_suspended": ErrorRow(
        403, "Account Temporarily Suspended", "Account Temporarily Suspended"
    ),
    "app_id_mismatch": ErrorRow(
        409, "Authentication Mismatch", "App key mismatch in params and authentication"
    ),
    "secret_not_set": ErrorRow(
        409,
        "Authentication required",
        "App Secret key is not set. Please login to the dashboard to set a key",
    ),
    "payload_too_large": ErrorRow(413, "Payload too large", "The payload can not exceed 128KB"),
    "unsupported_media_type": ErrorRow(415, "Unsupported Media Type", "Unsupported Media Type"),
    "rate_limited": ErrorRow(429, "Rate Limit Exceeded", "Rate Limits for User / Event exceeded"),
    "server_error": ErrorRow(500, "Server Error", "Any other exception"),
}


def error_row_for_status(status: int) -> ErrorRow:
    """The row an injected failure of ``status`` answers with (the table's first for it)."""
    for row in ERRORS.values():
        if row.status == status:
            return row
    if status >= 500:
        return ErrorRow(status, "Server Error", "Any other exception")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return ErrorRow(status, phrase, phrase)


class Refused(Exception):
    """The request is answered with one row of the error table (and no state changes)."""

    def __init__(
        self, row: ErrorRow, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.row = row
        self.message = row.message if message is None else message
        self.headers = headers or {}
        super().__init__(f"{row.status} {row.type}: {self.message}")

    @classmethod
    def missing_attribute(cls, key: str, datatype: str) -> Refused:
        return cls(ERRORS["missing_attribute"], f"{key} is expected to be {datatype}")


# --- headers --------------------------------------------------------------------------------


def check_content_type(value: str | None) -> None:
    """'Set the Content-Type header to application/JSON': 400 when absent ("The header value
    for Content type is missing"), 415 for any other media type. Parameters such as charset
    do not change the media type."""
    if value is None or not value.strip():
        raise Refused(ERRORS["missing_content_type"])
    if value.split(";", 1)[0].strip().lower() != "application/json":
        raise Refused(ERRORS["unsupported_media_type"])


def parse_authorization(value: str | None) -> tuple[str, str]:
    """``(username, password)`` of "Basic authentication sends a Base64-encoded string
    containing username and password", one 401 row per way it can be wrong."""
    if value is None:
        raise Refused(ERRORS["auth_header_required"])
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "basic" or not credentials:
        raise Refused(ERRORS["no_identity"])
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Refused(ERRORS["invalid_identity"]) from None
    if ":" not in decoded:
        raise Refused(ERRORS["invalid_identity"])
    username, _, password = decoded.partition(":")
    if not username:
        raise Refused(ERRORS["app_key_missing"])
    if not password:
        raise Refused(ERRORS["app_secret_missing"])
    return username, password


# --- body -----------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, although Python's decoder accepts them by default.
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or the 400 the table gives for it ("The request body is
    empty", "The request JSON is not formed correctly", "String Payload")."""
    if not body:
        raise Refused(ERRORS["empty_body"])
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(ERRORS["malformed_json"]) from None
    if not isinstance(value, dict):
        raise Refused(ERRORS["not_an_object"])
    return value


# --- values ---------------------------------------------------------------------------------

# ASCII digits only: "\d" would also take other scripts' digits, which no API parses.
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_CLOCK = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,][0-9]+)?)?")
_ZONE = re.compile(r"[Zz]|[+-]([0-9]{2})(?::?([0-9]{2}))?")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _calendar_date(year: int, month: int, day: int) -> bool:
    if year < 1 or not 1 <= month <= 12 or day < 1:
        return False
    if month == 2 and day == 29:
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= _DAYS_IN_MONTH[month - 1]


def is_iso8601(text: str) -> bool:
    """Whether ``text`` is an ISO 8601 date or date and time, as the page's examples write
    them ("2020-05-31T16:33:35Z", "2019-05-21T03:47:35Z").

    A calendar date ``YYYY-MM-DD``, optionally followed by ``T`` (or a space, as RFC 3339
    allows) and ``hh:mm[:ss[.fraction]]`` with an optional zone: ``Z`` or ``±hh[[:]mm]``.
    Every part must name a real moment: no 13th month, 30th of February or 25th hour.
    """
    date = _DATE.match(text)
    if date is None or not _calendar_date(*(int(part) for part in date.groups())):
        return False
    rest = text[date.end() :]
    if not rest:
        return True
    if rest[0] not in "Tt ":
        return False
    clock = _CLOCK.match(rest, 1)
    if clock is None:
        return False
    hour, minute, second = clock.groups()
    if int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59:
        return False
    zone_text = rest[clock.end() :]
    if not zone_text:
        return True
    zone = _ZONE.fullmatch(zone_text)
    if zone is None:
        return False
    zone_hours, zone_minutes = zone.groups()
    return int(zone_hours or 0) <= 23 and int(zone_minutes or 0) <= 59


def _is_number(value: Any) -> bool:
    # JSON true and false are not numbers, although Python's bool is an int.
    return type(value) in (int, float)


def _is_epoch_seconds(value: Any) -> bool:
    """A number of seconds since 1970 ("Epoch time in seconds, for example - 1590404615")."""
    return _is_number(value) and 0 <= value < float("inf")


def _is_time(value: Any) -> bool:
    """'Allowed formats for current_time are ISO 8601 , for example 2020-05-31T16:33:35Z or
    Epoch time in seconds, for example - 1590404615' (user_time alike)."""
    return _is_epoch_seconds(value) or (isinstance(value, str) and is_iso8601(value))


def _is_allowed_customer_id(value: str) -> bool:
    trimmed = value.strip()
    return len(trimmed) > 1 and trimmed.lower() not in FORBIDDEN_CUSTOMER_IDS


def _is_offset(value: Any) -> bool:
    return type(value) is int and -TIMEZONE_OFFSET_LIMIT <= value <= TIMEZONE_OFFSET_LIMIT


def _is_non_blank_string(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


# --- element rules --------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One broken rule: the reason code, the field (dotted path) and what it should have been."""

    reason: str
    field: str
    expected: str

    def at(self, prefix: str) -> Problem:
        return Problem(
            self.reason, f"{prefix}.{self.field}" if self.field else prefix, self.expected
        )

    @property
    def message(self) -> str:
        return f"{self.field or 'element'} is expected to be {self.expected}"


#: What is wrong with one element: the element's own problem (it is dropped whole), and the
#: index and problem of each bad action (only those actions are dropped).
ElementCheck = tuple[Problem | None, list[tuple[int, Problem]]]

#: A rule reads one object (an element, or one action) and names what is wrong with it.
Rule = Callable[[Mapping[str, Any]], Problem | None]

_ABSENT: Any = object()


def _field(
    key: str, accept: Callable[[Any], bool], reason: str, expected: str, *, required: bool
) -> Rule:
    """``key`` must satisfy ``accept``; absent (or null) is fine unless ``required``."""

    def rule(obj: Mapping[str, Any]) -> Problem | None:
        value = obj.get(key, _ABSENT)
        if value is _ABSENT or value is None:
            return Problem(reason, key, expected) if required else None
        return None if accept(value) else Problem(reason, key, expected)

    return rule


def _names_allowed(key: str, reserved: frozenset[str], kind: str) -> Rule:
    """No name in the ``key`` object is one of ``reserved``."""
    shown = ", ".join(repr(name) for name in sorted(reserved))

    def rule(obj: Mapping[str, Any]) -> Problem | None:
        names = obj.get(key)
        for name in names if isinstance(names, dict) else ():
            if name in reserved:
                return Problem("reserved_name", f"{key}.{name}", f"{kind} other than {shown}")
        return None

    return rule


def _action_name(obj: Mapping[str, Any]) -> Problem | None:
    name = obj.get("action")
    if not isinstance(name, str):
        return Problem("invalid_event_name", "action", "string")
    if name in RESERVED_EVENT_NAMES:
        shown = ", ".join(repr(n) for n in sorted(RESERVED_EVENT_NAMES))
        return Problem("reserved_name", "action", f"an event name other than {shown}")
    return None


_CUSTOMER_ID: tuple[Rule, ...] = (
    # "customer_id | String | Yes"
    _field("customer_id", lambda v: isinstance(v, str), "invalid_customer_id", "string",
           required=True),
    _field("customer_id", _is_allowed_customer_id, "invalid_customer_id",
           "string of more than one character and not a forbidden value", required=True),
)  # fmt: skip

#: "device_id | String | No": when given, it names a device, so it is a non-blank string.
_DEVICE_ID = _field(
    "device_id", _is_non_blank_string, "invalid_device_id", "non-empty string", required=False
)

#: "attributes | JSON Object | No"
_ATTRIBUTES = _field(
    "attributes", lambda v: isinstance(v, dict), "invalid_attributes", "dict", required=False
)

#: User API: "type", "customer_id" (required), "attributes" (JSON Object, optional).
CUSTOMER_RULES: tuple[Rule, ...] = (
    *_CUSTOMER_ID,
    _ATTRIBUTES,
    _names_allowed("attributes", RESERVED_USER_ATTRIBUTE_NAMES, "a name"),
)

_PLATFORM_REQUIRED = _field(
    "platform", lambda v: True, "invalid_device", "one of ANDROID, iOS, web", required=True
)
_PLATFORM_VALUE = _field(
    "platform",
    lambda v: v in DEVICE_PLATFORMS,
    "invalid_platform",
    "one of ANDROID, iOS, web",
    required=False,
)
#: "push_id | String | Yes"
_PUSH_ID = _field(
    "push_id",
    lambda v: isinstance(v, str) and v != "",
    "invalid_device",
    "non-empty string",
    required=True,
)


def _device_attributes(obj: Mapping[str, Any]) -> Problem | None:
    """The device's "platform | String | Yes" and "push_id | String | Yes", in ``attributes``."""
    attrs = obj.get("attributes")
    inner = attrs if isinstance(attrs, dict) else {}
    for rule in (_PLATFORM_REQUIRED, _PLATFORM_VALUE, _PUSH_ID):
        problem = rule(inner)
        if problem is not None:
            return problem.at("attributes")
    return None


#: Device API: "customer_id" (required), "device_id" (optional), attributes with "platform"
#: and "push_id" (required).
DEVICE_RULES: tuple[Rule, ...] = (
    *_CUSTOMER_ID,
    _DEVICE_ID,
    _ATTRIBUTES,
    _names_allowed("attributes", RESERVED_DEVICE_ATTRIBUTE_NAMES, "a name"),
    _device_attributes,
)

#: One entry of "actions": "action | String | Yes", "attributes | JSON Object | No",
#: "platform", "app_version | String | No", "user_time", "current_time",
#: "user_timezone_offset | Numeric | No".
ACTION_RULES: tuple[Rule, ...] = (
    _action_name,
    _ATTRIBUTES,
    _names_allowed("attributes", RESERVED_EVENT_NAMES, "a name"),
    _field("platform", lambda v: v in EVENT_PLATFORMS, "invalid_platform",
           "one of ANDROID, iOS, web, unknown", required=False),
    _field("app_version", lambda v: isinstance(v, str), "invalid_app_version", "string",
           required=False),
    _field("current_time", _is_time, "invalid_time",
           "epoch seconds (>= 0) or ISO 8601 string", required=False),
    _field("user_time", _is_time, "invalid_time",
           "epoch seconds (>= 0) or ISO 8601 string", required=False),
    _field("user_timezone_offset", _is_offset, "invalid_timezone_offset",
           "integer between -54000 and 54000", required=False),
)  # fmt: skip

#: Event API: "customer_id" (required), "device_id" (optional), "actions | List | Yes".
EVENT_RULES: tuple[Rule, ...] = (
    *_CUSTOMER_ID,
    _DEVICE_ID,
    _field("actions", lambda v: isinstance(v, list), "no_actions", "list", required=True),
    _field("actions", lambda v: len(v) > 0, "no_actions", "non-empty list", required=True),
)

_RULES_BY_TYPE: Mapping[str, tuple[Rule, ...]] = {
    "customer": CUSTOMER_RULES,
    "device": DEVICE_RULES,
    "event": EVENT_RULES,
}


def _first_problem(obj: Mapping[str, Any], rules: tuple[Rule, ...]) -> Problem | None:
    for rule in rules:
        problem = rule(obj)
        if problem is not None:
            return problem
    return None


def _action_problems(actions: list[Any]) -> list[tuple[int, Problem]]:
    found = []
    for index, action in enumerate(actions):
        where = f"actions[{index}]"
        if not isinstance(action, dict):
            found.append((index, Problem("invalid_action", where, "dict")))
            continue
        problem = _first_problem(action, ACTION_RULES)
        if problem is not None:
            found.append((index, problem.at(where)))
    return found


def check_element(element: Any, expected_type: str | None = None) -> ElementCheck:
    """Check one element: ``(problem with the element, [(action index, problem), ...])``.

    ``expected_type`` is the endpoint's own type for the single-element endpoints ("type |
    String | Yes | This is used to identify the type of request."); a Bulk Import element may
    be any of the three element types.
    """
    if not isinstance(element, dict):
        return Problem("invalid_element", "", "dict"), []
    kind = element.get("type")
    if expected_type is None:
        if kind not in ELEMENT_TYPES:
            return Problem("unknown_type", "type", "one of 'customer', 'device', 'event'"), []
    elif not isinstance(kind, str):
        return Problem("unknown_type", "type", "string"), []
    elif kind != expected_type:
        return Problem("unknown_type", "type", repr(expected_type)), []
    problem = _first_problem(element, _RULES_BY_TYPE[kind])
    if problem is not None or kind != "event":
        return problem, []
    return None, _action_problems(element["actions"])


def check_body(endpoint: str, body: dict[str, Any]) -> tuple[list[Any], list[ElementCheck]]:
    """The elements of a body and what is wrong with each.

    Bulk Import (``transition``) refuses only a body without its ``type`` ("transition") or
    its ``elements`` list, and leaves bad elements to be dropped; the single-element endpoints
    refuse the request on the first problem (400 MissingAttributeError).
    """
    if endpoint == "transition":
        kind = body.get("type")
        if kind != "transition":
            raise Refused.missing_attribute(
                "type", "'transition'" if isinstance(kind, str) else "string"
            )
        elements = body.get("elements")
        if not isinstance(elements, list):
            raise Refused.missing_attribute("elements", "list")
        return elements, [check_element(element) for element in elements]
    problem, bad_actions = check_element(body, ENDPOINTS[endpoint])
    if problem is None and bad_actions:
        problem = bad_actions[0][1]
    if problem is not None:
        raise Refused(ERRORS["missing_attribute"], problem.message)
    return [body], [(None, [])]


def count_users_and_events(elements: list[Any]) -> tuple[int, int]:
    """What a body counts against the rate limits ("1,000 users/min and 10,000 events/min"):
    each customer and device element is a user, each action of an event element an event
    (valid or not)."""
    users = events = 0
    for element in elements:
        if not isinstance(element, dict):
            continue
        kind = element.get("type")
        if kind in ("customer", "device"):
            users += 1
        elif kind == "event" and isinstance(element.get("actions"), list):
            events += len(element["actions"])
    return users, events
