"""What an import shows while it runs: a live display on a terminal (with ``rich``, the
``moetrack[import]`` extra), plain progress lines on stderr otherwise.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._wire.records import DEVICE, EVENT, USER
from .summary import Summary

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["Progress", "write_err"]


def write_err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


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
