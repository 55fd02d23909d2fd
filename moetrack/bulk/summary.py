"""Counting an import, and the summary table printed at its end.

Per kind: records read and sent, and rows refused by reason. The counts are saved in the
state file, so the summary of a resumed import covers every run of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._wire.records import DEVICE, EVENT, USER
from .inputs import KIND_NAMES, UNKNOWN

__all__ = ["Summary", "plain_table", "print_summary"]


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
