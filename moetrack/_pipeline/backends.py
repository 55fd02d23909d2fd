"""The core's one seam to the optional Redis wing: the shared limiter and the backlog writer.

:mod:`moetrack.redis` (the ``moetrack[redis]`` extra) builds on the core: it imports the
config, the Limiter protocol, the retry policy and the records. The core must never import it
back, or the wing would stop being optional (and the layers would form a circle). So the core
reaches the wing by name, here and only here, through :mod:`importlib`, and only when a
config asks for it (``limiter="redis://…"`` or ``backlog="redis://…"``). The names it uses
are the wing's documented entry points, :func:`moetrack.redis.shared_limiter` and
:func:`moetrack.redis.backlog_writer`. The layer contract in ``pyproject.toml`` forbids any
static import of :mod:`moetrack.redis` from the core.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, cast

from .limiter import Limiter, LocalLimiter

if TYPE_CHECKING:
    from types import ModuleType

    from .._config import Config
    from .._exceptions import MoetrackError
    from .._report import Reporter
    from .source import Source, Stop

__all__ = ["REDIS_WING", "SendStage", "backlog_writer", "make_limiter"]

#: The optional wing, imported by name only (see the module's docstring).
REDIS_WING = "moetrack.redis"


class SendStage(Protocol):
    """What the worker runs behind its source: the Sender, or the backlog writer."""

    requests: int
    retried: int
    bytes: int
    last_error: MoetrackError | None

    def run(self, source: Source, stop: Stop) -> None: ...

    def run_once(self, source: Source, stop: Stop) -> None: ...

    def close(self) -> None: ...


def _redis_wing() -> ModuleType:
    return importlib.import_module(REDIS_WING)


def make_limiter(config: Config) -> Limiter:
    """The limiter a config asks for: its own object, the shared Redis one, or a local one."""
    spec = config.limiter
    if spec is not None and not isinstance(spec, str):
        return spec
    local = LocalLimiter(
        config.users_per_minute, config.events_per_minute, config.rate_limit_window
    )
    if spec is None:
        return local
    return cast("Limiter", _redis_wing().shared_limiter(config, fallback=local))


def backlog_writer(config: Config, reporter: Reporter) -> SendStage:
    """The send stage of a client with ``backlog="redis://…"``."""
    return cast("SendStage", _redis_wing().backlog_writer(config, reporter))
