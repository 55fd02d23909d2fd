"""The module-level functions: ``moetrack.init()``, ``moetrack.track()`` …

Like the standard ``logging`` module's root logger, one process-wide default
:class:`~moetrack.Client` serves the module functions. Until :func:`init` is called, the
default is a client that drops every record as ``not_initialized`` and warns once, so
instrumented code runs (and is counted) even where moetrack was never configured.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._client import Client

__all__ = ["device", "flush", "get_client", "identify", "init", "shutdown", "track"]

_default: Client | None = None
_lock = threading.Lock()


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


if TYPE_CHECKING:

    def track(
        action: str,
        attributes: Mapping[str, Any] | None = None,
        /,
        *,
        customer_id: Any = None,
        device_id: Any = None,
        platform: str | None = None,
        app_version: str | None = None,
        current_time: Any = None,
        user_time: Any = None,
        user_timezone_offset: int | None = None,
        **attrs: Any,
    ) -> None: ...

    def identify(
        attributes: Mapping[str, Any] | None = None, /, *, customer_id: Any = None, **attrs: Any
    ) -> None: ...

    def device(
        attributes: Mapping[str, Any] | None = None,
        /,
        *,
        customer_id: Any = None,
        device_id: Any = None,
        **attrs: Any,
    ) -> None: ...

else:
    # Plain pass-through keeps the module functions one call away from the client (the
    # typed signatures above are for type checkers; the docstrings repeat them).

    def track(*args, **kwargs):
        """track(action, attributes=None, /, *, customer_id=None, device_id=None,
        platform=None, app_version=None, current_time=None, user_time=None,
        user_timezone_offset=None, **attrs)

        Track an event on the default client (see :meth:`Client.track`).
        """
        (_default or get_client()).track(*args, **kwargs)

    def identify(*args, **kwargs):
        """identify(attributes=None, /, *, customer_id=None, **attrs)

        Set user attributes on the default client (see :meth:`Client.identify`).
        """
        (_default or get_client()).identify(*args, **kwargs)

    def device(*args, **kwargs):
        """device(attributes=None, /, *, customer_id=None, device_id=None, **attrs)

        Send a device profile on the default client (see :meth:`Client.device`).
        """
        (_default or get_client()).device(*args, **kwargs)


def flush(timeout: float | None = None) -> bool:
    """Flush the default client; True when everything queued so far is done.

    See :meth:`Client.flush`: done means delivered, dropped or finally failed.

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
