"""``moetrack import`` resumed from a state saved mid-file, for every input kind: JSON lines
and CSV, plain and gzipped, with names of several bytes per character.

The resume point is a byte offset in the (decompressed) input: a rerun must start exactly
at the row after the last one the server acknowledged, number the lines as the file does,
and send no record that is not in the file.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from moetrack._config import Config
from moetrack._wire.transport import HTTPTransport
from moetrack.bulk.run import ImportOptions
from moetrack.bulk.run import run as run_import
from moetrack.testing import Emulator

from .test_import import (
    RefuseAfter,
    import_process,
    kill_with_a_request_in_flight,
    read_rejects,
    write_csv,
)

#: Names of one, two, three and four bytes per character in UTF-8.
NAMES = ["Asha", "Zoë Ångström", "Łukasz Żółć", "日本 太郎", "Ωmega 🚀", "Renée"]


def users(n: int, bad: set[int]) -> list[tuple[str, str]]:
    """(customer_id, name) of rows 1..n; the rows in ``bad`` have an invalid id ("7")."""
    return [("7" if r in bad else f"u-{r}", NAMES[r % len(NAMES)]) for r in range(1, n + 1)]


def write_users(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A CSV or JSON-lines file of ``rows``; one named ``*-bom.*`` begins with a byte order
    mark, as spreadsheet exports do."""
    if ".csv" in path.name and "-bom" not in path.name:
        return write_csv(path, ["customer_id", "name"], [list(r) for r in rows])
    opener: Any = gzip.open if path.suffix == ".gz" else open
    encoding = "utf-8-sig" if "-bom" in path.name else "utf-8"
    with opener(path, "wt", encoding=encoding, newline="") as f:
        if ".csv" in path.name:
            csv.writer(f).writerows([["customer_id", "name"], *map(list, rows)])
            return path
        for customer_id, name in rows:
            element = {"type": "customer", "customer_id": customer_id, "attributes": {"name": name}}
            f.write(json.dumps(element, ensure_ascii=False) + "\n")
    return path


def import_with(
    emulator: Emulator, tmp_path: Path, files: list[Path], transport: HTTPTransport, kind: str
) -> int:
    """An import in this process, in batches of three, unpaced, through ``transport``."""
    config = Config.build(
        emulator.app_id,
        emulator.api_key,
        endpoint=emulator.url,
        max_batch_size=3,
        transport=transport,
        users_per_minute=None,
        events_per_minute=None,
    )
    options = ImportOptions(
        files=[str(f) for f in files],
        kind=kind,
        rejects=str(tmp_path / "rejects.jsonl"),
        live=False,
    )
    return run_import(options, config)


def line_of(path: Path, row: int) -> int:
    return row + 1 if ".csv" in path.name else row  # a CSV's first line is its header


@pytest.mark.parametrize("non_ascii", [False, True], ids=["ascii", "multibyte"])
def test_a_plain_csv_of_users_stopped_after_row_3_sends_exactly_the_rest_on_resume(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str], non_ascii: bool
) -> None:
    rows = [(f"u-{r}", NAMES[r % len(NAMES)] if non_ascii else f"Name {r}") for r in range(1, 7)]
    rows[4] = ("7", rows[4][1])  # row 5 (line 6) is refused
    data = write_users(tmp_path / "users.csv", rows)
    # Batches of three (import_with): the first is acknowledged, the second refused (401).
    assert import_with(emulator, tmp_path, [data], RefuseAfter(1), "users") == 2
    assert sorted(emulator.users()) == ["u-1", "u-2", "u-3"]
    first = len(emulator.requests())

    status = import_with(emulator, tmp_path, [data], HTTPTransport(), "users")
    _, err = capsys.readouterr()
    assert status == 1, err  # row 5 refused
    assert "resuming users.csv after line 4" in err
    assert emulator.users() == {
        cid: {"name": name} for cid, name in rows if cid != "7"
    }  # nothing made up
    again = [r for r in emulator.requests()[first:] if r["status"] == 200]
    assert sum(r["elements"] for r in again) == 2  # rows 4 and 6, nothing sent twice
    assert [(r["line"], r["reason"]) for r in read_rejects(tmp_path / "rejects.jsonl")] == [
        (6, "invalid_customer_id")
    ]


KINDS = [
    "users.jsonl",
    "users.jsonl.gz",
    "users.csv",
    "users.csv.gz",
    "users-bom.csv",
    "users-bom.jsonl.gz",
]


@pytest.mark.parametrize("name", KINDS)
def test_every_input_kind_resumes_after_sigkill_at_the_right_row_and_line(
    tmp_path: Path, emulator: Emulator, name: str
) -> None:
    total, bad = 16, {2, 13}
    rows = users(total, bad)
    data = write_users(tmp_path / name, rows)
    rejects = tmp_path / "rejects.jsonl"
    emulator.set_rate_limits(users_per_minute=2, window=0.5)
    args = (
        data, "--kind", "users", "--rejects", rejects, "--batch-size", "2",
        "--users-per-minute", "2", "--rate-limit-window", "0.5",
    )  # fmt: skip

    proc = import_process(emulator, *args)
    # Two batches acknowledged (paced: two users per half second), then one in flight.
    in_flight = kill_with_a_request_in_flight(emulator, proc, after=2)
    before = len(emulator.requests())

    rerun = import_process(emulator, *args)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 1, err  # two rows refused
    assert "resuming" in err

    good = {cid: {"name": n} for cid, n in rows if cid != "7"}
    assert emulator.users() == good  # every row, as written, and nothing made up
    resent = sum(r["elements"] for r in emulator.requests()[before:] if r["status"] == 200)
    sent_before = sum(r["elements"] for r in emulator.requests()[:before] if r["status"] == 200)
    assert resent + sent_before <= len(good) + in_flight["elements"]
    assert resent + sent_before >= len(good)
    assert [(r["line"], r["reason"]) for r in read_rejects(rejects)] == [
        (line_of(data, r), "invalid_customer_id") for r in sorted(bad)
    ]
