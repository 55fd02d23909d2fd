"""``moetrack import``: history from files, through the send stage, resumable.

::

    files ─▶ rows ─▶ validate (the library's own rules) ─▶ FileSource ─▶ Sender ─▶ settle
                          │ refused                           ▲                     │
                          ▼                                   └──── ack ◀───────────┘
                      --rejects file                             (the resume point, saved)

Each input is read as a stream of rows (a JSON line or a CSV record), so memory stays flat
however long the file. A row becomes one or more :class:`~moetrack._wire.records.Item` (an event
element's actions become one each) or a refusal, written to the rejects file as it is found.
The :class:`FileSource` hands items to the one :class:`~moetrack._pipeline.sender.Sender` in file
order; batches settle in the order they were taken, so the position after the last item of
the last acknowledged batch is where a rerun continues. That position is saved atomically
after every acknowledgement, with the rejects file's length at that point, so a rerun after
a crash (even SIGKILL) sends again at most the batch that was in flight, and writes no
refused row twice.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from .._exceptions import MoetrackError, ValidationError
from .._wire import records as _records
from .._wire.records import DEVICE, EVENT, USER, Item

if TYPE_CHECKING:
    from .._config import Config
    from .._pipeline.source import Stop

__all__ = [
    "KINDS",
    "FileSource",
    "ImportError_",
    "Input",
    "Outcome",
    "Refusal",
    "Rejects",
    "Summary",
    "dry_run",
    "open_inputs",
    "read_rows",
]

#: Index of the "kind could not be told" counters (a malformed line, an unknown type).
UNKNOWN = 3
KIND_NAMES = ("events", "users", "devices", "unknown")  # indexed by EVENT, USER, DEVICE, UNKNOWN
KINDS = {"events": EVENT, "users": USER, "devices": DEVICE}
_KIND_OF_TYPE = {"event": EVENT, "customer": USER, "device": DEVICE}

STATE_VERSION = 1
#: Bytes hashed at each end of an input to tell whether it changed since the import began.
_IDENTITY_BYTES = 64 * 1024

#: The fields of a flat track row (one event, as ``moetrack.track`` takes it).
FLAT_FIELDS = frozenset({"customer_id", "device_id"}) | _records.ACTION_FIELDS
#: CSV columns that are not attributes, per kind.
_CSV_FIELDS = {
    USER: frozenset({"customer_id"}),
    DEVICE: frozenset({"customer_id", "device_id"}),
    EVENT: FLAT_FIELDS - {"attributes"},
}
_CSV_TEXT = frozenset({"customer_id", "device_id", "action", "platform", "app_version", "push_id"})
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_WHERE = re.compile(r"line \d+ column \d+ \(char (\d+)\)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class ImportError_(Exception):  # ImportError is a builtin
    """The import cannot start or go on (a bad input, a changed file, a bad state file)."""


class Refusal(NamedTuple):
    """Why one row is not sent."""

    kind: int
    reason: str
    field: str | None
    message: str


Result = list[Item] | Refusal
#: (input index, first line, start offset, end offset, last line, result)
Row = tuple[int, int, int, int, int, Result]


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


class Input:
    """One input file: its path, format, and identity (to notice a change on resume)."""

    __slots__ = ("compressed", "format", "index", "path", "size")

    def __init__(self, index: int, path: str, kind: int | None) -> None:
        self.index = index
        self.path = os.path.abspath(path)
        name = path.lower()
        self.compressed = name.endswith(".gz")
        if self.compressed:
            name = name[:-3]
        if name.endswith((".jsonl", ".ndjson")):
            self.format = "jsonl"
        elif name.endswith(".csv"):
            self.format = "csv"
            if kind is None:
                raise ImportError_(f"{path}: a CSV file needs --kind users, events or devices")
        else:
            raise ImportError_(
                f"{path}: cannot tell the format; name it .jsonl, .ndjson or .csv (optionally .gz)"
            )
        try:
            self.size = os.stat(self.path).st_size
        except OSError as exc:
            raise ImportError_(f"{path}: {exc.strerror or exc}") from None

    def identity(self) -> dict[str, Any]:
        """Path, size and hashes of the first and last 64 KiB (mtime alone changes on copy)."""
        with open(self.path, "rb") as f:
            head = hashlib.sha256(f.read(_IDENTITY_BYTES)).hexdigest()
            f.seek(max(0, self.size - _IDENTITY_BYTES))
            tail = hashlib.sha256(f.read(_IDENTITY_BYTES)).hexdigest()
        return {"path": self.path, "size": self.size, "head": head, "tail": tail}


def open_inputs(paths: Sequence[str], kind: str | None) -> list[Input]:
    k = KINDS[kind] if kind is not None else None
    return [Input(i, p, k) for i, p in enumerate(paths)]


class _Reader:
    """An input opened for reading bytes, positioned at a decompressed offset."""

    def __init__(self, source: Input) -> None:
        self.raw: IO[bytes] = open(source.path, "rb")  # noqa: SIM115 - closed in close()
        self.stream: IO[bytes]
        if source.compressed:
            self.stream = io.BufferedReader(gzip.GzipFile(fileobj=self.raw), 1 << 16)
        else:
            self.stream = self.raw

    def seek(self, offset: int) -> None:
        if self.stream is self.raw:
            self.raw.seek(offset)
            return
        # A gzip stream is read up to the offset (there is no index to jump with).
        left = offset
        while left > 0:
            chunk = self.stream.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def _loads() -> Callable[[bytes], Any]:
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


def _refused(kind: int, exc: ValidationError) -> Refusal:
    return Refusal(kind, exc.reason, exc.field or None, str(exc))


def _jsonl_rows(
    reader: _Reader, index: int, offset: int, line: int, max_bytes: int
) -> Iterator[Row]:
    loads = _loads()
    from_element = _records.from_element
    event = _records._event
    flat_fields = FLAT_FIELDS
    kind_of_type = _KIND_OF_TYPE
    pos = offset
    for data in reader.stream:
        line += 1
        start = pos
        pos += len(data)
        raw = data[3:] if start == 0 and data.startswith(b"\xef\xbb\xbf") else data
        try:
            obj = loads(raw)
        except (ValueError, RecursionError) as exc:
            if not raw.strip():
                continue  # a blank line is no row
            message = "not valid JSON: " + _WHERE.sub(_column, str(exc))
            yield index, line, start, pos, line, Refusal(UNKNOWN, "malformed_json", None, message)
            continue
        if type(obj) is not dict:
            yield (
                index,
                line,
                start,
                pos,
                line,
                Refusal(
                    UNKNOWN, "invalid", None, f"a line must be a JSON object, got {_json_type(obj)}"
                ),
            )
            continue
        element_type = obj.get("type")
        result: Result
        try:
            if element_type is None:
                if not flat_fields.issuperset(obj):
                    extra = next(k for k in obj if k not in flat_fields)
                    raise ValidationError(extra, "is not a field of a track row", "unknown_field")
                result = [event(obj, max_bytes)]
            else:
                result = from_element(obj, max_bytes)
        except ValidationError as exc:
            if element_type is None:
                kind = EVENT
            elif isinstance(element_type, str):
                kind = kind_of_type.get(element_type, UNKNOWN)
            else:
                kind = UNKNOWN
            result = _refused(kind, exc)
        except Exception as exc:  # never stop an import for one row
            result = Refusal(UNKNOWN, "invalid", None, f"{type(exc).__name__}: {exc}")
        yield index, line, start, pos, line, result


def _column(match: re.Match[str]) -> str:
    """The parser's place in the line, as a column (its "line" counts the newline)."""
    return f"column {int(match[1]) + 1}"


def _json_type(obj: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean"}.get(
        type(obj), "null" if obj is None else "a number"
    )


class _Lines:
    """Decoded lines for ``csv.reader``, counting bytes and lines as it hands them out."""

    def __init__(self, stream: IO[bytes], offset: int, line: int) -> None:
        self._stream = stream
        self.offset = offset
        self.line = line

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._stream.readline()
        if not raw:
            raise StopIteration
        if self.offset == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
            self.offset += 3
        self.offset += len(raw)
        self.line += 1
        # Bytes that are not UTF-8 become lone surrogates: validation refuses that value,
        # naming its column, instead of the whole file failing to decode.
        return raw.decode("utf-8", "surrogateescape")


def _cell(value: str) -> str | int | float:
    """Numbers as numbers (canonical spellings only: "007" stays text), the rest as text."""
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    return value


def _csv_rows(
    reader: _Reader, index: int, offset: int, line: int, *, kind: int, max_bytes: int
) -> Iterator[Row]:
    lines = _Lines(reader.stream, 0, 0)
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None:
        return
    header = [name.strip() for name in header]
    if "customer_id" not in header:
        raise ImportError_(f"{reader.raw.name}: the CSV header has no customer_id column")
    if kind == EVENT and "action" not in header:
        raise ImportError_(f"{reader.raw.name}: a CSV of events needs an action column")
    if offset > lines.offset:
        reader.seek(offset - lines.offset)
        lines.offset, lines.line = offset, line
    fields = _CSV_FIELDS[kind]
    width = len(header)
    from_element = _records.from_element
    while True:
        start, first = lines.offset, lines.line + 1
        try:
            cells = next(rows, None)
        except csv.Error as exc:
            message = f"not valid CSV: {exc}"
            yield (
                index,
                first,
                start,
                lines.offset,
                lines.line,
                Refusal(kind, "malformed_csv", None, message),
            )
            continue
        if cells is None:
            return
        if not cells:
            continue
        result: Result
        if len(cells) > width:
            result = Refusal(
                kind,
                "malformed_csv",
                None,
                f"the row has {len(cells)} cells, the header names {width} columns",
            )
        else:
            element: dict[str, Any] = {}
            attributes: dict[str, Any] = {}
            for name, value in zip(header, cells, strict=False):
                if value == "":
                    continue  # an empty cell is left out
                if name in fields:
                    element[name] = value if name in _CSV_TEXT else _cell(value)
                else:
                    attributes[name] = value if name in _CSV_TEXT else _cell(value)
            try:
                if kind == EVENT:
                    if attributes:
                        element["attributes"] = attributes
                    result = [_records._event(element, max_bytes)]
                else:
                    element["type"] = "customer" if kind == USER else "device"
                    element["attributes"] = attributes
                    result = from_element(element, max_bytes)
            except ValidationError as exc:
                result = _refused(kind, exc)
        yield index, first, start, lines.offset, lines.line, result


def read_rows(
    inputs: Sequence[Input],
    kind: str | None,
    max_bytes: int,
    position: tuple[int, int, int] = (0, 0, 0),
    on_open: Callable[[_Reader | None], None] | None = None,
) -> Iterator[Row]:
    """Every row of every input from ``position`` (input, byte offset, lines before it), in
    order."""
    first, offset, line = position
    k = KINDS[kind] if kind is not None else EVENT
    for source in inputs[first:]:
        reader = _Reader(source)
        if on_open is not None:
            on_open(reader)
        try:
            if source.format == "jsonl":
                if offset:
                    reader.seek(offset)
                yield from _jsonl_rows(reader, source.index, offset, line, max_bytes)
            else:
                yield from _csv_rows(
                    reader, source.index, offset, line, kind=k, max_bytes=max_bytes
                )
        finally:
            reader.close()
        offset = line = 0
    if on_open is not None:
        on_open(None)


# ---------------------------------------------------------------------------------------------
# refused rows
# ---------------------------------------------------------------------------------------------


class Rejects:
    """The ``--rejects`` file: one JSON line per refused row, appended as they are found.

    ``offset`` is its length in bytes; a resumed import truncates it back to the length it
    had at the saved position, so no refused row is written twice.
    """

    def __init__(self, path: str | None, offset: int = 0, *, show_file: bool = False) -> None:
        self.path = None if path is None else os.path.abspath(path)
        self.show_file = show_file
        self._file: IO[bytes] | None = None
        self._dirty = False
        self.offset = 0
        if self.path is not None:
            f = open(self.path, "a+b")  # noqa: SIM115 - closed in close()
            f.seek(0, os.SEEK_END)
            self.offset = min(offset, f.tell())
            f.truncate(self.offset)
            f.seek(self.offset)
            self._file = f

    def write(self, source: Input, line: int, refusal: Refusal) -> None:
        if self._file is None:
            return
        record: dict[str, Any] = {
            "line": line,
            "reason": refusal.reason,
            "field": refusal.field,
            "message": refusal.message,
        }
        if self.show_file:
            record["file"] = source.path
        data = json.dumps(record, ensure_ascii=True).encode("ascii") + b"\n"
        self._file.write(data)
        self.offset += len(data)
        self._dirty = True

    def sync(self) -> None:
        """On disk before a state that counts these lines is saved."""
        if self._file is not None and self._dirty:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._dirty = False

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None


# ---------------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------------


def default_state_path(inputs: Sequence[Input]) -> str:
    return inputs[0].path + ".moetrack-import"


def load_state(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ImportError_(
            f"cannot read the resume state {path}: {exc}; --restart starts over"
        ) from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ImportError_(f"{path} is not a resume state of this version; --restart starts over")
    return data


def save_state(path: str, data: Mapping[str, Any]) -> None:
    """Write ``path`` so that a crash at any moment leaves the old or the new state."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(json.dumps(data, indent=1).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def check_resume(
    state: Mapping[str, Any], identities: list[dict[str, Any]], kind: str | None, config: Config
) -> None:
    """Refuse to continue a state that belongs to other files, another app or endpoint."""
    saved = state.get("inputs")
    if not isinstance(saved, list) or [s.get("path") for s in saved] != [
        i["path"] for i in identities
    ]:
        raise ImportError_(
            "the resume state names other input files; --restart imports these from the start"
        )
    for was, now in zip(saved, identities, strict=True):
        if was != now:
            raise ImportError_(
                f"{now['path']} changed since the import began; --restart imports it from the start"
            )
    if state.get("kind") != kind:
        raise ImportError_("the import began with another --kind; --restart starts over")
    if state.get("app_id") != config.app_id or state.get("endpoint") != config.base_url:
        raise ImportError_("the import began for another app id or endpoint; --restart starts over")


# ---------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------


class Summary:
    """Per kind: records read and sent, rows refused by reason (an event element with three
    actions is three events; a refused row counts once)."""

    def __init__(self) -> None:
        self.read = [0, 0, 0, 0]
        self.sent = [0, 0, 0, 0]
        #: (kind, reason) -> rows. Replaced, never changed in place: marks keep snapshots.
        self.refused: dict[tuple[int, str], int] = {}

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def refuse(self, kind: int, reason: str) -> None:
        refused = dict(self.refused)
        refused[(kind, reason)] = refused.get((kind, reason), 0) + 1
        self.refused = refused

    def refused_by_kind(self, kind: int) -> dict[str, int]:
        return {r: n for (k, r), n in sorted(self.refused.items()) if k == kind}

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": {KIND_NAMES[k]: n for k, n in enumerate(self.sent) if n},
            "refused": {
                KIND_NAMES[k]: self.refused_by_kind(k) for k in range(4) if self.refused_by_kind(k)
            },
        }

    @staticmethod
    def refused_from_json(data: Mapping[str, Any]) -> dict[tuple[int, str], int]:
        out: dict[tuple[int, str], int] = {}
        for name, reasons in (data.get("refused") or {}).items():
            for reason, n in reasons.items():
                out[(KIND_NAMES.index(name), reason)] = int(n)
        return out

    def table(self, *, dry_run: bool = False) -> list[list[str]]:
        """Rows of the summary table, header first."""
        rows = [["kind", "read", "valid" if dry_run else "sent", "refused", "refused by reason"]]
        totals = [0, 0, 0]
        for k in (USER, DEVICE, EVENT, UNKNOWN):
            refused = self.refused_by_kind(k)
            n_refused = sum(refused.values())
            if not (self.read[k] or self.sent[k] or n_refused):
                continue
            reasons = ", ".join(f"{r} {n:,}" for r, n in refused.items())
            rows.append(
                [KIND_NAMES[k], f"{self.read[k]:,}", f"{self.sent[k]:,}", f"{n_refused:,}", reasons]
            )
            totals[0] += self.read[k]
            totals[1] += self.sent[k]
            totals[2] += n_refused
        rows.append(["total", *(f"{n:,}" for n in totals), ""])
        return rows


def plain_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(widths[i]) if i in (0, len(row) - 1) else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------------------------


class BytesRead:
    """Input bytes read so far (compressed bytes for a .gz): ``read_rows``'s ``on_open``."""

    def __init__(self, inputs: Sequence[Input], first: int) -> None:
        self._inputs = inputs
        self._done = sum(i.size for i in inputs[:first])
        self._current = first
        self._reader: _Reader | None = None

    def opened(self, reader: _Reader | None) -> None:
        if self._reader is not None:
            self._done += self._inputs[self._current].size
            self._current += 1
        self._reader = reader

    def __call__(self) -> int:
        reader = self._reader
        if reader is None:
            return self._done
        try:
            return self._done + reader.raw.tell()
        except (OSError, ValueError):  # closed meanwhile
            return self._done


class _Mark:
    """Where one row's items came from, shared by them (their ``ref`` is (mark, index))."""

    __slots__ = ("count", "end", "end_line", "file", "line", "refused", "rejects_offset", "start")

    def __init__(  # noqa: PLR0917 - one per row: positional is cheaper
        self,
        file: int,
        line: int,
        start: int,
        end: int,
        end_line: int,
        count: int,
        rejects_offset: int,
        refused: dict[tuple[int, str], int],
    ) -> None:
        self.file = file
        self.line = line
        self.start = start
        self.end = end
        self.end_line = end_line
        self.count = count
        #: The rejects file's length and the refusals counted before this row.
        self.rejects_offset = rejects_offset
        self.refused = refused


class Outcome(NamedTuple):
    status: int  # 0 all sent, 1 some refused, 2 could not finish
    reason: str | None


class FileSource:
    """The inputs as a :class:`~moetrack._pipeline.source.Source` whose acknowledgement is the
    resume point (saved after every ``ack``)."""

    def __init__(
        self,
        inputs: Sequence[Input],
        kind: str | None,
        max_bytes: int,
        *,
        rejects: Rejects,
        summary: Summary,
        stop: Stop,
        state_path: str | None = None,
        state: dict[str, Any] | None = None,
        position: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> None:
        self.inputs = inputs
        self.rejects = rejects
        self.summary = summary
        self.stop = stop
        self.state_path = state_path
        self.state = state if state is not None else {}
        #: Input bytes read so far, for the progress display.
        self.bytes_read = BytesRead(inputs, position[0])
        self._rows = read_rows(inputs, kind, max_bytes, position[:3], self.bytes_read.opened)
        #: Actions of the row at the resume position that were sent already.
        self._skip = position[3]
        self._pending: list[Item] = []
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.exhausted = False
        self.taken = 0
        self.settled = 0
        self.error: MoetrackError | None = None

    # -- the Source protocol ---------------------------------------------------------------

    def take(self, limit: int, timeout: float) -> list[Item] | None:
        if self.stop.requested or self.error is not None:
            return None
        out = self._pending
        read = self.summary.read
        rows = self._rows
        while len(out) < limit:
            row = next(rows, None)
            if row is None:
                self.exhausted = True
                break
            index, line, start, end, end_line, result = row
            if isinstance(result, list):
                mark = _Mark(
                    index,
                    line,
                    start,
                    end,
                    end_line,
                    len(result),
                    self.rejects.offset,
                    self.summary.refused,
                )
                first, self._skip = self._skip, 0  # actions of a resumed row already sent
                if first:
                    result = result[first:]
                for i, item in enumerate(result, first):
                    item.ref = (mark, i)
                    read[item.kind] += 1
                out.extend(result)
            else:
                self._refuse(index, line, result)
        self._pending = out[limit:]
        out = out[:limit]
        self.taken += len(out)
        return out or (None if self.exhausted else [])

    def _refuse(self, index: int, line: int, refusal: Refusal) -> None:
        self.summary.read[refusal.kind] += 1
        self.summary.refuse(refusal.kind, refusal.reason)
        self.rejects.write(self.inputs[index], line, refusal)

    def due(self) -> bool:
        return self.exhausted or self.stop.requested

    def ack(self, items: Sequence[Item]) -> None:
        sent = self.summary.sent
        for item in items:
            sent[item.kind] += 1
        self.settled += len(items)
        if not items or self.error is not None:
            return  # after a failure the position stays before the failed batch
        ref: tuple[_Mark, int] = items[-1].ref  # type: ignore[assignment]
        mark, i = ref
        if i == mark.count - 1:
            position = [mark.file, mark.end, mark.end_line, 0]
        else:
            position = [mark.file, mark.start, mark.line - 1, i + 1]
        self._save(position, mark.rejects_offset, mark.refused)

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        self.settled += len(items)
        if self.error is None:
            self.error = error
        self.stop.request(drain=False)
        self._wake.set()

    def release(self, items: Sequence[Item]) -> None:
        self.settled += len(items)

    def wait(self, seconds: float) -> None:
        self._wake.wait(seconds)

    # -- stopping and the end ----------------------------------------------------------------

    def interrupt(self) -> None:
        """Finish the batch in flight, then stop (Ctrl-C, SIGTERM)."""
        self.stop.request(drain=False)
        self._wake.set()

    @property
    def complete(self) -> bool:
        """Every row was read and every item taken was acknowledged."""
        return (
            self.exhausted
            and not self._pending
            and self.error is None
            and not self.stop.requested
            and self.settled == self.taken
        )

    def finish(self) -> None:
        """Everything was read and acknowledged: the state says so."""
        last = self.inputs[-1]
        self._save(
            [last.index, -1, -1, 0], self.rejects.offset, self.summary.refused, complete=True
        )

    def _save(
        self,
        position: list[int],
        rejects_offset: int,
        refused: dict[tuple[int, str], int],
        *,
        complete: bool = False,
    ) -> None:
        if self.state_path is None:
            return
        with self._lock:
            self.rejects.sync()
            snapshot = Summary()
            snapshot.sent = self.summary.sent
            snapshot.refused = refused
            self.state.update(
                position=position,
                rejects_offset=rejects_offset,
                complete=complete,
                updated=time.time(),
                **snapshot.to_json(),
            )
            save_state(self.state_path, self.state)


def dry_run(
    inputs: Sequence[Input],
    kind: str | None,
    max_bytes: int,
    *,
    rejects: Rejects,
    summary: Summary,
    progress: Callable[[], None] | None = None,
    on_open: Callable[[_Reader | None], None] | None = None,
) -> None:
    """Read and validate every row; count; write refusals; send nothing, save nothing."""
    read = summary.read
    sent = summary.sent
    rows = read_rows(inputs, kind, max_bytes, on_open=on_open)
    for n, (index, line, _start, _end, _end_line, result) in enumerate(rows, 1):
        if isinstance(result, list):
            for item in result:
                k = item.kind
                read[k] += 1
                sent[k] += 1
        else:
            read[result.kind] += 1
            summary.refuse(result.kind, result.reason)
            rejects.write(inputs[index], line, result)
        if progress is not None and not n & 0x3FFF:
            progress()


def _now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def new_state(
    identities: list[dict[str, Any]], kind: str | None, config: Config, rejects: Rejects
) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "started": _now_text(),
        "inputs": identities,
        "kind": kind,
        "app_id": config.app_id,
        "endpoint": config.base_url,
        "rejects": rejects.path,
        "rejects_offset": 0,
        "position": [0, 0, 0, 0],
        "complete": False,
    }


def write_err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Rows read, sent and refused, the rate, and the ETA at the quota.

    On a terminal (and with ``rich`` installed: ``moetrack[import]``) a live display on
    stderr; otherwise a plain line on stderr every ``interval`` seconds.
    """

    def __init__(
        self,
        summary: Summary,
        bytes_read: Callable[[], int],
        total_bytes: int,
        *,
        config: Config | None,
        interval: float,
        live: bool,
        dry_run: bool,
    ) -> None:
        self.summary = summary
        self.bytes_read = bytes_read
        self.total_bytes = total_bytes
        self.config = config
        self.interval = interval
        self.dry_run = dry_run
        self.started = time.monotonic()
        self._last_line = self.started
        self._base = list(summary.sent)
        self._first = self._count()
        self._live: Any = None
        if live:
            self._live = self._start_live()

    def _count(self) -> int:
        return sum(self.summary.read) if self.dry_run else sum(self.summary.sent)

    def _start_live(self) -> Any:
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:
            return None
        live = Live(
            get_renderable=self._renderable,
            console=Console(stderr=True),
            refresh_per_second=4,
            transient=False,
        )
        live.start()
        return live

    def _renderable(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        done = min(self.bytes_read(), self.total_bytes)
        # One row each: a bar ends no line of its own, and the line wraps on a narrow terminal
        # instead of being cut.
        grid = Table.grid()
        grid.add_row(ProgressBar(total=max(1, self.total_bytes), completed=done, width=50))
        grid.add_row(Text(self.line()))
        return grid

    def rate(self) -> float:
        """Records per second since this run began (pacing sends in bursts: an average over
        the run is what the quota allows)."""
        elapsed = time.monotonic() - self.started
        return (self._count() - self._first) / elapsed if elapsed > 0 else 0.0

    def eta(self, rate: float) -> float | None:
        """Seconds left: the rest of the input, estimated from the bytes read, at the quota
        (or at the current rate when there is none)."""
        fraction = self.bytes_read() / self.total_bytes if self.total_bytes else 1.0
        if fraction <= 0:
            return None
        s = self.summary
        events_left = max(0.0, s.read[EVENT] / fraction - s.sent[EVENT])
        users_left = max(
            0.0, (s.read[USER] + s.read[DEVICE]) / fraction - s.sent[USER] - s.sent[DEVICE]
        )
        if self.dry_run:
            left = sum(s.read) / fraction - sum(s.read)
            return left / rate if rate > 0 else None
        config = self.config
        elapsed = time.monotonic() - self.started
        waits = []
        if config is not None:
            window = config.rate_limit_window
            for left, sent, quota in (
                (events_left, s.sent[EVENT] - self._base[EVENT], config.events_per_minute),
                (
                    users_left,
                    s.sent[USER] + s.sent[DEVICE] - self._base[USER] - self._base[DEVICE],
                    config.users_per_minute,
                ),
            ):
                if quota and left:
                    # A sliding window lets one quota go at once, then one more per window.
                    windows = math.ceil((sent + left) / quota) - 1
                    waits.append(max(0.0, windows * window - elapsed))
        if waits:
            return max(waits)
        return (events_left + users_left) / rate if rate > 0 else None

    def line(self) -> str:
        s = self.summary
        rate = self.rate()
        eta = self.eta(rate)
        fraction = self.bytes_read() / self.total_bytes if self.total_bytes else 1.0
        verb = "valid" if self.dry_run else "sent"
        quota = "" if self.dry_run or self.config is None else " at the quota"
        return (
            f"read {sum(s.read):,} ({min(fraction, 1.0):.0%}), {verb} {sum(s.sent):,}, "
            f"refused {s.refused_total:,}, {rate:,.0f}/s, "
            f"ETA {'?' if eta is None else _duration(eta)}{quota}"
        )

    def update(self) -> None:
        if self._live is not None:
            return  # rich refreshes on its own
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            write_err(f"moetrack import: {self.line()}")

    def close(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None


def print_summary(summary: Summary, *, dry_run: bool, fancy: bool) -> None:
    rows = summary.table(dry_run=dry_run)
    if fancy:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            table = Table(title="dry run: nothing sent" if dry_run else None)
            for i, name in enumerate(rows[0]):
                table.add_column(name, justify="left" if i in (0, 4) else "right")
            for row in rows[1:]:
                table.add_row(*row, style="bold" if row[0] == "total" else None)
            Console().print(table)
            return
    if dry_run:
        print("dry run: nothing sent")
    print(plain_table(rows), flush=True)


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------


class ImportOptions(NamedTuple):
    files: Sequence[str]
    kind: str | None = None
    dry_run: bool = False
    rejects: str | None = None
    state: str | None = None
    restart: bool = False
    progress_interval: float = 5.0
    #: None: live display when stderr is a terminal.
    live: bool | None = None


def run(options: ImportOptions, config: Config | None) -> int:
    """Run one import; returns the exit status (0 all sent, 1 some refused, 2 not finished)."""
    fancy = sys.stdout.isatty()
    live = sys.stderr.isatty() if options.live is None else options.live
    try:
        inputs = open_inputs(options.files, options.kind)
        if options.dry_run:
            return _run_dry(inputs, options, live, fancy)
        assert config is not None
        return _run_send(inputs, options, config, live, fancy)
    except ImportError_ as exc:
        write_err(f"moetrack import: {exc}")
        return 2


def _run_dry(inputs: list[Input], options: ImportOptions, live: bool, fancy: bool) -> int:
    from .._wire.spec import MAX_BODY_BYTES

    summary = Summary()
    rejects = Rejects(options.rejects, 0, show_file=len(inputs) > 1)
    bytes_read = BytesRead(inputs, 0)
    progress = Progress(
        summary,
        bytes_read,
        sum(i.size for i in inputs),
        config=None,
        interval=options.progress_interval,
        live=live,
        dry_run=True,
    )
    try:
        dry_run(
            inputs,
            options.kind,
            MAX_BODY_BYTES,
            rejects=rejects,
            summary=summary,
            progress=progress.update,
            on_open=bytes_read.opened,
        )
    finally:
        progress.close()
        rejects.close()
    print_summary(summary, dry_run=True, fancy=fancy)
    return 1 if summary.refused_total else 0


def _run_send(
    inputs: list[Input], options: ImportOptions, config: Config, live: bool, fancy: bool
) -> int:
    from .._pipeline.source import Stop
    from .._report import Reporter
    from .._wire.transport import HTTPTransport

    if not config.has_credentials:
        raise ImportError_(
            "needs credentials: --app-id and --api-key, or MOETRACK_APP_ID and MOETRACK_API_KEY"
        )
    state_path = os.path.abspath(options.state or default_state_path(inputs))
    identities = [i.identity() for i in inputs]
    state = None if options.restart else load_state(state_path)
    summary = Summary()
    position = (0, 0, 0, 0)
    rejects_offset = 0
    if state is not None:
        check_resume(state, identities, options.kind, config)
        summary.sent = [0, 0, 0, 0]
        for name, n in (state.get("sent") or {}).items():
            summary.sent[KIND_NAMES.index(name)] = int(n)
        summary.refused = Summary.refused_from_json(state)
        for (k, _), n in summary.refused.items():
            summary.read[k] += n
        for k, n in enumerate(summary.sent):
            summary.read[k] += n
        if state.get("complete"):
            write_err(
                f"moetrack import: already imported (state {state_path}); --restart imports again"
            )
            print_summary(summary, dry_run=False, fancy=fancy)
            return 1 if summary.refused_total else 0
        raw = state.get("position") or [0, 0, 0, 0]
        position = (int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]))
        rejects_offset = int(state.get("rejects_offset") or 0)
        if state.get("rejects") != (
            None if options.rejects is None else os.path.abspath(options.rejects)
        ):
            raise ImportError_(
                "the import began with another --rejects file; give the same, or --restart"
            )
        where = inputs[position[0]]
        write_err(
            f"moetrack import: resuming {os.path.basename(where.path)} after line "
            f"{position[2]:,} ({sum(summary.sent):,} sent before)"
        )
    rejects = Rejects(options.rejects, rejects_offset, show_file=len(inputs) > 1)
    if state is None:
        state = new_state(identities, options.kind, config, rejects)
        save_state(state_path, state)
    stop = Stop()
    source = FileSource(
        inputs,
        options.kind,
        config.max_batch_bytes,
        rejects=rejects,
        summary=summary,
        stop=stop,
        state_path=state_path,
        state=state,
        position=position,
    )
    try:
        from .._pipeline.sender import Sender

        reporter = Reporter(source, None, config.secrets())
        sender = Sender(config, config.transport or HTTPTransport(), reporter)
    except ImportError as exc:  # the shared limiter's extra is missing
        rejects.close()
        raise ImportError_(f"cannot start: {exc}") from None
    progress = Progress(
        summary,
        source.bytes_read,
        sum(i.size for i in inputs),
        config=config,
        interval=options.progress_interval,
        live=live,
        dry_run=False,
    )
    crashed: list[BaseException] = []

    def send() -> None:
        try:
            sender.run(source, stop)
        except BaseException as exc:  # reported below, on the main thread
            crashed.append(exc)

    thread = threading.Thread(target=send, name="moetrack-import", daemon=True)
    restore = _on_signals(source)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            progress.update()
            if stop.expired():
                break  # a second signal: the answer in flight is not waited for
    finally:
        restore()
        progress.close()
        if not thread.is_alive():  # else it still holds both; the process is ending anyway
            sender.close()
            reporter.close()
    reason: str | None = None
    if crashed:
        reason = f"{type(crashed[0]).__name__}: {crashed[0]}"
    elif source.error is not None:
        reason = str(source.error)
    elif source.complete:
        source.finish()
    else:
        reason = "interrupted"
    rejects.close()
    print_summary(summary, dry_run=False, fancy=fancy)
    if reason is not None:
        write_err(
            f"moetrack import: could not finish: {reason}\n"
            f"moetrack import: run the same command again to continue (state {state_path})"
        )
        return 2
    return 1 if summary.refused_total else 0


def _on_signals(source: FileSource) -> Callable[[], None]:
    """Ctrl-C and SIGTERM: finish the batch in flight, save, and stop; a second one stops
    at once (what was in flight is sent again by the next run)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        if source.stop.requested:
            source.stop.deadline = time.monotonic()
            write_err("moetrack import: stopping now; the next run sends the request in flight")
            return
        write_err("moetrack import: stopping after the request in flight")
        source.interrupt()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
