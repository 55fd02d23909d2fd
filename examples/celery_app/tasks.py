"""A Celery app whose tasks track events for the customer that sent them.

Worker: ``celery -A tasks worker`` (see README.md).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init
from moetrack.integrations.celery import setup

import moetrack

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("shop", broker=BROKER)
setup(app)  # the sender's moetrack context travels with every task


@worker_init.connect
def init_moetrack(**_: object) -> None:
    # Credentials and endpoint from MOETRACK_* variables; pool processes inherit the client.
    moetrack.init(flush_interval=0.5)


@app.task
def send_receipt(order_id: str, amount: int) -> None:
    # No customer named here: it is the one bound where the task was sent.
    moetrack.track("Receipt Sent", order_id=order_id, amount=amount)
