"""The Flask extension with Flask's test client, Flask-Login and g.user."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, g, request
from flask_login import LoginManager, UserMixin, login_user
from moetrack.integrations.flask import Moetrack

import moetrack
from moetrack.testing import Emulator
from tests.integrations.conftest import customers


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def make_app(emu: Emulator, *, login: bool = True, **ext: Any) -> tuple[Flask, list[str]]:
    """An app configured for the emulator, and the list of user ids Flask-Login loaded."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="tests-only",
        MOETRACK_APP_ID=emu.app_id,
        MOETRACK_API_KEY=emu.api_key,
        MOETRACK_ENDPOINT=emu.url,
        MOETRACK_OPTIONS={"flush_interval": 0.05},
    )
    loaded: list[str] = []
    if login:
        manager = LoginManager(app)

        @manager.user_loader
        def load_user(user_id: str) -> User:
            loaded.append(user_id)
            return User(user_id)

        @app.post("/login/<user_id>")
        def log_in(user_id: str) -> str:
            login_user(User(user_id))
            return "ok"

    @app.get("/track")
    def track() -> str:
        moetrack.track("Viewed", page=request.args.get("page", "home"))
        return "tracked"

    @app.get("/quiet")
    def quiet() -> str:
        return "nothing tracked"

    @app.get("/g-user/<user_id>")
    def g_user(user_id: str) -> str:
        g.user = User(user_id)
        moetrack.track("Viewed")
        return "tracked"

    @app.get("/context")
    def context() -> dict[str, Any]:
        return {"fields": sorted(moetrack.current_context())}

    @app.get("/async-track")
    async def async_track() -> str:
        moetrack.track("AsyncViewed")
        return "tracked"

    Moetrack(app, **ext)
    return app, loaded


@pytest.fixture
def shutdown() -> Any:
    yield
    moetrack.shutdown(5)


def test_init_app_configures_moetrack_from_app_config(emu: Emulator, shutdown: Any) -> None:
    app, _ = make_app(emu)
    config = moetrack.get_client().config
    assert config.base_url == emu.url
    assert config.flush_interval == 0.05
    assert isinstance(app.extensions["moetrack"], Moetrack)


def test_flask_login_user_is_the_customer(emu: Emulator, shutdown: Any) -> None:
    app, _ = make_app(emu)
    web = app.test_client()
    web.post("/login/alice-01")
    assert web.get("/track?page=cart").status_code == 200
    assert web.get("/async-track").status_code == 200
    assert customers(emu) == ["alice-01", "alice-01"]
    event = emu.events()[0]
    assert event["platform"] == "web"
    assert event["attributes"] == {"page": "cart"}


def test_anonymous_request_binds_no_customer(emu: Emulator, shutdown: Any) -> None:
    app, _ = make_app(emu)
    assert app.test_client().get("/track").status_code == 200
    assert customers(emu) == []
    assert moetrack.get_client().stats().dropped == {"no_customer_id": 1}


def test_a_request_that_tracks_nothing_never_loads_the_user(emu: Emulator, shutdown: Any) -> None:
    app, loaded = make_app(emu)
    web = app.test_client()
    web.post("/login/bob-02")
    for _ in range(3):
        web.get("/quiet")
    assert loaded == []
    web.get("/track")
    assert loaded == ["bob-02"]
    assert customers(emu) == ["bob-02"]


def test_g_user_without_flask_login(emu: Emulator, shutdown: Any) -> None:
    app, _ = make_app(emu, login=False)
    app.test_client().get("/g-user/carol-03")
    assert customers(emu) == ["carol-03"]


def test_customer_id_resolver(emu: Emulator, shutdown: Any) -> None:
    resolver: Callable[[], Any] = lambda: request.headers.get("X-Customer")  # noqa: E731
    app, _ = make_app(emu, customer_id=resolver)
    web = app.test_client()
    web.get("/track", headers={"X-Customer": "dave-04"})
    web.get("/track")
    assert customers(emu) == ["dave-04"]


def test_context_is_bound_per_request_and_restored(emu: Emulator, shutdown: Any) -> None:
    app, _ = make_app(emu)
    web = app.test_client()
    assert web.get("/context").json == {"fields": ["customer_id", "platform"]}
    with web:  # the request context stays pushed until the block ends
        web.get("/context")
    assert dict(moetrack.current_context()) == {}


def test_an_invalid_id_is_reported_once_per_user(
    emu: Emulator, shutdown: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moetrack")
    app, _ = make_app(emu)
    web = app.test_client()
    web.post("/login/1")
    for _ in range(3):
        web.get("/track")
    web.post("/login/guest")
    web.get("/track")
    assert customers(emu) == []
    assert moetrack.get_client().stats().dropped == {"invalid_customer_id": 4}
    warnings = [r for r in caplog.records if "Moetrack(customer_id=...)" in r.getMessage()]
    assert [r.name for r in warnings] == ["moetrack", "moetrack"], caplog.text
    assert "longer than one character" in warnings[0].getMessage()
    assert "forbids" in warnings[1].getMessage()
