"""A MoEngage Data API emulator: a real HTTP server on loopback for tests and local runs.

It answers the four endpoints (``/v1/customer``, ``/v1/device``, ``/v1/event``,
``/v1/transition``) with the checks and error responses of the vendor's error table, keeps
what it accepted (users merged by customer_id, devices, events in arrival order), records
every element Bulk Import dropped and why, and serves it all read-only as JSON under
``/_emulator/`` and as a web page at ``/``. Tests can inject faults: failures, delays,
dropped connections, a lower body limit, a paused server.

::

    from moetrack.testing import Emulator

    with Emulator() as emu:
        ...  # point the client at emu.url with emu.app_id / emu.api_key
        assert emu.wait_for_events(1)
        assert emu.events()[0]["action"] == "Purchase"
"""

from __future__ import annotations

import copy
import hmac
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, get_args
from urllib.parse import parse_qs, unquote, urlsplit

from . import _views
from ._checks import (
    APP_ID_HEADER,
    BODY_LIMIT,
    ENDPOINTS,
    ERRORS,
    Refused,
    check_body,
    check_content_type,
    count_users_and_events,
    parse_authorization,
    parse_body,
)
from ._server import METHOD_NOT_ALLOWED, NOT_FOUND, Reply, Request, Server, fail, json_bytes
from ._state import AppState, Faults, RetryAfter, format_retry_after

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_APP_ID",
    "App",
    "AppStatus",
    "Emulator",
    "serve",
]

DEFAULT_APP_ID = "DEMO_APP_ID"
DEFAULT_API_KEY = "demo-api-key"

#: The account states the API distinguishes (see the 400 Blacklisted and 403 rows).
AppStatus = Literal["active", "blacklisted", "suspended", "temporarily_suspended"]
_APP_STATUSES = frozenset(get_args(AppStatus))
_STATUS_ERRORS = {
    "blacklisted": ERRORS["blacklisted"],
    "suspended": ERRORS["suspended"],
    "temporarily_suspended": ERRORS["temporarily_suspended"],
}

#: The request log keeps the latest entries only, so a long-running server stays small.
REQUEST_LOG_SIZE = 10_000
#: How often the serving thread looks for a stop request (seconds); stop() waits up to this.
_POLL_INTERVAL = 0.01


@dataclass(frozen=True)
class App:
    """An app the emulator knows: its id, its Data API key and its account state.

    ``api_key=None`` is an app whose secret was never set (409 on every request).
    """

    app_id: str
    api_key: str | None = field(default=DEFAULT_API_KEY, repr=False)
    state: AppStatus = "active"

    def __post_init__(self) -> None:
        if not isinstance(self.app_id, str) or not self.app_id:
            raise ValueError("app_id must be a non-empty string")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise TypeError("api_key must be a string or None")
        if self.state not in _APP_STATUSES:
            raise ValueError(f"state must be one of {sorted(_APP_STATUSES)}, got {self.state!r}")


def _as_apps(apps: Mapping[str, str | None] | Iterable[App] | None) -> list[App]:
    if apps is None:
        return [App(DEFAULT_APP_ID, DEFAULT_API_KEY)]
    if isinstance(apps, Mapping):
        return [App(app_id, key) for app_id, key in apps.items()]
    result = list(apps)
    for app in result:
        if not isinstance(app, App):
            raise TypeError(f"apps must be App instances or a mapping, got {type(app).__name__}")
    return result


_SUCCESS = json_bytes({"status": "success"})


def _masked(authorization: str | None) -> str | None:
    """What the request log shows of an Authorization header: at most its scheme."""
    if authorization is None:
        return None
    scheme = authorization.strip().partition(" ")[0]
    # A header without the space ("BasicQUJD...") must not put credentials in the log.
    return f"{scheme} ***" if scheme.lower() in ("basic", "bearer") else "***"


class Emulator:
    """The MoEngage Data API on a local port, with its state open to assertions.

    ``apps`` is None (one app, ``DEMO_APP_ID`` / ``demo-api-key``), a mapping
    ``{app_id: api_key}`` or a list of :class:`App`; the first one is the default of every
    accessor's ``app_id=None``. ``port=0`` picks a free port (see :attr:`url`). Rate limits
    are off unless ``users_per_minute`` / ``events_per_minute`` are given; they are counted
    over a sliding window of ``rate_limit_window`` seconds. Bodies over ``max_body_bytes``
    (default 128 KiB, as the 413 row says) are answered 413. With ``idle_timeout``, a
    connection left idle longer than that many seconds is forgotten, as a load balancer or a
    NAT forgets it while a serverless process is frozen: the next request on it is reset
    without an answer (default: connections live until the client closes them).
    Its checks are written from the API document alone and share no code with the client.

    Every method is thread-safe. Accessors return copies.
    """

    def __init__(
        self,
        apps: Mapping[str, str | None] | Iterable[App] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users_per_minute: int | None = None,
        events_per_minute: int | None = None,
        rate_limit_window: float = 60.0,
        max_body_bytes: int = BODY_LIMIT,
        idle_timeout: float | None = None,
    ) -> None:
        app_list = _as_apps(apps)
        if not app_list:
            raise ValueError("the emulator needs at least one app")
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0
        self._apps: dict[str, AppState] = {}
        for app in app_list:
            self._apps[app.app_id] = AppState(app.app_id, app.api_key, app.state)
        self._default_app = app_list[0].app_id
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._max_body_bytes = max_body_bytes
        self._faults = Faults(body_limit=max_body_bytes)
        self.users_per_minute = users_per_minute
        self.events_per_minute = events_per_minute
        self.rate_limit_window = rate_limit_window
        self._host = host
        self._port = port
        self.idle_timeout = idle_timeout
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._held = 0

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve on a daemon thread; returns self. Starting twice does nothing."""
        with self._lock:
            if self._server is not None:
                return self
            server = Server((self._host, self._port), self._respond, self.idle_timeout)
            self._server = server
            self._stopping = False
            self._port = server.server_address[1]
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"moetrack-emulator:{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, also paused or kept-alive ones."""
        with self._changed:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._stopping = True
            self._changed.notify_all()
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        # Counts make a failed ``assert emu.wait_for(...)`` say what did arrive.
        where = self.url if self._server is not None else "stopped"
        with self._lock:
            app = self._apps[self._default_app]
            counts = (
                f"users={len(app.users)} events={len(app.events)} "
                f"dropped={len(app.dropped)} requests={len(self._requests)}"
            )
        return f"<Emulator {where} apps={list(self._apps)!r} {counts}>"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The address the emulator listens on (loopback unless given)."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port once started (the one asked for before)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (give it to the client as endpoint)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def app_id(self) -> str:
        """The first app's id."""
        return self._default_app

    @property
    def api_key(self) -> str | None:
        """The first app's Data API key."""
        with self._lock:
            return self._apps[self._default_app].api_key

    # --- apps ---------------------------------------------------------------------------

    def add_app(
        self, app_id: str, api_key: str | None = DEFAULT_API_KEY, state: AppStatus = "active"
    ) -> None:
        """Add an app, or change the key and state of a known one (its data is kept)."""
        app = App(app_id, api_key, state)
        with self._lock:
            existing = self._apps.get(app_id)
            if existing is None:
                self._apps[app_id] = AppState(app.app_id, app.api_key, app.state)
            else:
                existing.api_key = app.api_key
                existing.state = existing.declared_state = app.state

    def set_app_state(self, app_id: str, state: AppStatus) -> None:
        """Blacklist, suspend or reactivate an app; :meth:`reset` brings back its declared state."""
        if state not in _APP_STATUSES:
            raise ValueError(f"state must be one of {sorted(_APP_STATUSES)}, got {state!r}")
        with self._lock:
            self._app(app_id).state = state

    def set_rate_limits(
        self,
        users_per_minute: int | None = None,
        events_per_minute: int | None = None,
        window: float | None = None,
    ) -> None:
        """Change the limits (None turns one off); ``window`` seconds if given."""
        with self._lock:
            self.users_per_minute = users_per_minute
            self.events_per_minute = events_per_minute
            if window is not None:
                self.rate_limit_window = window

    def _app(self, app_id: str | None) -> AppState:
        key = self._default_app if app_id is None else app_id
        try:
            return self._apps[key]
        except KeyError:
            raise KeyError(f"unknown app_id {key!r}") from None

    # --- what was accepted --------------------------------------------------------------

    def users(self, app_id: str | None = None) -> dict[str, dict[str, Any]]:
        """customer_id -> merged attributes (later attributes win per key).

        A user exists once any element named it: a device or an event alone creates the user
        with no attributes, as the API does.
        """
        with self._lock:
            return copy.deepcopy(self._app(app_id).users)

    def user(self, customer_id: str, app_id: str | None = None) -> dict[str, Any] | None:
        """One user's merged attributes, or None if no element named them."""
        with self._lock:
            attrs = self._app(app_id).users.get(customer_id)
            return None if attrs is None else copy.deepcopy(attrs)

    def devices(self, app_id: str | None = None) -> dict[str, dict[str, Any]]:
        """device_id -> ``{"customer_id": ..., "attributes": {...}}``."""
        with self._lock:
            return copy.deepcopy(self._app(app_id).devices)

    def events(
        self, customer_id: str | None = None, app_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Accepted events in arrival order, each with customer_id, device_id, action,
        attributes, platform, app_version, current_time, user_time and user_timezone_offset
        (None where the action had no such field)."""
        with self._lock:
            events = self._app(app_id).events
            if customer_id is not None:
                events = [e for e in events if e["customer_id"] == customer_id]
            return copy.deepcopy(events)

    def dropped(self, app_id: str | None = None) -> list[dict[str, Any]]:
        """What Bulk Import dropped: ``endpoint``, ``index`` (of the element), ``reason``,
        ``field`` (dotted path inside the element; ``actions[i]...`` for a single action) and
        ``element`` (the dropped element, or the dropped action)."""
        with self._lock:
            return copy.deepcopy(self._app(app_id).dropped)

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first (the last 10,000 API requests)."""
        with self._lock:
            return copy.deepcopy(list(self._requests))

    @property
    def stale_connections(self) -> int:
        """Open connections idle past ``idle_timeout``: the next request on one is reset."""
        with self._lock:
            server = self._server
        return 0 if server is None else server.stale_connections

    @property
    def held(self) -> int:
        """How many API requests :meth:`pause` is holding right now: arrived, not looked at
        yet, waiting for :meth:`resume` (or :meth:`stop`). A test waits on it, e.g.
        ``emu.wait_for(lambda: emu.held == 1)``, to know a request is being held."""
        with self._lock:
            return self._held

    def reset(self) -> None:
        """Forget users, devices, events, drops, requests, rate windows and faults.

        Apps are kept; each returns to the state it was declared with.
        """
        with self._changed:
            for app in self._apps.values():
                app.clear()
            self._requests.clear()
            self._clear_faults()
            self._bump()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` is true (re-checked on every change); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                generation = self._generation
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                if self._generation == generation:
                    # Bounded, so a predicate about something outside the emulator is re-checked.
                    self._changed.wait(min(remaining, 0.05))

    def wait_for_events(self, n: int, timeout: float = 10.0, app_id: str | None = None) -> bool:
        """Wait until at least ``n`` events were accepted."""
        app = self._app(app_id)

        def enough() -> bool:
            with self._lock:
                return len(app.events) >= n

        return self.wait_for(enough, timeout)

    def _bump(self) -> None:
        self._generation += 1
        self._changed.notify_all()

    # --- faults -------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503, *, retry_after: RetryAfter = None) -> None:
        """Answer the next ``n`` API requests with ``status`` (nothing is stored).

        ``retry_after`` adds a Retry-After header: seconds (a fraction is sent as given, which
        real servers never do but keeps tests fast), or a string sent verbatim (an HTTP date).
        """
        with self._lock:
            self._faults.fail_count = n
            self._faults.fail_status = status
            self._faults.fail_retry_after = retry_after

    def fail_for(
        self, seconds: float, status: int = 503, *, retry_after: RetryAfter = None
    ) -> None:
        """Answer every API request with ``status`` for the next ``seconds``."""
        with self._lock:
            self._faults.fail_until = time.monotonic() + seconds
            self._faults.fail_until_status = status
            self._faults.fail_until_retry_after = retry_after

    def refuse_elements(
        self,
        match: Callable[[dict[str, Any]], bool] | None,
        message: str = "attributes is expected to be object",
    ) -> None:
        """Answer 400 MissingAttributeError (with ``message``) to every API request holding
        an element for which ``match(element)`` is true, and store nothing of it: a server
        that refuses a whole batch for one bad row. ``None`` (or :meth:`clear_faults`) stops.
        ``match`` gets a copy of each element as the request has it, and must not raise."""
        with self._lock:
            self._faults.refuse_match = match
            self._faults.refuse_message = message

    def delay(self, seconds: float, n: int | None = None) -> None:
        """Hold the answer to the next ``n`` API requests (all, until cleared, if None) for
        ``seconds``. The request is processed first: a client that times out meanwhile finds
        it stored anyway, as with a real server."""
        with self._lock:
            self._faults.delay_seconds = seconds
            self._faults.delay_count = n

    def drop_connections(self, n: int) -> None:
        """Read the next ``n`` API requests, then close the connection without an answer."""
        with self._lock:
            self._faults.drop_count = n

    def set_body_limit(self, nbytes: int) -> None:
        """Answer 413 to bodies over ``nbytes`` bytes."""
        with self._lock:
            self._faults.body_limit = nbytes

    def pause(self) -> None:
        """Hold every API request until :meth:`resume` (or :meth:`stop`); :attr:`held`
        counts the requests being held."""
        with self._lock:
            self._faults.paused = True

    def resume(self) -> None:
        """Let held requests through."""
        with self._changed:
            self._faults.paused = False
            self._bump()

    def clear_faults(self) -> None:
        """Remove every fault, restore the body limit, resume a pause."""
        with self._changed:
            self._clear_faults()
            self._bump()

    def _clear_faults(self) -> None:
        self._faults = Faults(body_limit=self._max_body_bytes)

    # --- serving API requests -----------------------------------------------------------

    def _wait_while_paused(self) -> bool:
        with self._changed:
            if self._faults.paused and not self._stopping:
                self._held += 1
                self._bump()
                try:
                    while self._faults.paused and not self._stopping:
                        self._changed.wait()
                finally:
                    self._held -= 1
                    self._bump()
            return not self._stopping

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._changed:
            while not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def _redact(self, text: str) -> str:
        with self._lock:
            keys = [app.api_key for app in self._apps.values() if app.api_key]
        for key in keys:
            text = text.replace(key, "***")
        return text

    def _respond(self, request: Request) -> Reply | None:
        """Route one request: the Data API, the read API or the page."""
        path = urlsplit(request.target).path
        if path.startswith("/v1/"):
            return self._serve_api(request)
        if request.method != "GET":
            return fail(METHOD_NOT_ALLOWED)
        if path in ("/", "/index.html"):
            return _views.page()
        if path.startswith("/_emulator/"):
            return _views.read_api(self, request.target)
        return fail(NOT_FOUND)

    def _serve_api(self, request: Request) -> Reply | None:
        """The reply to one Data API request (None: close without answering)."""
        headers = request.headers
        body = request.body
        authorization = headers.get("Authorization")
        appkey = headers.get(APP_ID_HEADER)
        record: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": self._redact(request.target),
            "app_id": None,
            "status": None,
            "error_type": None,
            "error_message": None,
            "bytes": len(body),
            "elements": 0,
            "users": 0,
            "events": 0,
            "dropped": 0,
            "authorization": _masked(authorization),
            "moe_appkey_present": appkey is not None,
            "moe_appkey_matches": False,
            "fault": None,
        }
        if not self._wait_while_paused():
            return None
        with self._lock:
            decision = self._faults.take(time.monotonic())
        reply: Reply | None
        if decision.drop:
            record["fault"] = "drop_connection"
            reply = None
        elif decision.fail is not None:
            record["fault"] = "fail"
            retry_after = format_retry_after(decision.retry_after)
            reply = fail(
                decision.fail, headers={"Retry-After": retry_after} if retry_after else None
            )
        else:
            try:
                reply = self._answer(request, record)
            except Refused as refused:
                reply = fail(refused.row, refused.message, refused.headers)
            except Exception:
                reply = fail(ERRORS["server_error"])
        record["moe_appkey_matches"] = appkey is not None and appkey == record["app_id"]
        if reply is not None:
            record["status"] = reply.status
            if reply.error is not None:
                record["error_type"], record["error_message"] = reply.error
        if decision.delay:
            record["fault"] = record["fault"] or "delay"
        with self._changed:
            self._requests.append(record)
            self._bump()
        if decision.delay:
            self._sleep(decision.delay)
            if self._stopping:  # stopped meanwhile: the answer is lost, as with a real outage
                return None
        return reply

    def _answer(self, request: Request, record: dict[str, Any]) -> Reply:
        """The documented checks, in order, then store; raises :class:`Refused`."""
        endpoint, app_id = self._admit(request, record)
        elements, results = check_body(endpoint, parse_body(request.body))
        users, events = count_users_and_events(elements)
        record.update(elements=len(elements), users=users, events=events)
        with self._lock:
            match, message = self._faults.refuse_match, self._faults.refuse_message
        if match is not None and any(
            isinstance(e, dict) and match(copy.deepcopy(e)) for e in elements
        ):
            record["fault"] = "refuse_elements"
            raise Refused(ERRORS["missing_attribute"], message)
        with self._changed:
            state = self._apps[app_id]
            self._check_rate_limits(state, users, events)
            for index, (element, (problem, bad_actions)) in enumerate(
                zip(elements, results, strict=True)
            ):
                if problem is not None:
                    state.drop(endpoint, index, problem, element)
                    record["dropped"] += 1
                    continue
                for action_index, action_problem in bad_actions:
                    state.drop(endpoint, index, action_problem, element["actions"][action_index])
                    record["dropped"] += 1
                state.store(element, frozenset(i for i, _ in bad_actions))
            self._bump()
        return Reply(200, _SUCCESS)

    def _admit(self, request: Request, record: dict[str, Any]) -> tuple[str, str]:
        """``(endpoint, app_id)`` once the path, headers, credentials, account state and body
        size pass, in the order the error table implies."""
        url = urlsplit(request.target)
        segments = url.path.split("/")  # ["", "v1", endpoint] or [..., endpoint, app_id]
        if len(segments) not in (3, 4) or segments[2] not in ENDPOINTS:
            raise Refused(NOT_FOUND)
        if request.method != "POST":
            raise Refused(METHOD_NOT_ALLOWED)
        app_id = unquote(segments[3]) if len(segments) == 4 else ""
        if not app_id:
            app_id = (parse_qs(url.query).get("app_id") or [""])[0]
        record["app_id"] = app_id or None

        check_content_type(request.headers.get("Content-Type"))
        if not app_id:
            raise Refused(ERRORS["app_id_required"])
        with self._lock:
            app = self._apps.get(app_id)
            if app is None:
                raise Refused(ERRORS["invalid_app_id"])
            known_app_ids = set(self._apps)
            api_key, status, body_limit = app.api_key, app.state, self._faults.body_limit
        auth_app_id, auth_key = parse_authorization(request.headers.get("Authorization"))
        if auth_app_id not in known_app_ids:
            raise Refused(ERRORS["invalid_auth_app_id"])
        if auth_app_id != app_id:
            raise Refused(ERRORS["app_id_mismatch"])
        if api_key is None:
            raise Refused(ERRORS["secret_not_set"])
        if not hmac.compare_digest(auth_key.encode("utf-8"), api_key.encode("utf-8")):
            raise Refused(ERRORS["secret_mismatch"])
        if status in _STATUS_ERRORS:
            raise Refused(_STATUS_ERRORS[status])
        if len(request.body) > body_limit:
            raise Refused(ERRORS["payload_too_large"])
        return segments[2], app_id

    def _check_rate_limits(self, state: AppState, users: int, events: int) -> None:
        """Refuse the whole request (429 with Retry-After) if either count would go over."""
        now = time.monotonic()
        window = self.rate_limit_window
        waits = []
        if self.users_per_minute is not None:
            waits.append(
                state.users_window.wait_for_room(now, window, users, self.users_per_minute)
            )
        if self.events_per_minute is not None:
            waits.append(
                state.events_window.wait_for_room(now, window, events, self.events_per_minute)
            )
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            seconds = max(1, math.ceil(wait))  # whole seconds, rounded up
            raise Refused(ERRORS["rate_limited"], headers={"Retry-After": str(seconds)})
        state.users_window.add(now, users)
        state.events_window.add(now, events)

    # --- the read API -------------------------------------------------------------------

    def _snapshot(self, app_id: str | None) -> dict[str, Any]:
        """Everything about one app at one moment (``/_emulator/state``); requests are all
        requests, or that app's when ``app_id`` is given."""
        with self._lock:
            app = self._app(app_id)
            requests = [r for r in self._requests if app_id is None or r["app_id"] == app_id]
            return copy.deepcopy(
                {
                    "app_id": app.app_id,
                    "app_state": app.state,
                    "apps": [
                        {"app_id": a.app_id, "state": a.state, "key_set": a.api_key is not None}
                        for a in self._apps.values()
                    ],
                    "paused": self._faults.paused,
                    "rate_limits": {
                        "users_per_minute": self.users_per_minute,
                        "events_per_minute": self.events_per_minute,
                        "window": self.rate_limit_window,
                    },
                    "counts": {
                        "users": len(app.users),
                        "devices": len(app.devices),
                        "events": len(app.events),
                        "dropped": len(app.dropped),
                        "requests": len(requests),
                    },
                    "users": app.users,
                    "devices": app.devices,
                    "events": app.events,
                    "dropped": app.dropped,
                    "requests": requests,
                }
            )


def serve(
    host: str = "127.0.0.1",
    port: int = 8700,
    apps: Mapping[str, str | None] | Iterable[App] | None = None,
    open_message: bool = True,
) -> None:
    """Run an emulator in the foreground until Ctrl-C (``python -m moetrack.testing``)."""
    emulator = Emulator(apps, host=host, port=port).start()
    try:
        if open_message:
            key = emulator.api_key
            # Only the well-known demo key is printed; a key given by the user never is.
            shown_key = key if key == DEFAULT_API_KEY else "(the key you gave)"
            print(
                f"MoEngage Data API emulator on {emulator.url}\n"
                f"  web page:  {emulator.url}/\n"
                f"  app id:    {emulator.app_id}\n"
                f"  api key:   {shown_key}\n"
                f"  endpoint:  MOETRACK_ENDPOINT={emulator.url} "
                f"MOETRACK_APP_ID={emulator.app_id}\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        if open_message:
            print("Stopped.", flush=True)
