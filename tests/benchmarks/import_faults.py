"""``python -m tests.benchmarks.import_faults [--trials N]``: the import's three fault cases of
issue 19, measured against the emulator, for a before/after comparison.

1. resume: a 6-row users file (names of several bytes per character; row 5 refused by the
   checks) stopped after row 3 (the second request is answered 401), then run again: records
   that are not in the file, rows sent twice, and the line the rejects file names for row 5
   (the file's line 6 in a CSV, line 5 in JSON lines), per input kind;
2. refused: 20 JSON lines in batches of four, two rows refused by the server (400): exit
   status and events delivered after each of three runs, and the rejects file;
3. pacing: 2,500 events at 1,000 per 6 s (batches of 100) against an emulator enforcing the
   same quota; SIGKILL while a request is in flight, an immediate rerun: 429s earned.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from moetrack._config import Config
from moetrack._wire.transport import HTTPTransport
from moetrack.bulk.run import ImportOptions
from moetrack.bulk.run import run as run_import
from moetrack.testing import Emulator
from tests.test_import import RefuseAfter

NAMES = ["Asha", "Zoë Ångström", "Łukasz Żółć", "日本 太郎", "Ωmega 🚀", "Renée"]


def quiet_import(
    emu: Emulator, files: list[Path], transport: Any, kind: str | None, **kw: Any
) -> int:
    config = Config.build(
        emu.app_id,
        emu.api_key,
        endpoint=emu.url,
        transport=transport,
        users_per_minute=None,
        events_per_minute=None,
        **kw,
    )
    rejects = files[0].parent / "rejects.jsonl"
    options = ImportOptions(
        files=[str(f) for f in files], kind=kind, rejects=str(rejects), live=False
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return run_import(options, config)


def rejects_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def resume(tmp: Path) -> None:
    print("1. resume after row 3 (6 rows, row 5 invalid; rerun)")
    rows = [(f"u-{r}" if r != 5 else "7", NAMES[r % len(NAMES)]) for r in range(1, 7)]
    for name in ("users.csv", "users.csv.gz", "users.jsonl", "users.jsonl.gz"):
        d = tmp / name.replace(".", "_")
        d.mkdir()
        path = d / name
        opener: Any = gzip.open if name.endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8", newline="") as f:
            if ".csv" in name:
                f.write("customer_id,name\n")
                f.writelines(f"{c},{n}\n" for c, n in rows)
            else:
                f.writelines(
                    json.dumps(
                        {"type": "customer", "customer_id": c, "attributes": {"name": n}},
                        ensure_ascii=False,
                    )
                    + "\n"
                    for c, n in rows
                )
        with Emulator() as emu:
            first = quiet_import(emu, [path], RefuseAfter(1), "users", max_batch_size=3)
            second = quiet_import(emu, [path], HTTPTransport(), "users", max_batch_size=3)
            valid = {c: {"name": n} for c, n in rows if c != "7"}
            users = emu.users()
            made_up = sorted(set(users) - set(valid))
            wrong = sorted(c for c in valid if users.get(c) != valid[c])
            stored = sum(r["elements"] for r in emu.requests() if r["status"] == 200)
            lines = [r["line"] for r in rejects_of(d / "rejects.jsonl")]
        expected = 6 if ".csv" in name else 5
        print(
            f"   {name:15} exits {first},{second}  made-up records {len(made_up)} {made_up}  "
            f"rows wrong or missing {len(wrong)}  rows sent twice {stored - len(valid)}  "
            f"row 5 rejected at line(s) {lines} (right: [{expected}])"
        )


def refused(tmp: Path) -> None:
    print("2. two rows refused by the server (400), 20 rows, batches of 4; three runs")
    path = tmp / "refused.jsonl"
    with open(path, "w") as f:
        for line in range(1, 21):
            cid = "bad-a" if line == 5 else "bad-b" if line == 13 else f"cust-{line % 7}"
            f.write(
                json.dumps({"customer_id": cid, "action": "Buy", "attributes": {"n": line}}) + "\n"
            )
    with Emulator() as emu:
        refuse = getattr(emu, "refuse_elements", None)
        assert refuse is not None, "the emulator needs refuse_elements"
        refuse(lambda e: e.get("customer_id") in ("bad-a", "bad-b"))
        for n in range(1, 4):
            status = quiet_import(emu, [path], HTTPTransport(), None, max_batch_size=4)
            print(
                f"   run {n}: exit {status}, events delivered {len(emu.events())} of 18, "
                f"requests so far {len(emu.requests())}"
            )
        found = [
            (r["line"], r["reason"], r.get("status")) for r in rejects_of(tmp / "rejects.jsonl")
        ]
        print(f"   rejects: {found}")


def pacing(tmp: Path, trials: int) -> None:
    print("3. SIGKILL mid-run, immediate rerun, quota 1,000 events / 6 s enforced by the server")
    quota, window, total = 1_000, 6.0, 2_500
    for trial in range(1, trials + 1):
        path = tmp / f"paced-{trial}.jsonl"
        with open(path, "w") as f:
            for i in range(total):
                f.write(
                    json.dumps(
                        {"customer_id": f"cust-{i % 7}", "action": "Buy", "attributes": {"n": i}}
                    )
                    + "\n"
                )
        with Emulator(events_per_minute=quota, rate_limit_window=window) as emu:
            env = {k: v for k, v in os.environ.items() if not k.startswith("MOETRACK_")}
            args = [
                sys.executable, "-m", "moetrack", "import", str(path),
                "--endpoint", emu.url, "--app-id", emu.app_id, "--api-key", str(emu.api_key),
                "--events-per-minute", str(quota), "--rate-limit-window", str(window),
                "--batch-size", "100",
            ]  # fmt: skip
            out = subprocess.DEVNULL
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=out)
            emu.wait_for(lambda: len(emu.requests()) >= 3, timeout=60)
            emu.delay(60)
            emu.wait_for(lambda: any(r["fault"] == "delay" for r in emu.requests()), timeout=60)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            emu.clear_faults()
            before = len(emu.requests())
            status = subprocess.run(args, env=env, stdout=out, stderr=out, check=False).returncode
            statuses = [r["status"] for r in emu.requests()]
            got = len({e["attributes"]["n"] for e in emu.events()})
        print(
            f"   trial {trial}: killed after {before} requests; rerun exit {status}, "
            f"429s {statuses.count(429)}, distinct events {got} of {total}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        resume(Path(tmp))
        refused(Path(tmp))
        pacing(Path(tmp), args.trials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
