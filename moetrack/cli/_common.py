"""Command-line options shared by the commands: those that send to the Data API (import,
relay), those that read the backlog (relay, backlog), and how a command reports an error."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["add_api_options", "api_config", "backlog_arg", "error", "per_minute", "seconds"]


def per_minute(text: str) -> int | None:
    """A per-window quota: a whole number, 0 meaning no limit (None)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, got {value}")
    return value or None


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def add_api_options(parser: argparse.ArgumentParser, *, limiter_help: str) -> None:
    """``--app-id``, ``--api-key``, ``--endpoint`` or ``--data-center``, and the pacing."""
    where = parser.add_argument_group("where to (default: the MOETRACK_* variables)")
    where.add_argument("--app-id", help="Data API app id (MOETRACK_APP_ID)")
    where.add_argument(
        "--api-key", help="Data API key (MOETRACK_API_KEY; prefer the variable: ps shows arguments)"
    )
    host = where.add_mutually_exclusive_group()
    host.add_argument("--endpoint", help="base URL (MOETRACK_ENDPOINT), e.g. the emulator")
    host.add_argument("--data-center", help="01, 02 or 03 (MOETRACK_DATA_CENTER, else 01)")
    pace = parser.add_argument_group("pacing (set these to the account's quota)")
    pace.add_argument(
        "--events-per-minute",
        type=per_minute,
        default=10_000,
        metavar="N",
        help="events per window (default %(default)s; 0: no limit)",
    )
    pace.add_argument(
        "--users-per-minute",
        type=per_minute,
        default=1_000,
        metavar="N",
        help="users and devices per window (default %(default)s; 0: no limit)",
    )
    pace.add_argument(
        "--rate-limit-window",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="the window the limits count over (default %(default)s)",
    )
    pace.add_argument("--limiter", metavar="URL", help=limiter_help)


def api_config(args: argparse.Namespace, **options: Any) -> Config:
    """The client config of the options :func:`add_api_options` added, plus ``options``
    (``limiter`` among them, to override ``--limiter``). Raises ConfigurationError."""
    from .._config import Config

    options.setdefault("limiter", args.limiter)
    return Config.build(
        args.app_id,
        args.api_key,
        endpoint=args.endpoint,
        data_center=args.data_center,
        users_per_minute=args.users_per_minute,
        events_per_minute=args.events_per_minute,
        rate_limit_window=args.rate_limit_window,
        **options,
    )


def backlog_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backlog",
        default=os.environ.get("MOETRACK_BACKLOG") or None,
        help="Redis URL of the backlog (default: $MOETRACK_BACKLOG)",
    )


def error(command: str, message: str, code: int = 2) -> int:
    print(f"moetrack {command}: {message}", file=sys.stderr)
    return code
