"""The default transport: keep-alive pools, and the proxies the environment names.

It drives httpx's own transport without an ``httpx.Client``, so what a client would do for
free is asked here: ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` route the requests through
the proxy, and ``NO_PROXY`` sends them direct. Real client, real emulator, and a real
forward proxy on loopback.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from moetrack.testing import Emulator

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ForwardProxy(ThreadingHTTPServer):
    """A plain-HTTP forward proxy: takes ``POST http://host:port/path`` and passes it on."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[str] = []
        self.auth_seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ForwardProxy

    def do_POST(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        self.server.auth_seen.append(self.headers.get("Authorization", ""))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        target = urlsplit(self.path)
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
            upstream.request("POST", target.path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    server = ForwardProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_http_proxy_in_the_environment_carries_the_requests(
    make_client: Any, emulator: Emulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = make_client()
    client.track("Purchase", customer_id="customer-0001", price=3999)
    assert client.flush(10)
    assert proxy.seen == [f"POST {emulator.url}/v1/transition/{emulator.app_id}"]
    assert proxy.auth_seen[0].startswith("Basic ")
    assert [e["action"] for e in emulator.events()] == ["Purchase"]


def test_all_proxy_serves_when_no_scheme_has_its_own(
    make_client: Any, emulator: Emulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.url.removeprefix("http://"))  # no scheme: http
    client = make_client()
    client.track("Purchase", customer_id="customer-0001", price=3999)
    assert client.flush(10)
    assert len(proxy.seen) == 1
    assert len(emulator.events()) == 1


def test_no_proxy_sends_direct(
    make_client: Any, emulator: Emulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    client = make_client()
    client.track("Purchase", customer_id="customer-0001", price=3999)
    assert client.flush(10)
    assert proxy.seen == []
    assert len(emulator.events()) == 1
