"""The emulator's ``idle_timeout``: a kept-alive connection left idle longer is forgotten, and
the next request on it is reset without an answer, as a load balancer does to the connection
of a process frozen between serverless invocations."""

from __future__ import annotations

import http.client
import json
from base64 import b64encode

import pytest

from moetrack.testing import Emulator


def _post(conn: http.client.HTTPConnection, emu: Emulator) -> int:
    token = b64encode(f"{emu.app_id}:{emu.api_key}".encode()).decode()
    body = json.dumps({"type": "transition", "elements": []})
    conn.request(
        "POST",
        f"/v1/transition/{emu.app_id}",
        body=body,
        headers={
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "MOE-APPKEY": emu.app_id,
        },
    )
    response = conn.getresponse()
    response.read()
    return response.status


def test_a_connection_idle_past_the_timeout_is_reset_on_its_next_request() -> None:
    with Emulator(idle_timeout=0.1) as emu:
        conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
        try:
            assert _post(conn, emu) == 200
            assert emu.wait_for(lambda: emu.stale_connections == 1)
            with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
                _post(conn, emu)
            conn.close()
            assert _post(conn, emu) == 200  # a fresh connection is served
        finally:
            conn.close()
        assert len(emu.requests()) == 2  # the reset request never reached the API


def test_without_an_idle_timeout_connections_live_until_the_client_closes_them() -> None:
    with Emulator() as emu:
        conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
        try:
            assert _post(conn, emu) == 200
            assert emu.stale_connections == 0
            assert _post(conn, emu) == 200
        finally:
            conn.close()
