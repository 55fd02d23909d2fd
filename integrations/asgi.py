"""ASGI middleware: the customer of every request bound for you, in that request's context.

::

    from moetrack.integrations.asgi import MoetrackMiddleware

    app = MoetrackMiddleware(app, customer_id=lambda scope: scope["user"].id)

``customer_id`` is a ``resolver(scope) -> id | None``. A plain function is called when
something is tracked, so requests that track nothing never run it; an ``async def`` resolver
is awaited when the request starts. Without one, the customer is ``scope["user"]`` as set by
Starlette's ``AuthenticationMiddleware`` (when authenticated: its ``id``, else its
``identity``). HTTP and WebSocket connections are bound, each in its own context; lifespan
and other scopes pass through.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import moetrack

from ._common import checked_customer_id

__all__ = ["MoetrackMiddleware", "scope_user_id"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HINT = "Pass MoetrackMiddleware(customer_id=...) a resolver that gives a stable unique id."


def scope_user_id(scope: Scope) -> Any:
    """The authenticated ``scope["user"]``'s ``id``, else its ``identity``, or None."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    for name in ("id", "identity"):
        try:
            value = getattr(user, name, None)
        except NotImplementedError:  # Starlette's BaseUser.identity
            continue
        if value is not None:
            return value
    return None


def _is_async(resolver: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(resolver) or inspect.iscoroutinefunction(
        getattr(resolver, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class MoetrackMiddleware:
    """Binds ``customer_id`` and ``platform`` around each HTTP and WebSocket connection."""

    def __init__(
        self,
        app: ASGIApp,
        customer_id: Callable[[Scope], Any] | None = None,
        *,
        platform: str | None = "web",
    ) -> None:
        self.app = app
        self._resolver: Callable[[Scope], Any] = (
            customer_id if customer_id is not None else scope_user_id
        )
        self._awaited = _is_async(self._resolver)
        self._platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        fields: dict[str, Any] = {}
        if self._platform is not None:
            fields["platform"] = self._platform
        if self._awaited:
            value = checked_customer_id(
                await self._resolver(scope), source="the resolver", hint=_HINT
            )
            if value is not None:
                fields["customer_id"] = value
        else:
            fields["customer_id"] = partial(self.customer_id, scope)
        token = moetrack.bind(**fields)
        try:
            await self.app(scope, receive, send)
        finally:
            moetrack.reset(token)

    def customer_id(self, scope: Scope) -> Any:
        """The customer id of the connection ``scope``, from a plain resolver, looked up now."""
        value = self._resolver(scope)
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise TypeError(
                "the customer_id resolver returned an awaitable from a plain function; "
                "make it an async def (awaited when the request starts) or return the id"
            )
        return checked_customer_id(value, source="the resolver", hint=_HINT)
