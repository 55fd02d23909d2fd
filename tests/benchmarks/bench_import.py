"""``python -m tests.benchmarks.bench_import [--rows N]``: the import's dry run next to a bare
``json.loads`` of every line.

Writes N JSON lines (default 1,000,000) to a temporary directory: flat track rows with five
attributes (str, int, float, bool, ISO date) and original times, every tenth line a customer
element and every fiftieth an event element with two actions. Then, in this interpreter,
times (best of ``--repeat``):

- the floor: read the file's lines and ``json.loads`` each one, nothing else;
- ``moetrack import --dry-run``'s work: read, parse, validate with the library's rules,
  encode each item, count, and write the summary (no rejects file).

Prints both and the ratio (the target is at most 10x).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from contextlib import redirect_stdout

from moetrack.bulk.run import ImportOptions
from moetrack.bulk.run import run as run_import


def write_rows(path: str, rows: int) -> int:
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            cid = f"customer-{i % 5000:05d}"
            if i % 10 == 3:
                row = {
                    "type": "customer",
                    "customer_id": cid,
                    "attributes": {"name": f"Name {i}", "plan": "pro", "age": 20 + i % 50},
                }
            elif i % 50 == 7:
                row = {
                    "type": "event",
                    "customer_id": cid,
                    "actions": [
                        {"action": "Viewed", "attributes": {"sku": f"S{i}"}, "current_time": 1.7e9},
                        {"action": "Added", "current_time": "2024-05-01T10:00:00Z"},
                    ],
                }
            else:
                row = {
                    "customer_id": cid,
                    "action": "Purchase",
                    "attributes": {
                        "sku": f"SKU-{i}",
                        "price": i % 9000,
                        "ratio": i / 7,
                        "gift": i % 2 == 0,
                        "day": "2024-05-01",
                    },
                    "current_time": 1_700_000_000 + i,
                    "platform": "web",
                }
            size += f.write(json.dumps(row) + "\n")
    return size


def floor(path: str) -> float:
    loads = json.loads
    start = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            loads(line)
    return time.perf_counter() - start


def dry_run(path: str) -> float:
    start = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        status = run_import(
            ImportOptions(files=[path], dry_run=True, live=False, progress_interval=1e9),
            None,
        )
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"the dry run refused rows (exit {status})")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import orjson  # noqa: F401

        parser_name = "orjson"
    except ImportError:
        parser_name = "json"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "history.jsonl")
        size = write_rows(path, args.rows)
        print(f"{args.rows:,} rows, {size / 1e6:,.1f} MB; import parses with {parser_name}")
        base = min(floor(path) for _ in range(args.repeat))
        ours = min(dry_run(path) for _ in range(args.repeat))
    per_row = 1e6 / args.rows
    print(f"json.loads of every line: {base:6.2f} s  ({base * per_row:.2f} us/row)")
    print(f"moetrack import --dry-run: {ours:6.2f} s  ({ours * per_row:.2f} us/row)")
    ratio = ours / base
    print(f"ratio: {ratio:.2f}x (target <= 10x): {'pass' if ratio <= 10 else 'MISS'}")
    print(f"Python {sys.version.split()[0]}")
    return 0 if ratio <= 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
