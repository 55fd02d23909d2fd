"""The emulator as a server: rate limits, fault controls, pause/stop, keep-alive, lifecycle,
the pytest plugin and ``python -m moetrack.testing``."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import httpx
import pytest

from moetrack.testing import DEFAULT_API_KEY, DEFAULT_APP_ID, App, Emulator, _emulator

from ..reliability.waits import call_with_deadline

pytest_plugins = ["moetrack.testing.pytest_plugin", "pytester"]

AUTH = "Basic " + base64.b64encode(f"{DEFAULT_APP_ID}:{DEFAULT_API_KEY}".encode()).decode()
HEADERS = {"Authorization": AUTH, "Content-Type": "application/json"}
BULK = f"/v1/transition/{DEFAULT_APP_ID}"
# Building an httpx.Client loads the CA bundle (~0.1 s); the emulator speaks plain HTTP, so
# one context built here serves every client.
TLS = ssl.create_default_context()


def client(url: str, **options: Any) -> httpx.Client:
    options.setdefault("headers", HEADERS)
    options.setdefault("timeout", 5)
    return httpx.Client(base_url=url, verify=TLS, **options)


@pytest.fixture
def emu(moetrack_emulator: Emulator) -> Emulator:
    return moetrack_emulator


@pytest.fixture
def http(emu: Emulator) -> Iterator[httpx.Client]:
    with client(emu.url) as c:
        yield c


class Clock:
    """The emulator's clock, moved by the test: a fault's period or a rate window passes in
    one step, exactly, however loaded the machine (``time``'s other functions are the real
    ones). It starts at a round number, so that steps of whole and half seconds add up
    exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Replaces the clock the emulator module reads (it alone: the client, httpx and the
    server's threads keep the real one)."""
    fake = Clock()
    monkeypatch.setattr(_emulator, "time", fake)
    return fake


def customers(*ids: str) -> dict[str, Any]:
    return {
        "type": "transition",
        "elements": [{"type": "customer", "customer_id": cid} for cid in ids],
    }


def actions(n: int, cid: str = "user-1") -> dict[str, Any]:
    element = {"type": "event", "customer_id": cid, "actions": [{"action": "A"}] * n}
    return {"type": "transition", "elements": [element]}


# --- construction and lifecycle -------------------------------------------------------------


def test_plugin_fixture_yields_a_started_default_emulator(moetrack_emulator: Emulator) -> None:
    assert moetrack_emulator.running
    assert moetrack_emulator.url.startswith("http://127.0.0.1:")
    assert (moetrack_emulator.app_id, moetrack_emulator.api_key) == ("DEMO_APP_ID", "demo-api-key")


def test_plugin_fixture_stops_the_emulator_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        pytest_plugins = ["moetrack.testing.pytest_plugin"]
        seen = []

        def test_one(moetrack_emulator):
            seen.append(moetrack_emulator)
            assert moetrack_emulator.running

        def test_two(moetrack_emulator):
            assert moetrack_emulator is not seen[0]
            assert not seen[0].running
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_apps_argument_forms() -> None:
    assert Emulator().app_id == "DEMO_APP_ID"
    emu = Emulator({"A_APP": "key-a", "B_APP": None})
    assert (emu.app_id, emu.api_key) == ("A_APP", "key-a")
    emu = Emulator([App("C_APP", "key-c", "suspended"), App("D_APP")])
    assert (emu.app_id, emu.api_key) == ("C_APP", "key-c")
    assert App("D_APP").api_key == DEFAULT_API_KEY
    with pytest.raises(ValueError, match="state"):
        App("E_APP", "k", "frozen")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="app_id"):
        App("")
    with pytest.raises(ValueError, match="at least one app"):
        Emulator([])


def test_context_manager_start_and_stop_are_idempotent() -> None:
    emu = Emulator()
    assert "stopped" in repr(emu)
    with emu as started:
        assert started is emu
        assert emu.start() is emu
        with client(emu.url) as c:
            assert c.get("/_emulator/users").json() == {}
    assert "stopped" in repr(emu)
    emu.stop()
    with client(emu.url) as c, pytest.raises(httpx.ConnectError):
        c.get("/_emulator/users")


def test_fixed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Emulator(port=port) as emu:
        assert emu.url == f"http://127.0.0.1:{port}"
        with client(emu.url) as c:
            assert c.get("/_emulator/users").status_code == 200


def test_add_app_and_set_app_state(emu: Emulator, http: httpx.Client) -> None:
    emu.add_app("NEW_APP", "new-key")
    auth = "Basic " + base64.b64encode(b"NEW_APP:new-key").decode()
    path = "/v1/transition/NEW_APP"
    assert (
        http.post(path, json=customers("u-1"), headers={"Authorization": auth}).status_code == 200
    )
    assert emu.users("NEW_APP") == {"u-1": {}}
    emu.set_app_state("NEW_APP", "suspended")
    response = http.post(path, json=customers("u-1"), headers={"Authorization": auth})
    assert response.json()["error"]["type"] == "Account Suspended"
    emu.set_app_state("NEW_APP", "active")
    assert (
        http.post(path, json=customers("u-1"), headers={"Authorization": auth}).status_code == 200
    )
    with pytest.raises(KeyError):
        emu.set_app_state("NO_SUCH_APP", "active")


def test_reset_forgets_state_and_faults(emu: Emulator, http: httpx.Client) -> None:
    http.post(BULK, json=customers("u-1"))
    http.post(BULK, json={"type": "transition", "elements": [{"type": "x"}]})
    emu.set_app_state(emu.app_id, "blacklisted")
    emu.fail_next(5)
    emu.set_body_limit(10)
    emu.reset()
    assert (emu.users(), emu.events(), emu.dropped(), emu.requests()) == ({}, [], [], [])
    assert http.post(BULK, json=customers("u-2")).status_code == 200
    assert list(emu.users()) == ["u-2"]


def test_wait_for_and_wait_for_events(emu: Emulator, http: httpx.Client) -> None:
    assert emu.wait_for_events(1, timeout=0.05) is False
    timer = threading.Timer(0.1, lambda: http.post(BULK, json=actions(2)))
    timer.start()
    assert emu.wait_for_events(2, timeout=60)
    timer.join()
    assert emu.wait_for(lambda: len(emu.events()) == 2, timeout=0.01)
    assert emu.wait_for(lambda: False, timeout=0.05) is False


# --- rate limits ----------------------------------------------------------------------------


def test_user_rate_limit_refuses_the_whole_request() -> None:
    with Emulator(users_per_minute=3) as emu, client(emu.url) as c:
        assert c.post(BULK, json=customers("u-1", "u-2")).status_code == 200
        response = c.post(BULK, json=customers("u-3", "u-4"))
        assert response.status_code == 429
        assert response.json()["error"] == {
            "type": "Rate Limit Exceeded",
            "message": "Rate Limits for User / Event exceeded",
        }
        assert 55 <= int(response.headers["Retry-After"]) <= 60
        assert list(emu.users()) == ["u-1", "u-2"]  # nothing of the refused request
        # The refused request counted nothing: one more user still fits.
        assert c.post(BULK, json=customers("u-5")).status_code == 200
        assert c.post(f"/v1/customer/{emu.app_id}", json={
            "type": "customer", "customer_id": "u-6"
        }).status_code == 429  # fmt: skip
        # Events are not limited here.
        assert c.post(BULK, json=actions(50)).status_code == 200


def test_device_elements_count_as_users() -> None:
    device = {
        "type": "device",
        "customer_id": "u-1",
        "attributes": {"platform": "web", "push_id": "tok"},
    }
    with Emulator(users_per_minute=1) as emu, client(emu.url) as c:
        assert c.post(f"/v1/device/{emu.app_id}", json=device).status_code == 200
        assert c.post(f"/v1/device/{emu.app_id}", json=device).status_code == 429


def test_event_rate_limit_counts_actions() -> None:
    with Emulator(events_per_minute=5) as emu, client(emu.url) as c:
        assert c.post(BULK, json=actions(3)).status_code == 200
        assert c.post(BULK, json=actions(3)).status_code == 429
        event_body = actions(2)["elements"][0]
        assert c.post(f"/v1/event/{emu.app_id}", json=event_body).status_code == 200
        assert c.post(BULK, json=customers("u-9")).status_code == 200  # users are not limited
        assert len(emu.events()) == 5


def test_rate_limit_window_slides_and_retry_after_says_when(clock: Clock) -> None:
    with Emulator(users_per_minute=2) as emu, client(emu.url) as c:
        assert c.post(BULK, json=customers("u-1")).status_code == 200
        clock.advance(30)
        assert c.post(BULK, json=customers("u-2")).status_code == 200
        refused = c.post(BULK, json=customers("u-3"))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "30"  # when u-1 leaves the window
        clock.advance(29.5)
        refused = c.post(BULK, json=customers("u-3"))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"  # whole seconds, rounded up
        clock.advance(0.5)  # a minute after u-1: it left the window, u-2 is still in it
        assert c.post(BULK, json=customers("u-3")).status_code == 200
        refused = c.post(BULK, json=customers("u-4"))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "30"  # when u-2 leaves
        assert list(emu.users()) == ["u-1", "u-2", "u-3"]


def test_request_larger_than_the_limit_waits_a_whole_window() -> None:
    with (
        Emulator(events_per_minute=2, rate_limit_window=30) as emu,
        client(emu.url) as c,
    ):
        response = c.post(BULK, json=actions(3))
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "30"


def test_set_rate_limits(emu: Emulator, http: httpx.Client) -> None:
    assert http.post(BULK, json=actions(100)).status_code == 200  # off by default
    emu.set_rate_limits(events_per_minute=100)
    assert http.post(BULK, json=actions(1)).status_code == 429
    emu.set_rate_limits(None, None)
    assert http.post(BULK, json=actions(1)).status_code == 200


def test_rate_limits_are_per_app() -> None:
    apps = {"A_APP": "key-a", "B_APP": "key-b"}
    with Emulator(apps, users_per_minute=1) as emu, client(emu.url, headers={}) as c:
        for app, key in apps.items():
            auth = "Basic " + base64.b64encode(f"{app}:{key}".encode()).decode()
            response = c.post(
                f"/v1/transition/{app}", json=customers("u-1"), headers={"Authorization": auth}
            )
            assert response.status_code == 200


# --- fault controls -------------------------------------------------------------------------


def test_fail_next(emu: Emulator, http: httpx.Client) -> None:
    emu.fail_next(2, retry_after=7)
    for _ in range(2):
        response = http.post(BULK, json=customers("u-1"))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.json()["status"] == "fail"
        assert response.json()["error"]["type"] == "Server Error"
    assert emu.users() == {}  # a failed request stores nothing
    assert http.post(BULK, json=customers("u-1")).status_code == 200
    assert [r["status"] for r in emu.requests()] == [503, 503, 200]
    assert [r["fault"] for r in emu.requests()] == ["fail", "fail", None]


@pytest.mark.parametrize(
    ("status", "type_", "retry_after", "header"),
    [
        (429, "Rate Limit Exceeded", 0.25, "0.25"),
        (500, "Server Error", None, None),
        (502, "Server Error", "Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
        (413, "Payload too large", None, None),
        (401, "Authentication Required", None, None),
    ],
)
def test_fail_next_answers_in_the_documented_format(
    emu: Emulator,
    http: httpx.Client,
    status: int,
    type_: str,
    retry_after: Any,
    header: str | None,
) -> None:
    emu.fail_next(1, status, retry_after=retry_after)
    response = http.post(BULK, json=customers("u-1"))
    assert response.status_code == status
    assert response.json()["error"]["type"] == type_
    assert response.headers.get("Retry-After") == header


def test_fail_for(emu: Emulator, http: httpx.Client, clock: Clock) -> None:
    emu.fail_for(30, 502, retry_after=1)
    for step in (0, 29.5, 0.25):  # requests over the 30 seconds, to near their end
        clock.advance(step)
        response = http.post(BULK, json=customers("u-1"))
        assert response.status_code == 502
        assert response.headers["Retry-After"] == "1"
    assert emu.users() == {}
    clock.advance(0.25)  # the 30 seconds are over
    assert http.post(BULK, json=customers("u-1")).status_code == 200
    assert [r["fault"] for r in emu.requests()] == ["fail", "fail", "fail", None]


def test_delay_answers_late_but_stores_first(emu: Emulator) -> None:
    emu.delay(3600, n=1)  # an answer that never comes within the test (stop() ends it)
    with client(emu.url, timeout=0.15) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post(BULK, json=customers("u-1"))
    # Stored although the client gave up (the server may store it after the client's
    # timeout on a loaded machine, so this waits for it; the answer never came either way).
    assert emu.wait_for(lambda: list(emu.users()) == ["u-1"])
    with client(emu.url, timeout=60) as patient:
        assert patient.post(BULK, json=customers("u-2")).status_code == 200  # n=1 is spent
    assert [r["fault"] for r in emu.requests()] == ["delay", None]


def test_delay_every_request_until_cleared(emu: Emulator, http: httpx.Client) -> None:
    emu.delay(0.3)
    for _ in range(2):
        started = time.monotonic()
        assert http.post(BULK, json=customers("u-1")).status_code == 200
        # The promise is a lower bound, which a loaded machine can only lengthen.
        assert time.monotonic() - started >= 0.29
    emu.clear_faults()
    assert http.post(BULK, json=customers("u-1")).status_code == 200
    assert [r["fault"] for r in emu.requests()] == ["delay", "delay", None]


def test_drop_connections(emu: Emulator, http: httpx.Client) -> None:
    emu.drop_connections(2)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            http.post(BULK, json=customers("u-1"))
    assert emu.users() == {}
    assert http.post(BULK, json=customers("u-1")).status_code == 200
    assert [r["fault"] for r in emu.requests()] == ["drop_connection", "drop_connection", None]
    assert emu.requests()[0]["status"] is None


def test_set_body_limit(emu: Emulator, http: httpx.Client) -> None:
    body = customers("u-1", "u-2", "u-3")
    emu.set_body_limit(50)
    response = http.post(BULK, json=body)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "The payload can not exceed 128KB"
    emu.clear_faults()
    assert http.post(BULK, json=body).status_code == 200


def test_max_body_bytes_default_and_option() -> None:
    small = Emulator(max_body_bytes=1000)
    with small, client(small.url) as c:
        assert c.post(BULK, json=customers(*(f"u-{i}" for i in range(100)))).status_code == 413
    with Emulator() as emu, client(emu.url) as c:
        attributes = {"p": ""}
        element = {"type": "customer", "customer_id": "u-1", "attributes": attributes}
        body = {"type": "transition", "elements": [element]}
        attributes["p"] = "x" * (128 * 1024 - len(json.dumps(body).encode()))
        exact = json.dumps(body).encode()
        assert len(exact) == 128 * 1024
        assert c.post(BULK, content=exact).status_code == 200
        assert c.post(BULK, content=exact + b" ").status_code == 413


def test_held_counts_the_requests_a_pause_holds(emu: Emulator) -> None:
    assert emu.held == 0
    emu.pause()
    statuses: list[int] = []

    def send(cid: str) -> None:
        with client(emu.url, timeout=60) as c:
            statuses.append(c.post(BULK, json=customers(cid)).status_code)

    senders = [threading.Thread(target=send, args=(f"u-{i}",)) for i in range(2)]
    for sender in senders:
        sender.start()
    assert emu.wait_for(lambda: emu.held == 2)
    assert emu.requests() == []
    emu.resume()
    for sender in senders:
        sender.join(timeout=60)
    assert statuses == [200, 200]
    assert emu.held == 0
    assert len(emu.requests()) == 2


def assert_stops_without_waiting_for_requests(emu: Emulator) -> None:
    """``stop()`` ends serving and returns, whatever requests are held or connections open.

    Not a timing: the deadline is generous (it only turns a hang into a failure), and what is
    checked is that the serving thread ended, so stop() returned because serving was over and
    not because its own wait for that thread gave up.
    """
    serving = f"moetrack-emulator:{emu.port}"
    assert any(t.name == serving for t in threading.enumerate())
    returned, _ = call_with_deadline(emu.stop, 60)
    assert returned, "stop() is stuck"
    assert not emu.running
    assert not any(t.name == serving for t in threading.enumerate())


def test_pause_holds_requests_until_resume(emu: Emulator, http: httpx.Client) -> None:
    emu.pause()
    result: list[int] = []
    sender = threading.Thread(
        target=lambda: result.append(http.post(BULK, json=customers("u-1")).status_code)
    )
    sender.start()
    assert emu.wait_for(lambda: emu.held == 1)  # the request arrived, and is held
    assert result == []
    assert emu.users() == {}
    assert emu.requests() == []  # not even looked at yet
    # The read API is not held.
    with client(emu.url) as reader:
        assert reader.get("/_emulator/state").json()["paused"] is True
    emu.resume()
    sender.join(timeout=60)
    assert result == [200]
    assert list(emu.users()) == ["u-1"]


def test_stop_returns_promptly_while_paused() -> None:
    emu = Emulator().start()
    emu.pause()
    errors: list[BaseException] = []

    def send() -> None:
        try:
            with client(emu.url, timeout=120) as c:
                c.post(BULK, json=customers("u-1"))
        except httpx.HTTPError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert emu.wait_for(lambda: emu.held == 1)
    assert_stops_without_waiting_for_requests(emu)
    assert emu.wait_for(lambda: emu.held == 0)  # stop released the held request ...
    sender.join(timeout=60)
    assert not sender.is_alive()
    assert len(errors) == 1  # ... and it ended without an answer
    assert emu.requests() == []


def test_stop_returns_promptly_with_a_delayed_request() -> None:
    emu = Emulator().start()
    emu.delay(3600)  # an answer that never comes within the test
    errors: list[BaseException] = []

    def send() -> None:
        try:
            with client(emu.url, timeout=120) as c:
                c.post(BULK, json=customers("u-1"))
        except httpx.HTTPError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert emu.wait_for(lambda: len(emu.requests()) == 1)  # stored; its answer is delayed
    assert_stops_without_waiting_for_requests(emu)
    sender.join(timeout=60)
    assert not sender.is_alive()
    assert len(errors) == 1  # the delayed answer never came
    assert [r["fault"] for r in emu.requests()] == ["delay"]


def test_stop_returns_promptly_with_idle_keep_alive_connections() -> None:
    emu = Emulator().start()
    clients = [client(emu.url) for _ in range(3)]
    raw = socket.create_connection(("127.0.0.1", emu.port))  # connected, sends nothing
    try:
        for c in clients:
            assert c.post(BULK, json=customers("u-1")).status_code == 200
        assert_stops_without_waiting_for_requests(emu)
        raw.settimeout(60)
        assert raw.recv(1) == b""  # the server closed it
    finally:
        raw.close()
        for c in clients:
            c.close()


# --- HTTP/1.1 behaviour ---------------------------------------------------------------------


def test_keep_alive_connection_is_reused_across_answers(emu: Emulator) -> None:
    conn = HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        statuses = []
        sockets = set()
        for auth in (AUTH, "Basic bad", AUTH, None):
            headers = {"Content-Type": "application/json"}
            if auth is not None:
                headers["Authorization"] = auth
            conn.request("POST", BULK, body=json.dumps(customers("u-1")), headers=headers)
            response = conn.getresponse()
            assert response.getheader("Content-Length") is not None
            response.read()
            statuses.append(response.status)
            sockets.add(id(conn.sock))
        conn.request("GET", "/_emulator/users")
        conn.getresponse().read()
        sockets.add(id(conn.sock))
        assert statuses == [200, 401, 200, 401]
        assert len(sockets) == 1
    finally:
        conn.close()


def test_chunked_request_body_is_read(emu: Emulator) -> None:
    conn = HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        body = json.dumps(customers("u-chunked")).encode()
        chunks = iter([body[:10], body[10:]])
        conn.request("POST", BULK, body=chunks, headers=HEADERS, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
        # The same connection goes on working.
        conn.request("GET", "/_emulator/users")
        assert json.loads(conn.getresponse().read()) == {"u-chunked": {}}
    finally:
        conn.close()


def test_concurrent_requests(emu: Emulator) -> None:
    def worker(n: int) -> None:
        with client(emu.url) as c:
            for i in range(10):
                assert c.post(BULK, json=actions(1, f"user-{n}-{i}")).status_code == 200

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(emu.events()) == 80
    assert len(emu.requests()) == 80


# --- running it as a process ----------------------------------------------------------------


def test_python_m_moetrack_testing_serves_until_interrupted() -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moetrack.testing",
            "--port",
            "0",
            "--app-id",
            "CLI_APP",
            "--api-key",
            "cli-secret-key",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("MoEngage Data API emulator on http://127.0.0.1:")
        url = first.split(" on ", 1)[1].strip()
        banner = first
        for _ in range(5):
            banner += process.stdout.readline()
        assert "CLI_APP" in banner
        assert "cli-secret-key" not in banner
        auth = "Basic " + base64.b64encode(b"CLI_APP:cli-secret-key").decode()
        with client(url, headers={"Authorization": auth}) as c:
            assert c.get("/").status_code == 200
            response = c.post(
                "/v1/customer/CLI_APP", json={"type": "customer", "customer_id": "u-1"}
            )
            assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "Traceback" not in err
        assert "cli-secret-key" not in out + err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
