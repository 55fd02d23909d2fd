"""Letting the application's threads run between slices of the pipeline's own work.

A thread that wants the interpreter while another runs Python waits for the switch interval
(5 ms by default) before it asks for it. A request thread that wakes while the worker
prepares or packs a whole batch would wait that long. So the pipeline works in slices of
a fifth of a millisecond at most, and between two of them lets go of the interpreter for a
moment (``time.sleep(0)``, which on Linux sleeps for the thread's timer slack, about
50 µs): a thread waiting for it takes it then, and the slice after waits its turn. The
application's ``sys.setswitchinterval`` is never changed.

A slice counts the thread's own work: after it waited for something (it held nothing
meanwhile) its owner calls :meth:`Breath.restart`. Letting go is a thread switch when
another thread wants the interpreter, so a slice is never cut short for nothing.
"""

from __future__ import annotations

import time

__all__ = ["SLICE_SECONDS", "Breath"]

#: The longest the pipeline runs Python before it lets other threads in.
SLICE_SECONDS = 0.0002

_perf_counter = time.perf_counter
_sleep = time.sleep


class Breath:
    """Call it between two small steps of a long job: past :data:`SLICE_SECONDS` since the
    last breath, it lets go of the interpreter once."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = _perf_counter()

    def restart(self) -> None:
        """A new slice begins: the thread waited, and held nothing meanwhile."""
        self._last = _perf_counter()

    def __call__(self) -> None:
        now = _perf_counter()
        if now - self._last >= SLICE_SECONDS:
            _sleep(0)
            self._last = _perf_counter()
