"""The connection to Redis: building a client, showing its URL, naming keys, partitions.

Every part of the Redis wing (the shared limiter, the backlog writer, the relay and its
command line) reaches Redis through :func:`connect`, names its keys through :class:`Keys`,
and shows a URL only through :func:`redact_url`. Keys, all under the app id's hash tag so
that every script touches one Redis Cluster slot::

    mt:{<app_id>}:meta          hash: partitions (fixed once written; producers and relays agree)
    mt:{<app_id>}:p:<n>         stream: the items of the customers hashed to partition n
    mt:{<app_id>}:chunk:<id>    string: how many items of an appended chunk were stored
                                (expires; a retried append of the chunk stores nothing again)
    mt:{<app_id>}:fence:<n>     counter: the token of partition n's latest lease
    mt:{<app_id>}:dead          stream: items the server refused for good, with its answer
    mt:{<app_id>}:lease:<n>     string: the relay sending partition n and its token,
                                ``<relay id>#<token>`` (expires unless renewed)
    mt:{<app_id>}:handoff:<n>   string: set by a relay that gave partition n up cleanly
    mt:{<app_id>}:relay:<id>    hash: one relay's heartbeat and counters (expires)
    mt:{<app_id>}:relays        sorted set: relay ids by last heartbeat
    mt:{<app_id>}:window:<quota>  sorted set: the shared limiter's grants of one quota
    mt:{<app_id>}:window        string: the shared limiter's clock
    mt:{<app_id>}:pause         string: set after a 429, for every process (expires)
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .._exceptions import ConfigurationError

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_PARTITIONS",
    "Keys",
    "connect",
    "partition_of",
    "read_partitions",
    "redact_url",
    "redis_errors",
]

#: Partitions of a new backlog; an existing one keeps the count recorded in its meta hash.
DEFAULT_PARTITIONS: Final = 8


class Keys:
    """The Redis key names of one app id."""

    __slots__ = ("base", "dead", "meta", "pause", "relays")

    def __init__(self, app_id: str) -> None:
        self.base = f"mt:{{{app_id}}}"
        self.meta = f"{self.base}:meta"
        self.dead = f"{self.base}:dead"
        self.relays = f"{self.base}:relays"
        self.pause = f"{self.base}:pause"

    def partition(self, n: int) -> str:
        return f"{self.base}:p:{n}"

    def lease(self, n: int) -> str:
        return f"{self.base}:lease:{n}"

    def fence(self, n: int) -> str:
        return f"{self.base}:fence:{n}"

    def handoff(self, n: int) -> str:
        return f"{self.base}:handoff:{n}"

    def relay(self, relay_id: str) -> str:
        return f"{self.base}:relay:{relay_id}"

    def chunk(self, chunk_id: str) -> str:
        return f"{self.base}:chunk:{chunk_id}"

    def window(self, quota: str | None = None) -> str:
        """The shared limiter's sorted set of grants for ``quota`` ("users" or "events"), or
        with None its clock key (the script's clock never steps back)."""
        return f"{self.base}:window" if quota is None else f"{self.base}:window:{quota}"


def partition_of(customer_id: str, partitions: int) -> int:
    """The partition of a customer: stable across processes, hosts and Python versions."""
    return zlib.crc32(customer_id.encode("utf-8", "surrogatepass")) % partitions


def redact_url(url: str) -> str:
    """The URL as logs and messages may show it: any password (in the address, or as the
    ``password`` query parameter redis-py also reads) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if parts.password is None and not any(key == "password" for key, _ in query):
            return url
        if parts.password is not None:
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
        if query:
            hidden = [(key, "***" if key == "password" else value) for key, value in query]
            parts = parts._replace(query=urlencode(hidden, safe="*", quote_via=quote))
        return urlunsplit(parts)
    except ValueError:
        return "<a redis URL that cannot be parsed>"


def url_password(url: str) -> str | None:
    """The password the client will use (to scrub it from error messages), or None: the
    ``password`` query parameter if there is one (redis-py prefers it), else the address's."""
    try:
        parts = urlsplit(url)
        for key, value in parse_qsl(parts.query):
            if key == "password" and value:
                return value
        return parts.password or None
    except ValueError:
        return None


def connect(
    url: str,
    *,
    timeout: float,
    connect_timeout: float | None = None,
    retries: int = 0,
    name: str | None = "moetrack",
    health_check_interval: int = 30,
) -> redis.Redis:
    """A client of ``url`` that waits ``timeout`` seconds at most for an answer, and at most
    ``connect_timeout`` (default: ``timeout``, at most 5 s) to connect.

    ``retries`` is how often redis-py may send a command again on its own after a connection
    error: 0 where a repeated command could do its work twice (an append). ``name`` is the
    client name shown by ``CLIENT LIST`` (None: none); ``health_check_interval`` the idle
    seconds after which a pooled connection is pinged before use (0: never). redis-py's pool
    notices a fork (it compares pids) and never reuses the parent's sockets in the child.
    """
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "the Redis backlog and limiter need redis-py: pip install 'moetrack[redis]'"
        ) from exc
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_connect_timeout=min(timeout, 5.0) if connect_timeout is None else connect_timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), retries),
        health_check_interval=health_check_interval,
        client_name=name,
    )
    return client


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean Redis could not be reached or did not answer."""
    import redis

    return (redis.RedisError, OSError)


def read_partitions(
    client: redis.Redis,
    keys: Keys,
    *,
    create: bool = True,
    default: int = DEFAULT_PARTITIONS,
) -> int:
    """The app id's partition count; with ``create``, record ``default`` if the backlog is
    new (a reader that must not write passes ``create=False``)."""
    if create:
        client.hsetnx(keys.meta, "partitions", default)
    raw = client.hget(keys.meta, "partitions")
    value = int(raw) if raw else default
    return value if value > 0 else default
