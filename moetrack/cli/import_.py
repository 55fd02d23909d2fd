"""``moetrack import FILE [FILE ...]``: load history in bulk, paced, resumable.

The work is in :mod:`moetrack.bulk.run`; this module only reads the command line.
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_api_options, api_config, seconds

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "import",
        help="import history from JSON-lines or CSV files, paced and resumable",
        description=(
            "Send users, devices and events from files to the Data API, paced to the "
            "account's quota. Each .jsonl/.ndjson line is a Data API element "
            '({"type": "customer" | "device" | "event", ...}) or a flat track row '
            '({"customer_id", "action", "attributes", "current_time", ...}); a .csv needs '
            "--kind; either may be gzipped (.gz). Refused rows never stop the import "
            "(--rejects names each), nor do rows the server refuses (a batch it refuses is "
            "sent again in halves, down to single rows). What the server acknowledged is "
            "saved beside the first file, so running the same command again continues "
            "where it stopped. Exit "
            "status: 0 everything sent, 1 some rows refused, 2 could not finish."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="input files, imported in order")
    add_api_options(
        p, limiter_help="redis:// URL of the quota shared with running apps (MOETRACK_LIMITER)"
    )
    p.add_argument(
        "--kind",
        choices=("users", "events", "devices"),
        help="what the rows of a CSV file are (required for .csv)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every row and count; send nothing, save no resume state",
    )
    p.add_argument(
        "--rejects",
        metavar="PATH",
        help='write each refused row as a JSON line {"line", "reason", "field", "message"} '
        '(and "status", for a row the server refused)',
    )
    p.add_argument(
        "--state",
        metavar="PATH",
        help="the resume state file (default: beside the first FILE, FILE.moetrack-import)",
    )
    p.add_argument(
        "--restart", action="store_true", help="ignore the saved state and start from the top"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1_000,
        metavar="N",
        help="most records in one request (default %(default)s)",
    )
    p.add_argument(
        "--progress-interval",
        type=seconds,
        default=5.0,
        metavar="SECONDS",
        help="off a terminal: seconds between progress lines (default %(default)s)",
    )
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from .._exceptions import ConfigurationError
    from ..bulk.run import ImportOptions, run

    options = ImportOptions(
        files=args.files,
        kind=args.kind,
        dry_run=args.dry_run,
        rejects=args.rejects,
        state=args.state,
        restart=args.restart,
        progress_interval=args.progress_interval,
    )
    config = None
    if not args.dry_run:
        try:
            config = api_config(args, max_batch_size=args.batch_size, flush_interval=0.2)
        except ConfigurationError as exc:
            print(f"moetrack import: {exc}", file=sys.stderr)
            return 2
    return run(options, config)
