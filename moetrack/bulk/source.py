"""The inputs as the Source the sender reads: :class:`FileSource`, and the dry run.

::

    files ─▶ rows ─▶ validate (the library's own rules) ─▶ FileSource ─▶ Sender ─▶ settle
                          │ refused                           ▲                     │
                          ▼                                   └──── ack ◀───────────┘
                      --rejects file                             (the resume point, saved)

The :class:`FileSource` hands items to the one :class:`~moetrack._pipeline.sender.Sender` in
file order; batches settle in the order they were taken, so the position after the last
item of the last acknowledged batch is where a rerun continues. That position is saved
atomically after every acknowledgement, with the rejects file's length at that point, so a
rerun after a crash (even SIGKILL) sends again at most the batch that was in flight, and
writes no refused row twice. For that, the rejects file holds only rows before the saved
position: a row refused while rows before it are still in flight is written once they
settle.

A batch the server refuses for good for its rows (:func:`refused_for_the_rows`) is not the
end: ``fail`` sends it again at once in halves of whole rows, through the run's sender,
down to single rows; a row refused alone is written to the rejects file with the server's
status and message, and the position passes it as if it were acknowledged. Any other
refusal stops the import, the position before the refused batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import APIError, DeliveryError, MoetrackError
from .._wire.records import Item
from .inputs import Input, Reader, Refusal, read_rows
from .progress import write_err
from .state import Rejects, save_state
from .summary import Summary

if TYPE_CHECKING:
    from .._pipeline.source import Stop

__all__ = ["BytesRead", "FileSource", "dry_run", "refused_for_the_rows"]

#: The 400s of the API's error table that may be about one row of the batch: a field the
#: server wants otherwise, or a body it cannot decode. The others (a blacklisted or unknown
#: app id, a missing header, an empty body) and a 400 the table does not name are about the
#: account or the request: no row is blamed for them.
_ROW_400 = frozenset({"missingattributeerror", "malformedjson"})


def refused_for_the_rows(error: APIError) -> bool:
    """Whether a refusal for good may be about some rows of the batch, so that sending them
    again in smaller batches finds which: a 400 of :data:`_ROW_400`, a 413 (which the sender
    settles as a failure only for a single element), a 422."""
    if error.status == 400:
        return error.type.replace(" ", "").lower() in _ROW_400
    return error.status in (413, 422)


class BytesRead:
    """Input bytes read so far (compressed bytes for a .gz): ``read_rows``'s ``on_open``."""

    def __init__(self, inputs: Sequence[Input], first: int) -> None:
        self._inputs = inputs
        self._done = sum(i.size for i in inputs[:first])
        self._current = first
        self._reader: Reader | None = None

    def opened(self, reader: Reader | None) -> None:
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

    __slots__ = ("before", "count", "end", "end_line", "file", "line", "refused", "start")

    def __init__(  # noqa: PLR0917 - one per row: positional is cheaper
        self,
        file: int,
        line: int,
        start: int,
        end: int,
        end_line: int,
        count: int,
        before: list[tuple[int, int, Refusal]] | None,
    ) -> None:
        self.file = file
        self.line = line
        self.start = start
        self.end = end
        self.end_line = end_line
        self.count = count
        #: Rows refused before this one, written to the rejects file when this row settles
        #: first (so the file holds only rows before the saved position, in file order).
        self.before = before
        #: The server refused this row (it is written to the rejects file once).
        self.refused = False


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
        #: Rows refused since the last row with items, not written yet (see :class:`_Mark`).
        self._waiting: list[tuple[int, int, Refusal]] | None = None
        #: Sends items again at once, settling them here (a batch refused for its rows is
        #: sent again in halves); set by the run to its sender's ``send_all``.
        self.resend: Callable[[list[Item]], None] | None = None
        self._splitting = 0  # how deep in halves of a refused batch
        #: The pacing window to save with each state (:mod:`moetrack.bulk.pacing`).
        self.pacing: Callable[[], dict[str, Any]] | None = None

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
                mark = _Mark(index, line, start, end, end_line, len(result), self._waiting)
                self._waiting = None
                first, self._skip = self._skip, 0  # actions of a resumed row already sent
                if first:
                    result = result[first:]
                for i, item in enumerate(result, first):
                    item.ref = (mark, i)
                    read[item.kind] += 1
                out.extend(result)
            else:
                read[result.kind] += 1
                if out or self.taken != self.settled:
                    # Rows before it are still to settle: it is written after them.
                    if self._waiting is None:
                        self._waiting = []
                    self._waiting.append((index, line, result))
                else:
                    self._refuse(index, line, result)
        self._pending = out[limit:]
        out = out[:limit]
        self.taken += len(out)
        return out or (None if self.exhausted else [])

    def _refuse(self, index: int, line: int, refusal: Refusal) -> None:
        self.summary.refuse(refusal.kind, refusal.reason)
        self.rejects.write(self.inputs[index], line, refusal)

    def _write_before(self, mark: _Mark) -> None:
        """The rows refused before ``mark``'s row, once it settles."""
        before, mark.before = mark.before, None
        for index, line, refusal in before or ():
            self._refuse(index, line, refusal)

    def _settle_through(self, items: Sequence[Item]) -> None:
        """Save the position after the last of ``items`` (acknowledged or refused)."""
        ref: tuple[_Mark, int] = items[-1].ref  # type: ignore[assignment]
        mark, i = ref
        if i == mark.count - 1:
            position = [mark.file, mark.end, mark.end_line, 0]
        else:
            position = [mark.file, mark.start, mark.line - 1, i + 1]
        self._save(position)

    def due(self) -> bool:
        return self.exhausted or self.stop.requested

    def ack(self, items: Sequence[Item]) -> None:
        sent = self.summary.sent
        for item in items:
            sent[item.kind] += 1
        self.settled += len(items)
        if not items or self.error is not None:
            return  # after a failure the position stays before the failed batch
        for item in items:
            mark: _Mark = item.ref[0]  # type: ignore[index]
            if mark.before is not None:
                self._write_before(mark)
        self._settle_through(items)

    def fail(self, items: Sequence[Item], error: MoetrackError, reason: str | None = None) -> None:
        cause = error.cause if isinstance(error, DeliveryError) else error
        if (
            items
            and self.resend is not None
            and self.error is None
            and isinstance(cause, APIError)
            and refused_for_the_rows(cause)
        ):
            self._split(list(items), cause)
            return
        self.settled += len(items)
        if self.error is None:
            self.error = error
        self.stop.request(drain=False)
        self._wake.set()

    def _split(self, items: list[Item], cause: APIError) -> None:
        """A batch refused for its rows: send it again in halves (whole rows each), down to
        single rows; a single row refused is written to the rejects file and passed."""
        rows: list[list[Item]] = []
        for item in items:
            if rows and rows[-1][0].ref[0] is item.ref[0]:  # type: ignore[index]
                rows[-1].append(item)
            else:
                rows.append([item])
        if len(rows) == 1:
            self._refused_by_server(items, cause)
            return
        assert self.resend is not None
        if not self._splitting:
            write_err(
                f"moetrack import: the server refused a batch of {len(rows):,} rows ({cause}); "
                "sending them again in smaller batches to find the rows it refuses"
            )
        half = len(rows) // 2
        first = [item for row in rows[:half] for item in row]
        second = [item for row in rows[half:] for item in row]
        self._splitting += 1
        try:
            self.resend(first)
            if self.stop.expired() or (self.stop.requested and not self.stop.drain):
                self.release(second)  # stopping: the rerun sends them
                return
            self.resend(second)
        finally:
            self._splitting -= 1

    def _refused_by_server(self, items: list[Item], cause: APIError) -> None:
        self.settled += len(items)
        mark: _Mark = items[0].ref[0]  # type: ignore[index]
        self._write_before(mark)
        if not mark.refused:
            mark.refused = True
            kind = items[0].kind
            self._refuse(
                mark.file,
                mark.line,
                Refusal(kind, "refused_by_server", None, str(cause), cause.status),
            )
        self._settle_through(items)

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
        waiting, self._waiting = self._waiting, None
        for index, line, refusal in waiting or ():
            self._refuse(index, line, refusal)
        last = self.inputs[-1]
        self._save([last.index, -1, -1, 0], complete=True)

    def _save(self, position: list[int], *, complete: bool = False) -> None:
        """The position, with the rejects file and the counts as they stand: only rows before
        the position are in the rejects file (see :class:`_Mark`)."""
        if self.state_path is None:
            return
        with self._lock:
            self.rejects.sync()
            self.state.update(
                position=position,
                rejects_offset=self.rejects.offset,
                complete=complete,
                updated=time.time(),
                **self.summary.to_json(),
            )
            if self.pacing is not None:
                self.state["pacing"] = self.pacing()
            save_state(self.state_path, self.state)

    def save_pacing(self, pacing: dict[str, Any]) -> None:
        """The pacing window changed (a request is about to go): save it with the state as
        it stands."""
        if self.state_path is None:
            return
        with self._lock:
            self.state["pacing"] = pacing
            save_state(self.state_path, self.state)


def dry_run(
    inputs: Sequence[Input],
    kind: str | None,
    max_bytes: int,
    *,
    rejects: Rejects,
    summary: Summary,
    progress: Callable[[], None] | None = None,
    on_open: Callable[[Reader | None], None] | None = None,
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
