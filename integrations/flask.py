"""Flask integration: the customer of every request bound for you, looked up only if needed.

::

    from moetrack.integrations.flask import Moetrack

    app.config["MOETRACK_APP_ID"] = "..."          # or the MOETRACK_* environment variables
    app.config["MOETRACK_API_KEY"] = "..."
    Moetrack(app)                                   # or moetrack_ext.init_app(app) in a factory

``init_app`` calls :func:`moetrack.init` with ``MOETRACK_APP_ID``, ``MOETRACK_API_KEY``,
``MOETRACK_ENDPOINT``, ``MOETRACK_DATA_CENTER`` and the client options in the dict
``MOETRACK_OPTIONS`` (pass ``init=False`` to call it yourself). Each request binds
``customer_id`` to a callable run when something is tracked, and ``platform="web"``.

The customer comes from ``customer_id=callable()`` if given, else Flask-Login's
``current_user`` when Flask-Login is set up and the user is authenticated (its ``get_id()``),
else ``g.user`` (its ``get_id()``, ``id``, or the value itself if it is a str or int).
Without a customer, what the request tracks is dropped as ``no_customer_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

try:
    from flask import Flask, current_app, g, request
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "moetrack.integrations.flask needs Flask: pip install 'moetrack[flask]'"
    ) from exc

import moetrack

from ._common import checked_customer_id

__all__ = ["Moetrack", "default_customer_id"]

_TOKEN = "moetrack.token"
_HINT = (
    "Pass Moetrack(customer_id=...) a callable that gives a stable unique id of at least two "
    "characters."
)


def _id_of(user: Any) -> Any:
    if isinstance(user, str | int) and not isinstance(user, bool):
        return user
    get_id = getattr(user, "get_id", None)
    if callable(get_id):
        return get_id()
    return getattr(user, "id", None)


def default_customer_id() -> Any:
    """Flask-Login's authenticated ``current_user``, else ``g.user``; its id, or None."""
    if hasattr(current_app, "login_manager"):
        try:
            from flask_login import current_user
        except ImportError:
            pass
        else:
            user = current_user._get_current_object()
            if user is not None and user.is_authenticated:
                return _id_of(user)
    user = g.get("user")
    if user is None or getattr(user, "is_authenticated", True) is False:
        return None
    return _id_of(user)


class Moetrack:
    """The Flask extension; see the module docstring."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        customer_id: Callable[[], Any] | None = None,
        platform: str | None = "web",
        init: bool = True,
    ) -> None:
        self._resolve = customer_id if customer_id is not None else default_customer_id
        self.platform = platform
        self.init = init
        self.client: moetrack.Client | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Configure moetrack from ``app.config`` and bind the customer in every request."""
        if self.init:
            config = app.config
            self.client = moetrack.init(
                config.get("MOETRACK_APP_ID"),
                config.get("MOETRACK_API_KEY"),
                endpoint=config.get("MOETRACK_ENDPOINT"),
                data_center=config.get("MOETRACK_DATA_CENTER"),
                **(config.get("MOETRACK_OPTIONS") or {}),
            )
        app.before_request(self._bind)
        app.teardown_request(self._unbind)
        app.extensions["moetrack"] = self

    def customer_id(self) -> Any:
        """The customer id of the current request, looked up now."""
        return checked_customer_id(self._resolve(), source="the current user", hint=_HINT)

    def _bind(self) -> None:
        fields: dict[str, Any] = {"customer_id": self.customer_id}
        if self.platform is not None:
            fields["platform"] = self.platform
        request.environ[_TOKEN] = moetrack.bind(**fields)

    def _unbind(self, exc: BaseException | None) -> None:
        token = request.environ.pop(_TOKEN, None)
        if token is not None:
            # ValueError: torn down in another context than the request ran in, now ended.
            with suppress(ValueError):
                moetrack.reset(token)
