"""The one-method seam between the worker and the network.

A :class:`Transport` sends one request body and returns a :class:`Response`, or raises
:class:`~moetrack.TransportError` when there is no answer. :class:`HTTPTransport` is the
default: one keep-alive httpx connection pool with TLS verification on, imported only when the
first request is made so ``import moetrack`` stays light. Tests and special deployments can
pass any object with ``send()`` and ``close()`` as ``transport=``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from .._exceptions import TransportError
from .http import transport_errors

if TYPE_CHECKING:
    import httpx

__all__ = ["HTTPTransport", "Response", "Transport"]


class Response(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes


@runtime_checkable
class Transport(Protocol):
    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        """POST ``body`` to ``url``; raise TransportError when no answer comes back."""

    def close(self) -> None:
        """Release connections; ``send()`` may be called again afterwards."""


def _connection_lost() -> tuple[type[Exception], ...]:
    """The httpx errors of a connection that ended before an answer (not a timeout, not a
    refused connection): sending again on a fresh connection is worth it at once. Looked
    up only when a request failed."""
    import httpx

    return (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def _environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment (or the system's settings) names for ``url``, or None."""
    import urllib.request

    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class HTTPTransport:
    """POSTs through one reused connection pool (keep-alive, TLS verification on).

    It is httpx's own transport (``httpx.HTTPTransport``) driven directly, without an
    ``httpx.Client`` around it: a batch needs no cookies, redirects, auth flows or URL
    merging, and skipping them halves the Python a request runs, which the worker thread
    otherwise runs while the application's threads wait for the interpreter.
    """

    def __init__(self) -> None:
        self._httpx: Any = None  # the httpx module, once imported
        # url -> (the parsed URL, the pool it goes through); a pool per proxy (None: direct)
        self._routes: dict[str, tuple[httpx.URL, httpx.HTTPTransport]] = {}
        self._pools: dict[str | None, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()
        self._warmed = False

    def _route(self, url: str) -> tuple[httpx.URL, httpx.HTTPTransport]:
        """The parsed ``url`` and its pool: direct, or through the proxy the environment
        names for it (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), as an
        ``httpx.Client`` would choose."""
        route = self._routes.get(url)
        if route is not None:
            return route
        with self._lock:
            route = self._routes.get(url)
            if route is not None:
                return route
            import httpx

            self._httpx = httpx
            target = httpx.URL(url)
            proxy = _environment_proxy(target)
            pool = self._pools.get(proxy)
            if pool is None:
                pool = self._pools[proxy] = httpx.HTTPTransport(
                    http1=True,
                    verify=True,
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
                    proxy=proxy,
                )
            route = self._routes[url] = (target, pool)
            return route

    def warm(self, url: str) -> None:
        """Build the connection pool for ``url`` now, on the thread building the client.

        Building it imports httpcore and certifi and makes a TLS context (tens of
        milliseconds). Done here, the first flush does not wait for it; and never on the
        worker thread while another thread may fork: a child forked while that thread was
        importing, or inside OpenSSL, would find a module half-initialised or a lock held
        for good. Once per transport: a forked child builds its own on first use, not in a
        fork hook while a thread of its parent may have held OpenSSL's locks.
        """
        if not self._warmed:
            self._warmed = True
            self._route(url)

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        secrets = (headers.get("Authorization", ""),)
        try:
            with transport_errors("POST", url, secrets):
                target, pool = self._route(url)
                try:
                    return self._post(pool, target, body, headers, timeout)
                except _connection_lost():
                    # The connection died before an answer: most often a pooled one that the
                    # server, a load balancer or a NAT forgot while this process was idle or
                    # frozen (a serverless function between invocations). The pool has let go
                    # of it; once more at once, on another connection, and no failure counted.
                    return self._post(pool, target, body, headers, timeout)
        except OSError as exc:  # below httpx: a socket error it did not wrap
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    def _post(
        self,
        pool: httpx.HTTPTransport,
        target: httpx.URL,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> Response:
        request = self._httpx.Request(
            "POST",
            target,
            headers={"User-Agent": "moetrack", **headers},
            content=body,
            extensions={
                "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
            },
        )
        response = pool.handle_request(request)
        try:
            content = response.read()
        finally:
            response.close()
        return Response(response.status_code, response.headers, content)

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            self._routes.clear()
        for pool in pools:
            pool.close()

    def reset_after_fork(self) -> None:
        """Forget the parent's connections in a forked child (never close them from here)."""
        self._pools = {}
        self._routes = {}
        self._lock = threading.Lock()
