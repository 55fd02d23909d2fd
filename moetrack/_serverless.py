"""Flushing at the end of a unit of work that may be frozen or ended right after it: a
serverless invocation, a Cloud Run job, a script.

:func:`flushing` is the plain block (and decorator); :func:`flush_within` is what it and the
AWS Lambda decorator (``moetrack.integrations.aws_lambda``) do at the end: flush within the
time given, and say in one log record what could not be sent in that time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ._report import logger

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["flush_within", "flushing"]


def flush_within(client: Client, timeout: float | None) -> bool:
    """Flush ``client`` for at most ``timeout`` seconds (None: its ``shutdown_timeout``).

    True when everything queued before it was delivered. Otherwise one warning says how
    many records were not delivered yet (they stay queued, and go with a later flush if the
    process lives on) and how many failed.
    """
    if timeout is None:
        timeout = client.config.shutdown_timeout
    failed_before = client.stats().failed
    if client.flush(max(0.0, timeout)):
        return True
    stats = client.stats()
    logger.warning(
        "%d records not delivered when the flush ended after %.2fs (%d still pending, %d failed)",
        stats.pending + stats.failed - failed_before,
        timeout,
        stats.pending,
        stats.failed - failed_before,
    )
    return False


@contextlib.contextmanager
def flushing(timeout: float | None = None, *, client: Client | None = None) -> Iterator[None]:
    """Flush when the block ends, even by an exception: ``with moetrack.flushing(): ...``.

    For a Cloud Function, a Cloud Run job or any process that may be frozen or stopped as
    soon as its work returns. ``timeout`` is the most seconds the flush may take (None: the
    client's ``shutdown_timeout``); what could not be sent in it is logged as a warning.
    ``client`` defaults to the default client. Works as a decorator too.
    """
    try:
        yield
    finally:
        if client is None:
            from . import _api

            client = _api._default or _api.get_client()
        flush_within(client, timeout)
