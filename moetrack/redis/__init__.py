"""Everything that talks to Redis (the ``moetrack[redis]`` extra): the connection (URLs, key
names, partitions), the shared limiter, the backlog writer, and the relay.

This is the only package that imports redis-py. It builds on the core, never the reverse:
the core reaches it only through the two entry points below, by name, from
:mod:`moetrack._pipeline.backends`.

- :mod:`.connection`: building a client, redacting its URL, key names, the partition count;
- :mod:`.limiter`: the shared limiter (GCRA in one Lua script);
- :mod:`.backlog`: the backlog writer an app's worker runs instead of a sender;
- :mod:`.relay`, :mod:`.source`, :mod:`.leases`, :mod:`.metrics`: ``moetrack relay``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .backlog import BacklogWriter
from .limiter import RedisLimiter

if TYPE_CHECKING:
    from .._config import Config
    from .._pipeline.limiter import LocalLimiter
    from .._report import Reporter

__all__ = ["backlog_writer", "shared_limiter"]


def shared_limiter(config: Config, *, fallback: LocalLimiter | None = None) -> RedisLimiter:
    """The limiter of ``limiter="redis://…"``: the account's quota shared through Redis;
    ``fallback`` paces this process alone while Redis cannot be reached."""
    return RedisLimiter.from_config(config, fallback=fallback)


def backlog_writer(config: Config, reporter: Reporter) -> BacklogWriter:
    """The send stage of ``backlog="redis://…"``: appends prepared items to the backlog."""
    return BacklogWriter(config, reporter)
