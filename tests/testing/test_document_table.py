"""The API document, rule by rule, against the emulator over HTTP.

Each row gives an input (a request, or one element), the outcome the document implies
(accepted, a row of its error table, or the element Bulk Import drops) and the sentence of
``MOENGAGE_DATA_API.md`` it comes from, quoted as written there. The expected outcomes are
written here from the document, not from the emulator's code nor the client's: this file is
what keeps the oracle honest.

Where the document leaves a choice open, the row says which reading is taken.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from moetrack.testing import App, Emulator
from tests._need import missing

APP = "TABLE_APP"
KEY = "table-key-0123456789"
OTHER = "OTHER_APP"
OTHER_KEY = "other-key-0123456789"

# Building an httpx.Client loads the CA bundle; the emulator speaks plain HTTP, so one context
# built here serves every client.
TLS = ssl.create_default_context()


def basic(credentials: str | bytes) -> str:
    raw = credentials.encode() if isinstance(credentials, str) else credentials
    return "Basic " + base64.b64encode(raw).decode()


AUTH = basic(f"{APP}:{KEY}")


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    apps = [
        App(APP, KEY),
        App(OTHER, OTHER_KEY),
        App("KEYLESS_APP", None),
        App("BLACK_APP", KEY, "blacklisted"),
        App("SUSPENDED_APP", KEY, "suspended"),
        App("PAUSED_APP", KEY, "temporarily_suspended"),
    ]
    with Emulator(apps) as emulator:
        yield emulator


@pytest.fixture
def emu(server: Emulator) -> Emulator:
    server.reset()
    server.set_rate_limits(None, None)
    return server


@pytest.fixture(scope="module")
def http(server: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10, verify=TLS) as client:
        yield client


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """200 ``{"status": "success"}``."""


@dataclass(frozen=True)
class Error:
    """A row of the document's error table."""

    status: int
    type: str
    message: str | None = None  # None: the table's message is a template


@dataclass(frozen=True)
class Dropped:
    """Bulk Import answers 200 and drops the element (or the one action) for ``reason``,
    naming ``field``; the element's own endpoint answers 400 MissingAttributeError."""

    reason: str
    field: str


ACCEPTED = Accepted()
Outcome = Accepted | Error | Dropped


# --- requests: headers, authentication, body, the error table -------------------------------

ONE_USER = {"type": "customer", "customer_id": "user-1", "attributes": {"plan": "pro"}}


@dataclass(frozen=True)
class Req:
    """One request; headers are sent exactly as given (None leaves a header out)."""

    path: str = f"/v1/customer/{APP}"
    body: Any = field(default_factory=lambda: ONE_USER)
    content_type: str | None = "application/json"
    authorization: str | None = AUTH
    headers: tuple[tuple[str, str], ...] = ()

    def send(self, http: httpx.Client) -> httpx.Response:
        content = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        return http.post(self.path, content=content, headers=headers)


def padded_user(total_bytes: int) -> bytes:
    """A valid User API body of exactly ``total_bytes`` bytes."""
    attributes = {"pad": ""}
    body = {"type": "customer", "customer_id": "user-1", "attributes": attributes}
    attributes["pad"] = "x" * (total_bytes - len(json.dumps(body).encode()))
    encoded = json.dumps(body).encode()
    assert len(encoded) == total_bytes
    return encoded


def on(app: str, key: str = KEY) -> dict[str, Any]:
    return {"path": f"/v1/customer/{app}", "authorization": basic(f"{app}:{key}")}


# (id, request, outcome, quoted sentence)
REQUEST_ROWS: list[tuple[str, Req, Outcome, str]] = [
    # Headers and authentication
    ("basic-auth-accepted", Req(), ACCEPTED,
     '`Authorization: Basic base64("{DATA API ID}:{DATA API KEY}")`'),
    ("json-content-type-accepted", Req(), ACCEPTED, "`Content-Type: application/json`"),
    ("content-type-with-charset", Req(content_type="application/json; charset=utf-8"), ACCEPTED,
     "`Content-Type: application/json`"),
    ("moe-appkey-header", Req(headers=(("MOE-APPKEY", APP),)), ACCEPTED,
     "`MOE-APPKEY: {APP_ID}`"),
    ("success-body", Req(), ACCEPTED, 'Responses: `{"status": "success"}`'),
    # Every row of the error table
    ("no-content-type", Req(content_type=None),
     Error(400, "Missing header value", "The Content-Type Header is required"),
     "| 400 | Missing header value | The Content-Type Header is required | no Content-Type |"),
    ("empty-body", Req(body=b""),
     Error(400, "Empty request body", "A valid JSON document is required"),
     "| 400 | Empty request body | A valid JSON document is required | empty body |"),
    ("malformed-json", Req(body=b'{"type": "customer"'),
     Error(400, "Malformed JSON", "Could not decode the request body. The JSON was incorrect or "
           "not encoded as UTF-8."),
     "| 400 | Malformed JSON | Could not decode the request body. The JSON was incorrect or not "
     "encoded as UTF-8. | bad JSON |"),
    ("not-utf8", Req(body=b'{"type": "customer", "customer_id": "caf\xe9-1"}'),
     Error(400, "Malformed JSON", "Could not decode the request body. The JSON was incorrect or "
           "not encoded as UTF-8."),
     "| 400 | Malformed JSON | Could not decode the request body. The JSON was incorrect or not "
     "encoded as UTF-8. | bad JSON |"),
    ("blacklisted", Req(**on("BLACK_APP")),
     Error(400, "Blacklisted", "Your account is blacklisted, Please contact MoEngage."),
     "| 400 | Blacklisted | Your account is blacklisted, Please contact MoEngage. | app "
     "blacklisted |"),
    ("unknown-app-id", Req(path="/v1/customer/NO_SUCH_APP"),
     Error(400, "InvalidParams", "given app_id is invalid."),
     "| 400 | InvalidParams | given app_id is invalid. | bad app id |"),
    ("no-app-id", Req(path="/v1/customer"),
     Error(400, "ParamsRequired", "app_id is required in path/query params."),
     "| 400 | ParamsRequired | app_id is required in path/query params. | no app id |"),
    ("app-id-in-query", Req(path=f"/v1/customer?app_id={APP}"), ACCEPTED,
     'The error table also speaks\nof `app_id` "in path/query params".'),
    ("json-string-body", Req(body=b'"a JSON string"'),
     Error(400, "Body type is not JSON", "A valid JSON document is required."),
     "| 400 | Body type is not JSON | A valid JSON document is required. | a JSON string as "
     "body |"),
    ("missing-field", Req(body={"type": "customer"}),
     Error(400, "MissingAttributeError"),
     "| 400 | MissingAttributeError | {{key}} is expected to be {{datatype}} | wrong or missing "
     "field |"),
    ("no-authorization", Req(authorization=None),
     Error(401, "Authentication Required", "Authentication Header Required"),
     "| 401 | Authentication Required | Authentication Header Required | no Authorization |"),
    ("empty-authorization", Req(authorization=""),
     Error(401, "Authentication required", "No identity information found"),
     "| 401 | Authentication required | No identity information found | empty Authorization |"),
    ("undecodable-authorization", Req(authorization="Basic %%%not-base64%%%"),
     Error(401, "Authentication required", "Invalid identity information found"),
     "| 401 | Authentication required | Invalid identity information found | cannot decode |"),
    ("no-username", Req(authorization=basic(f":{KEY}")),
     Error(401, "Authentication required", "APP_KEY missing in the authentication header"),
     "| 401 | Authentication required | APP_KEY missing in the authentication header | no "
     "username |"),
    ("no-password", Req(authorization=basic(f"{APP}:")),
     Error(401, "Authentication required", "APP_SECRET missing in the authentication header"),
     "| 401 | Authentication required | APP_SECRET missing in the authentication header | no "
     "password |"),
    ("wrong-key", Req(authorization=basic(f"{APP}:not-the-key")),
     Error(401, "Authentication required", "App Secret key mismatch. Please login to the "
           "dashboard to verify key"),
     "| 401 | Authentication required | App Secret key mismatch. Please login to the dashboard "
     "to verify key | wrong key |"),
    ("unknown-app-in-authorization", Req(authorization=basic(f"NO_SUCH_APP:{KEY}")),
     Error(401, "Authentication required", "Invalid APP_ID used in Authentication Header"),
     "| 401 | Authentication required | Invalid APP_ID used in Authentication Header | unknown "
     "app id |"),
    ("suspended", Req(**on("SUSPENDED_APP")),
     Error(403, "Account Suspended", "Account Suspended"),
     "| 403 | Account Suspended | Account Suspended | suspended |"),
    ("temporarily-suspended", Req(**on("PAUSED_APP")),
     Error(403, "Account Temporarily Suspended", "Account Temporarily Suspended"),
     "| 403 | Account Temporarily Suspended | Account Temporarily Suspended | suspended for "
     "now |"),
    ("path-app-is-not-auth-app", Req(authorization=basic(f"{OTHER}:{OTHER_KEY}")),
     Error(409, "Authentication Mismatch", "App key mismatch in params and authentication"),
     "| 409 | Authentication Mismatch | App key mismatch in params and authentication | path "
     "app id ≠ auth app id |"),
    ("no-key-set", Req(**on("KEYLESS_APP")),
     Error(409, "Authentication required", "App Secret key is not set. Please login to the "
           "dashboard to set a key"),
     "| 409 | Authentication required | App Secret key is not set. Please login to the "
     "dashboard to set a key | no key set |"),
    ("over-128kb", Req(body=padded_user(128 * 1024 + 1)),
     Error(413, "Payload too large", "The payload can not exceed 128KB"),
     "| 413 | Payload too large | The payload can not exceed 128KB | body too large |"),
    ("100kb-body", Req(body=padded_user(100_000)), ACCEPTED,
     "At most 100 KB per request body"),
    ("not-json-content-type", Req(content_type="text/plain"),
     Error(415, "Unsupported Media Type", "Unsupported Media Type"),
     "| 415 | Unsupported Media Type | Unsupported Media Type | not JSON content type |"),
    ("form-content-type", Req(content_type="application/x-www-form-urlencoded"),
     Error(415, "Unsupported Media Type", "Unsupported Media Type"),
     "| 415 | Unsupported Media Type | Unsupported Media Type | not JSON content type |"),
    # Endpoints and body types
    ("bulk-import-body", Req(path=f"/v1/transition/{APP}",
                             body={"type": "transition", "elements": [ONE_USER]}), ACCEPTED,
     '`{"type": "transition", "elements": [customer | device | event elements]}`'),
    ("bulk-import-without-elements", Req(path=f"/v1/transition/{APP}", body={"type": "transition"}),
     Error(400, "MissingAttributeError", "elements is expected to be list"),
     '`{"type": "transition", "elements": [customer | device | event elements]}`'),
    ("bulk-import-of-another-type",
     Req(path=f"/v1/transition/{APP}", body={"type": "customer", "elements": []}),
     Error(400, "MissingAttributeError"),
     "| Bulk Import | `POST /v1/transition/{APP_ID}` | `transition` |"),
    ("user-api-takes-customer",
     Req(path=f"/v1/customer/{APP}",
         body={"type": "event", "customer_id": "user-1", "actions": [{"action": "A"}]}),
     Error(400, "MissingAttributeError", "type is expected to be 'customer'"),
     "| User | `POST /v1/customer/{APP_ID}` | `customer` |"),
    ("device-api-takes-device",
     Req(path=f"/v1/device/{APP}", body=ONE_USER),
     Error(400, "MissingAttributeError", "type is expected to be 'device'"),
     "| Device | `POST /v1/device/{APP_ID}` | `device` |"),
    ("event-api-takes-event",
     Req(path=f"/v1/event/{APP}", body=ONE_USER),
     Error(400, "MissingAttributeError", "type is expected to be 'event'"),
     "| Event | `POST /v1/event/{APP_ID}` | `event` |"),
]  # fmt: skip


def assert_outcome(response: httpx.Response, outcome: Outcome) -> None:
    if isinstance(outcome, Accepted):
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "success"}
        return
    assert isinstance(outcome, Error)
    assert response.status_code == outcome.status, response.text
    answer = response.json()
    assert answer["status"] == "fail"
    assert set(answer["error"]) == {"type", "message"}
    assert answer["error"]["type"] == outcome.type
    if outcome.message is not None:
        assert answer["error"]["message"] == outcome.message
    else:  # "{{key}} is expected to be {{datatype}}"
        assert re.fullmatch(r"\S+ is expected to be .+", answer["error"]["message"]), answer


@pytest.mark.parametrize(
    ("request_", "outcome", "sentence"),
    [pytest.param(r, o, s, id=i) for i, r, o, s in REQUEST_ROWS],
)
def test_request(
    emu: Emulator, http: httpx.Client, request_: Req, outcome: Outcome, sentence: str
) -> None:
    assert_outcome(request_.send(http), outcome)
    if isinstance(outcome, Error):  # a refused request changes nothing
        assert (emu.users(), emu.events(), emu.dropped()) == ({}, [], [])


def test_any_other_exception_is_500(emu: Emulator, http: httpx.Client) -> None:
    """ "| 500 | Server Error | (any other exception) | |": nothing a client sends can cause it,
    so the emulator's fault control stands in for "any other exception"."""
    emu.fail_next(1, 500)
    assert_outcome(Req().send(http), Error(500, "Server Error", "Any other exception"))


# --- elements: what Bulk Import keeps and drops ---------------------------------------------


def customer(cid: Any = "user-1", **attributes: Any) -> dict[str, Any]:
    return {"type": "customer", "customer_id": cid, "attributes": attributes}


def device(cid: Any = "user-1", **attributes: Any) -> dict[str, Any]:
    attrs = {"platform": "iOS", "push_id": "push-token", **attributes}
    return {"type": "device", "customer_id": cid, "device_id": "dev-1", "attributes": attrs}


def event(*actions: dict[str, Any], cid: Any = "user-1", **fields: Any) -> dict[str, Any]:
    return {"type": "event", "customer_id": cid, "actions": list(actions), **fields}


def action(name: Any = "Purchase", **fields: Any) -> dict[str, Any]:
    return {"action": name, **fields}


def without(element: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in element.items() if k not in keys}


def device_attributes(**attributes: Any) -> dict[str, Any]:
    return {"type": "device", "customer_id": "user-1", "attributes": attributes}


CUSTOMER_FIELDS = "`type` (required), `customer_id` (required), `attributes` (object, optional)."
CUSTOMER_ID = "A string of more than one character (so every single digit, e.g. a small database primary\nkey, is invalid)"  # noqa: E501
FORBIDDEN = (
    "and none of: `unknown`, `guest`, `null`, `0`, `1`,\n`true`, `false`, "
    "`user_attribute_unique_id`, `(empty)`, `na`, `n/a`, empty string,\n`dummy_seller_code`, "
    "`user_id`, `id`, `customer_id`, `uid`, `userid`, `none`, `-2`, `-1`, `2`."
)
FORBIDDEN_VALUES = [
    "unknown", "guest", "null", "0", "1", "true", "false", "user_attribute_unique_id", "(empty)",
    "na", "n/a", "", "dummy_seller_code", "user_id", "id", "customer_id", "uid", "userid", "none",
    "-2", "-1", "2",
]  # fmt: skip
USER_RESERVED = "Reserved attribute names: `id`, `_id`, empty string."
DEVICE_FIELDS = (
    "`device_id` (optional: without it a new device is\ncreated), `attributes` with `platform` "
    "(required: ANDROID, iOS or web) and `push_id`\n(required)"
)
DEVICE_RESERVED = "Reserved names: `id`, `_id`, empty string."
EVENT_FIELDS = "`device_id` (optional, defaults to the\ncustomer_id), `actions` (required list)."
ACTION_NAME = "Each action: `action` (required name), `attributes`\n(object)"
EVENT_PLATFORM = "`platform` (ANDROID, iOS, web or unknown)"
CURRENT_TIME = "`current_time` (UTC, epoch\nseconds or ISO 8601; the receive time when absent)"
USER_TIME = "`user_time` (local time, same formats)"
OFFSET = "`user_timezone_offset` (seconds, -54000 to 54000; e.g. 19800 for UTC+05:30)"
EVENT_RESERVED = "Reserved event and\nevent attribute names: `id`, `_id`, `userId`, empty string."
STANDARD = (
    "Standard\nattributes: name, first_name, last_name, email, age (number), gender, mobile, "
    'moe_geo_location\n(`{"lat": 12.11, "lon": 123.122}`), source, created_time and last_seen '
    "(ISO 8601),\ntransactions (number), revenue (number), moe_unsubscribe (bool), platforms\n"
    '(`[{"platform": "ANDROID", "active": "true"}]`).'
)
CUSTOM = "Custom attributes: any other key (string,\nnumber, bool, date as ISO 8601)."
DEVICE_STANDARD = (
    "and model, push_preference (bool), app_version, os_version, active (bool),\n"
    "created_time (epoch seconds), plus custom keys."
)
BULK_TYPES = '`{"type": "transition", "elements": [customer | device | event elements]}`'
BULK_200 = "Bulk Import answers 200 to every request, even when it drops elements."

# (id, element, outcome, quoted sentence)
ELEMENT_ROWS: list[tuple[str, Any, Outcome, str]] = [
    # customer element
    ("customer-minimal", without(customer(), "attributes"), ACCEPTED, CUSTOMER_FIELDS),
    ("customer-without-type", without(customer(), "type"), Dropped("unknown_type", "type"),
     CUSTOMER_FIELDS),
    ("customer-without-customer-id", without(customer(), "customer_id"),
     Dropped("invalid_customer_id", "customer_id"), CUSTOMER_FIELDS),
    ("customer-attributes-not-object", {**customer(), "attributes": ["plan"]},
     Dropped("invalid_attributes", "attributes"), CUSTOMER_FIELDS),
    ("standard-attributes",
     customer(name="Ada L", first_name="Ada", last_name="L", email="a@b.c", age=36,
              gender="F", mobile="918888444411", moe_geo_location={"lat": 12.11, "lon": 123.122},
              source="Google Ads", created_time="2019-05-21T03:47:35Z",
              last_seen="2020-05-01T03:52:35Z", transactions=3, revenue=3999.5,
              moe_unsubscribe=False, platforms=[{"platform": "ANDROID", "active": "true"}]),
     ACCEPTED, STANDARD),
    ("custom-attributes", customer(points=20, super_user=True, persona="browsers",
                                   expiry_date="2020-05-31T03:47:35Z"), ACCEPTED, CUSTOM),
    *[(f"user-attribute-named-{name or 'empty'}", customer(**{name: "x"}),
       Dropped("reserved_name", f"attributes.{name}"), USER_RESERVED)
      for name in ("id", "_id", "")],
    ("user-attribute-userId-is-not-reserved", customer(userId="u-1"), ACCEPTED, USER_RESERVED),
    # customer_id
    ("customer-id-two-characters", customer("ab"), ACCEPTED, CUSTOMER_ID),
    ("customer-id-email", customer("john@example.com"), ACCEPTED, CUSTOMER_ID),
    ("customer-id-two-digits", customer("12"), ACCEPTED, CUSTOMER_ID),
    *[(f"customer-id-single-{c}", customer(c), Dropped("invalid_customer_id", "customer_id"),
       CUSTOMER_ID) for c in ("7", "x", "9")],
    ("customer-id-a-number", customer(12345), Dropped("invalid_customer_id", "customer_id"),
     CUSTOMER_ID),
    ("customer-id-null", customer(None), Dropped("invalid_customer_id", "customer_id"),
     CUSTOMER_ID),
    *[(f"customer-id-forbidden-{c or 'empty'}", customer(c),
       Dropped("invalid_customer_id", "customer_id"), FORBIDDEN) for c in FORBIDDEN_VALUES],
    ("customer-id-containing-a-forbidden-word", customer("guest-42"), ACCEPTED, FORBIDDEN),
    # device element
    ("device", device(), ACCEPTED, DEVICE_FIELDS),
    ("device-without-device-id", without(device(), "device_id"), ACCEPTED, DEVICE_FIELDS),
    *[(f"device-platform-{p}", device(platform=p), ACCEPTED, DEVICE_FIELDS)
      for p in ("ANDROID", "iOS", "web")],
    ("device-platform-unknown", device(platform="unknown"),
     Dropped("invalid_platform", "attributes.platform"), DEVICE_FIELDS),
    ("device-platform-windows", device(platform="windows"),
     Dropped("invalid_platform", "attributes.platform"), DEVICE_FIELDS),
    ("device-without-platform", device_attributes(push_id="tok"),
     Dropped("invalid_device", "attributes.platform"), DEVICE_FIELDS),
    ("device-without-push-id", device_attributes(platform="web"),
     Dropped("invalid_device", "attributes.push_id"), DEVICE_FIELDS),
    ("device-without-attributes", without(device(), "attributes"),
     Dropped("invalid_device", "attributes.platform"), DEVICE_FIELDS),
    ("device-standard-attributes",
     device(model="iPhone", push_preference=True, app_version="10.1", os_version="2.5.4",
            active=True, created_time=143383676, brand="Apple"), ACCEPTED, DEVICE_STANDARD),
    *[(f"device-attribute-named-{name or 'empty'}", device(**{name: 1}),
       Dropped("reserved_name", f"attributes.{name}"), DEVICE_RESERVED)
      for name in ("id", "_id", "")],
    ("device-without-customer-id", without(device(), "customer_id"),
     Dropped("invalid_customer_id", "customer_id"), "`type` (required), `customer_id` (required)"),
    # event element
    ("event", event(action()), ACCEPTED, EVENT_FIELDS),
    ("event-with-device-id", event(action(), device_id="dev-9"), ACCEPTED, EVENT_FIELDS),
    ("event-without-actions", without(event(), "actions"), Dropped("no_actions", "actions"),
     EVENT_FIELDS),
    ("event-actions-not-a-list", {**event(), "actions": action()},
     Dropped("no_actions", "actions"), EVENT_FIELDS),
    ("event-without-customer-id", without(event(action()), "customer_id"),
     Dropped("invalid_customer_id", "customer_id"), "`type` (required), `customer_id` (required)"),
    ("action-without-name", event({"attributes": {}}),
     Dropped("invalid_event_name", "actions[0].action"), ACTION_NAME),
    ("action-name-not-a-string", event(action(42)),
     Dropped("invalid_event_name", "actions[0].action"), ACTION_NAME),
    ("action-attributes", event(action(attributes={"price": 3999, "premium_seat": True,
                                                   "departure_date": "2019-05-21T03:47:35Z"})),
     ACCEPTED, ACTION_NAME),
    ("action-attributes-not-object", event(action(attributes=["x"])),
     Dropped("invalid_attributes", "actions[0].attributes"), ACTION_NAME),
    *[(f"event-platform-{p}", event(action(platform=p)), ACCEPTED, EVENT_PLATFORM)
      for p in ("ANDROID", "iOS", "web", "unknown")],
    ("event-platform-windows", event(action(platform="windows")),
     Dropped("invalid_platform", "actions[0].platform"), EVENT_PLATFORM),
    ("current-time-epoch", event(action(current_time=1590404615)), ACCEPTED, CURRENT_TIME),
    ("current-time-iso", event(action(current_time="2020-05-31T16:33:35Z")), ACCEPTED,
     CURRENT_TIME),
    ("current-time-absent", event(action()), ACCEPTED, CURRENT_TIME),
    ("current-time-words", event(action(current_time="yesterday")),
     Dropped("invalid_time", "actions[0].current_time"), CURRENT_TIME),
    ("current-time-13th-month", event(action(current_time="2020-13-01T00:00:00Z")),
     Dropped("invalid_time", "actions[0].current_time"), CURRENT_TIME),
    ("current-time-february-30", event(action(current_time="2020-02-30T00:00:00Z")),
     Dropped("invalid_time", "actions[0].current_time"), CURRENT_TIME),
    ("current-time-bool", event(action(current_time=True)),
     Dropped("invalid_time", "actions[0].current_time"), CURRENT_TIME),
    ("user-time-epoch", event(action(user_time=1590404615)), ACCEPTED, USER_TIME),
    ("user-time-iso-with-offset", event(action(user_time="2020-05-31T22:03:35+05:30")), ACCEPTED,
     USER_TIME),
    ("user-time-words", event(action(user_time="tomorrow")),
     Dropped("invalid_time", "actions[0].user_time"), USER_TIME),
    *[(f"offset-{o}", event(action(user_timezone_offset=o)), ACCEPTED, OFFSET)
      for o in (19800, 0, 54000, -54000)],
    *[(f"offset-{o}", event(action(user_timezone_offset=o)),
       Dropped("invalid_timezone_offset", "actions[0].user_timezone_offset"), OFFSET)
      for o in (54001, -54001, "19800")],
    *[(f"event-named-{name or 'empty'}", event(action(name)),
       Dropped("reserved_name", "actions[0].action"), EVENT_RESERVED)
      for name in ("id", "_id", "userId", "")],
    *[(f"event-attribute-named-{name or 'empty'}", event(action(attributes={name: 1})),
       Dropped("reserved_name", f"actions[0].attributes.{name}"), EVENT_RESERVED)
      for name in ("id", "_id", "userId", "")],
    # Bulk Import
    ("bulk-element-of-unknown-type", {"type": "purchase", "customer_id": "user-1"},
     Dropped("unknown_type", "type"), BULK_TYPES),
    ("bulk-element-not-an-object", "customer", Dropped("invalid_element", ""), BULK_TYPES),
]  # fmt: skip


def stored(emu: Emulator, element: dict[str, Any]) -> bool:
    """Whether the emulator kept ``element``."""
    kind, cid = element["type"], element["customer_id"]
    if kind == "customer":
        return bool(emu.user(cid) == element.get("attributes", {}))
    if kind == "device":
        wanted = {"customer_id": cid, "attributes": element["attributes"]}
        return list(emu.devices().values()) == [wanted]
    names = [e["action"] for e in emu.events(cid)]
    device_ids = {e["device_id"] for e in emu.events(cid)}
    return names == [a["action"] for a in element["actions"]] and device_ids == {
        element.get("device_id", cid)
    }


@pytest.mark.parametrize(
    ("element", "outcome", "sentence"),
    [pytest.param(e, o, s, id=i) for i, e, o, s in ELEMENT_ROWS],
)
def test_element_in_bulk_import(
    emu: Emulator, http: httpx.Client, element: Any, outcome: Outcome, sentence: str
) -> None:
    body = {"type": "transition", "elements": [element]}
    response = Req(path=f"/v1/transition/{APP}", body=body).send(http)
    assert_outcome(response, ACCEPTED)  # BULK_200: whatever it drops
    if isinstance(outcome, Accepted):
        assert emu.dropped() == []
        assert stored(emu, element), (emu.users(), emu.devices(), emu.events())
    else:
        assert isinstance(outcome, Dropped)
        assert [(d["reason"], d["field"]) for d in emu.dropped()] == [
            (outcome.reason, outcome.field)
        ]
        assert emu.events() == []
        assert emu.devices() == {}


@pytest.mark.parametrize(
    ("element", "outcome", "sentence"),
    [
        pytest.param(e, o, s, id=i)
        for i, e, o, s in ELEMENT_ROWS
        if isinstance(e, dict) and e.get("type") in ("customer", "device", "event")
    ],
)
def test_element_on_its_own_endpoint(
    emu: Emulator, http: httpx.Client, element: Any, outcome: Outcome, sentence: str
) -> None:
    # The User, Device and Event APIs answer a bad element with "| 400 |
    # MissingAttributeError | {{key}} is expected to be {{datatype}} | wrong or missing field |".
    response = Req(path=f"/v1/{element['type']}/{APP}", body=element).send(http)
    if isinstance(outcome, Accepted):
        assert_outcome(response, ACCEPTED)
        assert stored(emu, element)
    else:
        assert isinstance(outcome, Dropped)
        assert_outcome(response, Error(400, "MissingAttributeError"))
        field = outcome.field or "element"
        assert response.json()["error"]["message"].startswith(f"{field} is expected to be ")
        assert (emu.users(), emu.events(), emu.dropped()) == ({}, [], [])


def test_one_bad_action_does_not_drop_the_others(emu: Emulator, http: httpx.Client) -> None:
    # BULK_200, with "Each action: `action` (required name)": the rule is per action.
    element = event(action("Kept"), action("id"), action("Also kept"))
    Req(path=f"/v1/transition/{APP}", body={"type": "transition", "elements": [element]}).send(http)
    assert [e["action"] for e in emu.events()] == ["Kept", "Also kept"]
    assert [(d["reason"], d["field"]) for d in emu.dropped()] == [
        ("reserved_name", "actions[1].action")
    ]


# --- rate limits ----------------------------------------------------------------------------

USERS_PER_MINUTE = 1_000  # "User: 1,000 users/min."
EVENTS_PER_MINUTE = 10_000  # "Event: 10,000 events/min."


def users_body(first: int, n: int) -> dict[str, Any]:
    return {"type": "transition", "elements": [customer(f"user-{i}") for i in range(first, n)]}


def events_body(n: int) -> dict[str, Any]:
    return {"type": "transition", "elements": [event(*(action("A") for _ in range(n)))]}


RATE_ROWS: list[tuple[str, list[tuple[str, Any]], list[int], str]] = [
    ("1000-users-then-one-more",
     [("transition", users_body(0, 1_000)), ("transition", users_body(1_000, 1_001))],
     [200, 429], "User: 1,000 users/min."),
    ("users-across-requests-and-endpoints",
     [("transition", users_body(0, 600)), ("transition", users_body(600, 1_000)),
      ("customer", customer("user-late"))],
     [200, 200, 429],
     "Bulk Import: 1,000 users/min and\n10,000 events/min across all requests."),
    ("10000-events-then-one-more",
     [("transition", events_body(5_000)), ("transition", events_body(5_000)),
      ("event", event(action("Late")))],
     [200, 200, 429], "Event: 10,000 events/min."),
    ("events-do-not-spend-users",
     [("transition", users_body(0, 1_000)), ("transition", events_body(5_000))],
     [200, 200], "Bulk Import: 1,000 users/min and\n10,000 events/min across all requests."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "statuses", "sentence"),
    [pytest.param(steps, st, s, id=i) for i, steps, st, s in RATE_ROWS],
)
def test_rate_limits(
    emu: Emulator,
    http: httpx.Client,
    steps: list[tuple[str, Any]],
    statuses: list[int],
    sentence: str,
) -> None:
    emu.set_rate_limits(USERS_PER_MINUTE, EVENTS_PER_MINUTE, window=60)
    answers = [Req(path=f"/v1/{endpoint}/{APP}", body=body).send(http) for endpoint, body in steps]
    assert [r.status_code for r in answers] == statuses
    for response in answers:
        if response.status_code == 429:
            # "Breaching them is answered 429." with the error table's row.
            assert_outcome(
                response,
                Error(429, "Rate Limit Exceeded", "Rate Limits for User / Event exceeded"),
            )


# --- the quotes are the document's ----------------------------------------------------------

ALL_SENTENCES = sorted(
    {s for *_, s in REQUEST_ROWS}
    | {s for *_, s in ELEMENT_ROWS}
    | {s for *_, s in RATE_ROWS}
    | {BULK_200, "| 500 | Server Error | (any other exception) | |"}
)


#: The copy of the API document kept with these tests, so a lone clone can check its quotes.
BUNDLED_DOCUMENT = Path(__file__).with_name("MOENGAGE_DATA_API.md")
#: Where the project keeps the document: ``shared/`` beside the checkout.
SHARED_DOCUMENT = Path(__file__).resolve().parents[3] / "shared" / "MOENGAGE_DATA_API.md"


def api_document() -> Path | None:
    """``MOENGAGE_DATA_API.md``: ``$MOETRACK_API_DOCUMENT``, ``shared/`` beside the
    checkout, or the copy kept with these tests."""
    candidates = [SHARED_DOCUMENT, BUNDLED_DOCUMENT]
    if os.environ.get("MOETRACK_API_DOCUMENT"):
        candidates.insert(0, Path(os.environ["MOETRACK_API_DOCUMENT"]))
    return next((path for path in candidates if path.is_file()), None)


def squeeze(text: str) -> str:
    return " ".join(text.split())


def test_every_quoted_sentence_is_in_the_document() -> None:
    document = api_document()
    if document is None:
        missing("MOENGAGE_DATA_API.md is not beside this checkout (set MOETRACK_API_DOCUMENT)")
    assert document is not None
    text = squeeze(document.read_text(encoding="utf-8"))
    absent = [s for s in ALL_SENTENCES if squeeze(s) not in text]
    assert absent == []


def test_the_copy_kept_with_the_tests_is_the_projects_document() -> None:
    assert BUNDLED_DOCUMENT.is_file()
    if SHARED_DOCUMENT.is_file():  # beside a lone clone there is only the copy
        assert BUNDLED_DOCUMENT.read_bytes() == SHARED_DOCUMENT.read_bytes()
