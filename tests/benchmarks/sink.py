"""The loopback sink every contender sends to, and the blaster that shows its ceiling.

``python -m tests.benchmarks.sink serve`` runs an HTTP/1.1 keep-alive server on 127.0.0.1
(asyncio protocol, one process, one thread). It answers ``200 {"status":"success"}`` to any
POST at once and counts requests, body bytes and events, parsing each JSON body (gunzipped
when ``Content-Encoding: gzip``):

- Segment and PostHog: the length of the ``batch`` list;
- moetrack: the ``actions`` of every event element plus every customer/device element;
- anything else: one event per body.

Control endpoints (GET): ``/_count``; ``/_reset`` (zero the counters, drop held requests,
unpause); ``/_pause`` (hold POSTs unanswered); ``/_resume`` (answer what was held);
``/_wait?events=N&timeout=S`` (answer once N events were counted, with the sink's
``time.monotonic()`` at the moment the N-th arrived, comparable with the contender's own
clock on Linux).

``python -m tests.benchmarks.sink blast URL SECONDS KIND`` posts one prepared body over one
keep-alive socket as fast as it can and prints what the sink counted, so a reader sees the
sink can take more than any contender sends.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import socket
import sys
import time
import zlib
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

_OK = b'{"status":"success"}'
_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: keep-alive\r\n"
    b"Content-Length: "
)


def count_events(body: bytes, encoding: str) -> int:
    """Events in one request body of any contender; -1 if it is not JSON."""
    try:
        if "gzip" in encoding:
            body = gzip.decompress(body)
        elif "deflate" in encoding:
            body = zlib.decompress(body)
        obj = json.loads(body)
    except (ValueError, OSError, zlib.error):
        return -1
    if isinstance(obj, list):
        return len(obj)
    if not isinstance(obj, dict):
        return 1
    elements = obj.get("elements")
    if isinstance(elements, list):
        n = 0
        for element in elements:
            if isinstance(element, dict) and element.get("type") == "event":
                n += len(element.get("actions") or ())
            else:
                n += 1
        return n
    batch = obj.get("batch")
    if isinstance(batch, list):
        return len(batch)
    return 1


class Sink:
    """Counters, the pause switch and the waiters; shared by every connection."""

    def __init__(self) -> None:
        self.paused = False
        self.held: list[tuple[Conn, str, bytes, str, bool]] = []
        self.waiters: list[tuple[int, Conn, bool, float]] = []
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.events = 0
        self.bad_bodies = 0
        self.max_body = 0
        self.paths: Counter[str] = Counter()
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.reached: dict[int, float] = {}
        self.held.clear()
        self.paused = False
        for _, conn, close, _ in self.waiters:
            conn.respond(json.dumps({"reset": True}).encode(), close)
        self.waiters.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "events": self.events,
            "bad_bodies": self.bad_bodies,
            "max_body": self.max_body,
            "paths": dict(self.paths),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "paused": self.paused,
            "held": len(self.held),
            "now": time.monotonic(),
        }

    def accept(self, conn: Conn, path: str, body: bytes, encoding: str, close: bool) -> None:
        if self.paused:
            self.held.append((conn, path, body, encoding, close))
            return
        self._count(path, body, encoding)
        conn.respond(_OK, close)

    def _count(self, path: str, body: bytes, encoding: str) -> None:
        n = count_events(body, encoding)
        now = time.monotonic()
        if n < 0:
            self.bad_bodies += 1
            n = 0
        self.requests += 1
        self.bytes += len(body)
        self.max_body = max(self.max_body, len(body))
        self.paths[path] += 1
        self.events += n
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        if self.waiters:
            still = []
            for target, conn, close, deadline in self.waiters:
                if self.events >= target:
                    self._answer_wait(conn, close, target, now)
                else:
                    still.append((target, conn, close, deadline))
            self.waiters = still

    def _answer_wait(self, conn: Conn, close: bool, target: int, at: float) -> None:
        answer = self.snapshot()
        answer["reached"] = True
        answer["reached_at"] = at
        answer["target"] = target
        conn.respond(json.dumps(answer).encode(), close)

    def resume(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for conn, path, body, encoding, close in held:
            if conn.alive:
                self._count(path, body, encoding)
                conn.respond(_OK, close)

    def control(self, conn: Conn, target: str, close: bool) -> None:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path == "/_reset":
            self.reset()
        elif path == "/_pause":
            self.paused = True
        elif path == "/_resume":
            self.resume()
        elif path == "/_wait":
            goal = int(query.get("events", "0"))
            timeout = float(query.get("timeout", "60"))
            if self.events >= goal:
                self._answer_wait(conn, close, goal, self.last_at or time.monotonic())
            else:
                self.waiters.append((goal, conn, close, time.monotonic() + timeout))
            return
        elif path != "/_count":
            conn.respond(b'{"error":"unknown control endpoint"}', close)
            return
        conn.respond(json.dumps(self.snapshot()).encode(), close)

    def expire_waiters(self) -> None:
        now = time.monotonic()
        still = []
        for target, conn, close, deadline in self.waiters:
            if now >= deadline:
                answer = self.snapshot()
                answer["reached"] = False
                answer["target"] = target
                conn.respond(json.dumps(answer).encode(), close)
            else:
                still.append((target, conn, close, deadline))
        self.waiters = still


class Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: Content-Length or chunked bodies, keep-alive."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.head: tuple[str, str, dict[str, str]] | None = None
        self.transport: asyncio.Transport | None = None
        self.alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.alive = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False

    def respond(self, body: bytes, close: bool) -> None:
        if not self.alive or self.transport is None:
            return
        self.transport.write(_HEAD + str(len(body)).encode() + b"\r\n\r\n" + body)
        if close:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self._one():
            pass

    def _one(self) -> bool:
        buf = self.buf
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.head = (method, target, headers)
        method, target, headers = self.head
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
            if body is None:
                return False
        else:
            size = int(headers.get("content-length") or 0)
            if len(buf) < size:
                return False
            body = bytes(buf[:size])
            del buf[:size]
        self.head = None
        close = headers.get("connection", "").lower() == "close"
        if target.startswith("/_"):
            self.sink.control(self, target, close)
        elif method == "POST":
            self.sink.accept(
                self, target.split("?", 1)[0], body, headers.get("content-encoding", ""), close
            )
        else:
            self.respond(b"{}", close)
        return True

    def _chunked(self) -> bytes | None:
        buf = self.buf
        pos = 0
        out = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0] or b"0", 16)
            pos = eol + 2
            if size == 0:
                end = buf.find(b"\r\n", pos)
                while end >= 0 and end != pos:  # skip trailers
                    pos = end + 2
                    end = buf.find(b"\r\n", pos)
                if end < 0:
                    return None
                del buf[: end + 2]
                return bytes(out)
            if len(buf) < pos + size + 2:
                return None
            out += buf[pos : pos + size]
            pos += size + 2


async def serve(port: int) -> None:
    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(sink), "127.0.0.1", port, backlog=256)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.2)
            sink.expire_waiters()

    ticker = asyncio.create_task(tick())
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with server:
            await stop.wait()
    finally:
        ticker.cancel()


# -- the blaster ---------------------------------------------------------------------------


def blast_body(kind: str) -> tuple[bytes, int, str]:
    """A request body of ``kind`` (tiny | moetrack | segment), its event count, its path."""
    attrs = {
        "plan": "pro",
        "quantity": 123456,
        "price": 39.99,
        "gift": False,
        "ordered_at": "2024-05-01T10:00:00Z",
    }
    if kind == "tiny":
        return b'{"batch":[{"event":"Purchase"}]}', 1, "/v1/batch"
    if kind == "moetrack":
        action = {"action": "Purchase", "attributes": attrs, "current_time": 1714557600}
        one = len(json.dumps(action, separators=(",", ":")))
        n = (100_000 - 120) // (one + 1)
        body = {
            "type": "transition",
            "elements": [{"type": "event", "customer_id": "bench-user-1", "actions": [action] * n}],
        }
        data = json.dumps(body, separators=(",", ":")).encode()
        return data, n, "/v1/transition/BENCH_APP"
    event = {
        "integrations": {},
        "properties": attrs,
        "timestamp": "2024-05-01T10:00:00.000+00:00",
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        "userId": "bench-user-1",
        "type": "track",
        "event": "Purchase",
        "messageId": "0b6f6a34-38c9-4c3e-9b7c-1f6a0f0c7a1e",
    }
    body = {"batch": [event] * 100, "sentAt": "2024-05-01T10:00:00+00:00", "writeKey": "w"}
    return json.dumps(body).encode(), 100, "/v1/batch"


def blast(url: str, seconds: float, kind: str) -> dict[str, Any]:
    """POST one prepared body again and again over one keep-alive socket."""
    parts = urlsplit(url)
    body, events, path = blast_body(kind)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.create_connection((parts.hostname, parts.port or 80))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = 0
    start = time.perf_counter()
    end = start + seconds
    buf = b""
    while time.perf_counter() < end:
        sock.sendall(request)
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buf[:head_end].lower()
                i = head.find(b"content-length:")
                size = int(head[i + 15 :].split(b"\r\n", 1)[0])
                if len(buf) >= head_end + 4 + size:
                    buf = buf[head_end + 4 + size :]
                    break
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the sink closed the connection")
            buf += chunk
        sent += 1
    elapsed = time.perf_counter() - start
    sock.close()
    return {
        "kind": kind,
        "seconds": elapsed,
        "requests": sent,
        "events": sent * events,
        "body_bytes": len(body),
        "requests_per_s": sent / elapsed,
        "events_per_s": sent * events / elapsed,
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "serve":
        port = int(argv[1]) if len(argv) > 1 else 0
        try:
            asyncio.run(serve(port))
        except KeyboardInterrupt:
            pass
        return 0
    if argv and argv[0] == "blast":
        print("RESULT " + json.dumps(blast(argv[1], float(argv[2]), argv[3])), flush=True)
        return 0
    print("usage: python -m tests.benchmarks.sink serve [PORT] | blast URL SECONDS KIND")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
