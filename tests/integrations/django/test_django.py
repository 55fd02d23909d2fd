"""The Django integration in a real project: sessions, auth, DRF, WSGI and ASGI paths."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.core.asgi import get_asgi_application
from django.test import AsyncClient, Client, override_settings
from moetrack.integrations.django import MoetrackMiddleware
from rest_framework.authtoken.models import Token

import moetrack
from moetrack.testing import Emulator
from tests.integrations.conftest import customers

BACKEND = "tests.integrations.django.project.shop.backends.CountingBackend"


def logged_in(user: Any, cls: type[Any] = Client) -> Any:
    c = cls()
    c.force_login(user, backend=BACKEND)
    return c


def test_signed_in_request_tracks_the_users_primary_key(
    client: moetrack.Client, emu: Emulator, make_user: Any
) -> None:
    user = make_user()
    response = logged_in(user).get("/track/", {"page": "cart"})
    assert response.status_code == 200
    assert customers(emu) == [str(user.pk)]
    (event,) = emu.events()
    assert event["action"] == "Viewed"
    assert event["platform"] == "web"
    assert event["attributes"] == {"page": "cart"}


def test_anonymous_request_binds_no_customer(client: moetrack.Client, emu: Emulator) -> None:
    assert Client().get("/track/").status_code == 200
    assert customers(emu) == []
    assert client.stats().dropped == {"no_customer_id": 1}


def test_the_context_is_bound_during_the_request_and_restored_after(make_user: Any) -> None:
    body = logged_in(make_user()).get("/context/").json()
    assert body == {"fields": ["customer_id", "platform"], "platform": "web"}
    assert dict(moetrack.current_context()) == {}


def test_a_request_that_tracks_nothing_never_loads_the_user(
    client: moetrack.Client, emu: Emulator, make_user: Any, loads: Any
) -> None:
    browser = logged_in(make_user())
    for _ in range(3):
        assert browser.get("/quiet/").status_code == 200
    assert loads() == 0
    browser.get("/track/")
    assert loads() == 1


def test_customer_id_setting_names_an_attribute_or_a_callable(
    client: moetrack.Client, emu: Emulator, make_user: Any
) -> None:
    user = make_user("alice")
    with override_settings(MOETRACK={"CUSTOMER_ID": "username"}):
        logged_in(user).get("/track/")
    path = "tests.integrations.django.project.shop.tracking.customer_id"
    with override_settings(MOETRACK={"CUSTOMER_ID": path}):
        logged_in(user).get("/track/")
    assert customers(emu) == ["alice", "user-alice"]


def test_anonymous_id_setting_names_a_resolver(client: moetrack.Client, emu: Emulator) -> None:
    path = "tests.integrations.django.project.shop.tracking.anonymous_id"
    with override_settings(MOETRACK={"ANONYMOUS_ID": path}):
        browser = Client()
        browser.get("/track/")  # no cookie: the resolver gives None
        browser.cookies["anon_id"] = "anon-7f3a"
        browser.get("/track/")
    assert customers(emu) == ["anon-7f3a"]
    assert client.stats().dropped == {"no_customer_id": 1}


def test_a_bad_setting_is_reported_when_the_middleware_loads() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with (
        override_settings(MOETRACK={"CUSTOMER_ID": "no.such.module"}),
        pytest.raises(ImproperlyConfigured, match="no"),
    ):
        MoetrackMiddleware(lambda request: None)


def test_drf_token_auth_inside_the_view_is_seen(
    client: moetrack.Client, emu: Emulator, make_user: Any
) -> None:
    session_user, token_user = make_user(), make_user()
    token = Token.objects.create(user=token_user)
    # Signed in by session as one user, authenticated by token as another: DRF decides in the
    # view, after every middleware ran, and the event follows DRF.
    browser = logged_in(session_user)
    response = browser.post("/api/track/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200
    assert response.json() == {"user": token_user.username}
    assert Client().post("/api/track/").status_code in (401, 403)  # no token: nothing tracked
    assert customers(emu) == [str(token_user.pk)]


def test_a_single_digit_primary_key_is_reported_once_per_user(
    client: moetrack.Client,
    emu: Emulator,
    first_user: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="moetrack")
    browser = logged_in(first_user)
    for _ in range(3):
        assert browser.get("/track/").status_code == 200
    assert customers(emu) == []
    assert client.stats().dropped == {"invalid_customer_id": 3}
    warnings = [r for r in caplog.records if "CUSTOMER_ID" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    message = warnings[0].getMessage()
    assert warnings[0].name == "moetrack"
    assert "pk=1" in message
    assert "longer than one character" in message
    assert "invalid_customer_id" in message


# --- ASGI ---------------------------------------------------------------------------------


def test_async_client_signed_in_and_anonymous(
    client: moetrack.Client, emu: Emulator, make_user: Any, loads: Any
) -> None:
    user = make_user()
    browser = logged_in(user, AsyncClient)
    for path in ("/quiet/", "/async-quiet/"):
        assert async_to_sync(browser.get)(path).status_code == 200
    assert loads() == 0
    # A sync view runs on a thread; an async view resolves the user from the event loop.
    assert async_to_sync(browser.get)("/track/").status_code == 200
    assert async_to_sync(browser.get)("/async-track/").status_code == 200
    assert async_to_sync(AsyncClient().get)("/async-track/").status_code == 200
    assert customers(emu) == [str(user.pk), str(user.pk)]
    assert [e["action"] for e in emu.events()] == ["Viewed", "AsyncViewed"]
    assert client.stats().dropped == {"no_customer_id": 1}


def test_the_asgi_application(client: moetrack.Client, emu: Emulator, make_user: Any) -> None:
    user = make_user()
    cookies = {k: v.value for k, v in logged_in(user).cookies.items()}
    application = get_asgi_application()

    async def requests() -> None:
        transport = httpx.ASGITransport(app=application)
        base = "http://testserver"
        async with httpx.AsyncClient(transport=transport, base_url=base, cookies=cookies) as http:
            r1 = await http.get("/track/")
            r2 = await http.get("/async-track/")
        async with httpx.AsyncClient(transport=transport, base_url=base) as http:
            r3 = await http.get("/track/")
            assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]

    async_to_sync(requests)()
    assert customers(emu) == [str(user.pk), str(user.pk)]


def test_the_app_config_initialises_moetrack_from_settings(emu: Emulator, make_user: Any) -> None:
    options = {
        "app_id": emu.app_id,
        "api_key": emu.api_key,
        "endpoint": emu.url,
        "FLUSH_INTERVAL": 0.05,
        "CUSTOMER_ID": "username",
    }
    try:
        with override_settings(MOETRACK=options):
            apps.get_app_config("moetrack").ready()
            assert moetrack.get_client().config.base_url == emu.url
            assert moetrack.get_client().config.flush_interval == 0.05
            logged_in(make_user("carol")).get("/track/")
        assert customers(emu) == ["carol"]
    finally:
        moetrack.shutdown(5)
