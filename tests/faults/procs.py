"""Freeze, wake and kill processes, as a long GC pause, a frozen VM or a crash would."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

__all__ = ["freeze", "kill_9", "wake"]


def freeze(proc: subprocess.Popen[Any]) -> None:
    """SIGSTOP: the process stops at once, wherever it is, holding what it holds."""
    os.kill(proc.pid, signal.SIGSTOP)


def wake(proc: subprocess.Popen[Any]) -> None:
    """SIGCONT: it goes on from where it stopped, unaware that time has passed."""
    os.kill(proc.pid, signal.SIGCONT)


def kill_9(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL: no cleanup, no handoff, whatever it held is left as it was."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
