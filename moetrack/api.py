"""The direct Data API client: one HTTP request per call, one answer or one exception.

:class:`DataAPI` (sync, over ``httpx.Client``) and :class:`AsyncDataAPI` (async, over
``httpx.AsyncClient``) are thin typed wrappers of the four endpoints, for code that wants to
know, call by call, what the API said::

    from moetrack.api import DataAPI

    with DataAPI("APP_ID", "API_KEY", data_center="01") as api:
        api.customer("u-42", {"email": "ada@example.com"})
        api.event("u-42", [{"action": "Purchase", "attributes": {"price": 3999}}])

Nothing is queued, batched, validated client side or retried here: that is what
:func:`moetrack.init` and :class:`moetrack.Client` do. Each method returns the parsed success
response (``{"status": "success"}``) and raises the most specific
:class:`~moetrack.APIError` for an error response (the server's status, type and message,
and ``retry_after`` seconds for a ``Retry-After`` header), or
:class:`~moetrack.TransportError` when no answer came. No message or repr contains the API
key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._exceptions import ConfigurationError, ValidationError
from ._wire import http as _http

__all__ = ["AsyncDataAPI", "DataAPI"]

_Sync = TypeVar("_Sync", bound="DataAPI")
_Async = TypeVar("_Async", bound="AsyncDataAPI")

#: Seconds to wait for connecting, sending and for the answer, unless told otherwise.
DEFAULT_TIMEOUT = 10.0


def _customer_body(customer_id: str, attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The User API body: ``{"type": "customer", "customer_id": …, "attributes": {…}}``."""
    body: dict[str, Any] = {"type": "customer", "customer_id": customer_id}
    if attributes is not None:
        body["attributes"] = dict(attributes)
    return body


def _device_body(
    customer_id: str, attributes: Mapping[str, Any], device_id: str | None = None
) -> dict[str, Any]:
    """The Device API body; without ``device_id`` the API creates a new device."""
    body: dict[str, Any] = {"type": "device", "customer_id": customer_id}
    if device_id is not None:
        body["device_id"] = device_id
    body["attributes"] = dict(attributes)
    return body


def _event_body(
    customer_id: str, actions: Sequence[Mapping[str, Any]], device_id: str | None = None
) -> dict[str, Any]:
    """The Event API body; without ``device_id`` the API uses the customer_id."""
    body: dict[str, Any] = {"type": "event", "customer_id": customer_id}
    if device_id is not None:
        body["device_id"] = device_id
    body["actions"] = _mappings("actions", actions)
    return body


def _transition_body(elements: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Bulk Import body: ``{"type": "transition", "elements": [...]}``."""
    return {"type": "transition", "elements": _mappings("elements", elements)}


def _mappings(field: str, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # A lone mapping is iterable too (over its keys); say so instead of sending the keys.
    if isinstance(items, (Mapping, str, bytes)):
        raise ValidationError(field, "must be a list of objects, not a single object")
    copies: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValidationError(
                f"{field}[{index}]", f"must be an object, got {type(item).__name__}"
            )
        copies.append(dict(item))
    return copies


def _encode(body: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("body", f"is not JSON: {exc}", reason="not_json") from exc
    return text.encode("utf-8")


class _DataAPIBase:
    """What both clients share: options, the request they build, the answer they read."""

    _client: httpx.Client | httpx.AsyncClient
    _owns_client: bool

    def __init__(
        self,
        app_id: str,
        api_key: str,
        *,
        data_center: str | None,
        endpoint: str | None,
        timeout: float,
        transport: object,
        http_client: object,
    ) -> None:
        _http.check_credentials(app_id, api_key)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ConfigurationError(f"timeout must be a number of seconds, got {timeout!r}")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout}")
        if transport is not None and http_client is not None:
            raise ConfigurationError("give transport or http_client, not both")
        self._app_id = app_id
        self._base_url = _http.resolve_base_url(data_center, endpoint)
        self._headers = _http.request_headers(app_id, api_key)
        self._secrets = _http.auth_secrets(app_id, api_key)
        self._timeout = float(timeout)

    @property
    def app_id(self) -> str:
        """The Data API ID requests are sent for."""
        return self._app_id

    @property
    def base_url(self) -> str:
        """The checked base URL requests go to (``https://api-01.moengage.com`` …)."""
        return self._base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(app_id={self._app_id!r}, base_url={self._base_url!r})"

    def _build_request(self, endpoint_name: str, body: Mapping[str, Any]) -> httpx.Request:
        try:
            url = _http.request_url(self._base_url, endpoint_name, self._app_id)
        except ValueError as exc:
            raise ValidationError("endpoint_name", str(exc)) from None
        if not isinstance(body, Mapping):
            raise ValidationError("body", f"must be a mapping, got {type(body).__name__}")
        if self._client.is_closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        return self._client.build_request("POST", url, headers=self._headers, content=_encode(body))

    def _read(self, response: httpx.Response) -> dict[str, Any]:
        return _http.parse_response(
            response.status_code,
            response.content,
            response.headers.get("Retry-After"),
            secrets=self._secrets,
        )


class DataAPI(_DataAPIBase):
    """Synchronous client of the MoEngage Data API: one request per call.

    ``app_id`` and ``api_key`` are the Data API ID and key of the dashboard. ``data_center``
    (``"01"``, ``"02"``, ``"03"``) picks the host, ``endpoint`` overrides it with any base
    URL (plain ``http://`` only on loopback); data center ``"01"`` is the default.
    ``timeout`` is in seconds. ``transport`` is an ``httpx.BaseTransport`` for the client
    this object creates and closes; ``http_client`` is an ``httpx.Client`` to use instead,
    whose own settings (timeout, TLS, proxies) then apply and which :meth:`close` leaves
    open. TLS certificates are always verified by the client this object creates.

    Use it as a context manager or call :meth:`close`.

    Raises:
        APIError: from every method, for an error answer: one subclass per documented error
            (``AuthenticationError`` for 401, ``RateLimitedError`` with ``retry_after`` for
            429, ``ServerError`` for 5xx…), carrying ``status``, ``type`` and ``message``.
        TransportError: no answer (a timeout, a refused or reset connection).
        ConfigurationError: at construction, for a wrong option (timeout, data center,
            endpoint, both transport and http_client).
        ValidationError: a body that cannot be sent as given (not JSON-encodable, a single
            object where the API wants a list).

    Example::

        with DataAPI(app_id, api_key, data_center="01") as api:
            api.customer("user-42", {"name": "Asha", "plan": "pro"})
            api.event("user-42", [{"action": "Purchase", "attributes": {"price": 3999}}])
    """

    _client: httpx.Client

    def __init__(
        self,
        app_id: str,
        api_key: str,
        *,
        data_center: str | None = None,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            app_id,
            api_key,
            data_center=data_center,
            endpoint=endpoint,
            timeout=timeout,
            transport=transport,
            http_client=http_client,
        )
        self._owns_client = http_client is None
        if http_client is None:
            http_client = httpx.Client(timeout=self._timeout, transport=transport)
        self._client = http_client

    def customer(
        self, customer_id: str, attributes: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create or update a user (User API)."""
        return self.post("customer", _customer_body(customer_id, attributes))

    def device(
        self, customer_id: str, attributes: Mapping[str, Any], device_id: str | None = None
    ) -> dict[str, Any]:
        """Create or update a device of a user (Device API); needs ``platform`` and ``push_id``."""
        return self.post("device", _device_body(customer_id, attributes, device_id))

    def event(
        self,
        customer_id: str,
        actions: Sequence[Mapping[str, Any]],
        device_id: str | None = None,
    ) -> dict[str, Any]:
        """Record actions of a user (Event API); each action is ``{"action": name, …}``."""
        return self.post("event", _event_body(customer_id, actions, device_id))

    def transition(self, elements: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send raw customer, device and event elements in one Bulk Import request.

        Bulk Import answers ``{"status": "success"}`` even when it drops elements.
        """
        return self.post("transition", _transition_body(elements))

    def post(self, endpoint_name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to ``/v1/{endpoint_name}/{app_id}``; return the parsed answer."""
        request = self._build_request(endpoint_name, body)
        with _http.transport_errors(request.method, str(request.url), self._secrets):
            response = self._client.send(request)
        return self._read(response)

    def close(self) -> None:
        """Close the HTTP client this object created (not one passed as ``http_client``)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self: _Sync) -> _Sync:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDataAPI(_DataAPIBase):
    """Asynchronous client of the MoEngage Data API, the twin of :class:`DataAPI`.

    The options are the same, with an ``httpx.AsyncBaseTransport`` as ``transport`` and an
    ``httpx.AsyncClient`` as ``http_client``. Use it with ``async with`` or call
    :meth:`aclose`.
    """

    _client: httpx.AsyncClient

    def __init__(
        self,
        app_id: str,
        api_key: str,
        *,
        data_center: str | None = None,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            app_id,
            api_key,
            data_center=data_center,
            endpoint=endpoint,
            timeout=timeout,
            transport=transport,
            http_client=http_client,
        )
        self._owns_client = http_client is None
        if http_client is None:
            http_client = httpx.AsyncClient(timeout=self._timeout, transport=transport)
        self._client = http_client

    async def customer(
        self, customer_id: str, attributes: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create or update a user (User API)."""
        return await self.post("customer", _customer_body(customer_id, attributes))

    async def device(
        self, customer_id: str, attributes: Mapping[str, Any], device_id: str | None = None
    ) -> dict[str, Any]:
        """Create or update a device of a user (Device API); needs ``platform`` and ``push_id``."""
        return await self.post("device", _device_body(customer_id, attributes, device_id))

    async def event(
        self,
        customer_id: str,
        actions: Sequence[Mapping[str, Any]],
        device_id: str | None = None,
    ) -> dict[str, Any]:
        """Record actions of a user (Event API); each action is ``{"action": name, …}``."""
        return await self.post("event", _event_body(customer_id, actions, device_id))

    async def transition(self, elements: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send raw customer, device and event elements in one Bulk Import request.

        Bulk Import answers ``{"status": "success"}`` even when it drops elements.
        """
        return await self.post("transition", _transition_body(elements))

    async def post(self, endpoint_name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to ``/v1/{endpoint_name}/{app_id}``; return the parsed answer."""
        request = self._build_request(endpoint_name, body)
        with _http.transport_errors(request.method, str(request.url), self._secrets):
            response = await self._client.send(request)
        return self._read(response)

    async def aclose(self) -> None:
        """Close the HTTP client this object created (not one passed as ``http_client``)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self: _Async) -> _Async:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
