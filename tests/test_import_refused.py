"""``moetrack import`` gets past a batch that the server refuses for good.

The emulator refuses every request that holds a chosen element (400 MissingAttributeError),
as a server does that refuses a whole batch for one bad row. The import splits the batch
down to single rows, writes each refused row to ``--rejects`` with the server's status and
message, sends the rest, and exits 1 (some rows refused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moetrack import cli
from moetrack._wire.transport import HTTPTransport
from moetrack.testing import Emulator

from .test_import import (
    RefuseAfter,
    env_for,
    import_with,
    n_numbers,
    read_rejects,
    track_row,
    write_jsonl,
)

BAD = {"bad-a", "bad-b"}


def refused(element: dict[str, Any]) -> bool:
    return element.get("customer_id") in BAD


def import_(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, *args: str | Path) -> int:
    for name, value in env_for(emulator).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MOETRACK_LIMITER", raising=False)
    return cli.main(["import", *map(str, args)])


def test_a_batch_refused_for_good_is_split_and_only_its_bad_rows_are_rejected(
    tmp_path: Path,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.refuse_elements(refused, "attributes.n is expected to be string")
    rows: list[Any] = []
    for line in range(1, 21):
        if line == 5:
            rows.append(track_row(line, "bad-a"))
        elif line == 9:
            rows.append("{not json")
        elif line == 13:
            rows.append(
                {
                    "type": "event",
                    "customer_id": "bad-b",
                    "actions": [{"action": "Step", "attributes": {"n": 100 + k}} for k in range(3)],
                }
            )
        else:
            rows.append(track_row(line))
    data = write_jsonl(tmp_path / "h.jsonl", rows)
    rejects = tmp_path / "rejects.jsonl"
    # Unpaced (0: no limit), in batches of four: the rows 5 and 13 spoil two batches.
    args = (data, "--rejects", rejects, "--batch-size", "4", "--events-per-minute", "0")

    status = import_(emulator, monkeypatch, *args)
    out, err = capsys.readouterr()

    assert status == 1, err  # finished; some rows refused
    good = [line for line in range(1, 21) if line not in (5, 9, 13)]
    assert n_numbers(emulator.events()) == good  # each once
    found = read_rejects(rejects)
    assert [(r["line"], r["reason"], r.get("status")) for r in found] == [
        (5, "refused_by_server", 400),
        (9, "malformed_json", None),
        (13, "refused_by_server", 400),
    ]
    for r in (found[0], found[2]):
        assert "MissingAttributeError" in r["message"]
        assert "attributes.n is expected to be string" in r["message"]
    assert "refused_by_server 2" in out

    # Done: a rerun sends nothing and writes no row twice.
    requests = len(emulator.requests())
    assert import_(emulator, monkeypatch, *args) == 1
    assert "already imported" in capsys.readouterr().err
    assert len(emulator.requests()) == requests
    assert len(read_rejects(rejects)) == 3


def test_an_account_refusal_still_stops_the_import(
    tmp_path: Path,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Blacklisted (400) is about the account, not the rows: no row is blamed for it.
    emulator.set_app_state(emulator.app_id, "blacklisted")
    data = write_jsonl(tmp_path / "h.jsonl", [track_row(i) for i in range(8)])
    rejects = tmp_path / "rejects.jsonl"
    status = import_(emulator, monkeypatch, data, "--rejects", rejects, "--batch-size", "4")
    _, err = capsys.readouterr()
    assert status == 2
    assert "Blacklisted" in err
    assert len(emulator.requests()) == 1
    assert read_rejects(rejects) == []


def test_stopped_while_splitting_the_rerun_rejects_each_row_once_in_file_order(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.refuse_elements(refused)
    rows: list[Any] = [track_row(line) for line in range(1, 13)]
    rows[1] = track_row(2, "bad-a")
    rows[4] = "{oops"
    rows[7] = track_row(8, "bad-b")
    data = write_jsonl(tmp_path / "h.jsonl", rows)
    # Batches of three, unpaced. Rows 1-3 are refused (400), then sent as [1] (200) and
    # [2, 3] (400), then [2] (400: rejected) and [3] (200). The sixth request, rows 4, 6 and
    # 7, is answered 401: the import stops after row 3.
    assert import_with(emulator, tmp_path, [data], RefuseAfter(5)) == 2
    assert n_numbers(emulator.events()) == [1, 3]
    rejects = tmp_path / "rejects.jsonl"
    assert [(r["line"], r["reason"]) for r in read_rejects(rejects)] == [(2, "refused_by_server")]

    status = import_with(emulator, tmp_path, [data], HTTPTransport())
    out, err = capsys.readouterr()
    assert status == 1, err
    assert "resuming" in err
    assert n_numbers(emulator.events()) == [1, 3, 4, 6, 7, 9, 10, 11, 12]  # each once
    assert [(r["line"], r["reason"], r.get("status")) for r in read_rejects(rejects)] == [
        (2, "refused_by_server", 400),
        (5, "malformed_json", None),
        (8, "refused_by_server", 400),
    ]
    assert "refused_by_server 2" in out


def test_a_row_too_large_for_the_server_alone_is_rejected_with_its_413(
    tmp_path: Path,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The server here takes less than the documented 128 KiB, which the client packs to: one
    # row of ~3 KB is over its limit, every other row fits.
    emulator.set_body_limit(2_000)
    rows: list[Any] = [track_row(line) for line in range(1, 9)]
    big = track_row(4)
    big["attributes"]["blob"] = "x" * 3_000
    rows[3] = big
    data = write_jsonl(tmp_path / "h.jsonl", rows)
    rejects = tmp_path / "rejects.jsonl"
    status = import_(emulator, monkeypatch, data, "--rejects", rejects, "--events-per-minute", "0")
    _, err = capsys.readouterr()
    assert status == 1, err
    assert n_numbers(emulator.events()) == [1, 2, 3, 5, 6, 7, 8]
    assert [(r["line"], r["reason"], r["status"]) for r in read_rejects(rejects)] == [
        (4, "refused_by_server", 413)
    ]


def test_a_refusal_about_the_request_stops_the_import_and_blames_no_row(
    tmp_path: Path,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 400 "Missing header value": the request, not a row, is wrong; every request gets it.
    emulator.fail_for(3600, 400)
    data = write_jsonl(tmp_path / "h.jsonl", [track_row(i) for i in range(8)])
    rejects = tmp_path / "rejects.jsonl"
    status = import_(emulator, monkeypatch, data, "--rejects", rejects, "--batch-size", "4")
    _, err = capsys.readouterr()
    assert status == 2
    assert "Missing header value" in err
    assert len(emulator.requests()) == 1
    assert read_rejects(rejects) == []
