"""The one exception hierarchy of moetrack.

::

    MoetrackError
    ├── ConfigurationError          bad options or credentials given to init()/Client()
    ├── ValidationError             an element breaks a rule of the Data API (names field and rule)
    └── APIError                    the Data API answered with a documented error
        ├── BadRequestError         400: malformed JSON, empty body, missing header …
        │   ├── InvalidAppError     400: InvalidParams / ParamsRequired
        │   ├── BlacklistedError    400: account blacklisted
        │   └── MissingAttributeError  400: "{key} is expected to be {datatype}"
        ├── AuthenticationError     401: every "Authentication required" variant
        ├── AccountSuspendedError   403: suspended or temporarily suspended
        ├── ConflictError           409: app key mismatch, or no secret set
        ├── PayloadTooLargeError    413
        ├── UnsupportedMediaTypeError  415
        ├── RateLimitedError        429, with ``retry_after`` seconds when the server gave one
        └── ServerError             5xx
    TransportError                  no answer: timeout, refused or reset connection
    └── (subclass of MoetrackError)

In default mode the application never sees any of these from ``track()``: the worker reports
them through ``on_error``, the ``moetrack.signals`` and ``Client.stats()``. ``moetrack.api``
raises them per call. Messages never contain the API key.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "AccountSuspendedError",
    "AuthenticationError",
    "BadRequestError",
    "BlacklistedError",
    "ConfigurationError",
    "ConflictError",
    "DeliveryError",
    "InvalidAppError",
    "MissingAttributeError",
    "MoetrackError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "api_error_for",
]


class MoetrackError(Exception):
    """Base class of every error moetrack raises or reports."""


class ConfigurationError(MoetrackError, ValueError):
    """An option given to ``init()`` or ``Client()`` is invalid; the message names it."""


class ValidationError(MoetrackError, ValueError):
    """An element breaks one of the Data API's rules.

    ``field`` is the dotted path of the offending value (``"customer_id"``,
    ``"attributes.price"``), ``rule`` the rule it breaks in words, and ``reason`` the short
    code it is counted under in ``Client.stats().dropped``.
    """

    def __init__(self, field: str, rule: str, reason: str = "invalid") -> None:
        self.field = field
        self.rule = rule
        self.reason = reason
        super().__init__(f"{field}: {rule}" if field else rule)


class DeliveryError(MoetrackError):
    """A batch could not be delivered; ``count`` records were given up on.

    ``cause`` is the :class:`APIError` or :class:`TransportError` that ended it, or ``None``
    when the retry deadline or the shutdown timeout ran out first.
    """

    def __init__(self, message: str, *, count: int, cause: MoetrackError | None = None) -> None:
        self.count = count
        self.cause = cause
        super().__init__(message)


class TransportError(MoetrackError):
    """No HTTP answer: a timeout, a refused or reset connection, a TLS failure."""


class APIError(MoetrackError):
    """The Data API answered with an error status.

    ``status`` is the HTTP status, ``type`` and ``message`` the server's
    ``{"status": "fail", "error": {"type": ..., "message": ...}}``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{status} {type}: {message}" if type else f"{status}: {message}")

    #: Whether sending the same request again later may succeed.
    retryable = False


class BadRequestError(APIError):
    """400: the request itself is wrong (headers, JSON, fields)."""


class InvalidAppError(BadRequestError):
    """400 InvalidParams / ParamsRequired: the app id is unknown or missing."""


class BlacklistedError(BadRequestError):
    """400 Blacklisted: the account is blacklisted."""


class MissingAttributeError(BadRequestError):
    """400 MissingAttributeError: a field is missing or has the wrong type."""


class AuthenticationError(APIError):
    """401: the Authorization header is missing, malformed or wrong."""


class AccountSuspendedError(APIError):
    """403: the account is suspended, for good or for now."""


class ConflictError(APIError):
    """409: the app id in the path and in the credentials differ, or no secret is set."""


class PayloadTooLargeError(APIError):
    """413: the body is over the server's limit."""


class UnsupportedMediaTypeError(APIError):
    """415: the Content-Type is not JSON."""


class RateLimitedError(APIError):
    """429: over the users/min or events/min limit; ``retry_after`` in seconds if given."""

    retryable = True


class ServerError(APIError):
    """5xx: the server failed; worth retrying."""

    retryable = True


_BY_TYPE: dict[str, type[APIError]] = {
    "invalidparams": InvalidAppError,
    "paramsrequired": InvalidAppError,
    "blacklisted": BlacklistedError,
    "missingattributeerror": MissingAttributeError,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AccountSuspendedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    429: RateLimitedError,
}


def api_error_for(
    status: int, error_type: str, message: str, retry_after: float | None = None
) -> APIError:
    """Build the most specific :class:`APIError` for a documented error response."""
    cls: type[APIError]
    if status >= 500:
        cls = ServerError
    elif status == 400:
        cls = _BY_TYPE.get(error_type.replace(" ", "").lower(), BadRequestError)
    else:
        cls = _BY_STATUS.get(status, APIError)
    return cls(message, status=status, type=error_type, retry_after=retry_after)
