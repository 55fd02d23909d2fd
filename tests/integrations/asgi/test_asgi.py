"""The ASGI middleware with Starlette: per-request binding, laziness, concurrency, websockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import warnings
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from moetrack.integrations.asgi import MoetrackMiddleware
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import moetrack
from moetrack.testing import Emulator
from tests.integrations.conftest import customers

with warnings.catch_warnings():
    # Recent Starlette warns that its test client prefers the httpx2 package; httpx works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-user")
        if name is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


class IdUser(SimpleUser):
    @property
    def id(self) -> str:
        return f"id-{self.username}"


class IdAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-user")
        return None if name is None else (AuthCredentials(["authenticated"]), IdUser(name))


async def track(request: Request) -> PlainTextResponse:
    expected = request.headers.get("x-user")
    await asyncio.sleep(random.random() / 100)  # let the concurrent requests interleave
    moetrack.track("Hit", expected=expected)
    await asyncio.sleep(random.random() / 100)
    moetrack.track("Hit", expected=expected)
    return PlainTextResponse("tracked")


async def quiet(request: Request) -> PlainTextResponse:
    return PlainTextResponse("nothing tracked")


async def context(request: Request) -> JSONResponse:
    return JSONResponse({"fields": sorted(moetrack.current_context())})


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        moetrack.track("Said", text=text)
        await websocket.send_text("ok")


ROUTES = [
    Route("/track", track),
    Route("/quiet", quiet),
    Route("/context", context),
    WebSocketRoute("/ws", socket),
]


def make_app(resolver: Any = None, auth: type[AuthenticationBackend] = HeaderAuth) -> Starlette:
    options = {} if resolver is None else {"customer_id": resolver}
    return Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(MoetrackMiddleware, **options),
            Middleware(AuthenticationMiddleware, backend=auth()),
        ],
    )


def test_authenticated_user_is_the_customer(client: moetrack.Client, emu: Emulator) -> None:
    with TestClient(make_app(auth=IdAuth)) as web:
        assert web.get("/track", headers={"x-user": "alice"}).status_code == 200
        assert web.get("/track").status_code == 200
    assert customers(emu) == ["id-alice", "id-alice"]
    assert {e["platform"] for e in emu.events()} == {"web"}
    assert client.stats().dropped == {"no_customer_id": 2}


def test_concurrent_requests_never_mix(client: moetrack.Client, emu: Emulator) -> None:
    calls: list[str] = []

    def resolver(scope: Any) -> Any:
        calls.append(scope["path"])
        return dict(scope["headers"]).get(b"x-user", b"").decode() or None

    app = make_app(resolver)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            users = [f"user-{i:02d}" for i in range(50)]
            responses = await asyncio.gather(
                *(http.get("/track", headers={"x-user": u}) for u in users),
                *(http.get("/quiet", headers={"x-user": u}) for u in users),
            )
            assert {r.status_code for r in responses} == {200}

    asyncio.run(main())
    assert moetrack.flush(10)
    events = emu.events()
    assert len(events) == 100
    assert all(e["customer_id"] == e["attributes"]["expected"] for e in events)
    assert len({e["customer_id"] for e in events}) == 50
    # Resolved once per tracked event; never for the requests that tracked nothing.
    assert calls == ["/track"] * 100


def test_async_resolver_is_awaited_when_the_request_starts(
    client: moetrack.Client, emu: Emulator
) -> None:
    async def resolver(scope: Any) -> str | None:
        await asyncio.sleep(0)
        return dict(scope["headers"]).get(b"x-user", b"").decode() or None

    with TestClient(make_app(resolver)) as web:
        web.get("/track", headers={"x-user": "bob-01"})
        web.get("/track")
    assert customers(emu) == ["bob-01", "bob-01"]


def test_websocket_connection_is_bound(client: moetrack.Client, emu: Emulator) -> None:
    with (
        TestClient(make_app()) as web,
        web.websocket_connect("/ws", headers={"x-user": "carol"}) as ws,
    ):
        ws.send_text("hello")
        assert ws.receive_text() == "ok"
    assert customers(emu) == ["carol"]
    assert emu.events()[0]["attributes"] == {"text": "hello"}


def test_lifespan_passes_through_and_the_context_is_restored(client: moetrack.Client) -> None:
    started: list[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = Starlette(routes=ROUTES, lifespan=lifespan)
    with TestClient(MoetrackMiddleware(app, platform=None)) as web:
        assert web.get("/context").json() == {"fields": ["customer_id"]}
    assert started == [True]
    assert dict(moetrack.current_context()) == {}


def test_an_invalid_id_is_reported_once(
    client: moetrack.Client, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moetrack")
    with TestClient(make_app(lambda scope: 7)) as web:
        for _ in range(3):
            web.get("/track")
    assert customers(emu) == []
    assert client.stats().dropped == {"invalid_customer_id": 6}
    warnings = [r for r in caplog.records if "MoetrackMiddleware(customer_id" in r.getMessage()]
    assert len(warnings) == 1, caplog.text


def test_a_plain_resolver_returning_an_awaitable_is_an_error(
    client: moetrack.Client, emu: Emulator
) -> None:
    async def lookup() -> str:
        return "never"

    with TestClient(make_app(lambda scope: lookup())) as web:
        web.get("/track")
    assert customers(emu) == []
    assert client.stats().dropped == {"error": 2}
