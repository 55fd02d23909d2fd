"""The emulator's API behaviour over real HTTP: every row of the error table, the vendor's
sample bodies, Bulk Import's drop rules, merge semantics and the read API."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from moetrack._wire import spec as _spec
from moetrack.testing import App, Emulator

APP = "TEST_APP"
KEY = "s3cret-key-0123456789"
OTHER = "OTHER_APP"
OTHER_KEY = "other-key-9876543210"
NO_KEY = "NOKEY_APP"


def basic(credentials: bytes | str) -> str:
    raw = credentials.encode() if isinstance(credentials, str) else credentials
    return "Basic " + base64.b64encode(raw).decode()


AUTH = basic(f"{APP}:{KEY}")
# Building an httpx.Client loads the CA bundle (~0.1 s); the emulator speaks plain HTTP, so
# one context built here serves every client.
TLS = ssl.create_default_context()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    apps = [
        App(APP, KEY),
        App(OTHER, OTHER_KEY),
        App(NO_KEY, None),
        App("BLACK_APP", KEY, "blacklisted"),
        App("SUSPENDED_APP", KEY, "suspended"),
        App("TEMP_APP", KEY, "temporarily_suspended"),
    ]
    with Emulator(apps) as emulator:
        yield emulator


@pytest.fixture
def http(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=5, verify=TLS) as client:
        yield client


_DEFAULT: Any = object()


def send(
    http: httpx.Client,
    body: Any = _DEFAULT,
    *,
    path: str = f"/v1/customer/{APP}",
    content_type: str | None = "application/json",
    authorization: str | None = AUTH,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST ``body`` (bytes as they are, anything else as JSON) with exactly these headers."""
    if body is _DEFAULT:
        body = {"type": "customer", "customer_id": "user-1", "attributes": {"plan": "pro"}}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent: dict[str, str] = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    if authorization is not None:
        sent["Authorization"] = authorization
    return http.post(path, content=content, headers=sent)


def bulk(http: httpx.Client, *elements: Any, app: str = APP) -> httpx.Response:
    response = send(
        http, {"type": "transition", "elements": list(elements)}, path=f"/v1/transition/{app}"
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "success"
    return response


def assert_fail(response: httpx.Response, status: int, type_: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "fail", "error": {"type": type_, "message": message}}


def customer(cid: str = "user-1", **attributes: Any) -> dict[str, Any]:
    return {"type": "customer", "customer_id": cid, "attributes": attributes}


def event(cid: str = "user-1", *actions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "event", "customer_id": cid, "actions": list(actions), **fields}


def device(
    cid: str = "user-1", device_id: str | None = "dev-1", **attributes: Any
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "device",
        "customer_id": cid,
        "attributes": {"platform": "iOS", "push_id": "push-token", **attributes},
    }
    if device_id is not None:
        element["device_id"] = device_id
    return element


# --- the error table, row by row ------------------------------------------------------------

TOO_BIG = json.dumps(customer(blob="x" * (128 * 1024))).encode()

# (request arguments for send(), status, type, message); every row of the table appears.
ERROR_ROWS = [
    pytest.param(
        {"content_type": None},
        400,
        "Missing header value",
        "The Content-Type Header is required",
        id="400-no-content-type",
    ),
    pytest.param(
        {"content_type": ""},
        400,
        "Missing header value",
        "The Content-Type Header is required",
        id="400-blank-content-type",
    ),
    pytest.param(
        {"body": b""},
        400,
        "Empty request body",
        "A valid JSON document is required",
        id="400-empty-body",
    ),
    pytest.param(
        {"body": b'{"type": "customer",'},
        400,
        "Malformed JSON",
        "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8.",
        id="400-malformed-json",
    ),
    pytest.param(
        {"body": b'{"type": "customer", "customer_id": "caf\xe9-user"}'},
        400,
        "Malformed JSON",
        "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8.",
        id="400-not-utf8",
    ),
    pytest.param(
        {"body": b'{"type": "customer", "customer_id": "user-1", "attributes": {"x": NaN}}'},
        400,
        "Malformed JSON",
        "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8.",
        id="400-nan-is-not-json",
    ),
    pytest.param(
        {"path": "/v1/customer/BLACK_APP", "authorization": basic(f"BLACK_APP:{KEY}")},
        400,
        "Blacklisted",
        "Your account is blacklisted, Please contact MoEngage.",
        id="400-blacklisted",
    ),
    pytest.param(
        {"path": "/v1/customer/NO_SUCH_APP"},
        400,
        "InvalidParams",
        "given app_id is invalid.",
        id="400-unknown-path-app-id",
    ),
    pytest.param(
        {"path": "/v1/customer?app_id=NO_SUCH_APP"},
        400,
        "InvalidParams",
        "given app_id is invalid.",
        id="400-unknown-query-app-id",
    ),
    pytest.param(
        {"path": "/v1/customer"},
        400,
        "ParamsRequired",
        "app_id is required in path/query params.",
        id="400-no-app-id",
    ),
    pytest.param(
        {"path": "/v1/customer/"},
        400,
        "ParamsRequired",
        "app_id is required in path/query params.",
        id="400-empty-app-id",
    ),
    pytest.param(
        {"body": b'"a JSON string"'},
        400,
        "Body type is not JSON",
        "A valid JSON document is required.",
        id="400-json-string-body",
    ),
    pytest.param(
        {"body": b"[1, 2]"},
        400,
        "Body type is not JSON",
        "A valid JSON document is required.",
        id="400-json-list-body",
    ),
    pytest.param(
        {"body": {"type": "customer", "customer_id": 1234}},
        400,
        "MissingAttributeError",
        "customer_id is expected to be string",
        id="400-customer-id-not-string",
    ),
    pytest.param(
        {"body": {"type": "customer"}},
        400,
        "MissingAttributeError",
        "customer_id is expected to be string",
        id="400-customer-id-missing",
    ),
    pytest.param(
        {"body": {"type": "transition", "elements": {}}, "path": f"/v1/transition/{APP}"},
        400,
        "MissingAttributeError",
        "elements is expected to be list",
        id="400-elements-not-list",
    ),
    pytest.param(
        {"body": {"type": "event", "customer_id": "user-1"}, "path": f"/v1/event/{APP}"},
        400,
        "MissingAttributeError",
        "actions is expected to be list",
        id="400-actions-missing",
    ),
    pytest.param(
        {"authorization": None},
        401,
        "Authentication Required",
        "Authentication Header Required",
        id="401-no-authorization",
    ),
    pytest.param(
        {"authorization": ""},
        401,
        "Authentication required",
        "No identity information found",
        id="401-empty-authorization",
    ),
    pytest.param(
        {"authorization": "Bearer abc.def"},
        401,
        "Authentication required",
        "No identity information found",
        id="401-not-basic",
    ),
    pytest.param(
        {"authorization": "Basic"},
        401,
        "Authentication required",
        "No identity information found",
        id="401-basic-without-credentials",
    ),
    pytest.param(
        {"authorization": "Basic %%%not-base64%%%"},
        401,
        "Authentication required",
        "Invalid identity information found",
        id="401-undecodable",
    ),
    pytest.param(
        {"authorization": basic(b"\xff\xfe:\xfd")},
        401,
        "Authentication required",
        "Invalid identity information found",
        id="401-not-utf8-credentials",
    ),
    pytest.param(
        {"authorization": basic("no-colon-here")},
        401,
        "Authentication required",
        "Invalid identity information found",
        id="401-no-colon",
    ),
    pytest.param(
        {"authorization": basic(f":{KEY}")},
        401,
        "Authentication required",
        "APP_KEY missing in the authentication header",
        id="401-no-username",
    ),
    pytest.param(
        {"authorization": basic(f"{APP}:")},
        401,
        "Authentication required",
        "APP_SECRET missing in the authentication header",
        id="401-no-password",
    ),
    pytest.param(
        {"authorization": basic(f"{APP}:wrong-key")},
        401,
        "Authentication required",
        "App Secret key mismatch. Please login to the dashboard to verify key",
        id="401-wrong-key",
    ),
    pytest.param(
        {"authorization": basic(f"NO_SUCH_APP:{KEY}")},
        401,
        "Authentication required",
        "Invalid APP_ID used in Authentication Header",
        id="401-unknown-auth-app-id",
    ),
    pytest.param(
        {"path": "/v1/customer/SUSPENDED_APP", "authorization": basic(f"SUSPENDED_APP:{KEY}")},
        403,
        "Account Suspended",
        "Account Suspended",
        id="403-suspended",
    ),
    pytest.param(
        {"path": "/v1/customer/TEMP_APP", "authorization": basic(f"TEMP_APP:{KEY}")},
        403,
        "Account Temporarily Suspended",
        "Account Temporarily Suspended",
        id="403-temporarily-suspended",
    ),
    pytest.param(
        {"authorization": basic(f"{OTHER}:{OTHER_KEY}")},
        409,
        "Authentication Mismatch",
        "App key mismatch in params and authentication",
        id="409-path-and-auth-app-ids-differ",
    ),
    pytest.param(
        {"path": f"/v1/customer/{NO_KEY}", "authorization": basic(f"{NO_KEY}:anything")},
        409,
        "Authentication required",
        "App Secret key is not set. Please login to the dashboard to set a key",
        id="409-secret-not-set",
    ),
    pytest.param(
        {"body": TOO_BIG},
        413,
        "Payload too large",
        "The payload can not exceed 128KB",
        id="413-body-over-128kb",
    ),
    pytest.param(
        {"content_type": "text/plain"},
        415,
        "Unsupported Media Type",
        "Unsupported Media Type",
        id="415-text-plain",
    ),
    pytest.param(
        {"content_type": "application/x-www-form-urlencoded"},
        415,
        "Unsupported Media Type",
        "Unsupported Media Type",
        id="415-form",
    ),
]


@pytest.mark.parametrize(("request_args", "status", "type_", "message"), ERROR_ROWS)
def test_error_table_row(
    emu: Emulator,
    http: httpx.Client,
    request_args: dict[str, Any],
    status: int,
    type_: str,
    message: str,
) -> None:
    assert_fail(send(http, **request_args), status, type_, message)
    # A refused request changes nothing, and the log says how it was refused.
    for app in (APP, NO_KEY, "BLACK_APP", "SUSPENDED_APP"):
        assert emu.users(app) == {}
        assert emu.dropped(app) == []
    (record,) = emu.requests()
    assert (record["status"], record["error_type"], record["error_message"]) == (
        status,
        type_,
        message,
    )


def test_error_table_covers_every_documented_row() -> None:
    from moetrack.testing._checks import ERRORS

    pinned = {(p.values[1], p.values[2], p.values[3]) for p in ERROR_ROWS}
    pinned |= {
        (429, "Rate Limit Exceeded", "Rate Limits for User / Event exceeded"),  # test_rate_limit
        (500, "Server Error", "Any other exception"),  # test_unexpected_exception_is_500
    }
    table = {(row.status, row.type, row.message) for row in ERRORS.values()}
    template = (400, "MissingAttributeError", "{key} is expected to be {datatype}")
    assert table - {template} <= pinned
    assert any(status == 400 and t == "MissingAttributeError" for status, t, _ in pinned)


def test_rate_limit_row(http: httpx.Client, emu: Emulator) -> None:
    emu.set_rate_limits(users_per_minute=1)
    assert send(http).status_code == 200
    response = send(http, customer("user-2"))
    assert_fail(response, 429, "Rate Limit Exceeded", "Rate Limits for User / Event exceeded")
    assert response.headers["Retry-After"].isdigit()


def test_unexpected_exception_is_500(
    http: httpx.Client, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("moetrack.testing._emulator.check_body", broken)
    assert_fail(send(http), 500, "Server Error", "Any other exception")
    monkeypatch.undo()
    assert send(http).status_code == 200  # the server survived


@pytest.mark.parametrize(
    ("request_args", "expected_type"),
    [
        # Content-Type is checked before anything else.
        ({"content_type": None, "authorization": None, "body": b""}, "Missing header value"),
        ({"content_type": "text/plain", "path": "/v1/customer"}, "Unsupported Media Type"),
        # Then the app id, before authentication.
        ({"path": "/v1/customer", "authorization": None}, "ParamsRequired"),
        ({"path": "/v1/customer/NOPE", "authorization": None}, "InvalidParams"),
        # Authentication before the account state and the body.
        (
            {"path": "/v1/customer/BLACK_APP", "authorization": basic("BLACK_APP:bad")},
            "Authentication required",
        ),
        ({"authorization": basic(f"{APP}:bad"), "body": b"{"}, "Authentication required"),
        # The account state before the body.
        (
            {
                "path": "/v1/customer/SUSPENDED_APP",
                "authorization": basic(f"SUSPENDED_APP:{KEY}"),
                "body": TOO_BIG,
            },
            "Account Suspended",
        ),
        # Size before JSON, JSON before fields.
        ({"body": TOO_BIG[:-1]}, "Payload too large"),
        ({"body": b'{"type": "customer", "customer_id": 7'}, "Malformed JSON"),
    ],
)
def test_order_of_checks(
    http: httpx.Client, request_args: dict[str, Any], expected_type: str
) -> None:
    response = send(http, **request_args)
    assert response.json()["error"]["type"] == expected_type


def test_app_id_in_query_is_accepted(emu: Emulator, http: httpx.Client) -> None:
    assert send(http, path=f"/v1/customer?app_id={APP}").status_code == 200
    assert emu.user("user-1") == {"plan": "pro"}


def test_content_type_parameters_are_fine(emu: Emulator, http: httpx.Client) -> None:
    assert send(http, content_type="application/json; charset=utf-8").status_code == 200


def test_moe_appkey_header_is_optional_and_logged(emu: Emulator, http: httpx.Client) -> None:
    send(http)
    send(http, headers={"MOE-APPKEY": APP})
    send(http, headers={"MOE-APPKEY": "SOMETHING_ELSE"})
    logged = [(r["moe_appkey_present"], r["moe_appkey_matches"]) for r in emu.requests()]
    assert logged == [(False, False), (True, True), (True, False)]
    assert all(r["status"] == 200 for r in emu.requests())


def test_unknown_endpoint_and_method(http: httpx.Client) -> None:
    assert send(http, path=f"/v1/purchase/{APP}").status_code == 404
    assert http.get(f"/v1/customer/{APP}").status_code == 405


# --- the vendor page's sample bodies --------------------------------------------------------

SAMPLE_USER = {
    "type": "customer",
    "customer_id": "USERID1234",
    "attributes": {
        "first_name": "John",
        "name": "John Smith",
        "plan_expiry_date": "2020-05-31T00:00:00Z",
        "super_user": True,
        "user_persona": "browsers",
        "platforms": [{"platform": "ANDROID", "active": "true"}],
    },
}
SAMPLE_USER_API = {
    "type": "customer",
    "customer_id": "[email protected]",
    "attributes": {"name": "John", "platforms": [{"platform": "ANDROID", "active": "true"}]},
}
SAMPLE_USER_CUSTOM = {
    "type": "customer",
    "customer_id": "[email protected]",
    "attributes": {
        "points": 20,
        "expiry_date": "2020-05-31T03:47:35Z",
        "super_user": True,
        "user_persona": "browsers",
        "platforms": [{"platform": "ANDROID", "active": "true"}],
    },
}
SAMPLE_DEVICE = {
    "type": "device",
    "customer_id": "[email protected]",
    "device_id": "96bd03b6-defc-4203-83d3-dc1c73080232",
    "attributes": {
        "model": "iPhone",
        "platform": "iOS",
        "push_preference": "true",
        "push_id": "irBMohQPf_k2QrwP8iRzK3A/0CdLEzAoVGdF65HhH_I",
        "app_version": "10.1",
        "os_version": "2.5.4",
        "active": "true",
        "created_time": 143383676,
    },
}
SAMPLE_DEVICE_BRAND = {
    "type": "device",
    "customer_id": "[email protected]",
    "device_id": "96bd03b6-defc-4203-83d3-dc1c73080232",
    "attributes": {
        "brand": "Apple",
        "platform": "iOS",
        "push_id": "irBMohQPf_k2QrwP8iRzK3A/0CdLEzAoVGdF65HhH_I",
    },
}
SAMPLE_EVENT = {
    "type": "event",
    "customer_id": "[email protected]",
    "device_id": "96bd03b6-defc-4203-83d3-dc1c73080232",
    "actions": [
        {
            "action": "Added to Cart",
            "attributes": {"product": "Mobile", "color": "white", "Brand": "Apple"},
            "platform": "iOS",
            "app_version": "1.2.3",
            "current_time": 1433837969,
            "user_timezone_offset": 19800,
        },
        {
            "action": "Purchase",
            "attributes": {"product": "MacBook Air", "Brand": "Apple"},
            "platform": "web",
            "app_version": "1.2.3",
            "current_time": 1433837969,
            "user_timezone_offset": 19800,
        },
    ],
}
SAMPLE_EVENT_TYPES = {
    "type": "event",
    "customer_id": "[email protected]",
    "actions": [
        {
            "action": "Flight Bookoed",
            "attributes": {
                "price": 3999,
                "departure_date": "2019-05-21T03:47:35Z",
                "premium_seat": True,
            },
            "platform": "iOS",
            "app_version": "1.2.3",
            "current_time": 1433837969,
            "user_timezone_offset": 19800,
        }
    ],
}
SAMPLE_BULK = {
    "type": "transition",
    "elements": [
        {
            "type": "customer",
            "customer_id": "[email protected]",
            "attributes": {
                "name": "John",
                "platforms": [{"platform": "ANDROID", "active": "true"}],
            },
        },
        {
            "type": "device",
            "customer_id": "[email protected]",
            "device_id": "96bd03b6-defc-4203-83d3-dc1c73080232",
            "attributes": {
                "brand": "Apple",
                "platform": "iOS",
                "push_id": "irBMohQPf_k2QrwP8iRzK3A/0CdLEzAoVGdF65HhH_I",
            },
        },
        {
            "type": "event",
            "customer_id": "[email protected]",
            "device_id": "96bd03b6-defc-4203-83d3-dc1c73080232",
            "actions": [
                {
                    "action": "Added to Cart",
                    "attributes": {"product": "Mobile", "color": "white", "Brand": "Apple"},
                    "platform": "iOS",
                    "app_version": "1.2.3",
                    "current_time": "2020-05-31T16:33:35Z",
                    "user_timezone_offset": 19800,
                },
                {
                    "action": "Purchase",
                    "attributes": {"product": "MacBook Air", "Brand": "Apple"},
                    "platform": "iOS",
                    "app_version": "1.2.3",
                    "current_time": 1590404615,
                    "user_timezone_offset": 19800,
                },
            ],
        },
    ],
}


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        pytest.param("customer", SAMPLE_USER, id="user"),
        pytest.param("customer", SAMPLE_USER_API, id="user-api"),
        pytest.param("customer", SAMPLE_USER_CUSTOM, id="user-custom-attributes"),
        pytest.param("device", SAMPLE_DEVICE, id="device"),
        pytest.param("device", SAMPLE_DEVICE_BRAND, id="device-custom-attribute"),
        pytest.param("event", SAMPLE_EVENT, id="event"),
        pytest.param("event", SAMPLE_EVENT_TYPES, id="event-attribute-types"),
        pytest.param("transition", SAMPLE_BULK, id="bulk-import"),
    ],
)
def test_vendor_sample_is_accepted(
    emu: Emulator, http: httpx.Client, endpoint: str, body: dict[str, Any]
) -> None:
    response = send(http, body, path=f"/v1/{endpoint}/{APP}", headers={"MOE-APPKEY": APP})
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    assert emu.dropped() == []
    elements = body["elements"] if endpoint == "transition" else [body]
    for element in elements:
        cid = element["customer_id"]
        assert emu.user(cid) is not None
        if element["type"] == "customer":
            assert emu.user(cid) == element["attributes"]
        elif element["type"] == "device":
            assert emu.devices()[element["device_id"]] == {
                "customer_id": cid,
                "attributes": element["attributes"],
            }
        else:
            stored = emu.events(cid)
            assert [e["action"] for e in stored] == [a["action"] for a in element["actions"]]
            for stored_event, action in zip(stored, element["actions"], strict=True):
                assert stored_event["device_id"] == element.get("device_id", cid)
                for key in ("attributes", "platform", "app_version", "current_time"):
                    assert stored_event[key] == action[key]
                assert stored_event["user_timezone_offset"] == 19800
                assert stored_event["user_time"] is None


# --- Bulk Import: what it drops, one rule at a time -----------------------------------------


def drops(emu: Emulator) -> list[tuple[int, str, str]]:
    return [(d["index"], d["reason"], d["field"]) for d in emu.dropped()]


@pytest.mark.parametrize(
    "bad_id",
    ["7", "", " ", "Guest", " unknown ", "NULL", "N/A", "-1", "user_attribute_unique_id"],
)
def test_bulk_drops_invalid_customer_id(emu: Emulator, http: httpx.Client, bad_id: str) -> None:
    bulk(http, customer("good-1", a=1), customer(bad_id, a=2), customer("good-2", a=3))
    assert emu.users() == {"good-1": {"a": 1}, "good-2": {"a": 3}}
    assert drops(emu) == [(1, "invalid_customer_id", "customer_id")]


def test_every_forbidden_customer_id_is_dropped(emu: Emulator, http: httpx.Client) -> None:
    forbidden = sorted(_spec.FORBIDDEN_CUSTOMER_IDS)
    bulk(http, *(customer(cid.upper()) for cid in forbidden), customer("ok-user"))
    assert list(emu.users()) == ["ok-user"]
    assert len(emu.dropped()) == len(forbidden)


@pytest.mark.parametrize("bad_id", [12345, None, ["user-1"], {"id": "user-1"}])
def test_bulk_drops_customer_id_that_is_not_a_string(
    emu: Emulator, http: httpx.Client, bad_id: Any
) -> None:
    bulk(http, {"type": "customer", "customer_id": bad_id}, customer("good-1"))
    assert list(emu.users()) == ["good-1"]
    assert drops(emu) == [(0, "invalid_customer_id", "customer_id")]


def test_customer_id_rules_keep_what_is_valid(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, customer("ab"), customer("12"), customer(" x7 "), customer("guest-42"))
    assert list(emu.users()) == ["ab", "12", " x7 ", "guest-42"]


@pytest.mark.parametrize(
    ("element", "field"),
    [
        ({"type": "purchase", "customer_id": "user-9"}, "type"),
        ({"customer_id": "user-9"}, "type"),
        ({"type": "transition", "elements": []}, "type"),
        ({"type": "Customer", "customer_id": "user-9"}, "type"),
        ("customer", ""),
        (None, ""),
    ],
)
def test_bulk_drops_unknown_element_types(
    emu: Emulator, http: httpx.Client, element: Any, field: str
) -> None:
    bulk(http, customer("good-1"), element)
    assert list(emu.users()) == ["good-1"]
    ((index, reason, got_field),) = drops(emu)
    assert index == 1
    assert reason == ("unknown_type" if field else "invalid_element")
    assert got_field == field


@pytest.mark.parametrize("name", sorted(_spec.RESERVED_USER_NAMES))
def test_bulk_drops_reserved_user_attribute_names(
    emu: Emulator, http: httpx.Client, name: str
) -> None:
    bulk(http, customer("good-1", a=1), customer("bad-1", **{name: "x", "b": 2}))
    assert emu.users() == {"good-1": {"a": 1}}
    assert drops(emu) == [(1, "reserved_name", f"attributes.{name}")]


@pytest.mark.parametrize("name", sorted(_spec.RESERVED_USER_NAMES))
def test_bulk_drops_reserved_device_attribute_names(
    emu: Emulator, http: httpx.Client, name: str
) -> None:
    bulk(http, device("user-1", "dev-bad", **{name: 1}), device("user-1", "dev-good"))
    assert list(emu.devices()) == ["dev-good"]
    assert drops(emu) == [(0, "reserved_name", f"attributes.{name}")]


def test_user_id_is_only_reserved_for_events(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, customer("user-1", userId="u-1"))
    assert emu.user("user-1") == {"userId": "u-1"}


@pytest.mark.parametrize("name", sorted(_spec.RESERVED_EVENT_NAMES))
def test_bulk_drops_reserved_event_names(emu: Emulator, http: httpx.Client, name: str) -> None:
    bulk(http, event("user-1", {"action": name}, {"action": "Kept"}))
    assert [e["action"] for e in emu.events()] == ["Kept"]
    assert drops(emu) == [(0, "reserved_name", "actions[0].action")]


@pytest.mark.parametrize("name", sorted(_spec.RESERVED_EVENT_NAMES))
def test_bulk_drops_reserved_event_attribute_names(
    emu: Emulator, http: httpx.Client, name: str
) -> None:
    bulk(
        http,
        event("user-1", {"action": "Kept", "attributes": {"a": 1}}),
        event("user-1", {"action": "Dropped", "attributes": {name: 1}}),
    )
    assert [e["action"] for e in emu.events()] == ["Kept"]
    assert drops(emu) == [(1, "reserved_name", f"actions[0].attributes.{name}")]


@pytest.mark.parametrize("platform", ["android", "Android", "IOS", "ios", "WEB", "windows", 1])
def test_bulk_drops_event_platform_not_canonical(
    emu: Emulator, http: httpx.Client, platform: Any
) -> None:
    bulk(http, event("user-1", {"action": "Bad", "platform": platform}, {"action": "Kept"}))
    assert [e["action"] for e in emu.events()] == ["Kept"]
    assert drops(emu) == [(0, "invalid_platform", "actions[0].platform")]


def test_canonical_event_platforms_are_kept(emu: Emulator, http: httpx.Client) -> None:
    platforms = sorted(set(_spec.EVENT_PLATFORMS.values()))
    bulk(http, event("user-1", *({"action": "A", "platform": p} for p in platforms)))
    assert [e["platform"] for e in emu.events()] == platforms
    assert emu.dropped() == []


@pytest.mark.parametrize(
    ("attributes", "reason", "field"),
    [
        ({"push_id": "tok"}, "invalid_device", "attributes.platform"),
        ({"platform": "iOS"}, "invalid_device", "attributes.push_id"),
        ({"platform": "iOS", "push_id": ""}, "invalid_device", "attributes.push_id"),
        ({"platform": "unknown", "push_id": "tok"}, "invalid_platform", "attributes.platform"),
        ({"platform": "android", "push_id": "tok"}, "invalid_platform", "attributes.platform"),
        (None, "invalid_device", "attributes.platform"),
        ("iOS", "invalid_attributes", "attributes"),
    ],
)
def test_bulk_drops_devices_without_platform_or_push_id(
    emu: Emulator, http: httpx.Client, attributes: Any, reason: str, field: str
) -> None:
    bad = {"type": "device", "customer_id": "user-1", "device_id": "dev-bad"}
    if attributes is not None:
        bad["attributes"] = attributes
    bulk(http, device("user-1", "dev-good"), bad)
    assert list(emu.devices()) == ["dev-good"]
    assert drops(emu) == [(1, reason, field)]


def test_device_platforms_are_kept(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, *(device("user-1", p, platform=p) for p in ("ANDROID", "iOS", "web")))
    assert list(emu.devices()) == ["ANDROID", "iOS", "web"]


@pytest.mark.parametrize("offset", [54001, -54001, "19800", 19800.0, 1.5, True])
def test_bulk_drops_bad_timezone_offset(emu: Emulator, http: httpx.Client, offset: Any) -> None:
    bulk(
        http,
        event(
            "user-1",
            {"action": "Bad", "user_timezone_offset": offset},
            {"action": "Edge", "user_timezone_offset": 54000},
            {"action": "Edge", "user_timezone_offset": -54000},
        ),
    )
    assert [e["user_timezone_offset"] for e in emu.events()] == [54000, -54000]
    assert drops(emu) == [(0, "invalid_timezone_offset", "actions[0].user_timezone_offset")]


@pytest.mark.parametrize("key", ["current_time", "user_time"])
@pytest.mark.parametrize(
    "value", ["yesterday", "2020-13-01T00:00:00Z", "2020-05-31T25:00:00Z", "", True, -1, [1]]
)
def test_bulk_drops_bad_times(emu: Emulator, http: httpx.Client, key: str, value: Any) -> None:
    bulk(http, event("user-1", {"action": "Bad", key: value}, {"action": "Kept"}))
    assert [e["action"] for e in emu.events()] == ["Kept"]
    assert drops(emu) == [(0, "invalid_time", f"actions[0].{key}")]


@pytest.mark.parametrize(
    "value",
    [
        1590404615,
        1590404615.25,
        0,
        "2020-05-31T16:33:35Z",
        "2020-05-31T16:33:35.123456+05:30",
        "2020-05-31T16:33:35-0800",
        "2020-05-31 16:33",
        "2020-05-31",
    ],
)
def test_times_in_epoch_seconds_or_iso8601_are_kept(
    emu: Emulator, http: httpx.Client, value: Any
) -> None:
    bulk(http, event("user-1", {"action": "A", "current_time": value, "user_time": value}))
    (stored,) = emu.events()
    assert stored["current_time"] == value
    assert stored["user_time"] == value


@pytest.mark.parametrize(
    ("action", "reason", "field"),
    [
        ({"attributes": {}}, "invalid_event_name", "actions[0].action"),
        ({"action": 42}, "invalid_event_name", "actions[0].action"),
        ({"action": "A", "attributes": ["x"]}, "invalid_attributes", "actions[0].attributes"),
        ({"action": "A", "app_version": 3}, "invalid_app_version", "actions[0].app_version"),
        ("Purchase", "invalid_action", "actions[0]"),
    ],
)
def test_bulk_drops_malformed_actions(
    emu: Emulator, http: httpx.Client, action: Any, reason: str, field: str
) -> None:
    bulk(http, event("user-1", action, {"action": "Kept"}))
    assert [e["action"] for e in emu.events()] == ["Kept"]
    assert drops(emu) == [(0, reason, field)]
    assert emu.dropped()[0]["element"] == action


@pytest.mark.parametrize("actions", [[], None, {"action": "A"}, "A"])
def test_bulk_drops_event_without_actions(emu: Emulator, http: httpx.Client, actions: Any) -> None:
    bad: dict[str, Any] = {"type": "event", "customer_id": "user-2"}
    if actions is not None:
        bad["actions"] = actions
    bulk(http, event("user-1", {"action": "Kept"}), bad)
    assert [e["action"] for e in emu.events()] == ["Kept"]
    assert drops(emu) == [(1, "no_actions", "actions")]


def test_bulk_drops_non_object_attributes(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, {"type": "customer", "customer_id": "user-1", "attributes": [1]}, customer("ok"))
    assert list(emu.users()) == ["ok"]
    assert drops(emu) == [(0, "invalid_attributes", "attributes")]


def test_bulk_drops_bad_device_id(emu: Emulator, http: httpx.Client) -> None:
    bulk(
        http,
        event("user-1", {"action": "Bad"}, device_id=123),
        event("user-1", {"action": "Bad"}, device_id=""),
        event("user-1", {"action": "Kept"}),
    )
    assert [e["action"] for e in emu.events()] == ["Kept"]
    assert drops(emu) == [
        (0, "invalid_device_id", "device_id"),
        (1, "invalid_device_id", "device_id"),
    ]


def test_attribute_values_may_be_any_json(emu: Emulator, http: httpx.Client) -> None:
    attrs = {
        "s": "text",
        "i": 3,
        "f": 2.5,
        "b": False,
        "n": None,
        "list": [1, "two", {"three": 3}],
        "obj": {"lat": 12.11, "lon": 123.122},
        "unicode": "caf\u00e9 \U0001f600",
    }
    bulk(http, customer("user-1", **attrs), event("user-1", {"action": "A", "attributes": attrs}))
    assert emu.user("user-1") == attrs
    assert emu.events()[0]["attributes"] == attrs
    assert emu.dropped() == []


def test_one_bad_action_drops_only_that_action(emu: Emulator, http: httpx.Client) -> None:
    actions: list[dict[str, Any]] = [
        {"action": "First", "platform": "web"},
        {"action": "Second", "platform": "Web"},
        {"action": "Third", "user_timezone_offset": 60000},
        {"action": "Fourth", "attributes": {"x": 1}},
    ]
    bulk(http, event("user-1", *actions, device_id="dev-7"))
    assert [(e["action"], e["device_id"]) for e in emu.events()] == [
        ("First", "dev-7"),
        ("Fourth", "dev-7"),
    ]
    assert emu.dropped() == [
        {
            "endpoint": "transition",
            "index": 0,
            "reason": "invalid_platform",
            "field": "actions[1].platform",
            "element": actions[1],
        },
        {
            "endpoint": "transition",
            "index": 0,
            "reason": "invalid_timezone_offset",
            "field": "actions[2].user_timezone_offset",
            "element": actions[2],
        },
    ]
    assert emu.requests()[-1]["dropped"] == 2


def test_dropped_record_shape(emu: Emulator, http: httpx.Client) -> None:
    bad = customer("1", a=1)
    bulk(http, customer("ok-user"), bad)
    assert emu.dropped() == [
        {
            "endpoint": "transition",
            "index": 1,
            "reason": "invalid_customer_id",
            "field": "customer_id",
            "element": bad,
        }
    ]


def test_bulk_with_no_elements_is_fine(emu: Emulator, http: httpx.Client) -> None:
    bulk(http)
    assert emu.users() == {}
    assert emu.dropped() == []


def test_bulk_body_type_must_be_transition(http: httpx.Client) -> None:
    for body, message in [
        ({"elements": []}, "type is expected to be string"),
        ({"type": "customer", "elements": []}, "type is expected to be 'transition'"),
    ]:
        response = send(http, body, path=f"/v1/transition/{APP}")
        assert_fail(response, 400, "MissingAttributeError", message)


# --- single-element endpoints are strict ----------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        ("customer", customer("guest"), "customer_id is expected to be string of more than one "
         "character and not a forbidden value"),
        ("customer", customer("7"), "customer_id is expected to be string of more than one "
         "character and not a forbidden value"),
        ("customer", {"type": "customer", "customer_id": "u-1", "attributes": [1]},
         "attributes is expected to be dict"),
        ("customer", customer("u-1", _id=1), "attributes._id is expected to be a name other "
         "than '', '_id', 'id'"),
        ("customer", event("u-1", {"action": "A"}), "type is expected to be 'customer'"),
        ("customer", {"customer_id": "u-1"}, "type is expected to be string"),
        ("device", device("u-1", platform="Android"),
         "attributes.platform is expected to be one of ANDROID, iOS, web"),
        ("device", {"type": "device", "customer_id": "u-1", "attributes": {"platform": "web"}},
         "attributes.push_id is expected to be non-empty string"),
        ("event", event("u-1"), "actions is expected to be non-empty list"),
        ("event", event("u-1", {"action": "A"}, {"action": "B", "platform": "mac"}),
         "actions[1].platform is expected to be one of ANDROID, iOS, web, unknown"),
        ("event", event("u-1", {"action": "A", "user_timezone_offset": 99999}),
         "actions[0].user_timezone_offset is expected to be integer between -54000 and 54000"),
        ("event", event("u-1", {"action": "A", "current_time": "soon"}),
         "actions[0].current_time is expected to be epoch seconds (>= 0) or ISO 8601 string"),
        ("event", event("u-1", {"action": "userId"}),
         "actions[0].action is expected to be an event name other than '', '_id', 'id', "
         "'userId'"),
    ],
)  # fmt: skip
def test_single_element_endpoints_refuse_invalid_elements(
    emu: Emulator, http: httpx.Client, endpoint: str, body: dict[str, Any], message: str
) -> None:
    response = send(http, body, path=f"/v1/{endpoint}/{APP}")
    assert_fail(response, 400, "MissingAttributeError", message)
    assert (emu.users(), emu.events(), emu.dropped()) == ({}, [], [])


# --- what is kept, and how it merges --------------------------------------------------------


def test_users_merge_by_customer_id_later_attributes_win(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, customer("user-1", plan="free", city="Pune"), customer("user-2", plan="pro"))
    bulk(http, customer("user-1", plan="pro", age=31))
    assert send(http, customer("user-1", city="Goa")).status_code == 200
    assert emu.users() == {
        "user-1": {"plan": "pro", "city": "Goa", "age": 31},
        "user-2": {"plan": "pro"},
    }
    assert emu.user("user-1") == {"plan": "pro", "city": "Goa", "age": 31}
    assert emu.user("nobody") is None


def test_devices_and_events_create_users_without_attributes(
    emu: Emulator, http: httpx.Client
) -> None:
    bulk(http, device("dev-owner", "dev-1"), event("actor-1", {"action": "A"}))
    assert emu.users() == {"dev-owner": {}, "actor-1": {}}


def test_device_updates_merge_and_missing_id_is_generated(
    emu: Emulator, http: httpx.Client
) -> None:
    bulk(http, device("user-1", "dev-1", model="X"), device("user-1", "dev-1", os="17"))
    bulk(http, device("user-2", "dev-1", model="Y"))
    send(http, device("user-3", None), path=f"/v1/device/{APP}")
    devices = emu.devices()
    assert devices.pop("dev-1") == {
        "customer_id": "user-2",
        "attributes": {"platform": "iOS", "push_id": "push-token", "model": "Y", "os": "17"},
    }
    ((generated_id, generated),) = devices.items()
    assert generated_id
    assert generated["customer_id"] == "user-3"


def test_events_keep_arrival_order_and_default_device_id(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, event("user-1", {"action": "A"}, {"action": "B"}), event("user-2", {"action": "C"}))
    send(http, event("user-1", {"action": "D"}, device_id="dev-9"), path=f"/v1/event/{APP}")
    assert [(e["customer_id"], e["device_id"], e["action"]) for e in emu.events()] == [
        ("user-1", "user-1", "A"),
        ("user-1", "user-1", "B"),
        ("user-2", "user-2", "C"),
        ("user-1", "dev-9", "D"),
    ]
    assert [e["action"] for e in emu.events("user-1")] == ["A", "B", "D"]
    assert emu.events()[0] == {
        "customer_id": "user-1",
        "device_id": "user-1",
        "action": "A",
        "attributes": None,
        "platform": None,
        "app_version": None,
        "current_time": None,
        "user_time": None,
        "user_timezone_offset": None,
    }


def test_apps_are_kept_apart(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, customer("user-1", app="test"))
    response = send(
        http,
        {"type": "transition", "elements": [customer("user-1", app="other")]},
        path=f"/v1/transition/{OTHER}",
        authorization=basic(f"{OTHER}:{OTHER_KEY}"),
    )
    assert response.status_code == 200
    assert emu.user("user-1") == {"app": "test"}
    assert emu.user("user-1", app_id=OTHER) == {"app": "other"}
    with pytest.raises(KeyError, match="NO_SUCH_APP"):
        emu.users("NO_SUCH_APP")


def test_accessors_return_copies(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, customer("user-1", tags=["a"]), event("user-1", {"action": "A"}))
    emu.users()["user-1"]["tags"].append("b")
    emu.events()[0]["action"] = "changed"
    assert emu.user("user-1") == {"tags": ["a"]}
    assert emu.events()[0]["action"] == "A"


def test_request_log(emu: Emulator, http: httpx.Client) -> None:
    bulk(
        http,
        customer("user-1"),
        device("user-1"),
        event("user-1", {"action": "A"}, {"action": "B"}),
    )
    send(http, authorization=basic(f"{APP}:nope"))
    ok, refused = emu.requests()
    assert ok["method"] == "POST"
    assert ok["path"] == f"/v1/transition/{APP}"
    assert ok["app_id"] == APP
    assert (ok["status"], ok["error_type"]) == (200, None)
    assert (ok["elements"], ok["users"], ok["events"], ok["dropped"]) == (3, 2, 2, 0)
    assert ok["bytes"] > 0
    assert ok["time"] > 0
    assert ok["authorization"] == "Basic ***"
    assert refused["status"] == 401
    assert refused["error_type"] == "Authentication required"


# --- the read API and the page --------------------------------------------------------------


def test_read_api(emu: Emulator, http: httpx.Client) -> None:
    bulk(
        http,
        customer("user-1", plan="pro"),
        device("user-1", "dev-1"),
        event("user-1", {"action": "A"}),
        event("user-2", {"action": "B"}),
        customer("1"),
    )
    state = http.get("/_emulator/state").json()
    assert state["app_id"] == APP
    assert state["users"] == emu.users()
    assert state["devices"] == emu.devices()
    assert state["events"] == emu.events()
    assert state["dropped"] == emu.dropped()
    assert state["requests"] == emu.requests()
    assert state["counts"] == {"users": 2, "devices": 1, "events": 2, "dropped": 1, "requests": 1}
    assert http.get("/_emulator/users").json() == emu.users()
    assert http.get("/_emulator/devices").json() == emu.devices()
    assert http.get("/_emulator/events").json() == emu.events()
    assert http.get("/_emulator/events", params={"customer_id": "user-2"}).json() == emu.events(
        "user-2"
    )
    assert http.get("/_emulator/dropped").json() == emu.dropped()
    assert http.get("/_emulator/requests").json() == emu.requests()
    timeline = http.get("/_emulator/users/user-1").json()
    assert timeline == {
        "customer_id": "user-1",
        "attributes": {"plan": "pro"},
        "devices": emu.devices(),
        "events": emu.events("user-1"),
    }
    assert http.get("/_emulator/users/nobody").status_code == 404
    assert http.get("/_emulator/nothing-here").status_code == 404


def test_read_api_takes_app_id(emu: Emulator, http: httpx.Client) -> None:
    send(
        http,
        customer("other-user", x=1),
        authorization=basic(f"{OTHER}:{OTHER_KEY}"),
        path=f"/v1/customer/{OTHER}",
    )
    bulk(http, customer("user-1"))
    params = {"app_id": OTHER}
    assert http.get("/_emulator/users", params=params).json() == {"other-user": {"x": 1}}
    state = http.get("/_emulator/state", params=params).json()
    assert state["app_id"] == OTHER
    assert [r["app_id"] for r in state["requests"]] == [OTHER]
    assert [r["app_id"] for r in http.get("/_emulator/requests", params=params).json()] == [OTHER]
    assert http.get("/_emulator/users/other-user", params=params).status_code == 200
    assert http.get("/_emulator/users", params={"app_id": "NOPE"}).status_code == 404


def test_read_api_is_read_only(http: httpx.Client) -> None:
    assert http.post("/_emulator/state", json={}).status_code == 405
    assert http.delete("/_emulator/users").status_code == 405


def test_page_is_served(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


def test_fallback_page_when_the_page_module_is_missing(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "moetrack.testing._page", None)  # import fails
    response = http.get("/")
    assert response.status_code == 200
    assert "/_emulator/state" in response.text


def test_key_never_appears_in_read_api_page_or_log(emu: Emulator, http: httpx.Client) -> None:
    bulk(http, customer("user-1"), device("user-1"), event("user-1", {"action": "A"}))
    send(http, headers={"MOE-APPKEY": APP})
    send(http, authorization=basic(f"{APP}:{KEY}-wrong"))
    send(http, path=f"/v1/customer/{APP}?leaked={KEY}")
    send(http, authorization="Basic" + AUTH.split()[1])  # no space after the scheme
    outputs = [
        http.get(path).text
        for path in (
            "/",
            "/_emulator/state",
            "/_emulator/users",
            "/_emulator/users/user-1",
            "/_emulator/devices",
            "/_emulator/events",
            "/_emulator/dropped",
            "/_emulator/requests",
        )
    ]
    outputs += [repr(emu), repr(App(APP, KEY)), json.dumps(emu.requests())]
    secrets = [KEY, AUTH.split()[1], base64.b64encode(KEY.encode()).decode()]
    for output in outputs:
        for secret in secrets:
            assert secret not in output
    assert {r["authorization"] for r in emu.requests()} == {"Basic ***", "***"}
