"""Unit tests of the shared HTTP helpers in moetrack._wire.http."""

from __future__ import annotations

import base64
import subprocess
import sys
import traceback
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest

import moetrack
from moetrack._wire import http as _http
from moetrack._wire.spec import DATA_CENTER_HOSTS

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def test_importing_http_helpers_does_not_import_httpx() -> None:
    code = "import sys, moetrack, moetrack._wire.http; print('httpx' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# -- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past
        ("Sat, 01 Mar 2025 12:01:00 -0000", 60.0),  # RFC 5322 "UTC, zone unknown"
        ("Saturday, 01-Mar-25 12:00:10 GMT", 10.0),  # RFC 850, still allowed by RFC 9110
    ],
)
def test_parse_retry_after(value: str, expected: float) -> None:
    assert _http.parse_retry_after(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "soon", "-5", "1e3", "12abc", "Sat, 99 Foo 2025", "inf", "NaN", "٣"],
)
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    assert _http.parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_date_defaults_to_now() -> None:
    future = datetime.fromtimestamp(datetime.now(timezone.utc).timestamp() + 100, timezone.utc)
    seconds = _http.parse_retry_after(format_datetime(future, usegmt=True))
    assert seconds is not None
    assert 95 <= seconds <= 100


# -- base URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api-01.moengage.com", "https://api-01.moengage.com"),
        ("https://api.moengage.com/", "https://api.moengage.com"),
        ("HTTPS://proxy.example.com:8443/moengage/", "https://proxy.example.com:8443/moengage"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.2:9", "http://127.0.0.2:9"),
        ("http://127.255.255.254", "http://127.255.255.254"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("http://localhost:5000/", "http://localhost:5000"),
        ("http://LOCALHOST", "http://LOCALHOST"),
    ],
)
def test_check_base_url_accepts(url: str, expected: str) -> None:
    assert _http.check_base_url(url) == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.com", "plain http"),
        ("http://api-01.moengage.com", "plain http"),
        ("http://10.0.0.1", "plain http"),
        ("http://128.0.0.1", "plain http"),
        ("http://[::2]", "plain http"),
        ("http://localhost.example.com", "plain http"),
        ("http://127.0.0.1.nip.io", "plain http"),
        ("ftp://127.0.0.1", "https://"),
        ("ws://localhost", "https://"),
        ("api-01.moengage.com", "https://"),
        ("", "non-empty"),
        ("https://", "no host"),
        ("https://host:notaport", "not a valid URL"),
        ("https://host?x=1", "query"),
        ("https://host#frag", "fragment"),
    ],
)
def test_check_base_url_refuses(url: str, words: str) -> None:
    with pytest.raises(moetrack.ConfigurationError, match="endpoint") as info:
        _http.check_base_url(url)
    assert words in str(info.value)


def test_check_base_url_refuses_credentials_without_echoing_them() -> None:
    with pytest.raises(moetrack.ConfigurationError, match="credentials") as info:
        _http.check_base_url("https://user:s3cret@proxy.example.com", option="MOETRACK_ENDPOINT")
    assert "s3cret" not in str(info.value)
    assert "MOETRACK_ENDPOINT" in str(info.value)


def test_resolve_base_url() -> None:
    assert _http.resolve_base_url() == DATA_CENTER_HOSTS["01"]
    assert _http.resolve_base_url("02") == "https://api-02.moengage.com"
    assert _http.resolve_base_url("3") == "https://api-03.moengage.com"
    # endpoint overrides data_center
    assert _http.resolve_base_url("02", "http://127.0.0.1:1/") == "http://127.0.0.1:1"
    with pytest.raises(moetrack.ConfigurationError, match=r"data_center.*'04'"):
        _http.resolve_base_url("04")
    with pytest.raises(moetrack.ConfigurationError, match="endpoint"):
        _http.resolve_base_url(None, "http://example.com")


def test_is_loopback_host() -> None:
    assert _http.is_loopback_host("127.0.0.1")
    assert _http.is_loopback_host("127.1.2.3")
    assert _http.is_loopback_host("::1")
    assert _http.is_loopback_host("[::1]")
    assert _http.is_loopback_host("localhost")
    assert not _http.is_loopback_host("0.0.0.0")
    assert not _http.is_loopback_host("example.com")
    assert not _http.is_loopback_host("192.168.1.1")


def test_request_url() -> None:
    base = "https://api-01.moengage.com"
    assert _http.request_url(base, "customer", "APP1") == f"{base}/v1/customer/APP1"
    assert _http.request_url(base, "transition", "A/B?") == f"{base}/v1/transition/A%2FB%3F"
    for bad in ("", "../admin", "customer/x", "a b"):
        with pytest.raises(ValueError, match="endpoint name"):
            _http.request_url(base, bad, "APP1")


# -- credentials and headers ---------------------------------------------------------------


def test_basic_auth_header_and_request_headers() -> None:
    header = _http.basic_auth_header("APP_1", "kéy:with:colons")
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]).decode() == "APP_1:kéy:with:colons"
    assert _http.request_headers("APP_1", "k") == {
        "Authorization": _http.basic_auth_header("APP_1", "k"),
        "Content-Type": "application/json",
        "MOE-APPKEY": "APP_1",
    }


def test_check_credentials() -> None:
    _http.check_credentials("APP_1", "secret-key")
    cases = [
        ("", "k", "app_id"),
        ("A:B", "k", "app_id"),
        ("A B", "k", "app_id"),
        ("Àpp", "k", "app_id"),
        ("APP", "", "api_key"),
        ("APP", "bad\r\nkey", "api_key"),
    ]
    for app_id, api_key, option in cases:
        with pytest.raises(moetrack.ConfigurationError, match=option) as info:
            _http.check_credentials(app_id, api_key)
        if api_key:
            assert api_key not in str(info.value)


def test_redact_and_auth_secrets() -> None:
    secrets = _http.auth_secrets("APP", "sekrit")
    token = _http.basic_auth_header("APP", "sekrit").removeprefix("Basic ")
    assert set(secrets) == {"sekrit", token}
    text = _http.redact(f"key sekrit header Basic {token}", secrets)
    assert "sekrit" not in text
    assert token not in text
    assert _http.redact("nothing", ("", "x")) == "nothing"


# -- responses -----------------------------------------------------------------------------


def _fail(type_: str, message: str) -> bytes:
    return f'{{"status":"fail","error":{{"type":"{type_}","message":"{message}"}}}}'.encode()


def test_parse_response_success() -> None:
    assert _http.parse_response(200, b'{"status":"success"}') == {"status": "success"}
    assert _http.response_error(201, b'{"status":"success","x":1}') is None


@pytest.mark.parametrize(
    ("status", "type_", "cls"),
    [
        (400, "Malformed JSON", moetrack.BadRequestError),
        (400, "Blacklisted", moetrack.BlacklistedError),
        (400, "InvalidParams", moetrack.InvalidAppError),
        (400, "ParamsRequired", moetrack.InvalidAppError),
        (400, "MissingAttributeError", moetrack.MissingAttributeError),
        (401, "Authentication required", moetrack.AuthenticationError),
        (403, "Account Suspended", moetrack.AccountSuspendedError),
        (409, "Authentication Mismatch", moetrack.ConflictError),
        (413, "Payload too large", moetrack.PayloadTooLargeError),
        (415, "Unsupported Media Type", moetrack.UnsupportedMediaTypeError),
        (429, "Rate Limit Exceeded", moetrack.RateLimitedError),
        (500, "Server Error", moetrack.ServerError),
        (503, "Server Error", moetrack.ServerError),
        (404, "Not Found", moetrack.APIError),
    ],
)
def test_parse_response_error(status: int, type_: str, cls: type[moetrack.APIError]) -> None:
    with pytest.raises(cls) as info:
        _http.parse_response(status, _fail(type_, "the message"), "12")
    error = info.value
    assert type(error) is cls
    assert (error.status, error.type, error.message) == (status, type_, "the message")
    assert error.retry_after == 12.0
    assert str(error) == f"{status} {type_}: the message"


def test_fail_body_with_2xx_status_is_an_error() -> None:
    error = _http.response_error(200, _fail("TypeError", "expected string"))
    assert isinstance(error, moetrack.APIError)
    assert (error.status, error.type, error.message) == (200, "TypeError", "expected string")


def test_undocumented_bodies_raise_with_an_excerpt() -> None:
    html = b"<html>\n<body>502   Bad Gateway</body></html>" + b"x" * 1000
    error = _http.response_error(502, html)
    assert isinstance(error, moetrack.ServerError)
    assert error.status == 502
    assert error.type == ""
    assert "<html> <body>502 Bad Gateway" in error.message
    assert len(error.message) < 260

    empty = _http.response_error(429, b"", "3")
    assert isinstance(empty, moetrack.RateLimitedError)
    assert empty.message == "empty response body"
    assert empty.retry_after == 3.0

    not_utf8 = _http.response_error(400, b"\xff\xfe oops")
    assert isinstance(not_utf8, moetrack.BadRequestError)
    assert "oops" in not_utf8.message

    json_not_object = _http.response_error(200, b'"success"')
    assert isinstance(json_not_object, moetrack.APIError)
    assert json_not_object.status == 200

    no_error_field = _http.response_error(400, b'{"detail":"nope"}')
    assert isinstance(no_error_field, moetrack.BadRequestError)
    assert "nope" in no_error_field.message

    too_deep = _http.response_error(500, b"[" * 100_000)
    assert isinstance(too_deep, moetrack.ServerError)
    assert len(too_deep.message) < 260

    error_as_text = _http.response_error(401, b'{"status":"fail","error":"bad auth"}')
    assert isinstance(error_as_text, moetrack.AuthenticationError)
    assert error_as_text.message == "bad auth"


def test_response_errors_redact_secrets() -> None:
    secrets = (s for s in ["sekrit"])  # a one-shot iterator is enough
    error = _http.response_error(401, _fail("Auth", "key sekrit is wrong"), secrets=secrets)
    assert error is not None
    assert "sekrit" not in str(error)
    assert "sekrit" not in repr(error)


# -- the exception boundary ----------------------------------------------------------------


def test_transport_errors_maps_httpx_request_errors() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/event/APP")
    for exc in (
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("", request=request),
        httpx.RemoteProtocolError("peer closed", request=request),
        httpx.DecodingError("bad gzip", request=request),
    ):
        with pytest.raises(moetrack.TransportError) as info:
            with _http.transport_errors("POST", str(request.url)):
                raise exc
        assert info.value.__cause__ is exc
        assert type(exc).__name__ in str(info.value)
        assert "http://127.0.0.1:1/v1/event/APP" in str(info.value)


def test_transport_errors_leaves_other_errors_alone() -> None:
    with pytest.raises(KeyError), _http.transport_errors("POST", "http://x"):
        raise KeyError("not a transport problem")


def test_transport_errors_scrubs_the_whole_chain() -> None:
    key = "sekrit-" + "key"  # spelled apart so the traceback's source lines do not show it
    secrets = _http.auth_secrets("APP", key)
    header = _http.basic_auth_header("APP", key)
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/event/APP")

    def send() -> None:
        with _http.transport_errors("POST", str(request.url), secrets):
            try:
                raise ValueError(f"Illegal header value {header.encode()!r}", key)
            except ValueError as inner:
                raise httpx.LocalProtocolError(f"bad header {header}", request=request) from inner

    with pytest.raises(moetrack.TransportError) as info:
        send()
    shown = "".join(traceback.format_exception(info.value))
    assert "LocalProtocolError" in shown
    assert key not in shown
    assert header.removeprefix("Basic ") not in shown
    assert key not in repr(info.value)
