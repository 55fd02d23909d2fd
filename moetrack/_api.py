"""The module-level functions: ``moetrack.init()``, ``moetrack.track()`` …

Like the standard ``logging`` module's root logger, one process-wide default
:class:`~moetrack.Client` serves the module functions. Until :func:`init` is called, the
default is a client that drops every record as ``not_initialized`` and warns once, so
instrumented code runs (and is counted) even where moetrack was never configured.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

from ._client import Client

__all__ = ["device", "flush", "get_client", "identify", "init", "shutdown", "track"]

_default: Client | None = None
_lock = threading.Lock()
P = ParamSpec("P")


def init(
    app_id: str | None = None,
    api_key: str | None = None,
    *,
    data_center: str | None = None,
    endpoint: str | None = None,
    **options: Any,
) -> Client:
    """Configure the default client and return it.

    Arguments left as ``None`` are read from ``MOETRACK_APP_ID``, ``MOETRACK_API_KEY``,
    ``MOETRACK_DATA_CENTER`` and ``MOETRACK_ENDPOINT``. Calling ``init()`` again shuts the
    previous default client down (flushing it) and replaces it.

    Args:
        app_id: the Data API app id.
        api_key: the Data API key (never logged or shown in a repr).
        data_center: ``"01"``, ``"02"`` or ``"03"`` (``https://api-0N.moengage.com``).
        endpoint: any base URL instead (the emulator, a proxy); plain ``http`` only to
            loopback.
        **options: any client option (``flush_interval``, ``strict``, ``backlog``…).

    Returns:
        The new default :class:`~moetrack.Client`.

    Raises:
        ConfigurationError: an option has a wrong value; the message names it.

    Example::

        moetrack.init()                                   # everything from MOETRACK_*
        moetrack.init(app_id, api_key, data_center="02", flush_interval=2.0)
    """
    global _default
    client = Client(app_id, api_key, data_center=data_center, endpoint=endpoint, **options)
    with _lock:
        previous, _default = _default, client
    if previous is not None:
        previous.shutdown()
    return client


def get_client() -> Client:
    """The default client (a dropping placeholder until :func:`init` is called)."""
    global _default
    client = _default
    if client is None:
        with _lock:
            if _default is None:
                _default = Client(_refuse="not_initialized", environ={})
            client = _default
    return client


def _on_default(method: Callable[Concatenate[Client, P], None]) -> Callable[P, None]:
    """The module-level twin of a :class:`Client` method: the same signature and docstring,
    called on the default client (one function, so the two can never disagree)."""

    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        method(_default or get_client(), *args, **kwargs)

    call.__name__ = call.__qualname__ = method.__name__
    call.__module__ = "moetrack"
    call.__doc__ = (
        f"{method.__doc__}\n\nCalled on the default client (see :meth:`Client.{method.__name__}`)."
    )
    # inspect.signature() follows __wrapped__; the partial drops ``self``. (Computed when
    # asked for: importing inspect would cost every ``import moetrack`` a few milliseconds.)
    call.__wrapped__ = functools.partial(method, None)  # type: ignore[attr-defined,arg-type]
    return call


track = _on_default(Client.track)
identify = _on_default(Client.identify)
device = _on_default(Client.device)


def flush(timeout: float | None = None) -> bool:
    """Flush the default client: send what was queued so far at once and wait for it.

    True when every one of those records was delivered or dropped on purpose; False when one
    failed or was lost at shutdown, or ``timeout`` passed first (see :meth:`Client.flush`).

    Args:
        timeout: seconds to wait at most; ``None`` waits as long as it takes.
    """
    return (_default or get_client()).flush(timeout)


def shutdown(timeout: float | None = None) -> None:
    """Flush and stop the default client; later calls are dropped as ``shutdown``.

    The exit hook does this for you; call it yourself where a process ends without one
    (``os._exit``), or to stop tracking early.

    Args:
        timeout: seconds to spend flushing; default: the ``shutdown_timeout`` option.
    """
    (_default or get_client()).shutdown(timeout)
