"""``moetrack import``: real files (JSONL, CSV, gz) against the real emulator."""

from __future__ import annotations

import collections
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from moetrack import cli
from moetrack._config import Config
from moetrack._wire.transport import HTTPTransport, Response
from moetrack.bulk.inputs import open_inputs
from moetrack.bulk.run import ImportOptions
from moetrack.bulk.run import run as run_import
from moetrack.bulk.source import FileSource
from moetrack.bulk.state import Rejects
from moetrack.bulk.summary import Summary
from moetrack.testing import Emulator

Run = Callable[..., tuple[int, str, str]]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as JSON lines; a str row is written as it is (a malformed or blank line)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def track_row(i: int, customer: str | None = None) -> dict[str, Any]:
    return {
        "customer_id": customer or f"cust-{i % 7}",
        "action": "Purchase",
        "attributes": {"n": i},
        "current_time": 1_700_000_000 + i,
    }


def env_for(emulator: Emulator) -> dict[str, str]:
    return {
        "MOETRACK_ENDPOINT": emulator.url,
        "MOETRACK_APP_ID": emulator.app_id,
        "MOETRACK_API_KEY": str(emulator.api_key),
    }


@pytest.fixture
def run(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """``moetrack import ARGS`` in this process, aimed at the emulator: (status, out, err)."""
    for name, value in env_for(emulator).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MOETRACK_LIMITER", raising=False)

    def go(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        status = cli.main(["import", *map(str, args)])
        out, err = capsys.readouterr()
        return status, out, err

    return go


def n_numbers(events: list[dict[str, Any]]) -> list[int]:
    return sorted(e["attributes"]["n"] for e in events)


def read_rejects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- dry run ----------------------------------------------------------------------------------


def test_a_dry_run_validates_everything_sends_nothing_and_leaves_no_state(
    tmp_path: Path, emulator: Emulator, run: Run
) -> None:
    data = write_jsonl(tmp_path / "h.jsonl", [track_row(i) for i in range(50)] + ["{oops"])
    status, out, _ = run(data, "--dry-run", "--rejects", tmp_path / "rejects.jsonl")
    assert status == 1
    assert "nothing sent" in out
    assert emulator.requests() == []
    assert sorted(os.listdir(tmp_path)) == ["h.jsonl", "rejects.jsonl"]  # no state file
    found = read_rejects(tmp_path / "rejects.jsonl")
    assert [(r["line"], r["reason"], r["field"]) for r in found] == [(51, "malformed_json", None)]
    table = out.splitlines()
    assert any(line.split()[:4] == ["events", "50", "50", "0"] for line in table), out


# -- rejects ----------------------------------------------------------------------------------

BAD_LINES: dict[int, tuple[Any, str, str | None]] = {
    # line: (what is written, reason, field)
    3: ("{not json", "malformed_json", None),
    5: ({"customer_id": "1", "action": "Viewed"}, "invalid_customer_id", "customer_id"),
    6: ({"customer_id": "cust-1", "action": "id"}, "reserved_name", "action"),
    8: (
        {"customer_id": "cust-1", "action": "A", "current_time": "yesterday"},
        "invalid_time",
        "current_time",
    ),
    9: ({"type": "visitor", "customer_id": "cust-1"}, "invalid", "type"),
    10: ([1, 2, 3], "invalid", None),
    12: (
        {"type": "device", "customer_id": "cust-1", "attributes": {"platform": "ANDROID"}},
        "invalid_device",
        "attributes.push_id",
    ),
    13: (
        {"type": "event", "customer_id": "cust-2", "actions": [{"action": "Ok"}, {"action": ""}]},
        "reserved_name",
        "actions[1].action",
    ),
    14: (
        {"customer_id": "cust-1", "action": "A", "attributes": {"p": "x"}, "price": 3},
        "unknown_field",
        "price",
    ),
    16: (
        {"type": "customer", "customer_id": "cust-9", "attributes": {"_id": 4}},
        "reserved_name",
        "attributes._id",
    ),
}


def test_the_rejects_file_names_every_bad_line_by_its_number(
    tmp_path: Path, emulator: Emulator, run: Run
) -> None:
    rows: list[Any] = []
    for line in range(1, 19):
        if line in BAD_LINES:
            rows.append(BAD_LINES[line][0])
        elif line == 17:
            rows.append("")  # a blank line is not a row
        else:
            rows.append(track_row(line))
    data = write_jsonl(tmp_path / "mixed.jsonl", rows)
    rejects = tmp_path / "rejects.jsonl"

    status, out, _ = run(data, "--rejects", rejects)

    assert status == 1  # some refused, the rest sent
    found = read_rejects(rejects)
    assert [(r["line"], r["reason"], r["field"]) for r in found] == [
        (line, reason, field) for line, (_, reason, field) in sorted(BAD_LINES.items())
    ]
    assert all(set(r) == {"line", "reason", "field", "message"} for r in found)
    assert all(r["message"] for r in found)
    good = [line for line in range(1, 19) if line not in BAD_LINES and line != 17]
    assert n_numbers(emulator.events()) == good
    assert emulator.dropped() == []  # nothing the server would have thrown away was sent
    assert "malformed_json 1" in out
    assert "invalid_customer_id 1" in out


# -- CSV, gz, times ---------------------------------------------------------------------------


def test_a_csv_of_users_arrives_with_typed_attributes(
    tmp_path: Path, emulator: Emulator, run: Run
) -> None:
    data = write_csv(
        tmp_path / "users.csv",
        ["customer_id", "name", "age", "score", "zip", "vip", "signed_up", "note"],
        [
            ["u-100", "Asha", "31", "4.5", "02134", "true", "2024-01-02T03:04:05Z", ""],
            ["u-101", "Ben", "-7", "1e3", "10001", "false", "2024-02-03", "hi, there"],
            ["7", "Single digit", "", "", "", "", "", ""],
        ],
    )
    status, _, err = run(data, "--kind", "users", "--rejects", tmp_path / "r.jsonl")
    assert status == 1, err
    assert emulator.user("u-100") == {
        "name": "Asha",
        "age": 31,
        "score": 4.5,
        "zip": "02134",  # not a canonical number: kept as text
        "vip": "true",
        "signed_up": "2024-01-02T03:04:05Z",
    }  # the empty "note" cell is left out
    assert emulator.user("u-101") == {
        "name": "Ben",
        "age": -7,
        "score": 1000.0,
        "zip": 10001,
        "vip": "false",
        "signed_up": "2024-02-03",
        "note": "hi, there",
    }
    assert [(r["line"], r["reason"]) for r in read_rejects(tmp_path / "r.jsonl")] == [
        (4, "invalid_customer_id")
    ]


def test_gzipped_jsonl_and_csv_keep_times_exactly_as_given(
    tmp_path: Path, emulator: Emulator, run: Run
) -> None:
    jsonl = write_jsonl(
        tmp_path / "events.jsonl.gz",
        [
            {
                "type": "event",
                "customer_id": "cust-a",
                "device_id": "dev-1",
                "actions": [
                    {
                        "action": "Opened",
                        "current_time": "2020-05-31T16:33:35Z",
                        "user_time": 1590942815,
                    },
                    {"action": "Closed", "current_time": 1590942900, "user_timezone_offset": 19800},
                ],
            },
            {"type": "customer", "customer_id": "cust-a", "attributes": {"plan": "gold"}},
        ],
    )
    events_csv = write_csv(
        tmp_path / "more.csv.gz",
        ["customer_id", "action", "current_time", "user_time", "platform", "amount"],
        [
            ["cust-b", "Paid", "2021-01-01T00:00:00+05:30", "1609439400", "android", "12.50"],
            ["cust-b", "Refunded", "1609459200", "", "iOS", "3"],
        ],
    )
    status, _, err = run(jsonl, events_csv, "--kind", "events")
    assert status == 0, err
    a = emulator.events("cust-a")
    assert [(e["action"], e["device_id"], e["current_time"], e["user_time"]) for e in a] == [
        ("Opened", "dev-1", "2020-05-31T16:33:35Z", 1590942815),
        ("Closed", "dev-1", 1590942900, None),
    ]
    assert a[1]["user_timezone_offset"] == 19800
    assert emulator.user("cust-a") == {"plan": "gold"}
    b = emulator.events("cust-b")
    assert [(e["action"], e["current_time"], e["user_time"], e["platform"]) for e in b] == [
        ("Paid", "2021-01-01T00:00:00+05:30", 1609439400, "ANDROID"),
        ("Refunded", 1609459200, None, "iOS"),
    ]
    assert [e["attributes"] for e in b] == [{"amount": 12.5}, {"amount": 3}]


def test_a_csv_of_devices_and_exit_zero_when_everything_is_sent(
    tmp_path: Path, emulator: Emulator, run: Run
) -> None:
    data = write_csv(
        tmp_path / "devices.csv",
        ["customer_id", "device_id", "platform", "push_id", "model"],
        [["cust-d", "dev-9", "android", "12345", "Pixel"]],
    )
    status, out, err = run(data, "--kind", "devices")
    assert status == 0, err
    assert emulator.devices()["dev-9"] == {
        "customer_id": "cust-d",
        "attributes": {"platform": "ANDROID", "push_id": "12345", "model": "Pixel"},
    }
    assert out.splitlines()[0].split()[:4] == ["kind", "read", "sent", "refused"]


# -- pacing -----------------------------------------------------------------------------------


def test_pacing_at_the_servers_quota_earns_no_429(
    tmp_path: Path, emulator: Emulator, run: Run
) -> None:
    emulator.set_rate_limits(users_per_minute=20, events_per_minute=100, window=0.5)
    rows: list[Any] = [track_row(i) for i in range(300)]
    rows += [{"type": "customer", "customer_id": f"cust-u{i}"} for i in range(40)]
    data = write_jsonl(tmp_path / "paced.jsonl", rows)
    status, _, err = run(
        data,
        "--events-per-minute", "100",
        "--users-per-minute", "20",
        "--rate-limit-window", "0.5",
    )  # fmt: skip
    assert status == 0, err
    statuses = [r["status"] for r in emulator.requests()]
    assert 429 not in statuses
    assert n_numbers(emulator.events()) == list(range(300))
    assert len([u for u in emulator.users() if u.startswith("cust-u")]) == 40
    assert max(r["events"] for r in emulator.requests()) <= 100


# -- could not finish, resume -----------------------------------------------------------------


class RefuseAfter(HTTPTransport):
    """Sends the first ``n`` requests; answers 401 to the rest without sending them."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        if self.left <= 0:
            payload = b'{"status":"fail","error":{"type":"Authentication required","message":"no"}}'
            return Response(401, {}, payload)
        self.left -= 1
        return super().send(url, body, headers, timeout)


def import_with(
    emulator: Emulator, tmp_path: Path, files: list[Path], transport: HTTPTransport, *extra: Any
) -> int:
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
        files=[str(f) for f in files], rejects=str(tmp_path / "rejects.jsonl"), live=False
    )
    return run_import(options, config)


def test_exit_2_names_the_reason_and_the_rerun_sends_the_rest_once_without_duplicate_rejects(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # An event element of five actions that straddles batches of three, bad lines on both
    # sides of the point where the first run stops.
    rows: list[Any] = [track_row(0), "{bad", track_row(1)]
    rows.append(
        {
            "type": "event",
            "customer_id": "cust-many",
            "actions": [{"action": "Step", "attributes": {"n": 100 + k}} for k in range(5)],
        }
    )
    rows += [track_row(2), {"customer_id": "x", "action": "A"}, track_row(3), track_row(4)]
    rows += ["[]", track_row(5)]
    data = write_jsonl(tmp_path / "h.jsonl", rows)

    status = import_with(emulator, tmp_path, [data], RefuseAfter(2))
    _, err = capsys.readouterr()
    assert status == 2
    assert "could not finish" in err
    assert "401" in err
    # Two batches of three went; the third (104, 2, 3) was refused, after line 6 was read.
    assert n_numbers(emulator.events()) == [0, 1, 100, 101, 102, 103]
    # Line 6 was read, but it lies after the saved position: the rejects file holds only the
    # rows before that position (a row is written once the rows before it are settled).
    assert [r["line"] for r in read_rejects(tmp_path / "rejects.jsonl")] == [2]

    status = import_with(emulator, tmp_path, [data], HTTPTransport())
    out, err = capsys.readouterr()
    assert status == 1, err  # done; some rows were refused
    assert "resuming" in err
    assert n_numbers(emulator.events()) == [0, 1, 2, 3, 4, 5, *range(100, 105)]  # each once
    assert [r["line"] for r in read_rejects(tmp_path / "rejects.jsonl")] == [2, 6, 9]
    # The summary covers the whole import, both runs.
    events_row = next(line.split() for line in out.splitlines() if line.startswith("events"))
    assert events_row[:4] == ["events", "12", "11", "1"]

    # Finished: running it again sends nothing.
    requests = len(emulator.requests())
    assert import_with(emulator, tmp_path, [data], HTTPTransport()) == 1
    assert "already imported" in capsys.readouterr().err
    assert len(emulator.requests()) == requests


def test_a_changed_file_is_refused_until_restart(
    tmp_path: Path, emulator: Emulator, run: Run
) -> None:
    data = write_jsonl(tmp_path / "h.jsonl", [track_row(i) for i in range(6)])
    assert import_with(emulator, tmp_path, [data], RefuseAfter(1)) == 2
    write_jsonl(data, [track_row(i) for i in range(7)])
    status, _, err = run(data)
    assert status == 2
    assert "changed since the import began" in err
    status, _, err = run(data, "--restart")
    assert status == 0, err
    assert n_numbers(emulator.events()) == sorted([0, 1, 2, *range(7)])


def test_wrong_credentials_exit_2_with_the_reason_and_never_show_the_key(
    tmp_path: Path, emulator: Emulator, run: Run
) -> None:
    data = write_jsonl(tmp_path / "h.jsonl", [track_row(i) for i in range(3)])
    status, out, err = run(data, "--api-key", "not-the-key-123")
    assert status == 2
    assert "could not finish" in err
    assert "401" in err
    assert "not-the-key-123" not in out + err
    status, _, err = run(data)
    assert status == 0, err
    assert n_numbers(emulator.events()) == [0, 1, 2]


def test_an_input_that_cannot_be_read_is_exit_2(tmp_path: Path, run: Run) -> None:
    status, _, err = run(tmp_path / "missing.jsonl")
    assert status == 2
    assert "missing.jsonl" in err
    (tmp_path / "x.txt").write_text("hi\n")
    status, _, err = run(tmp_path / "x.txt")
    assert status == 2
    assert "cannot tell the format" in err
    status, _, err = run(write_csv(tmp_path / "u.csv", ["customer_id"], [["u-1"]]))
    assert status == 2
    assert "--kind" in err


# -- a real process: progress, SIGKILL and resume ---------------------------------------------


def import_process(emulator: Emulator, *args: str | Path, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, **env_for(emulator), "PYTHONUNBUFFERED": "1"}
    env.pop("MOETRACK_LIMITER", None)
    return subprocess.Popen(
        [sys.executable, "-m", "moetrack.cli", "import", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def kill_with_a_request_in_flight(
    emulator: Emulator, proc: subprocess.Popen[str], after: int, timeout: float = 60
) -> dict[str, Any]:
    """Once ``after`` requests have arrived, make the server store the next one and hold its
    answer, then SIGKILL the import while that request is in flight (exactly one is, and it
    is returned as the emulator logged it)."""
    try:
        assert emulator.wait_for(lambda: len(emulator.requests()) >= after, timeout=timeout)
        emulator.delay(60)
        assert emulator.wait_for(
            lambda: any(r["fault"] == "delay" for r in emulator.requests()), timeout=timeout
        )
        proc.kill()  # SIGKILL
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    emulator.clear_faults()
    (in_flight,) = [r for r in emulator.requests() if r["fault"] == "delay"]
    return in_flight


def test_off_a_terminal_progress_is_plain_lines_and_the_end_is_a_summary_table(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_rate_limits(events_per_minute=100, window=0.5)
    data = write_jsonl(tmp_path / "h.jsonl", [track_row(i) for i in range(300)] + ["nope"])
    # Paced at 100 events per half second, 300 events take at least a second.
    proc = import_process(
        emulator,
        data,
        "--events-per-minute", "100",
        "--rate-limit-window", "0.5",
        "--progress-interval", "0.1",
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    progress = [line for line in err.splitlines() if line.startswith("moetrack import: read ")]
    assert progress, err
    assert all("sent" in line and "refused" in line and "ETA" in line for line in progress)
    assert "\x1b[" not in err  # no terminal control codes off a terminal
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "read", "sent", "refused", "refused", "by", "reason"]
    assert lines[1].split() == ["events", "300", "300", "0"]
    assert lines[2].split() == ["unknown", "1", "0", "1", "malformed_json", "1"]
    assert lines[3].split() == ["total", "301", "300", "1"]


def test_sigkill_mid_run_then_resume_loses_nothing_and_repeats_at_most_the_batch_in_flight(
    tmp_path: Path, emulator: Emulator
) -> None:
    window, per_window, total = 0.5, 100, 1_000
    emulator.set_rate_limits(events_per_minute=per_window, window=window)
    data = write_jsonl(tmp_path / "h.jsonl", [track_row(i) for i in range(total)])
    pace = ("--events-per-minute", str(per_window), "--rate-limit-window", str(window))

    proc = import_process(emulator, data, *pace)
    # Two batches acknowledged (the client paces the next by the window), then one in flight.
    in_flight = kill_with_a_request_in_flight(emulator, proc, after=2, timeout=30)
    before = n_numbers(emulator.events())
    assert len(before) < total

    rerun = import_process(emulator, data, *pace)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert "resuming" in err

    arrived = n_numbers(emulator.events())
    counts = collections.Counter(arrived)
    assert set(counts) == set(range(total))  # nothing lost
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    assert all(c <= 2 for c in counts.values())
    # Sent twice: only the batch whose answer never came, and all of it at most.
    assert len(duplicates) <= in_flight["events"]
    assert duplicates == sorted(before)[len(before) - len(duplicates) :]
    # Order per customer: each number's first arrival is in file order.
    for customer in {e["customer_id"] for e in emulator.events()}:
        firsts = list(dict.fromkeys(e["attributes"]["n"] for e in emulator.events(customer)))
        assert firsts == sorted(firsts)


def test_memory_stays_flat_the_file_is_streamed(tmp_path: Path) -> None:
    # The source reads rows only as the sender asks: after the first take of ten items, far
    # fewer than the file's rows were read.
    from moetrack._pipeline.source import Stop

    data = write_jsonl(tmp_path / "big.jsonl", [track_row(i) for i in range(20_000)])
    inputs = open_inputs([str(data)], None)
    summary = Summary()
    source = FileSource(inputs, None, 100_000, rejects=Rejects(None), summary=summary, stop=Stop())
    items = source.take(10, 0.1)
    assert items is not None
    assert len(items) == 10
    assert sum(summary.read) == 10
    assert source.bytes_read() < data.stat().st_size
