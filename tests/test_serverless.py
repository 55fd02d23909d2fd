"""Serverless functions: flush at the end of each invocation, within the time it has left, and
survive the freeze between invocations (issue 20).

The Lambda handler is called by awslambdaric's own ``handle_event_request``, the function the
Lambda runtime interface client calls for every invocation, with its real ``LambdaContext``.
The freeze is a real process stopped with SIGSTOP for longer than the emulator keeps an idle
connection, then continued.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

import moetrack
from moetrack.testing import Emulator
from tests._need import need_module
from tests.conftest import ClientFactory

# -- with moetrack.flushing() ------------------------------------------------------------------


def test_flushing_block_sends_before_it_ends(emulator: Emulator) -> None:
    moetrack.init(emulator.app_id, emulator.api_key, endpoint=emulator.url)
    with moetrack.flushing():
        moetrack.track("Job", customer_id="u-job")
    # No waiting here: the block ended only once the event was delivered.
    assert [e["action"] for e in emulator.events()] == ["Job"]


def test_flushing_reports_what_it_could_not_send(
    emulator: Emulator, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moetrack")
    client = make_client()
    emulator.pause()  # the request is held past the block's timeout
    try:
        with moetrack.flushing(0.2, client=client):
            client.track("Late", customer_id="u-late")
        messages = [r.getMessage() for r in caplog.records]
        assert any("1 records not delivered" in m for m in messages), messages
    finally:
        emulator.resume()


def test_flushing_is_exported() -> None:
    assert "flushing" in moetrack.__all__
    assert moetrack.__all__ == sorted(moetrack.__all__)


# -- AWS Lambda ---------------------------------------------------------------------------------


class RuntimeClient:
    """The runtime API as ``handle_event_request`` talks to it: it posts the invocation's
    result or error here."""

    def __init__(self) -> None:
        from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller

        self.marshaller = LambdaMarshaller()
        self.results: list[Any] = []
        self.errors: list[Any] = []

    def post_invocation_result(self, invoke_id: str, result: Any, *args: Any) -> None:
        self.results.append(json.loads(result))

    def post_invocation_error(self, invoke_id: str, error: Any, *args: Any) -> None:
        self.errors.append(json.loads(error))


def invoke(handler: Any, event: dict[str, Any], seconds_left: float) -> RuntimeClient:
    """Call ``handler`` the way the Lambda runtime does, with ``seconds_left`` to run."""
    need_module("awslambdaric")
    from awslambdaric import bootstrap

    runtime = RuntimeClient()
    bootstrap.handle_event_request(
        runtime,
        handler,
        "invoke-1",
        json.dumps(event).encode(),
        "application/json",
        None,
        None,
        "arn:aws:lambda:eu-west-1:123456789012:function:checkout",
        int(time.time() * 1000 + seconds_left * 1000),
        None,
        bootstrap.StandardLogSink(),
    )
    return runtime


def test_flush_after_sends_before_the_invocation_returns(emulator: Emulator) -> None:
    from moetrack.integrations.aws_lambda import flush_after

    moetrack.init(emulator.app_id, emulator.api_key, endpoint=emulator.url)

    @flush_after
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        moetrack.track("Checkout", customer_id=event["user"])
        return {"statusCode": 200}

    runtime = invoke(handler, {"user": "u-lambda"}, seconds_left=30)
    assert runtime.results == [{"statusCode": 200}]
    assert runtime.errors == []
    assert [e["action"] for e in emulator.events()] == ["Checkout"]


def test_flush_after_keeps_within_the_time_left_and_reports_what_is_unsent(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moetrack.integrations.aws_lambda import flush_after

    caplog.set_level(logging.WARNING, logger="moetrack")
    client = moetrack.init(emulator.app_id, emulator.api_key, endpoint=emulator.url)
    timeouts: list[float | None] = []
    flush = client.flush

    def spy(timeout: float | None = None) -> bool:
        timeouts.append(timeout)
        return flush(timeout)

    monkeypatch.setattr(client, "flush", spy)
    emulator.pause()  # the server holds the request: the flush cannot finish in time

    @flush_after(margin=0.1)
    def handler(event: dict[str, Any], context: Any) -> str:
        moetrack.track("Checkout", customer_id="u-lambda")
        return "done"

    try:
        runtime = invoke(handler, {}, seconds_left=0.5)
    finally:
        emulator.resume()
    assert runtime.results == ["done"]
    # The flush was given what the context said was left, less the margin.
    assert len(timeouts) == 1
    assert timeouts[0] is not None
    assert 0 < timeouts[0] <= 0.4
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 records not delivered" in m for m in messages), messages


def test_flush_after_flushes_when_the_handler_raises(emulator: Emulator) -> None:
    from moetrack.integrations.aws_lambda import flush_after

    moetrack.init(emulator.app_id, emulator.api_key, endpoint=emulator.url)

    @flush_after
    def handler(event: dict[str, Any], context: Any) -> None:
        moetrack.track("Failed", customer_id="u-lambda")
        raise RuntimeError("payment service down")

    runtime = invoke(handler, {}, seconds_left=30)
    assert runtime.errors
    assert runtime.errors[0]["errorType"] == "RuntimeError"
    assert [e["action"] for e in emulator.events()] == ["Failed"]


# -- the freeze between invocations --------------------------------------------------------------

FROZEN_CHILD = r"""
import json, sys, moetrack
url, app_id, api_key = sys.argv[1:4]
client = moetrack.Client(app_id, api_key, endpoint=url)

def invocation(name):
    client.track(name, customer_id="u-frozen")
    ok = client.flush(30)
    s = client.stats()
    print(json.dumps({"ok": ok, "sent": s.sent, "failed": s.failed, "retried": s.retried}),
          flush=True)

invocation("BeforeFreeze")
sys.stdin.readline()  # the next invocation, after the thaw
invocation("AfterThaw")
"""


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_thawed_process_retries_at_once_on_a_fresh_connection_without_a_failure() -> None:
    # The emulator forgets a connection idle for 0.2 s, as a load balancer forgets the
    # connection of a Lambda frozen between invocations (minutes in real life).
    with Emulator(idle_timeout=0.2) as emu:
        child = subprocess.Popen(
            [sys.executable, "-c", FROZEN_CHILD, emu.url, emu.app_id, str(emu.api_key)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            first = json.loads(child.stdout.readline())
            assert first == {"ok": True, "sent": 1, "failed": 0, "retried": 0}
            os.kill(child.pid, signal.SIGSTOP)
            assert emu.wait_for(lambda: _state(child.pid) == "T")
            assert emu.wait_for(lambda: emu.stale_connections == 1)
            os.kill(child.pid, signal.SIGCONT)
            child.stdin.write("next\n")
            child.stdin.flush()
            second = json.loads(child.stdout.readline())
        finally:
            os.kill(child.pid, signal.SIGCONT)
            child.stdin.close()
            child.wait(30)
        assert second == {"ok": True, "sent": 2, "failed": 0, "retried": 0}
        assert [e["action"] for e in emu.events()] == ["BeforeFreeze", "AfterThaw"]
