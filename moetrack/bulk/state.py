"""What an import keeps on disk: the resume state file and the ``--rejects`` file.

The state file says where the import stands (the position after the last acknowledged row,
the counts so far, the rejects file's length at that point) and which inputs, kind, app and
endpoint it belongs to. It is replaced atomically, so a crash at any moment leaves the old
or the new state. The rejects file gets one JSON line per refused row.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from .inputs import ImportError_, Input, Refusal

if TYPE_CHECKING:
    from .._config import Config

__all__ = [
    "STATE_VERSION",
    "Rejects",
    "check_resume",
    "default_state_path",
    "load_state",
    "new_state",
    "save_state",
]

STATE_VERSION = 1


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
        if refusal.status is not None:
            record["status"] = refusal.status
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
