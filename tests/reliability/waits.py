"""Mechanisms instead of timings: which calls wait, and when a request is in flight.

:class:`WaitSpy` notes every call on the thread it watches that can block that thread: a
sleep, a ``Condition``/``Event``/``Barrier``/``Semaphore`` wait, a ``Thread.join``, a
``Lock.acquire`` of a lock that is already held, socket I/O, ``select``. A test proves "the
caller never waits" by watching the calls and finding nothing, whatever the machine's load.

:class:`WatchedTransport` is a transport (the documented ``send()``/``close()`` seam) over
``httpx`` that counts requests in flight, so a test can wait until the worker is provably
inside a request that a paused emulator holds.

No pytest here: scripts run in subprocesses import this module too.
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, NamedTuple

import httpx

import moetrack

__all__ = ["WaitSpy", "WatchedTransport", "call_with_deadline"]

_WAITING_CODE = {
    threading.Condition.wait.__code__: "Condition.wait",
    threading.Condition.wait_for.__code__: "Condition.wait_for",
    threading.Event.wait.__code__: "Event.wait",
    threading.Barrier.wait.__code__: "Barrier.wait",
    threading.Semaphore.acquire.__code__: "Semaphore.acquire",
    threading.Thread.join.__code__: "Thread.join",
}
_BLOCKING_BUILTINS: dict[Any, str] = {time.sleep: "time.sleep", select.select: "select.select"}
for _name in ("poll", "epoll"):
    if hasattr(select, _name):
        _BLOCKING_BUILTINS[getattr(select, _name)] = f"select.{_name}"
_LOCK_TYPE = type(threading.Lock())
#: Callers whose ``acquire`` never blocks (``Condition._is_owned`` tries ``acquire(False)``).
_NON_BLOCKING_ACQUIRE = {threading.Condition._is_owned.__code__}  # type: ignore[attr-defined]
_SOCKET_IO = {"accept", "connect", "recv", "recv_into", "recvfrom", "send", "sendall", "sendto"}


class WaitSpy:
    """A profile hook on the current thread, while in the ``with`` block, that notes each
    call able to block the thread (see the module's docstring) in :attr:`waits`."""

    def __init__(self) -> None:
        self.waits: list[str] = []
        self._previous: Any = None

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            name = _WAITING_CODE.get(frame.f_code)
            if name is not None:
                self.waits.append(name)
        elif event == "c_call":
            name = _BLOCKING_BUILTINS.get(arg)
            if name is not None:
                self.waits.append(name)
                return
            owner = getattr(arg, "__self__", None)
            method = getattr(arg, "__name__", "")
            if (
                method == "acquire"
                and isinstance(owner, _LOCK_TYPE)
                and owner.locked()
                and frame.f_code not in _NON_BLOCKING_ACQUIRE
            ):
                self.waits.append("Lock.acquire (held)")
            elif method in _SOCKET_IO and isinstance(owner, socket.socket):
                self.waits.append(f"socket.{method}")

    def __enter__(self) -> WaitSpy:
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(self._previous)


class Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes


class WatchedTransport:
    """POSTs through ``httpx`` and counts the requests that are in flight."""

    def __init__(self) -> None:
        self._http = httpx.Client()
        self._changed = threading.Condition()
        self.in_flight = 0
        self.started = 0

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        with self._changed:
            self.in_flight += 1
            self.started += 1
            self._changed.notify_all()
        try:
            response = self._http.post(url, content=body, headers=dict(headers), timeout=timeout)
        except httpx.HTTPError as exc:
            raise moetrack.TransportError(f"{type(exc).__name__}: {exc}") from None
        finally:
            with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()
        return Answer(response.status_code, response.headers, response.content)

    def wait_in_flight(self, n: int = 1, timeout: float = 30.0) -> bool:
        """Wait until ``n`` requests are in flight at once (False at the deadline)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.in_flight >= n, timeout)

    def close(self) -> None:
        self._http.close()


def call_with_deadline(fn: Callable[[], Any], deadline: float = 60.0) -> tuple[bool, Any]:
    """Run ``fn`` on another thread; ``(True, result)`` when it returned within ``deadline``
    seconds, ``(False, None)`` when it is still stuck (a generous deadline: it turns "hangs
    for ever" into a failure, and measures nothing)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(deadline)
    return (not thread.is_alive() and bool(result)), (result[0] if result else None)
