"""Django integration: the customer of every request bound for you, looked up only if needed.

``settings.py``::

    INSTALLED_APPS = [..., "moetrack.integrations.django"]     # calls moetrack.init() at start
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "moetrack.integrations.django.MoetrackMiddleware",
    ]
    MOETRACK = {"app_id": "...", "api_key": "...", "CUSTOMER_ID": "username"}

``MOETRACK`` holds the arguments of :func:`moetrack.init` (``app_id``, ``api_key``,
``data_center``, ``endpoint`` and any client option such as ``flush_interval``; left out, they
come from the ``MOETRACK_*`` environment variables) and the integration's own upper-case keys:

``CUSTOMER_ID``
    How a signed-in user becomes a customer id: the name of a user attribute (called if it is
    a method), a dotted path to (or a) ``callable(user) -> id``. Default: the primary key, as
    a string.
``ANONYMOUS_ID``
    Optional dotted path to (or a) ``callable(request) -> id | None`` for requests without a
    signed-in user. Default: none, so what anonymous requests track is dropped as
    ``no_customer_id``.
``PLATFORM``
    The event platform bound for every request. Default ``"web"``; ``None`` binds none.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction

    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.functional import SimpleLazyObject, empty
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "moetrack.integrations.django needs Django: pip install 'moetrack[django]'"
    ) from exc

import moetrack

from .._common import checked_customer_id, id_getter, import_dotted
from .apps import MoetrackConfig

__all__ = ["MoetrackConfig", "MoetrackMiddleware", "client_options"]

#: The keys of ``settings.MOETRACK`` that configure the integration, not the client.
INTEGRATION_KEYS = frozenset({"CUSTOMER_ID", "ANONYMOUS_ID", "PLATFORM"})

_HINT = (
    "Set settings.MOETRACK['CUSTOMER_ID'] to a user attribute or a callable(user) that gives "
    "a stable unique id of at least two characters."
)
_ANONYMOUS_HINT = "Make settings.MOETRACK['ANONYMOUS_ID'] return a valid id or None."


def _moetrack_setting() -> Mapping[str, Any]:
    conf = getattr(settings, "MOETRACK", None) or {}
    if not isinstance(conf, Mapping):
        raise ImproperlyConfigured("settings.MOETRACK must be a dict")
    return conf


def client_options(conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The arguments of :func:`moetrack.init` in ``settings.MOETRACK`` (keys lower-cased)."""
    conf = _moetrack_setting() if conf is None else conf
    return {k.lower(): v for k, v in conf.items() if k.upper() not in INTEGRATION_KEYS}


def _primary_key(user: Any) -> Any:
    pk = user.pk
    return None if pk is None else str(pk)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _load_off_loop(user: Any) -> None:
    """Evaluate a lazy ``request.user`` on a helper thread.

    Django refuses database queries on a thread running an event loop (an ``async def``
    view), and a context field is resolved synchronously. The helper thread runs the one
    query, then closes the connection it opened.
    """
    from django.db import connections

    errors: list[BaseException] = []

    def load() -> None:
        try:
            _ = user.is_authenticated
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=load, name="moetrack-load-user", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def request_user(request: Any) -> Any:
    """The user of ``request`` as it is now (``None`` without the auth middleware).

    Reads ``request.user`` at call time, so a user authenticated later in the view (Django
    REST framework sets the underlying request's ``user`` when it authenticates) is seen.
    """
    user = getattr(request, "user", None)
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        # Not loaded yet: an async view may have loaded it through ``await request.auser()``.
        cached = request.__dict__.get("_cached_user") or request.__dict__.get("_acached_user")
        if cached is not None:
            return cached
        if _in_event_loop():
            _load_off_loop(user)
    return user


class MoetrackMiddleware:
    """Binds, for each request, ``customer_id`` (looked up when something is tracked) and
    ``platform``; restores the previous context when the response is returned.

    Works in sync (WSGI) and async (ASGI) stacks. Place it anywhere in ``MIDDLEWARE``; the
    user is read when an event is tracked, so authentication done later (in the view, by
    Django REST framework) is seen. Events tracked while a streaming response is consumed
    run outside the request's context.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)
        conf = _moetrack_setting()
        try:
            self._user_id: Callable[[Any], Any] = id_getter(conf.get("CUSTOMER_ID"), _primary_key)
            anonymous = conf.get("ANONYMOUS_ID")
            if isinstance(anonymous, str):
                anonymous = import_dotted(anonymous)
            if anonymous is not None and not callable(anonymous):
                raise TypeError(f"{anonymous!r} is not callable")
        except (ImportError, TypeError) as exc:
            raise ImproperlyConfigured(f"settings.MOETRACK: {exc}") from exc
        self._anonymous_id: Callable[[Any], Any] | None = anonymous
        self._platform: str | None = conf.get("PLATFORM", "web")

    def __call__(self, request: Any) -> Any:
        if self._is_async:
            return self.__acall__(request)
        token = moetrack.bind(**self._fields(request))
        try:
            return self.get_response(request)
        finally:
            moetrack.reset(token)

    async def __acall__(self, request: Any) -> Any:
        token = moetrack.bind(**self._fields(request))
        try:
            response: Awaitable[Any] = self.get_response(request)
            return await response
        finally:
            moetrack.reset(token)

    def _fields(self, request: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {"customer_id": partial(self.customer_id, request)}
        if self._platform is not None:
            fields["platform"] = self._platform
        return fields

    def customer_id(self, request: Any) -> Any:
        """The customer id of ``request`` now: the signed-in user's, else ``ANONYMOUS_ID``'s."""
        user = request_user(request)
        if user is not None and user.is_authenticated:
            return checked_customer_id(
                self._user_id(user),
                source=f"the user {type(user).__name__} pk={user.pk!r}",
                hint=_HINT,
            )
        if self._anonymous_id is not None:
            return checked_customer_id(
                self._anonymous_id(request),
                source="settings.MOETRACK['ANONYMOUS_ID']",
                hint=_ANONYMOUS_HINT,
            )
        return None
