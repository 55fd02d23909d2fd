"""``moetrack devserver``: the local MoEngage Data API emulator with its read-only web page,
until Ctrl-C."""

from __future__ import annotations

import argparse
import sys

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "register"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # The emulator's demo app is a local throwaway: its well-known key is printed on start so
    # the application under test can be pointed at it. A key given here is never printed.
    from moetrack.testing import DEFAULT_API_KEY, DEFAULT_APP_ID

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
