"""A Starlette app instrumented with moetrack's ASGI middleware.

Run: ``uvicorn app:app`` (see README.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from moetrack.integrations.asgi import MoetrackMiddleware
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import moetrack


class DemoAuth(AuthenticationBackend):
    """Trusts an ``X-User`` header: a stand-in for real authentication."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        username = conn.headers.get("x-user")
        if not username:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(username)


def customer_id(scope: dict[str, object]) -> object:
    user = scope.get("user")
    return user.username if isinstance(user, SimpleUser) else None


async def home(request: Request) -> PlainTextResponse:
    moetrack.track("Viewed Home")  # dropped as no_customer_id without an X-User header
    return PlainTextResponse("hello\n")


async def buy(request: Request) -> PlainTextResponse:
    moetrack.track("Purchase", price=3999, currency="INR")
    return PlainTextResponse("thank you\n")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    moetrack.init(flush_interval=0.5)  # credentials and endpoint from MOETRACK_* variables
    yield
    moetrack.shutdown()


app = Starlette(
    routes=[Route("/", home), Route("/buy", buy)],
    middleware=[
        Middleware(AuthenticationMiddleware, backend=DemoAuth()),
        Middleware(MoetrackMiddleware, customer_id=customer_id),
    ],
    lifespan=lifespan,
)
