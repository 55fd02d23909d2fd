"""A relay's metrics: its gauges read from Redis, and the heartbeat record others read.

Each heartbeat refreshes the gauges of the partitions the relay holds (entries waiting,
entries read and not acknowledged, the age of the oldest of those) and writes
``mt:{app}:relay:<id>``, a hash of the relay's host, pid, partitions and counters that
``moetrack backlog status`` shows; it expires unless renewed.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .leases import GROUP, text

if TYPE_CHECKING:
    import redis

    from .connection import Keys

__all__ = ["Gauges", "beat", "gauges"]


class Gauges(NamedTuple):
    #: Entries waiting in the partitions held.
    lag: int = 0
    #: Entries read and not acknowledged.
    pending: int = 0
    #: Age in seconds of the oldest entry read and not acknowledged.
    oldest_pending_age: float = 0.0


def gauges(r: redis.Redis, keys: Keys, owned: list[int], now_ms: int) -> Gauges:
    """The gauges of the partitions ``owned``, at Redis time ``now_ms``."""
    if not owned:
        return Gauges()
    with r.pipeline(transaction=False) as pipe:
        for n in owned:
            pipe.xlen(keys.partition(n))
            pipe.xpending(keys.partition(n), GROUP)
        answers = pipe.execute()
    lag = pending = 0
    oldest: int | None = None
    for length, summary in zip(answers[::2], answers[1::2], strict=True):
        lag += int(length)
        pending += int(summary["pending"])
        if summary["pending"] and summary["min"]:
            ms = int(text(summary["min"]).split("-")[0])
            oldest = ms if oldest is None else min(oldest, ms)
    age = 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000)
    return Gauges(lag, pending, age)


def beat(
    r: redis.Redis,
    keys: Keys,
    relay_id: str,
    *,
    started: float,
    owned: list[int],
    counters: dict[str, float],
    ttl_ms: int,
    now_ms: int,
) -> None:
    """Write the relay's heartbeat record; it lives three lease periods."""
    key = keys.relay(relay_id)
    fields: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": int(started * 1000),
        "heartbeat": now_ms,
        "partitions": ",".join(map(str, owned)),
    }
    fields.update(counters)
    with r.pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping=cast(Any, fields))
        pipe.pexpire(key, 3 * ttl_ms)
        pipe.execute()
