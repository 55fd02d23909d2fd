"""moetrack: send users, devices and events to the MoEngage Data API from Python servers.

::

    import moetrack
    moetrack.init()                                  # credentials from MOETRACK_* variables
    with moetrack.context(customer_id=user.id):
        moetrack.track("Purchase", price=3999, currency="INR")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import signals
from ._api import device, flush, get_client, identify, init, shutdown, track
from ._client import Client, Stats
from ._context import bind, context, current_context, reset
from ._exceptions import (
    AccountSuspendedError,
    APIError,
    AuthenticationError,
    BadRequestError,
    BlacklistedError,
    ConfigurationError,
    ConflictError,
    DeliveryError,
    InvalidAppError,
    MissingAttributeError,
    MoetrackError,
    PayloadTooLargeError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from ._serverless import flushing

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AccountSuspendedError",
    "AuthenticationError",
    "BadRequestError",
    "BlacklistedError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "DeliveryError",
    "InvalidAppError",
    "MissingAttributeError",
    "MoetrackError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ServerError",
    "Stats",
    "TransportError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "bind",
    "context",
    "current_context",
    "device",
    "flush",
    "flushing",
    "get_client",
    "identify",
    "init",
    "reset",
    "shutdown",
    "signals",
    "track",
    "track_event",
]

if TYPE_CHECKING:
    from .decorators import track_event


def __getattr__(name: str) -> Any:
    # ``track_event`` brings wrapt and inspect: imported on first use, not with moetrack.
    if name == "track_event":
        from .decorators import track_event

        globals()["track_event"] = track_event
        return track_event
    raise AttributeError(f"module 'moetrack' has no attribute {name!r}")


for _name in __all__:
    if _name == "track_event":
        continue
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("moetrack._"):
        _obj.__module__ = "moetrack"
del _name, _obj
