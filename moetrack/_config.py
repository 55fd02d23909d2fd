"""Settings of a :class:`~moetrack.Client`: one frozen object, validated when it is built.

Every option is keyword-only and documented on the documentation's Options page. ``from_env()``
fills the credentials and the endpoint from ``MOETRACK_*`` variables for arguments left as
``None``. A wrong option raises :class:`~moetrack.ConfigurationError` naming it; missing
credentials do not (the client then drops what it is given, with a reason, and warns once).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, runtime_checkable

from ._exceptions import ConfigurationError, MoetrackError
from ._wire import http as _http
from ._wire import spec as _spec

if TYPE_CHECKING:
    from ._wire.transport import Transport

__all__ = ["Config", "Limiter", "OnFull"]

OnFull = Literal["drop", "block"]
BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]
OnError = Callable[[MoetrackError], None]

ENV_PREFIX = "MOETRACK_"


# The Limiter seam is declared here, with the option that takes one (``limiter=``); the
# pipeline's local limiter and the redis wing's shared one implement it.
@runtime_checkable
class Limiter(Protocol):
    """Decides when a batch may be sent, and hears about the server's 429s.

    ``acquire`` is called before each request (never for the halves of a 413 split, which
    the original request paid for); ``answered`` after that request has its outcome
    (an answer, or none); ``pause`` when the server answered 429.
    """

    def acquire(self, users: int, events: int) -> float:
        """Charge the batch and return ``0.0`` if it may go now; otherwise charge nothing and
        return the seconds to wait before asking again (a 429 pause counts too)."""

    def answered(self) -> None:
        """The request of the last granted ``acquire`` has ended."""

    def pause(self, seconds: float) -> None:
        """The server answered 429: nobody sharing this limiter sends for ``seconds``."""


def _positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name}: must be a positive number, got {value!r}")


class Config(NamedTuple):
    """All options of a client. Build it with :meth:`build`; never mutated afterwards."""

    app_id: str | None = None
    api_key: str | None = None
    data_center: str | None = None
    endpoint: str | None = None
    #: Largest request body in bytes, measured exactly on the encoded JSON (≤ 100,000).
    max_batch_bytes: int = _spec.MAX_BODY_BYTES
    #: Most records (actions, users, devices) in one request.
    max_batch_size: int = 1_000
    #: Seconds a record may wait before a partial batch is sent.
    flush_interval: float = 1.0
    #: Most records held in memory, waiting or being sent, before new ones meet ``on_full``.
    queue_capacity: int = 100_000
    #: Most bytes held in memory (estimated when queued, exact once encoded); over it, new
    #: records are dropped as ``queue_full`` and the caller never blocks.
    max_queue_bytes: int = 64 * 1024 * 1024
    #: What a full queue does with a new record: ``"drop"`` it (counted) or ``"block"``.
    on_full: OnFull = "drop"
    #: With ``on_full="block"``: seconds a call may wait for room before it drops.
    block_timeout: float = 1.0
    #: Seconds for one HTTP request (connect, write, read).
    timeout: float = 10.0
    #: First retry delay in seconds; doubles per failure (with jitter) up to the cap.
    retry_backoff: float = 0.5
    #: Cap of one backoff step, seconds: delivery resumes at most this long after the server
    #: recovers. A server's ``Retry-After`` is honoured exactly instead of the step (past the
    #: retry deadline, the batch fails at once rather than wait).
    retry_backoff_max: float = 2.0
    #: Seconds after a batch's first attempt after which it is given up as failed.
    retry_deadline: float = 300.0
    #: Client-side rate limits; ``None`` turns one off.
    users_per_minute: int | None = _spec.USERS_PER_MINUTE
    events_per_minute: int | None = _spec.EVENTS_PER_MINUTE
    #: The window the rate limits are counted over, seconds (60 for the real API).
    rate_limit_window: float = 60.0
    #: ``False``: validate and count, but send nothing (dropped as ``send_disabled``).
    send: bool = True
    #: ``True``: no background thread; every call is sent before it returns.
    sync: bool = False
    #: ``True``: invalid input raises :class:`ValidationError` in the caller.
    strict: bool = False
    #: Called on the worker with each element as a dict; returns it (changed) or ``None``.
    before_send: BeforeSend | None = None
    #: Called with every error reported (dropped record, failed batch).
    on_error: OnError | None = None
    #: Log every batch and decision at DEBUG on the ``moetrack`` logger.
    debug: bool = False
    #: Seconds ``shutdown()`` and the exit hook spend flushing before giving up.
    shutdown_timeout: float = 5.0
    #: Where requests go; default: HTTPS through one keep-alive ``httpx.Client``.
    transport: Transport | None = None
    #: ``"redis://…"`` (env ``MOETRACK_LIMITER``): share the account's quota with every process
    #: naming the same Redis and app id; or a
    #: :class:`~moetrack._pipeline.limiter.Limiter`; None: local.
    limiter: str | Limiter | None = None
    #: ``"redis://…"`` (env ``MOETRACK_BACKLOG``): hand prepared elements to a durable Redis
    #: Streams backlog, sent by ``moetrack relay`` processes, instead of sending them.
    backlog: str | None = None
    #: With ``backlog``: most entries the backlog may hold; beyond it new records are dropped
    #: and counted as ``backlog_full`` (entries not yet sent are never trimmed).
    backlog_max_entries: int = 10_000_000
    #: Computed: the base URL requests go to.
    base_url: str = ""

    @classmethod
    def build(
        cls,
        app_id: str | None = None,
        api_key: str | None = None,
        *,
        data_center: str | None = None,
        endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Config:
        """Resolve arguments, ``MOETRACK_*`` variables and defaults into a valid config."""
        env = os.environ if environ is None else environ
        known = set(cls._fields) - {"base_url", "app_id", "api_key"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"{unknown[0]}: not an option of moetrack (see docs/reference/options.md)"
            )

        def pick(value: str | None, var: str) -> str | None:
            if value is None:
                value = env.get(ENV_PREFIX + var) or None
            return value

        app_id = pick(app_id, "APP_ID")
        api_key = pick(api_key, "API_KEY")
        data_center = pick(data_center, "DATA_CENTER")
        endpoint = pick(endpoint, "ENDPOINT")
        for option, var in (("limiter", "LIMITER"), ("backlog", "BACKLOG")):
            if options.get(option) is None and env.get(ENV_PREFIX + var):
                options[option] = env[ENV_PREFIX + var]
        if app_id is not None or api_key is not None:
            # Missing credentials are allowed (the client drops with a reason); wrong ones not.
            _http.check_credentials(
                app_id if app_id is not None else "placeholder",
                api_key if api_key is not None else "placeholder",
            )
        config = cls(
            app_id=app_id,
            api_key=api_key,
            data_center=data_center,
            endpoint=endpoint,
            base_url=_http.resolve_base_url(data_center, endpoint),
            **options,
        )
        config._validate()
        return config

    def _validate(self) -> None:
        if isinstance(self.max_batch_bytes, bool) or not isinstance(self.max_batch_bytes, int):
            raise ConfigurationError("max_batch_bytes: must be an integer")
        if not 1_000 <= self.max_batch_bytes <= _spec.MAX_BODY_BYTES:
            raise ConfigurationError(
                f"max_batch_bytes: must be between 1,000 and {_spec.MAX_BODY_BYTES:,} "
                f"(the API's 100 KB body limit), got {self.max_batch_bytes!r}"
            )
        for name in ("max_batch_size", "queue_capacity", "max_queue_bytes", "backlog_max_entries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name}: must be a positive integer, got {value!r}")
        for name in (
            "flush_interval",
            "block_timeout",
            "timeout",
            "retry_backoff",
            "retry_backoff_max",
            "retry_deadline",
            "rate_limit_window",
            "shutdown_timeout",
        ):
            _positive(name, getattr(self, name))
        for name in ("users_per_minute", "events_per_minute"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigurationError(
                    f"{name}: must be a positive integer or None (no limit), got {value!r}"
                )
        if self.on_full not in ("drop", "block"):
            raise ConfigurationError(f"on_full: must be 'drop' or 'block', got {self.on_full!r}")
        for name in ("limiter", "backlog"):
            value = getattr(self, name)
            if isinstance(value, str) and not value.startswith(
                ("redis://", "rediss://", "unix://")
            ):
                raise ConfigurationError(
                    f"{name}: must be a redis://, rediss:// or unix:// URL, got {value!r}"
                )
        if self.backlog is not None and not isinstance(self.backlog, str):
            raise ConfigurationError(f"backlog: must be a redis:// URL, got {self.backlog!r}")
        for name in ("before_send", "on_error"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name}: must be callable or None")

    @property
    def has_credentials(self) -> bool:
        return bool(self.app_id and self.api_key)

    @property
    def url(self) -> str:
        """The Bulk Import URL: ``{base}/v1/transition/{app_id}``."""
        return f"{self.base_url}/v1/transition/{self.app_id}"

    def headers(self) -> dict[str, str]:
        """The three headers of every request. Holds the key: never log it."""
        return _http.request_headers(str(self.app_id), str(self.api_key))

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a log record (the key and its auth token)."""
        if not self.api_key:
            return ()
        return _http.auth_secrets(str(self.app_id), self.api_key)

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "None"
        return f"Config(app_id={self.app_id!r}, api_key={key}, base_url={self.base_url!r})"
