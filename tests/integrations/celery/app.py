"""The Celery app the integration tests run in real worker processes.

The worker reads its broker, queue and moetrack settings from the environment the test gives
it; the test process imports the same module to send tasks.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.signals import worker_init, worker_process_init
from moetrack.integrations.celery import setup

import moetrack

BROKER = os.environ.get("MOETRACK_TEST_BROKER", "redis://127.0.0.1:6379/7")
QUEUE = os.environ.get("MOETRACK_TEST_QUEUE", "moetrack-tests")

app = Celery("moetrack_tests", broker=BROKER, backend=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
setup(app)


@worker_init.connect
def _init_moetrack(**_: Any) -> None:
    # In the worker's main process, before the pool forks: children inherit this client.
    if os.environ.get("MOETRACK_ENDPOINT"):
        moetrack.init(flush_interval=float(os.environ.get("MOETRACK_TEST_FLUSH_INTERVAL", "0.05")))
        if os.environ.get("MOETRACK_TEST_TRACK_PARENT"):
            moetrack.track("ParentStarted", customer_id="celery-parent", pid=os.getpid())


@worker_process_init.connect
def _child_started(**_: Any) -> None:
    # A prefork child: the queue it inherited must be empty (the fork hook reset it).
    if os.environ.get("MOETRACK_TEST_TRACK_PARENT"):
        pending = moetrack.get_client().stats().pending
        moetrack.track(
            "ChildStarted", customer_id="celery-child", pid=os.getpid(), inherited=pending
        )


@app.task
def record(action: str, **attrs: Any) -> int:
    moetrack.track(action, pid=os.getpid(), **attrs)
    return os.getpid()


@app.task
def context() -> dict[str, Any]:
    """What is bound while the task runs (JSON-safe)."""
    return {k: (dict(v) if k == "attributes" else v) for k, v in moetrack.current_context().items()}


@app.task
def add(x: int, y: int) -> int:
    moetrack.track("ChainStep", total=x + y)
    return x + y


@app.task(bind=True, max_retries=3)
def flaky(self: Task[Any, Any]) -> int:
    retries: int = self.request.retries
    moetrack.track("Attempt", retries=retries)
    if retries == 0:
        raise self.retry(countdown=0)
    return retries


@app.task
def fan_out(n: int) -> None:
    """Sends tasks from inside a task: they carry the context on."""
    for i in range(n):
        record.delay("FannedOut", index=i)
