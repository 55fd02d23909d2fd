"""Signals that moetrack sends, in its own blinker namespace.

Connect a receiver with ``moetrack.signals.batch_sent.connect(fn)``. The sender is the
:class:`~moetrack.Client`. Most signals are sent from the client's background thread, so
receivers must be thread-safe and quick; an exception in a receiver is logged and never
reaches the worker. blinker holds receivers weakly by default: keep a reference to yours (or
pass ``weak=False``). moetrack builds a signal's payload only when it has receivers.

================== =================================== ==========================================
signal             keyword arguments                   when
================== =================================== ==========================================
element_queued     kind                                a record was accepted (caller's thread)
element_dropped    reason, error, count                records were dropped (caller or worker)
batch_sent         records, bytes, users, events,      a request was answered 2xx
                   status
batch_failed       records, error                      records were given up on
request_retried    attempt, delay, error               a request will be sent again
rate_limited       wait, users, events                 the client waits for its own rate limit
================== =================================== ==========================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blinker import NamedSignal, Namespace

    namespace: Namespace
    element_queued: NamedSignal
    element_dropped: NamedSignal
    batch_sent: NamedSignal
    batch_failed: NamedSignal
    request_retried: NamedSignal
    rate_limited: NamedSignal

__all__ = [
    "batch_failed",
    "batch_sent",
    "element_dropped",
    "element_queued",
    "namespace",
    "rate_limited",
    "request_retried",
]

_SIGNALS = {
    "element_queued": ("element-queued", "A record was accepted by a client."),
    "element_dropped": (
        "element-dropped",
        "Records were dropped; ``reason`` says why, ``error`` has the details.",
    ),
    "batch_sent": ("batch-sent", "A request was delivered (2xx)."),
    "batch_failed": ("batch-failed", "Records were given up on; ``error`` says why."),
    "request_retried": ("request-retried", "A request will be retried after ``delay``."),
    "rate_limited": ("rate-limited", "The client waits ``wait`` seconds for its limits."),
}

#: True once the signals exist. blinker is imported (and the signals built) on the first
#: access to one of them, so ``import moetrack`` stays light and a process that never
#: connects a receiver never pays for signals.
built = False


def __getattr__(name: str) -> Any:
    global built
    if name != "namespace" and name not in _SIGNALS:
        raise AttributeError(f"module 'moetrack.signals' has no attribute {name!r}")
    from blinker import Namespace

    space = Namespace()
    values: dict[str, Any] = {"namespace": space}
    for attr, (signal_name, doc) in _SIGNALS.items():
        values[attr] = space.signal(signal_name, doc=doc)
    globals().update(values)
    built = True
    return values[name]
