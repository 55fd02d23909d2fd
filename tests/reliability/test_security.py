"""The API key and its Basic token never show: not in any log record (every level, with
tracebacks), not in what on_error and the signals receive, not in reprs, not on any emulator
page — across a run that goes through every kind of error. Plain http leaves only for
loopback, and TLS verification cannot be turned off."""

from __future__ import annotations

import base64
import dataclasses
import logging
import ssl
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

import moetrack
from moetrack import signals
from moetrack._config import Config
from moetrack._wire.transport import HTTPTransport, Response
from moetrack.api import AsyncDataAPI, DataAPI
from moetrack.testing import App, Emulator

from .conftest import free_port

APP_ID = "SWEEPAPP01"
KEY = "sk-live-Zq8v3LmN0pRtX4"
WRONG_KEY = "sk-wrong-K7yT2aBc9dEfW1"


def secrets_of(app_id: str, key: str) -> list[str]:
    token = base64.b64encode(f"{app_id}:{key}".encode()).decode()
    return [key, token]


SECRETS = secrets_of(APP_ID, KEY) + secrets_of(APP_ID, WRONG_KEY)


def describe(error: BaseException) -> str:
    """Everything an application could print about an error: str, repr, traceback with its
    chain of causes, and a DeliveryError's cause."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for name in ("cause", "__cause__", "__context__"):
        inner = getattr(error, name, None)
        if isinstance(inner, BaseException) and inner is not error:
            parts.append(describe(inner))
    return "\n".join(parts)


class Collector(logging.Handler):
    """Every record of every logger, formatted with its traceback, plus its raw fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.__dict__))


@pytest.fixture
def everything() -> Iterator[tuple[Collector, list[str]]]:
    """Logs of every logger at DEBUG, and what on_error and every moetrack signal saw."""
    collector = Collector()
    root = logging.getLogger()
    moetrack_logger = logging.getLogger("moetrack")
    levels = root.level, moetrack_logger.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    reported: list[str] = []

    def on_signal(sender: Any, **kwargs: Any) -> None:
        reported.append(repr(sender) + repr(kwargs))
        for value in kwargs.values():
            if isinstance(value, BaseException):
                reported.append(describe(value))

    names = [
        "element_queued",
        "element_dropped",
        "batch_sent",
        "batch_failed",
        "request_retried",
        "rate_limited",
    ]
    for name in names:
        getattr(signals, name).connect(on_signal)
    try:
        yield collector, reported
    finally:
        for name in names:
            getattr(signals, name).disconnect(on_signal)
        root.removeHandler(collector)
        root.setLevel(levels[0])
        moetrack_logger.setLevel(levels[1])


class LeakyTransport:
    """A custom transport whose failures quote the request headers (as a careless wrapper of
    another HTTP library might), and a server that echoes the credentials back."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        auth = headers["Authorization"]
        if self.mode == "raise":
            raise RuntimeError(f"POST {url} failed; request headers were {dict(headers)}")
        status = 400 if self.mode == "echo-400" else 503
        message = f"bad credentials {auth} (key {auth.split()[-1]})"
        return Response(
            status,
            {},
            f'{{"status": "fail", "error": {{"type": "Bad", "message": "{message}"}}}}'.encode(),
        )

    def close(self) -> None:
        pass


def test_no_secret_in_logs_errors_signals_reprs_or_emulator_pages(
    everything: tuple[Collector, list[str]],
) -> None:
    logs, reported = everything
    errors: list[moetrack.MoetrackError] = []
    texts: list[str] = []

    def on_error(error: moetrack.MoetrackError) -> None:
        errors.append(error)

    common: dict[str, Any] = {
        "flush_interval": 0.05,
        "retry_backoff": 0.01,
        "retry_backoff_max": 0.05,
        "on_error": on_error,
        "debug": True,
    }
    with Emulator([App(APP_ID, KEY)]) as emulator:
        # 1. the right key, through 5xx, 429, a dropped connection, a timeout, a 413 and a
        #    single element over the lowered limit, invalid input and a failing before_send.
        def before_send(element: dict[str, Any]) -> dict[str, Any]:
            if element.get("action") == "Boom":
                raise ValueError(f"before_send failed on {element['customer_id']}")
            return element

        client = moetrack.Client(
            APP_ID, KEY, endpoint=emulator.url, timeout=0.3, before_send=before_send, **common
        )
        texts += [repr(client), repr(client.config), str(client.config), repr(client._worker)]
        texts += [repr(client.stats()), repr(client._worker.transport)]
        emulator.fail_next(2, 503)
        client.track("Retry", customer_id="sweep-user")
        assert client.flush(5)
        emulator.fail_next(1, 429, retry_after=0.05)
        client.track("Limited", customer_id="sweep-user")
        assert client.flush(5)
        emulator.drop_connections(1)
        client.track("Dropped", customer_id="sweep-user")
        assert client.flush(5)
        emulator.delay(0.6, n=1)
        client.track("Slow", customer_id="sweep-user")
        assert client.flush(5)
        emulator.set_body_limit(2_000)
        for n in range(30):
            client.track("Split", customer_id="sweep-user", n=n, pad="p" * 100)
        client.track("Huge", customer_id="sweep-user", pad="h" * 3_000)
        assert client.flush(5) is False  # "Huge" is over the limit on its own: it failed
        emulator.clear_faults()
        client.track("Bad", customer_id="1")
        client.track("Boom", customer_id="sweep-user")
        client.identify(customer_id="sweep-user", _id=3)
        assert client.flush(5)
        client.shutdown(1)

        # 2. a wrong key (401), also in strict mode
        wrong = moetrack.Client(APP_ID, WRONG_KEY, endpoint=emulator.url, strict=True, **common)
        texts += [repr(wrong), repr(wrong.config)]
        wrong.track("Denied", customer_id="sweep-user")
        with pytest.raises(moetrack.ValidationError) as invalid:
            wrong.track("Denied", customer_id="1")
        texts.append(describe(invalid.value))
        assert wrong.flush(5) is False  # settled: refused with a 401
        wrong.shutdown(1)

        # 3. nothing listens: transport errors, then records lost at shutdown
        nowhere = moetrack.Client(APP_ID, KEY, endpoint=f"http://127.0.0.1:{free_port()}", **common)
        for n in range(5):
            nowhere.track("Nowhere", customer_id="sweep-user", n=n)
        nowhere.flush(0.3)
        nowhere.shutdown(0.3)

        # 4. a transport that quotes the headers, and servers that echo the credentials
        for mode in ("raise", "echo-400", "echo-503"):
            leaky = moetrack.Client(
                APP_ID,
                KEY,
                endpoint=emulator.url,
                transport=LeakyTransport(mode),
                retry_deadline=0.1,
                **common,
            )
            leaky.track("Leak", customer_id="sweep-user")
            leaky.flush(2)
            leaky.shutdown(0.5)

        # 5. the direct API: its errors and reprs
        for key, endpoint in ((WRONG_KEY, emulator.url), (KEY, f"http://127.0.0.1:{free_port()}")):
            with DataAPI(APP_ID, key, endpoint=endpoint, timeout=2) as api:
                texts.append(repr(api))
                with pytest.raises(moetrack.MoetrackError) as failed:
                    api.event("sweep-user", [{"action": "Direct"}])
                texts.append(describe(failed.value))
        texts.append(repr(AsyncDataAPI(APP_ID, KEY, endpoint=emulator.url)))

        # 6. every page and JSON view of the emulator
        with httpx.Client(base_url=emulator.url, timeout=5) as http:
            for path in [
                "/",
                "/index.html",
                "/_emulator/state",
                "/_emulator/users",
                "/_emulator/users/sweep-user",
                "/_emulator/devices",
                "/_emulator/events",
                "/_emulator/dropped",
                "/_emulator/requests",
                f"/_emulator/requests?app_id={APP_ID}",
                "/nothing",
            ]:
                response = http.get(path)
                texts.append(f"{path} {response.status_code} {response.text}")
                assert response.status_code in (200, 404), (path, response.status_code)
        texts.append(repr(emulator))
        texts.append(repr(emulator.requests()))

    texts += [describe(e) for e in errors]
    # The run went through what it was meant to.
    kinds = {type(e.cause).__name__ for e in errors if isinstance(e, moetrack.DeliveryError)}
    assert {"AuthenticationError", "PayloadTooLargeError", "BadRequestError"} <= kinds, kinds
    assert any("TransportError" in t for t in reported)
    assert any("ServerError" in t for t in reported)
    assert any("RateLimitedError" in t for t in reported)
    assert any("Timeout" in t for t in reported)
    assert any(r.startswith("moetrack DEBUG sent") for r in logs.texts)
    assert any("Traceback" in t for t in logs.texts + texts)
    haystacks = {"logs": logs.texts, "on_error, reprs, pages": texts, "signals": reported}
    for where, haystack in haystacks.items():
        for text in haystack:
            for secret in SECRETS:
                assert secret not in text, f"{where}: {text[:300]}"


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://api-01.moengage.com",
        "http://10.0.0.7:8080",
        "http://0.0.0.0:8700",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "http://[::ffff:7f00:1]:80",
        "http://[fe80::1]:80",
    ],
)
def test_plain_http_to_a_non_loopback_host_is_refused(endpoint: str) -> None:
    with pytest.raises(moetrack.ConfigurationError, match="endpoint"):
        moetrack.Client("APP", "secret-key-1", endpoint=endpoint)
    with pytest.raises(moetrack.ConfigurationError):
        DataAPI("APP", "secret-key-1", endpoint=endpoint)


def test_tls_verification_is_always_on_and_cannot_be_turned_off() -> None:
    names = set(getattr(Config, "_fields", ()) or (f.name for f in dataclasses.fields(Config)))
    assert "timeout" in names  # the options are where this looks
    words = ("verify", "ssl", "tls", "cert", "insecure")
    assert not {n for n in names if any(w in n for w in words)}
    for option in ("verify", "ssl_verify", "insecure", "verify_ssl"):
        with pytest.raises(moetrack.ConfigurationError, match=option):
            moetrack.Client("APP", "secret-key-1", **{option: False})
    transport = HTTPTransport()
    try:
        pool = transport._route("https://api-01.moengage.com/v1/transition/APP")[1]._pool
        context: ssl.SSLContext = pool._ssl_context
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True
    finally:
        transport.close()
    package = Path(moetrack.__file__).parent
    sources = [p for p in package.rglob("*.py") if "testing" not in p.parts]
    for source in sources:
        text = source.read_text()
        assert "verify=False" not in text, source
        assert "CERT_NONE" not in text, source
