"""The emulator's checks: the Data API's error table and the rules an element must follow.

Everything here is pure: functions take what arrived (headers, bytes, parsed JSON) and either
return what the request means or raise :class:`Refused` carrying a row of the documented
error table. The rules themselves come from :mod:`moetrack._spec`, the same constants the
client validates against, so the two can be read side by side.

An element rule that fails is a :class:`Problem`: a short ``reason`` code, the ``field`` it
concerns (a dotted path inside the element; empty for the element as a whole) and what the
field was ``expected`` to be. The single-element endpoints turn the first problem into a 400
``MissingAttributeError`` ("{field} is expected to be {expected}"); Bulk Import records it as a
drop and answers 200.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NamedTuple

from .. import _spec
from .._validate import is_iso8601

__all__ = [
    "ERRORS",
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
    """400 when absent, 415 when not ``application/json`` (parameters such as charset are fine)."""
    if value is None or not value.strip():
        raise Refused(ERRORS["missing_content_type"])
    if value.split(";", 1)[0].strip().lower() != "application/json":
        raise Refused(ERRORS["unsupported_media_type"])


def parse_authorization(value: str | None) -> tuple[str, str]:
    """``(app_id, api_key)`` from ``Authorization: Basic base64(app_id:api_key)``."""
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
    """The body as a JSON object, or the 400 the API gives for it."""
    if not body:
        raise Refused(ERRORS["empty_body"])
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(ERRORS["malformed_json"]) from None
    if not isinstance(value, dict):
        raise Refused(ERRORS["not_an_object"])
    return value


# --- elements -------------------------------------------------------------------------------


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

_EVENT_PLATFORMS = frozenset(_spec.EVENT_PLATFORMS.values())
_DEVICE_PLATFORMS = frozenset(_spec.DEVICE_PLATFORMS.values())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _customer_id(element: dict[str, Any]) -> Problem | None:
    value = element.get("customer_id")
    if not isinstance(value, str):
        return Problem("invalid_customer_id", "customer_id", "string")
    trimmed = value.strip()
    if len(trimmed) <= 1 or trimmed.lower() in _spec.FORBIDDEN_CUSTOMER_IDS:
        return Problem(
            "invalid_customer_id",
            "customer_id",
            "string of more than one character and not a forbidden value",
        )
    return None


def _attributes(container: dict[str, Any], reserved: frozenset[str]) -> Problem | None:
    attrs = container.get("attributes")
    if attrs is None:  # absent (or null): nothing to set
        return None
    if not isinstance(attrs, dict):
        return Problem("invalid_attributes", "attributes", "dict")
    for name in attrs:
        if name in reserved:
            names = ", ".join(repr(n) for n in sorted(reserved))
            return Problem("reserved_name", f"attributes.{name}", f"a name other than {names}")
    return None


def _device_id(element: dict[str, Any]) -> Problem | None:
    value = element.get("device_id")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        return Problem("invalid_device_id", "device_id", "non-empty string")
    return None


def _check_customer(element: dict[str, Any]) -> Problem | None:
    return _customer_id(element) or _attributes(element, _spec.RESERVED_USER_NAMES)


def _check_device(element: dict[str, Any]) -> Problem | None:
    problem = (
        _customer_id(element)
        or _device_id(element)
        or _attributes(element, _spec.RESERVED_USER_NAMES)
    )
    if problem is not None:
        return problem
    attrs: dict[str, Any] = element.get("attributes") or {}
    platform = attrs.get("platform")
    if platform is None:
        return Problem("invalid_device", "attributes.platform", "one of ANDROID, iOS, web")
    if platform not in _DEVICE_PLATFORMS:
        return Problem("invalid_platform", "attributes.platform", "one of ANDROID, iOS, web")
    push_id = attrs.get("push_id")
    if not isinstance(push_id, str) or not push_id:
        return Problem("invalid_device", "attributes.push_id", "non-empty string")
    return None


def _check_action(action: Any) -> Problem | None:
    if not isinstance(action, dict):
        return Problem("invalid_action", "", "dict")
    name = action.get("action")
    if not isinstance(name, str):
        return Problem("invalid_event_name", "action", "string")
    if name in _spec.RESERVED_EVENT_NAMES:
        names = ", ".join(repr(n) for n in sorted(_spec.RESERVED_EVENT_NAMES))
        return Problem("reserved_name", "action", f"an event name other than {names}")
    problem = _attributes(action, _spec.RESERVED_EVENT_NAMES)
    if problem is not None:
        return problem
    platform = action.get("platform")
    if platform is not None and platform not in _EVENT_PLATFORMS:
        return Problem("invalid_platform", "platform", "one of ANDROID, iOS, web, unknown")
    app_version = action.get("app_version")
    if app_version is not None and not isinstance(app_version, str):
        return Problem("invalid_app_version", "app_version", "string")
    for key in ("current_time", "user_time"):
        value = action.get(key)
        if value is None:
            continue
        if _is_number(value):
            if value < 0:
                return Problem("invalid_time", key, "epoch seconds (>= 0) or ISO 8601 string")
        elif not (isinstance(value, str) and is_iso8601(value)):
            return Problem("invalid_time", key, "epoch seconds (>= 0) or ISO 8601 string")
    offset = action.get("user_timezone_offset")
    if offset is not None and (
        not isinstance(offset, int)
        or isinstance(offset, bool)
        or not -_spec.MAX_TIMEZONE_OFFSET <= offset <= _spec.MAX_TIMEZONE_OFFSET
    ):
        return Problem(
            "invalid_timezone_offset", "user_timezone_offset", "integer between -54000 and 54000"
        )
    return None


def _check_event(element: dict[str, Any]) -> ElementCheck:
    problem = _customer_id(element) or _device_id(element)
    if problem is not None:
        return problem, []
    actions = element.get("actions")
    if not isinstance(actions, list):
        return Problem("no_actions", "actions", "list"), []
    if not actions:
        return Problem("no_actions", "actions", "non-empty list"), []
    bad: list[tuple[int, Problem]] = []
    for i, action in enumerate(actions):
        action_problem = _check_action(action)
        if action_problem is not None:
            bad.append((i, action_problem.at(f"actions[{i}]")))
    return None, bad


def check_element(element: Any, expected_type: str | None = None) -> ElementCheck:
    """Check one element: ``(problem with the element, [(action index, problem), ...])``.

    ``expected_type`` is the endpoint's own type for the single-element endpoints; a Bulk
    Import element may be of any element type.
    """
    if not isinstance(element, dict):
        return Problem("invalid_element", "", "dict"), []
    kind = element.get("type")
    if expected_type is not None:
        if not isinstance(kind, str):
            return Problem("unknown_type", "type", "string"), []
        if kind != expected_type:
            return Problem("unknown_type", "type", repr(expected_type)), []
    elif kind not in _spec.ELEMENT_TYPES:
        return Problem("unknown_type", "type", "one of 'customer', 'device', 'event'"), []
    if kind == "customer":
        return _check_customer(element), []
    if kind == "device":
        return _check_device(element), []
    return _check_event(element)


def check_body(endpoint: str, body: dict[str, Any]) -> tuple[list[Any], list[ElementCheck]]:
    """The elements of a body and what is wrong with each.

    Bulk Import (``transition``) refuses only a body without its ``type`` or ``elements``
    list, and leaves bad elements to be dropped; the single-element endpoints refuse the
    request on the first problem (400 MissingAttributeError).
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
    problem, bad_actions = check_element(body, endpoint)
    if problem is None and bad_actions:
        problem = bad_actions[0][1]
    if problem is not None:
        raise Refused(ERRORS["missing_attribute"], problem.message)
    return [body], [(None, [])]


def count_users_and_events(elements: list[Any]) -> tuple[int, int]:
    """What a body counts against the rate limits: customer and device elements are users,
    each action of an event element is an event (valid or not)."""
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
