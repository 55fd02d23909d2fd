"""The ``moetrack`` console command.

``moetrack devserver`` runs the local MoEngage Data API emulator with its read-only web page
until Ctrl-C. ``moetrack demo`` runs the bundled demo. Importing this module starts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700

Handler = Callable[[argparse.Namespace], int]

#: Modules that add subcommands: each has ``register(subparsers)``, which adds its parsers
#: and sets ``handler``. They import their heavy dependencies inside the handlers only.
_COMMAND_MODULES: tuple[str, ...] = (
    "moetrack.cli.import_",
    "moetrack.cli.relay",
    "moetrack.cli.doctor",
)


def _devserver(args: argparse.Namespace) -> int:
    from moetrack.testing import DEFAULT_API_KEY, serve

    if args.api_key == DEFAULT_API_KEY:
        # The demo key is public and only opens this local emulator, so it is shown in full.
        host = f"[{args.host}]" if ":" in args.host else args.host
        endpoint = f"http://{host}:{args.port}" if args.port else "<the URL below>"
        print(
            "moetrack devserver: a local MoEngage Data API emulator; nothing leaves this machine.\n"
            "Its demo app id and API key are throwaway values for this emulator only:\n"
            f"  MOETRACK_ENDPOINT={endpoint} MOETRACK_APP_ID={args.app_id} "
            f"MOETRACK_API_KEY={args.api_key}\n",
            flush=True,
        )
    try:
        # serve() prints the URL and the settings to use, and blocks until Ctrl-C.
        serve(args.host, args.port, {args.app_id: args.api_key}, open_message=True)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(
            f"moetrack devserver: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# demo: the subcommand lives in moetrack.cli.demo (``main(args) -> int``), imported only when run.
# ---------------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module("moetrack.cli.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "moetrack.cli.demo":
            raise
        print("moetrack demo: the demo is not available in this installation", file=sys.stderr)
        return 2
    demo_main: Callable[[argparse.Namespace], int | None] = module.main
    result = demo_main(args)
    return 0 if result is None else int(result)


def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the demo against a local emulator",
        description="Run the demo against a local emulator.",
    )
    demo.set_defaults(handler=_demo)


# ---------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    # The emulator's demo app is a local throwaway: its well-known key is printed on start so
    # the application under test can be pointed at it. A key given here is never printed.
    from moetrack.testing import DEFAULT_API_KEY, DEFAULT_APP_ID

    parser = argparse.ArgumentParser(
        prog="moetrack",
        description="Tools for moetrack, the MoEngage Data API library.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = subparsers.add_parser(
        "devserver",
        help="run the local MoEngage Data API emulator with its web page",
        description=(
            "Run the local MoEngage Data API emulator (on loopback by default), with a "
            "read-only web page of the users, devices, events, dropped elements and requests it "
            "received. "
            "The app id and API key are local throwaway credentials for this emulator only. "
            "Stop it with Ctrl-C; everything it stored is lost."
        ),
    )
    dev.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)"
    )
    dev.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to listen on, 0 for any (default %(default)s)",
    )
    dev.add_argument(
        "--app-id", default=DEFAULT_APP_ID, help="app id the emulator accepts (default %(default)s)"
    )
    dev.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help="API key the emulator accepts for that app (default: the demo key %(default)s)",
    )
    dev.set_defaults(handler=_devserver)

    _add_demo(subparsers)
    for name in _COMMAND_MODULES:
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = (
            importlib.import_module(name).register
        )
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``moetrack`` command on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    args = parser.parse_args(None if argv is None else list(argv))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)
