"""The ``moetrack`` console command: a dispatcher to one module per command.

``devserver`` (the local emulator), ``demo``, ``import``, ``relay``, ``backlog`` and
``doctor`` each live in a module of this package with a ``register(subparsers)`` that adds
its parser and sets its ``handler``; heavy dependencies are imported inside the handlers.
Importing this module starts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

#: The exit code of a command whose standard output was closed by its reader (as a shell
#: reports a process ended by SIGPIPE: ``moetrack backlog status | head -1``).
BROKEN_PIPE = 128 + 13

Handler = Callable[[argparse.Namespace], int]
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

#: The modules that add the commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "moetrack.cli.devserver",
    "moetrack.cli.demo",
    "moetrack.cli.import_",
    "moetrack.cli.relay",
    "moetrack.cli.backlog",
    "moetrack.cli.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``moetrack`` parser, every command registered (the CLI reference is
    rendered from it)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="moetrack",
        description="Tools for moetrack, the MoEngage Data API library.",
    )
    parser.add_argument("--version", action="version", version=f"moetrack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            _unavailable(subparsers, name.rsplit(".", 1)[-1].rstrip("_"))
            continue
        register: Register = module.register
        register(subparsers)
    return parser


def _unavailable(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], command: str
) -> None:
    """A command whose module this installation lacks: it says so and exits 2."""

    def handler(args: argparse.Namespace) -> int:
        print(f"moetrack {command}: not available in this installation", file=sys.stderr)
        return 2

    subparsers.add_parser(command, help="(not available in this installation)").set_defaults(
        handler=handler
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``moetrack`` command on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        # Nothing more can reach the reader; stop writing to it quietly (the interpreter's
        # own flush at exit would report the same error again).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE
    return code


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe or socket whose reading end is closed (another
    broken pipe, say a socket to Redis, is an error to report)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):  # Windows: no way to tell, so the error is reported
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))
