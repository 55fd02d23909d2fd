"""The one-method seam between the worker and the network.

A :class:`Transport` sends one request body and returns a :class:`Response`, or raises
:class:`~moetrack.TransportError` when there is no answer. :class:`HTTPTransport` is the
default: one keep-alive ``httpx.Client`` with TLS verification on, imported only when the
first request is made so ``import moetrack`` stays light. Tests and special deployments can
pass any object with ``send()`` and ``close()`` as ``transport=``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

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


class HTTPTransport:
    """POSTs through one reused ``httpx.Client`` (keep-alive, TLS verification on)."""

    def __init__(self) -> None:
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._warmed = False

    def _get(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    http1=True,
                    verify=True,
                    follow_redirects=False,
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
                    headers={"User-Agent": "moetrack"},
                )
            return self._client

    def warm(self) -> None:
        """Build the ``httpx.Client`` now, on the thread building the moetrack client.

        Building it imports httpcore and certifi and makes a TLS context (tens of
        milliseconds). Done here, the first flush does not wait for it; and never on the
        worker thread while another thread may fork: a child forked while that thread was
        importing, or inside OpenSSL, would find a module half-initialised or a lock held
        for good. Once per transport: a forked child builds its own on first use, not in a
        fork hook while a thread of its parent may have held OpenSSL's locks.
        """
        if not self._warmed:
            self._warmed = True
            self._get()

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        client = self._get()
        secrets = (headers.get("Authorization", ""),)
        try:
            with transport_errors("POST", url, secrets):
                try:
                    response = client.post(
                        url, content=body, headers=dict(headers), timeout=timeout
                    )
                except _connection_lost():
                    # The connection died before an answer: most often a pooled one that the
                    # server, a load balancer or a NAT forgot while this process was idle or
                    # frozen (a serverless function between invocations). The pool has let go
                    # of it; once more at once, on another connection, and no failure counted.
                    response = client.post(
                        url, content=body, headers=dict(headers), timeout=timeout
                    )
        except OSError as exc:  # below httpx: a socket error it did not wrap
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return Response(response.status_code, response.headers, response.content)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def reset_after_fork(self) -> None:
        """Forget the parent's connections in a forked child (never close them from here)."""
        self._client = None
        self._lock = threading.Lock()
