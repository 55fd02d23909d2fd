"""``python -m moetrack.testing``: run the Data API emulator and its web page until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._emulator import DEFAULT_API_KEY, DEFAULT_APP_ID, serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moetrack.testing",
        description="Run a local MoEngage Data API emulator with a web page of what it received.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8700, help="port to listen on, 0 for any (default: %(default)s)"
    )
    parser.add_argument(
        "--app-id", default=DEFAULT_APP_ID, help="Data API app id (default: %(default)s)"
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help="Data API key the app accepts (default: the demo key)",
    )
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, {args.app_id: args.api_key})
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
