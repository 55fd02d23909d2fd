"""AWS Lambda: flush at the end of every invocation, within the time it has left.

::

    import moetrack
    from moetrack.integrations.aws_lambda import flush_after

    moetrack.init()  # at import: once per execution environment, not per invocation

    @flush_after
    def handler(event, context):
        moetrack.track("Checkout", customer_id=event["user"])
        return {"statusCode": 200}

Lambda freezes the process as soon as the handler returns: the worker thread stops with it,
so whatever was not sent by then waits for the next invocation, or is lost when the
environment is recycled. ``flush_after`` flushes before the handler's result goes back,
giving the flush what ``context.get_remaining_time_in_millis()`` says is left, less
``margin`` seconds, so the invocation never times out on it. What could not be sent in time
is logged (one warning with the counts); it stays queued for the next invocation.

Nothing here imports the Lambda runtime.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, overload

from moetrack import _api
from moetrack._client import Client
from moetrack._serverless import flush_within

__all__ = ["DEFAULT_MARGIN", "flush_after"]

#: Seconds kept back from the invocation's remaining time for returning the result.
DEFAULT_MARGIN = 0.5

Handler = TypeVar("Handler", bound=Callable[..., Any])


@overload
def flush_after(handler: Handler, /) -> Handler: ...


@overload
def flush_after(
    *, client: Client | None = None, margin: float = DEFAULT_MARGIN
) -> Callable[[Handler], Handler]: ...


def flush_after(
    handler: Handler | None = None,
    /,
    *,
    client: Client | None = None,
    margin: float = DEFAULT_MARGIN,
) -> Handler | Callable[[Handler], Handler]:
    """Decorate a Lambda handler ``(event, context)`` to flush before each invocation ends.

    ``client`` defaults to the default client (looked up at each invocation). Without a
    context that tells the remaining time (a local call with ``None``), the flush takes at
    most the client's ``shutdown_timeout``. The handler's result or exception is passed on
    unchanged; the flush happens either way.
    """

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        def wrapper(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(event, context, *args, **kwargs)
            finally:
                target = client if client is not None else (_api._default or _api.get_client())
                flush_within(target, _time_left(context, margin))

        return wrapper  # type: ignore[return-value]

    return decorate if handler is None else decorate(handler)


def _time_left(context: Any, margin: float) -> float | None:
    """Seconds the invocation has left less ``margin``, or None if the context cannot say."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    try:
        millis = float(remaining())
    except Exception:
        return None
    return max(0.0, millis / 1000.0 - margin)
