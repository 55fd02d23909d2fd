"""DataAPI and AsyncDataAPI, over real HTTP against the emulator and with mock transports.

Every row of the documented error table is driven through the emulator on loopback. The rows
a well-behaved client can never cause (no Content-Type, a broken Authorization header …) are
reached with a transport that rewrites the request on its way to the real HTTP transport, so
what is tested is how the client reads each real answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

import moetrack
from moetrack.api import AsyncDataAPI, DataAPI
from moetrack.testing import App, Emulator

APP = "TEST_APP"
KEY = "test-api-key-9f3c2b"
OTHER_APP, OTHER_KEY = "OTHER_APP", "other-api-key-77d1"
BLACKLISTED, SUSPENDED, PAUSED, KEYLESS = "BLACK_APP", "SUSP_APP", "TEMP_APP", "KEYLESS_APP"
STATE_KEY = "state-app-key-5e0a"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    apps = [
        App(APP, api_key=KEY),
        App(OTHER_APP, api_key=OTHER_KEY),
        App(BLACKLISTED, api_key=STATE_KEY, state="blacklisted"),
        App(SUSPENDED, api_key=STATE_KEY, state="suspended"),
        App(PAUSED, api_key=STATE_KEY, state="temporarily_suspended"),
        App(KEYLESS, api_key=None),
    ]
    with Emulator(apps=apps) as emu:
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()


def assert_key_hidden(exc: BaseException, api_key: str = KEY, app_id: str = APP) -> None:
    """Neither the key nor its Basic token shows in str, repr or the printed traceback."""
    token = base64.b64encode(f"{app_id}:{api_key}".encode()).decode()
    for text in (str(exc), repr(exc), "".join(traceback.format_exception(exc))):
        assert api_key not in text
        assert token not in text


# -- rewriting requests on their way out ---------------------------------------------------


Change = Callable[[httpx.Request], httpx.Request]


class Rewrite(httpx.BaseTransport):
    """A real HTTP transport that sends each request as ``change`` rewrote it."""

    def __init__(self, change: Callable[[httpx.Request], httpx.Request]) -> None:
        self._change = change
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(self._change(request))

    def close(self) -> None:
        self._inner.close()


def rewritten(
    *,
    drop: tuple[str, ...] = (),
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    path: str | None = None,
) -> Change:
    def change(request: httpx.Request) -> httpx.Request:
        changed = {name.lower(): value for name, value in (headers or {}).items()}
        skip = {name.lower() for name in drop} | {"content-length"}
        new_headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        new_headers.update(changed)
        url = request.url if path is None else request.url.copy_with(path=path)
        body = request.content if content is None else content
        return httpx.Request(request.method, url, headers=new_headers, content=body)

    return change


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


# -- every row of the error table ----------------------------------------------------------

Call = Callable[[DataAPI], object]
ONE_USER: Call = lambda api: api.customer("user-1", {"name": "Ada"})  # noqa: E731

# (row id, app id, api key, request change, call, class, status, type, message)
Row = tuple[str, str, str, Change | None, Call, type[moetrack.APIError], int, str, str]
# fmt: off
ERROR_ROWS: list[Row] = [
    (
        "missing-content-type",
        APP, KEY, rewritten(drop=("Content-Type",)), ONE_USER,
        moetrack.BadRequestError, 400, "Missing header value",
        "The Content-Type Header is required",
    ),
    (
        "empty-body",
        APP, KEY, rewritten(content=b""), ONE_USER,
        moetrack.BadRequestError, 400, "Empty request body",
        "A valid JSON document is required",
    ),
    (
        "malformed-json",
        APP, KEY, rewritten(content=b'{"type": "customer",'), ONE_USER,
        moetrack.BadRequestError, 400, "Malformed JSON",
        "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8.",
    ),
    (
        "json-not-utf8",
        APP, KEY, rewritten(content=b'{"type":"customer","customer_id":"\xff\xfe"}'), ONE_USER,
        moetrack.BadRequestError, 400, "Malformed JSON",
        "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8.",
    ),
    (
        "blacklisted",
        BLACKLISTED, STATE_KEY, None, ONE_USER,
        moetrack.BlacklistedError, 400, "Blacklisted",
        "Your account is blacklisted, Please contact MoEngage.",
    ),
    (
        "invalid-app-id",
        "NO_SUCH_APP", KEY, None, ONE_USER,
        moetrack.InvalidAppError, 400, "InvalidParams", "given app_id is invalid.",
    ),
    (
        "app-id-required",
        APP, KEY, rewritten(path="/v1/customer"), ONE_USER,
        moetrack.InvalidAppError, 400, "ParamsRequired",
        "app_id is required in path/query params.",
    ),
    (
        "body-not-an-object",
        APP, KEY, rewritten(content=b'"{\\"type\\":\\"customer\\"}"'), ONE_USER,
        moetrack.BadRequestError, 400, "Body type is not JSON",
        "A valid JSON document is required.",
    ),
    (
        "missing-attribute",
        APP, KEY, None, lambda api: api.post("customer", {"type": "customer"}),
        moetrack.MissingAttributeError, 400, "MissingAttributeError",
        "customer_id is expected to be string",
    ),
    (
        "wrong-attribute-type",
        APP, KEY, None, lambda api: api.post("customer", {"type": "customer", "customer_id": 42}),
        moetrack.MissingAttributeError, 400, "MissingAttributeError",
        "customer_id is expected to be string",
    ),
    (
        "no-authorization",
        APP, KEY, rewritten(drop=("Authorization",)), ONE_USER,
        moetrack.AuthenticationError, 401, "Authentication Required",
        "Authentication Header Required",
    ),
    (
        "empty-authorization",
        APP, KEY, rewritten(headers={"Authorization": ""}), ONE_USER,
        moetrack.AuthenticationError, 401, "Authentication required",
        "No identity information found",
    ),
    (
        "undecodable-authorization",
        APP, KEY, rewritten(headers={"Authorization": "Basic %%not-base64%%"}), ONE_USER,
        moetrack.AuthenticationError, 401, "Authentication required",
        "Invalid identity information found",
    ),
    (
        "no-username",
        APP, KEY, rewritten(headers={"Authorization": basic(f":{KEY}")}), ONE_USER,
        moetrack.AuthenticationError, 401, "Authentication required",
        "APP_KEY missing in the authentication header",
    ),
    (
        "no-password",
        APP, KEY, rewritten(headers={"Authorization": basic(f"{APP}:")}), ONE_USER,
        moetrack.AuthenticationError, 401, "Authentication required",
        "APP_SECRET missing in the authentication header",
    ),
    (
        "wrong-key",
        APP, "not-the-right-key", None, ONE_USER,
        moetrack.AuthenticationError, 401, "Authentication required",
        "App Secret key mismatch. Please login to the dashboard to verify key",
    ),
    (
        "unknown-app-id-in-authorization",
        APP, KEY, rewritten(headers={"Authorization": basic(f"NO_SUCH_APP:{KEY}")}), ONE_USER,
        moetrack.AuthenticationError, 401, "Authentication required",
        "Invalid APP_ID used in Authentication Header",
    ),
    (
        "suspended",
        SUSPENDED, STATE_KEY, None, ONE_USER,
        moetrack.AccountSuspendedError, 403, "Account Suspended", "Account Suspended",
    ),
    (
        "temporarily-suspended",
        PAUSED, STATE_KEY, None, ONE_USER,
        moetrack.AccountSuspendedError, 403, "Account Temporarily Suspended",
        "Account Temporarily Suspended",
    ),
    (
        "app-id-mismatch",
        APP, KEY, rewritten(path=f"/v1/customer/{OTHER_APP}"), ONE_USER,
        moetrack.ConflictError, 409, "Authentication Mismatch",
        "App key mismatch in params and authentication",
    ),
    (
        "secret-not-set",
        KEYLESS, KEY, None, ONE_USER,
        moetrack.ConflictError, 409, "Authentication required",
        "App Secret key is not set. Please login to the dashboard to set a key",
    ),
    (
        "payload-too-large",
        APP, KEY, None, lambda api: api.customer("user-1", {"blob": "x" * (129 * 1024)}),
        moetrack.PayloadTooLargeError, 413, "Payload too large",
        "The payload can not exceed 128KB",
    ),
    (
        "unsupported-media-type",
        APP, KEY, rewritten(headers={"Content-Type": "text/plain"}), ONE_USER,
        moetrack.UnsupportedMediaTypeError, 415, "Unsupported Media Type",
        "Unsupported Media Type",
    ),
]
# fmt: on


@pytest.mark.parametrize(
    ("app_id", "api_key", "change", "call", "cls", "status", "type_", "message"),
    [pytest.param(*row[1:], id=row[0]) for row in ERROR_ROWS],
)
def test_error_rows(
    emu: Emulator,
    app_id: str,
    api_key: str,
    change: Change | None,
    call: Call,
    cls: type[moetrack.APIError],
    status: int,
    type_: str,
    message: str,
) -> None:
    transport = None if change is None else Rewrite(change)
    with DataAPI(app_id, api_key, endpoint=emu.url, transport=transport) as api:
        with pytest.raises(cls) as info:
            call(api)
    error = info.value
    assert type(error) is cls
    assert (error.status, error.type, error.message) == (status, type_, message)
    assert error.retry_after is None
    assert not error.retryable
    assert_key_hidden(error, api_key, app_id)


def test_rate_limited_row_carries_retry_after() -> None:
    with Emulator(apps={APP: KEY}, users_per_minute=1) as emu:
        with DataAPI(APP, KEY, endpoint=emu.url) as api:
            api.customer("user-1")
            with pytest.raises(moetrack.RateLimitedError) as info:
                api.customer("user-2")
    error = info.value
    assert (error.status, error.type, error.message) == (
        429,
        "Rate Limit Exceeded",
        "Rate Limits for User / Event exceeded",
    )
    assert error.retryable
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 60
    assert_key_hidden(error)


def test_injected_rate_limit_retry_after_seconds(emu: Emulator) -> None:
    emu.fail_next(1, status=429, retry_after=7)
    with (
        DataAPI(APP, KEY, endpoint=emu.url) as api,
        pytest.raises(moetrack.RateLimitedError) as info,
    ):
        api.event("user-1", [{"action": "Viewed"}])
    assert info.value.retry_after == 7.0


def test_server_error_row(emu: Emulator) -> None:
    emu.fail_next(1, status=500)
    with DataAPI(APP, KEY, endpoint=emu.url) as api:
        with pytest.raises(moetrack.ServerError) as info:
            api.customer("user-1")
        error = info.value
        assert (error.status, error.type, error.message) == (
            500,
            "Server Error",
            "Any other exception",
        )
        assert error.retryable
        assert_key_hidden(error)
        # the fault was for one request only
        assert api.customer("user-1") == {"status": "success"}


def test_service_unavailable_with_retry_after(emu: Emulator) -> None:
    emu.fail_next(2, status=503, retry_after=3)
    with DataAPI(APP, KEY, endpoint=emu.url) as api:
        for _ in range(2):
            with pytest.raises(moetrack.ServerError) as info:
                api.customer("user-1")
            assert info.value.status == 503
            assert info.value.retry_after == 3.0


def test_retry_after_as_http_date(emu: Emulator) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    emu.fail_next(1, status=503, retry_after=format_datetime(when, usegmt=True))
    with DataAPI(APP, KEY, endpoint=emu.url) as api, pytest.raises(moetrack.ServerError) as info:
        api.customer("user-1")
    assert info.value.retry_after is not None
    assert 25 <= info.value.retry_after <= 30


def test_body_limit_is_the_emulators(emu: Emulator) -> None:
    emu.set_body_limit(1024)
    try:
        with DataAPI(APP, KEY, endpoint=emu.url) as api:
            with pytest.raises(moetrack.PayloadTooLargeError):
                api.customer("user-1", {"blob": "x" * 2048})
            assert api.customer("user-1", {"blob": "x" * 100}) == {"status": "success"}
    finally:
        emu.set_body_limit(128 * 1024)


def test_async_error_rows(emu: Emulator) -> None:
    async def main() -> list[moetrack.APIError]:
        errors: list[moetrack.APIError] = []
        async with AsyncDataAPI(APP, "not-the-right-key", endpoint=emu.url) as api:
            try:
                await api.customer("user-1")
            except moetrack.APIError as exc:
                errors.append(exc)
        async with AsyncDataAPI(SUSPENDED, STATE_KEY, endpoint=emu.url) as api:
            try:
                await api.event("user-1", [{"action": "Viewed"}])
            except moetrack.APIError as exc:
                errors.append(exc)
        emu.fail_next(1, status=429, retry_after=5)
        async with AsyncDataAPI(APP, KEY, endpoint=emu.url) as api:
            try:
                await api.transition([{"type": "customer", "customer_id": "user-1"}])
            except moetrack.APIError as exc:
                errors.append(exc)
        return errors

    wrong_key, suspended, limited = asyncio.run(main())
    assert isinstance(wrong_key, moetrack.AuthenticationError)
    assert wrong_key.message.startswith("App Secret key mismatch")
    assert isinstance(suspended, moetrack.AccountSuspendedError)
    assert (suspended.status, suspended.type) == (403, "Account Suspended")
    assert isinstance(limited, moetrack.RateLimitedError)
    assert limited.retry_after == 5.0
    assert_key_hidden(wrong_key, "not-the-right-key")


# -- success, each endpoint ----------------------------------------------------------------

DEVICE = {"platform": "ANDROID", "push_id": "push-token-1", "model": "Pixel"}
ACTIONS = [
    {"action": "Purchase", "attributes": {"price": 3999, "café": "crème"}, "platform": "web"},
    {"action": "Viewed", "attributes": {"page": "/"}},
]


def test_success_each_endpoint_sync(emu: Emulator) -> None:
    with DataAPI(APP, KEY, endpoint=emu.url) as api:
        assert api.customer("sync-user", {"name": "Ada", "age": 36}) == {"status": "success"}
        assert api.device("sync-user", DEVICE, device_id="sync-device") == {"status": "success"}
        assert api.event("sync-user", ACTIONS, device_id="sync-device") == {"status": "success"}
        assert api.transition(
            [
                {"type": "customer", "customer_id": "sync-bulk", "attributes": {"plan": "pro"}},
                {"type": "event", "customer_id": "sync-bulk", "actions": [{"action": "Login"}]},
            ]
        ) == {"status": "success"}
        assert api.post("customer", {"type": "customer", "customer_id": "sync-post"}) == {
            "status": "success"
        }
    assert_stored(emu, "sync")


def test_success_each_endpoint_async(emu: Emulator) -> None:
    async def main() -> list[dict[str, Any]]:
        async with AsyncDataAPI(APP, KEY, endpoint=emu.url) as api:
            return [
                await api.customer("async-user", {"name": "Ada", "age": 36}),
                await api.device("async-user", DEVICE, device_id="async-device"),
                await api.event("async-user", ACTIONS, device_id="async-device"),
                await api.transition(
                    [
                        {
                            "type": "customer",
                            "customer_id": "async-bulk",
                            "attributes": {"plan": "pro"},
                        },
                        {
                            "type": "event",
                            "customer_id": "async-bulk",
                            "actions": [{"action": "Login"}],
                        },
                    ]
                ),
                await api.post("customer", {"type": "customer", "customer_id": "async-post"}),
            ]

    assert asyncio.run(main()) == [{"status": "success"}] * 5
    assert_stored(emu, "async")


def assert_stored(emu: Emulator, prefix: str) -> None:
    assert emu.user(f"{prefix}-user", app_id=APP) == {"name": "Ada", "age": 36}
    device = emu.devices(app_id=APP)[f"{prefix}-device"]
    assert device == {"customer_id": f"{prefix}-user", "attributes": DEVICE}
    events = emu.events(customer_id=f"{prefix}-user", app_id=APP)
    assert [e["action"] for e in events] == ["Purchase", "Viewed"]
    assert [e["device_id"] for e in events] == [f"{prefix}-device"] * 2
    assert events[0]["attributes"] == {"price": 3999, "café": "crème"}
    assert events[0]["platform"] == "web"
    assert emu.user(f"{prefix}-bulk", app_id=APP) == {"plan": "pro"}
    bulk_events = emu.events(customer_id=f"{prefix}-bulk", app_id=APP)
    assert [e["action"] for e in bulk_events] == ["Login"]
    assert emu.user(f"{prefix}-post", app_id=APP) == {}
    assert emu.dropped(app_id=APP) == []


def test_requests_carry_the_documented_headers(emu: Emulator) -> None:
    with DataAPI(APP, KEY, endpoint=emu.url + "/") as api:
        api.customer("header-user")
    last = emu.requests()[-1]
    assert last["path"] == f"/v1/customer/{APP}"
    assert last["status"] == 200
    assert last["app_id"] == APP
    assert last["authorization"] == "Basic ***"
    assert last["moe_appkey_matches"]


# -- transport errors ----------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with DataAPI(APP, KEY, endpoint=url) as api, pytest.raises(moetrack.TransportError) as info:
        api.customer("user-1")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "ConnectError" in str(info.value)
    assert_key_hidden(info.value)


def test_refused_connection_async() -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    async def main() -> None:
        async with AsyncDataAPI(APP, KEY, endpoint=url) as api:
            await api.customer("user-1")

    with pytest.raises(moetrack.TransportError) as info:
        asyncio.run(main())
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert_key_hidden(info.value)


def test_dropped_connection_is_a_transport_error(emu: Emulator) -> None:
    emu.drop_connections(1)
    with DataAPI(APP, KEY, endpoint=emu.url) as api:
        with pytest.raises(moetrack.TransportError) as info:
            api.customer("user-1")
        assert isinstance(info.value.__cause__, httpx.TransportError)
        assert_key_hidden(info.value)
        assert api.customer("user-1") == {"status": "success"}


def test_dropped_connection_async(emu: Emulator) -> None:
    emu.drop_connections(1)

    async def main() -> None:
        async with AsyncDataAPI(APP, KEY, endpoint=emu.url) as api:
            await api.customer("user-1")

    with pytest.raises(moetrack.TransportError) as info:
        asyncio.run(main())
    assert_key_hidden(info.value)


def test_timeout_is_a_transport_error(emu: Emulator) -> None:
    emu.delay(1.0, n=1)
    with DataAPI(APP, KEY, endpoint=emu.url, timeout=0.1) as api:
        with pytest.raises(moetrack.TransportError) as info:
            api.customer("user-1")
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert_key_hidden(info.value)


def test_key_in_httpx_error_message_is_scrubbed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(
            f"Illegal header value {request.headers['Authorization'].encode()!r}", request=request
        )

    transport = httpx.MockTransport(handler)
    with DataAPI(APP, KEY, endpoint="https://api-01.moengage.com", transport=transport) as api:
        with pytest.raises(moetrack.TransportError) as info:
            api.customer("user-1")
    assert "LocalProtocolError" in str(info.value)
    assert_key_hidden(info.value)


# -- requests, options and objects (no server needed) --------------------------------------


class Recorder:
    """A MockTransport handler that keeps the requests and answers with ``response``."""

    def __init__(self, response: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response or httpx.Response(200, json={"status": "success"})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response


def test_request_shape() -> None:
    recorder = Recorder()
    with DataAPI(APP, KEY, data_center="02", transport=httpx.MockTransport(recorder)) as api:
        api.event("user-1", [{"action": "Açaí", "attributes": {"n": 1}}], device_id="d-1")
        api.customer("user-1")
        api.device("user-1", {"platform": "iOS", "push_id": "p"})
    event, customer, device = recorder.requests
    assert event.method == "POST"
    assert str(event.url) == f"https://api-02.moengage.com/v1/event/{APP}"
    assert event.headers["Authorization"] == basic(f"{APP}:{KEY}")
    assert event.headers["Content-Type"] == "application/json"
    assert event.headers["MOE-APPKEY"] == APP
    assert (
        event.content
        == (
            '{"type":"event","customer_id":"user-1","device_id":"d-1",'
            '"actions":[{"action":"Açaí","attributes":{"n":1}}]}'
        ).encode()
    )
    assert json.loads(customer.content) == {"type": "customer", "customer_id": "user-1"}
    assert json.loads(device.content) == {
        "type": "device",
        "customer_id": "user-1",
        "attributes": {"platform": "iOS", "push_id": "p"},
    }


def test_default_data_center_and_repr() -> None:
    api = DataAPI(APP, KEY)
    try:
        assert api.base_url == "https://api-01.moengage.com"
        assert api.app_id == APP
        assert repr(api) == f"DataAPI(app_id='{APP}', base_url='https://api-01.moengage.com')"
        assert KEY not in repr(api)
    finally:
        api.close()
    async_api = AsyncDataAPI(APP, KEY, endpoint="http://[::1]:9/")
    assert repr(async_api) == f"AsyncDataAPI(app_id='{APP}', base_url='http://[::1]:9')"
    asyncio.run(async_api.aclose())


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"endpoint": "http://example.com"}, "endpoint"),
        ({"endpoint": "ftp://127.0.0.1"}, "endpoint"),
        ({"data_center": "04"}, "data_center"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
    ],
)
def test_bad_options_raise_configuration_error(kwargs: dict[str, Any], option: str) -> None:
    for cls in (DataAPI, AsyncDataAPI):
        with pytest.raises(moetrack.ConfigurationError, match=option):
            cls(APP, KEY, **kwargs)


def test_bad_credentials_raise_configuration_error_without_the_key() -> None:
    with pytest.raises(moetrack.ConfigurationError, match="app_id"):
        DataAPI("", KEY)
    with pytest.raises(moetrack.ConfigurationError, match="api_key") as info:
        DataAPI(APP, f"{KEY}\n")
    assert KEY not in str(info.value)
    with pytest.raises(moetrack.ConfigurationError, match="transport or http_client"):
        DataAPI(APP, KEY, transport=httpx.MockTransport(Recorder()), http_client=httpx.Client())


def test_plain_http_allowed_on_loopback_only() -> None:
    for url in ("http://127.0.0.2:8000", "http://[::1]:8000", "http://localhost:8000"):
        DataAPI(APP, KEY, endpoint=url).close()
    with pytest.raises(moetrack.ConfigurationError, match="endpoint"):
        DataAPI(APP, KEY, endpoint="http://192.168.0.10:8000")


def test_given_http_client_is_used_and_left_open() -> None:
    recorder = Recorder()
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    with DataAPI(APP, KEY, http_client=client) as api:
        api.customer("user-1")
    assert len(recorder.requests) == 1
    assert not client.is_closed
    client.close()


def test_given_async_http_client_is_used_and_left_open() -> None:
    recorder = Recorder()

    async def main() -> bool:
        client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
        async with AsyncDataAPI(APP, KEY, http_client=client) as api:
            await api.customer("user-1")
        still_open = not client.is_closed
        await client.aclose()
        return still_open

    assert asyncio.run(main())
    assert len(recorder.requests) == 1


def test_closed_api_refuses_to_send() -> None:
    api = DataAPI(APP, KEY, transport=httpx.MockTransport(Recorder()))
    api.close()
    with pytest.raises(RuntimeError, match="closed"):
        api.customer("user-1")


def test_fail_body_with_200_raises() -> None:
    fail = httpx.Response(
        200, json={"status": "fail", "error": {"type": "TypeError", "message": "expected string"}}
    )
    with DataAPI(APP, KEY, transport=httpx.MockTransport(Recorder(fail))) as api:
        with pytest.raises(moetrack.APIError) as info:
            api.customer("user-1")
    assert (info.value.status, info.value.type, info.value.message) == (
        200,
        "TypeError",
        "expected string",
    )


def test_undocumented_error_body_raises_with_excerpt() -> None:
    gateway = httpx.Response(
        502,
        content=b"<html><body>Bad Gateway</body></html>",
        headers={"Retry-After": "Sat, 01 Mar 2025 12:00:00 GMT"},
    )
    with DataAPI(APP, KEY, transport=httpx.MockTransport(Recorder(gateway))) as api:
        with pytest.raises(moetrack.ServerError) as info:
            api.customer("user-1")
    assert info.value.status == 502
    assert info.value.type == ""
    assert "Bad Gateway" in info.value.message
    assert info.value.retry_after == 0.0  # a date in the past


def test_bad_arguments_raise_validation_error() -> None:
    recorder = Recorder()
    with DataAPI(APP, KEY, transport=httpx.MockTransport(recorder)) as api:
        with pytest.raises(moetrack.ValidationError, match="actions"):
            api.event("user-1", {"action": "Purchase"})  # type: ignore[arg-type]
        with pytest.raises(moetrack.ValidationError, match=r"elements\[1\]"):
            api.transition([{"type": "customer"}, "not an element"])  # type: ignore[list-item]
        with pytest.raises(moetrack.ValidationError, match="endpoint_name"):
            api.post("../admin", {})
        with pytest.raises(moetrack.ValidationError, match="body"):
            api.customer("user-1", {"price": float("nan")})
        with pytest.raises(moetrack.ValidationError, match="body"):
            api.customer("user-1", {"when": object()})
    assert recorder.requests == []
