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

from blinker import Namespace

__all__ = [
    "batch_failed",
    "batch_sent",
    "element_dropped",
    "element_queued",
    "namespace",
    "rate_limited",
    "request_retried",
]

namespace = Namespace()

element_queued = namespace.signal("element-queued", doc="A record was accepted by a client.")
element_dropped = namespace.signal(
    "element-dropped", doc="Records were dropped; ``reason`` says why, ``error`` has the details."
)
batch_sent = namespace.signal("batch-sent", doc="A request was delivered (2xx).")
batch_failed = namespace.signal("batch-failed", doc="Records were given up on; ``error`` says why.")
request_retried = namespace.signal(
    "request-retried", doc="A request will be retried after ``delay``."
)
rate_limited = namespace.signal(
    "rate-limited", doc="The client waits ``wait`` seconds for its limits."
)
