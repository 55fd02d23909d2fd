"""Celery integration: the sender's customer travels with the task to the worker.

::

    from celery import Celery
    from moetrack.integrations.celery import setup

    app = Celery("shop")
    setup(app)

    with moetrack.context(customer_id=user.id):
        send_receipt.delay(order_id)        # the task's events carry user.id

When a task is sent, the moetrack context bound at that moment (``customer_id``,
``device_id``, ``platform``, ``app_version``, ``user_timezone_offset``, ``attributes``) is
resolved and put, as JSON values, in the message header ``moetrack_context``. The worker binds
it while the task runs (``task_prerun``) and restores what was bound before
(``task_postrun``). Tasks sent from inside a task (chains, retries, sub-tasks) carry it on.
Workers flush what they queued when a pool process exits (``worker_process_shutdown``: prefork
children leave through ``os._exit``, which skips exit hooks) and when the worker stops
(``worker_shutdown``). A forked pool process starts with an empty queue of its own.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

try:
    from celery import Celery, Task
    from celery.signals import (
        before_task_publish,
        task_postrun,
        task_prerun,
        worker_process_shutdown,
        worker_shutdown,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "moetrack.integrations.celery needs Celery: pip install 'moetrack[celery]'"
    ) from exc

import moetrack
from moetrack import _context
from moetrack._exceptions import ValidationError
from moetrack._wire import validate as _validate

from ._common import logger

__all__ = ["HEADER", "context_from_headers", "context_to_headers", "setup"]

#: The message header that carries the context.
HEADER = "moetrack_context"
_TOKEN_ATTR = "_moetrack_token"

_apps: weakref.WeakSet[Celery] = weakref.WeakSet()


def setup(app: Celery, *, flush_on_shutdown: bool = True) -> None:
    """Carry the moetrack context from the sender to the tasks of ``app``; flush workers.

    Connects Celery's (process-wide) signals once; calling it again, or for another app, is
    harmless.
    """
    _apps.add(app)
    before_task_publish.connect(_on_publish, weak=False, dispatch_uid="moetrack.publish")
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid="moetrack.prerun")
    task_postrun.connect(_on_postrun, weak=False, dispatch_uid="moetrack.postrun")
    if flush_on_shutdown:
        worker_process_shutdown.connect(
            _on_shutdown, weak=False, dispatch_uid="moetrack.process_shutdown"
        )
        worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="moetrack.worker_shutdown")


def context_to_headers() -> dict[str, Any] | None:
    """The current context, resolved, as JSON values; None when nothing is bound.

    Callable fields are called here, on the sending thread. Attribute values that are not
    JSON (``datetime``, ``Decimal`` …) are converted as they would be on the wire, and values
    the Data API could not take are left out.
    """
    ctx = _context.get_ctx()
    if ctx is _context.EMPTY:
        return None
    if ctx.lazy:
        ctx = ctx.resolve()
    data: dict[str, Any] = {}
    for name, value in ctx.as_dict().items():
        if name == "attributes":
            attrs = {}
            for key, item in value.items():
                try:
                    attrs[str(key)] = _validate.value(item, f"attributes.{key}")
                except ValidationError:
                    continue
            if attrs:
                data[name] = attrs
        elif isinstance(value, str | int | float | bool):
            data[name] = value
        else:
            data[name] = str(value)  # a UUID customer id, for one
    return data or None


def context_from_headers(data: Any) -> dict[str, Any]:
    """The context fields in a ``moetrack_context`` header (unknown keys are ignored)."""
    if not isinstance(data, Mapping):
        return {}
    fields = {name: data[name] for name in _context.FIELDS if data.get(name) is not None}
    if not isinstance(fields.get("attributes", {}), Mapping):
        del fields["attributes"]
    return fields


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None or HEADER in headers:
        return  # protocol 1, or the header was given explicitly (or copied by a retry)
    try:
        data = context_to_headers()
    except Exception as exc:
        logger.warning("could not read the moetrack context to send with a task: %r", exc)
        return
    if data is not None:
        headers[HEADER] = data


def _on_prerun(task: Task[Any, Any] | None = None, **_: Any) -> None:
    if task is None or task.app not in _apps:
        return
    request = task.request
    data = getattr(request, HEADER, None)
    if data is None:
        data = (getattr(request, "headers", None) or {}).get(HEADER)
    fields = context_from_headers(data)
    if fields:
        setattr(request, _TOKEN_ATTR, moetrack.bind(**fields))


def _on_postrun(task: Task[Any, Any] | None = None, **_: Any) -> None:
    if task is None:
        return
    token = task.request.__dict__.pop(_TOKEN_ATTR, None)
    if token is not None:
        # ValueError: run in another context than the one it was bound in, which has ended.
        with suppress(ValueError):
            moetrack.reset(token)


def _on_shutdown(**_: Any) -> None:
    client = moetrack.get_client()
    try:
        client.flush(client.config.shutdown_timeout)
    except Exception:
        logger.exception("flushing moetrack when the Celery worker stopped failed")
