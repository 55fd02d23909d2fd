"""Reading the inputs: JSON lines (.jsonl, .ndjson) and CSV, each optionally gzipped.

Each input is read as a stream of rows (a JSON line or a CSV record), so memory stays flat
however long the file. A row becomes one or more :class:`~moetrack._wire.records.Item` (an
event element's actions become one each) or a :class:`Refusal`. Every row carries its line
numbers and its byte offsets in the (decompressed) input, which is what a resumed import
seeks to.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, NamedTuple

from .._exceptions import ValidationError
from .._wire import records as _records
from .._wire.records import DEVICE, EVENT, USER, Item

__all__ = [
    "KINDS",
    "KIND_NAMES",
    "UNKNOWN",
    "ImportError_",
    "Input",
    "Reader",
    "Refusal",
    "Row",
    "open_inputs",
    "read_rows",
]

#: Index of the "kind could not be told" counters (a malformed line, an unknown type).
UNKNOWN = 3
KIND_NAMES = ("events", "users", "devices", "unknown")  # indexed by EVENT, USER, DEVICE, UNKNOWN
KINDS = {"events": EVENT, "users": USER, "devices": DEVICE}
_KIND_OF_TYPE = {"event": EVENT, "customer": USER, "device": DEVICE}

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
    #: The server's status, when the server refused the row.
    status: int | None = None


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


class Reader:
    """An input opened for reading bytes, positioned at a decompressed offset."""

    def __init__(self, source: Input) -> None:
        self.raw: IO[bytes] = open(source.path, "rb")  # noqa: SIM115 - closed in close()
        self.stream: IO[bytes]
        if source.compressed:
            self.stream = io.BufferedReader(gzip.GzipFile(fileobj=self.raw), 1 << 16)
        else:
            self.stream = self.raw

    def seek(self, offset: int, at: int = 0) -> None:
        """Go to the decompressed byte ``offset``, the stream being at ``at`` now."""
        if self.stream is self.raw:
            self.raw.seek(offset)
            return
        # A gzip stream is read up to the offset (there is no index to jump with).
        left = offset - at
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
    reader: Reader, index: int, offset: int, line: int, max_bytes: int
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
    reader: Reader, index: int, offset: int, line: int, *, kind: int, max_bytes: int
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
        reader.seek(offset, lines.offset)
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
    on_open: Callable[[Reader | None], None] | None = None,
) -> Iterator[Row]:
    """Every row of every input from ``position`` (input, byte offset, lines before it), in
    order."""
    first, offset, line = position
    k = KINDS[kind] if kind is not None else EVENT
    for source in inputs[first:]:
        reader = Reader(source)
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
