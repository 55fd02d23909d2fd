"""Small HTTP helpers shared by every sender of Data API requests.

Base-URL resolution and checking, credentials and the request headers, the request URL,
``Retry-After`` parsing, turning a response into its parsed body or the most specific
:class:`~moetrack.APIError`, keeping secrets out of messages, and the one place where httpx
errors become :class:`~moetrack.TransportError`.

``import moetrack`` reaches this module, so it stays light: httpx is imported only inside
the function that needs it.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

from .._exceptions import APIError, ConfigurationError, TransportError, api_error_for
from .spec import API_KEY_HEADER, DATA_CENTER_HOSTS

__all__ = [
    "DEFAULT_DATA_CENTER",
    "auth_secrets",
    "basic_auth_header",
    "check_base_url",
    "check_credentials",
    "is_loopback_host",
    "parse_response",
    "parse_retry_after",
    "redact",
    "request_headers",
    "request_url",
    "resolve_base_url",
    "response_error",
    "transport_errors",
]

#: The data center used when neither ``data_center`` nor ``endpoint`` is given.
DEFAULT_DATA_CENTER: Final = "01"

#: How many characters of an undocumented response body an error message quotes.
_EXCERPT_CHARS: Final = 200
_REDACTED: Final = "[REDACTED]"
# An endpoint name is one path segment; anything else could walk the URL elsewhere.
_ENDPOINT_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")


# -- base URL -----------------------------------------------------------------------------


def resolve_base_url(data_center: str | None = None, endpoint: str | None = None) -> str:
    """Return the checked base URL for the ``data_center`` and ``endpoint`` options.

    ``endpoint`` (any base URL: the local emulator, a proxy, a legacy host) wins over
    ``data_center`` (``"01"``, ``"02"`` or ``"03"``; ``"1"`` … ``"3"`` are accepted too);
    with neither, data center ``"01"`` is used. Raises :class:`~moetrack.ConfigurationError`
    naming the option that is wrong.
    """
    if endpoint is not None:
        return check_base_url(endpoint, option="endpoint")
    if data_center is None:
        return DATA_CENTER_HOSTS[DEFAULT_DATA_CENTER]
    key = data_center.strip() if isinstance(data_center, str) else ""
    if key.isdigit() and len(key) == 1:
        key = "0" + key
    host = DATA_CENTER_HOSTS.get(key)
    if host is None:
        choices = ", ".join(repr(dc) for dc in DATA_CENTER_HOSTS)
        raise ConfigurationError(f"data_center must be one of {choices}, got {data_center!r}")
    return host


def check_base_url(url: str, *, option: str = "endpoint") -> str:
    """Check a base URL and return it without a trailing slash.

    Only ``https://`` is accepted, or plain ``http://`` when the host is a loopback address
    (``127.0.0.0/8``, ``::1`` or ``localhost``), so credentials never cross a network in
    clear text. The URL may carry a path prefix (a proxy's mount point) but no credentials,
    query or fragment, since the request path is appended to it. Raises
    :class:`~moetrack.ConfigurationError` whose message names ``option``.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{option} must be a non-empty URL string, got {url!r}")
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigurationError(f"{option} must be an https:// URL, got {url!r}")
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - parsing the port is what raises on a bad one
    except ValueError as exc:
        raise ConfigurationError(f"{option} is not a valid URL ({exc}): {url!r}") from None
    if not host:
        raise ConfigurationError(f"{option} has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        # Never echo the URL here: the part before "@" may be a password.
        raise ConfigurationError(f"{option} must not contain credentials; use app_id/api_key")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ConfigurationError(f"{option} must not have a query or fragment: {url!r}")
    if scheme == "http" and not is_loopback_host(host):
        raise ConfigurationError(
            f"{option} uses plain http:// on a non-loopback host {host!r}; use https://"
            " (plain http is allowed only for 127.0.0.0/8, ::1 and localhost)"
        )
    return f"{scheme}://{parts.netloc}{parts.path}".rstrip("/")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL's hostname, without brackets) is a loopback address.

    ``localhost`` and the IP addresses in ``127.0.0.0/8`` and ``::1``; no name is resolved.
    """
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request_url(base_url: str, endpoint_name: str, app_id: str) -> str:
    """Return ``{base_url}/v1/{endpoint_name}/{app_id}`` with the app id quoted.

    ``endpoint_name`` must be one path segment of letters, digits, ``_`` or ``-``
    (``"customer"``, ``"transition"`` …); anything else raises ``ValueError``.
    """
    if not _ENDPOINT_NAME.fullmatch(endpoint_name):
        raise ValueError(
            f"endpoint name must be letters, digits, '_' or '-', got {endpoint_name!r}"
        )
    from urllib.parse import quote

    return f"{base_url}/v1/{endpoint_name}/{quote(app_id, safe='')}"


# -- credentials and headers --------------------------------------------------------------


def check_credentials(app_id: str, api_key: str) -> None:
    """Check the Data API id and key; raise :class:`~moetrack.ConfigurationError` if unusable.

    ``app_id`` must be printable ASCII without spaces or ``:`` (it is the Basic-auth user
    name, a header value and a path segment). ``api_key`` must be a non-empty string without
    control characters. Messages name the option and never quote the key.
    """
    if not isinstance(app_id, str) or not app_id:
        raise ConfigurationError("app_id is required (the Data API ID of the dashboard)")
    if not (app_id.isascii() and app_id.isprintable()) or ":" in app_id or " " in app_id:
        raise ConfigurationError(
            f"app_id must be printable ASCII without spaces or ':', got {app_id!r}"
        )
    if not isinstance(api_key, str) or not api_key:
        raise ConfigurationError("api_key is required (the Data API key of the dashboard)")
    if not api_key.isprintable():
        raise ConfigurationError("api_key must not contain control characters")


def basic_auth_header(app_id: str, api_key: str) -> str:
    """Return the ``Authorization`` value: ``Basic base64("{app_id}:{api_key}")`` (UTF-8)."""
    import base64

    token = base64.b64encode(f"{app_id}:{api_key}".encode()).decode("ascii")
    return f"Basic {token}"


def request_headers(app_id: str, api_key: str) -> dict[str, str]:
    """Return the headers every Data API request carries.

    ``Authorization`` (Basic), ``Content-Type: application/json`` and ``MOE-APPKEY``.
    """
    return {
        "Authorization": basic_auth_header(app_id, api_key),
        "Content-Type": "application/json",
        API_KEY_HEADER: app_id,
    }


def auth_secrets(app_id: str, api_key: str) -> tuple[str, ...]:
    """Return the strings that must never appear in a message: the key and its Basic token."""
    token = basic_auth_header(app_id, api_key).removeprefix("Basic ")
    return (api_key, token)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every occurrence of each of ``secrets`` replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


# -- responses ----------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header value asks to wait, or ``None``.

    The value is either a number of seconds or an HTTP date (RFC 9110 §10.2.3); a date in
    the past gives ``0.0``. ``now`` (epoch seconds, default the current time) is what a date
    is measured from. A missing, negative or unparsable value gives ``None``.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.replace(".", "", 1).isdigit():
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        import datetime
        import email.utils

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC without a named zone (RFC 5322 §3.3)
        when = when.replace(tzinfo=datetime.timezone.utc)
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


def response_error(
    status: int,
    content: bytes,
    retry_after: str | None = None,
    *,
    secrets: Iterable[str] = (),
) -> APIError | None:
    """Return the :class:`~moetrack.APIError` a response stands for, or ``None`` on success.

    Success is a 2xx status with a JSON object whose ``status`` is not ``"fail"``. Any other
    answer gives the most specific error (from :func:`~moetrack._exceptions.api_error_for`)
    with the server's ``error.type`` and ``error.message``; a body that is not the
    documented JSON gives one with an empty type and a short excerpt of the body as its
    message. ``retry_after`` is the raw ``Retry-After`` header, parsed by
    :func:`parse_retry_after`. ``secrets`` are redacted from whatever the error quotes.
    """
    return _read_response(status, content, retry_after, secrets)[1]


def parse_response(
    status: int,
    content: bytes,
    retry_after: str | None = None,
    *,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """Return the parsed success body of a response, or raise its :class:`~moetrack.APIError`.

    The rules are those of :func:`response_error`.
    """
    body, error = _read_response(status, content, retry_after, secrets)
    if error is not None:
        raise error
    return body


def _read_response(
    status: int, content: bytes, retry_after: str | None, secrets: Iterable[str]
) -> tuple[dict[str, Any], APIError | None]:
    secrets = tuple(secrets)  # used twice below; may be a one-shot iterator
    body = _json_object(content)
    if body is not None and 200 <= status < 300 and body.get("status") != "fail":
        return body, None
    type_, message = _error_fields(body.get("error")) if body is not None else ("", "")
    error = api_error_for(
        status,
        redact(type_, secrets),
        redact(message or _excerpt(content), secrets),
        parse_retry_after(retry_after),
    )
    return {}, error


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        import json

        value = json.loads(content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def _error_fields(error: object) -> tuple[str, str]:
    if isinstance(error, dict):
        type_, message = error.get("type"), error.get("message")
        return (
            type_ if isinstance(type_, str) else "",
            message if isinstance(message, str) else "",
        )
    if isinstance(error, str):
        return "", error
    return "", ""


def _excerpt(content: bytes) -> str:
    text = " ".join(content.decode("utf-8", errors="replace").split())
    if not text:
        return "empty response body"
    if len(text) > _EXCERPT_CHARS:
        text = text[: _EXCERPT_CHARS - 1] + "…"
    return f"unexpected response body: {text!r}"


# -- the exception boundary ---------------------------------------------------------------


@contextlib.contextmanager
def transport_errors(method: str, url: str, secrets: Iterable[str] = ()) -> Iterator[None]:
    """Turn httpx request errors raised inside the block into :class:`~moetrack.TransportError`.

    The one place where httpx errors (timeouts, refused or reset connections, protocol and
    TLS errors) become moetrack's, ``raise … from`` the httpx exception. ``secrets`` are
    redacted from the new message and from the messages of the whole chain of causes, so a
    traceback never shows the API key (header validation errors quote header values).
    Works around ``await`` as well, for the async client.
    """
    import httpx

    try:
        yield
    except httpx.RequestError as exc:
        secrets = tuple(s for s in secrets if s)
        _scrub_chain(exc, secrets)
        detail = redact(str(exc), secrets) or "no detail"
        raise TransportError(
            f"{type(exc).__name__} on {method} {redact(url, secrets)}: {detail}"
        ) from exc


def _scrub_chain(exc: BaseException, secrets: tuple[str, ...]) -> None:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts = [arg if isinstance(arg, str) else repr(arg) for arg in current.args]
        if any(secret in text for text in texts for secret in secrets):
            current.args = tuple(redact(text, secrets) for text in texts)
        pending += (current.__cause__, current.__context__)
