"""The emulator's HTTP transport: a threading HTTP/1.1 server that reads a request whole,
hands it to one function, and writes the :class:`Reply` back.

Keep-alive is on (``protocol_version = "HTTP/1.1"``, every reply has a Content-Length), the
body is read exactly (Content-Length or chunked), and every open connection is registered so
that :meth:`Server.close_connections` can end kept-alive and stalled ones when the emulator
stops. Nothing here prints: a client hanging up is not news.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, cast

from ._checks import ERRORS, ErrorRow

__all__ = [
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "Reply",
    "Request",
    "Server",
    "fail",
    "json_bytes",
]

NOT_FOUND = ErrorRow(404, "Not Found", "Not Found")
METHOD_NOT_ALLOWED = ErrorRow(405, "Method Not Allowed", "Method Not Allowed")

#: Bodies above this are answered 413 without being read, and the connection is closed.
READ_LIMIT = 16 * 1024 * 1024


@dataclass
class Request:
    """One request as read off the wire."""

    method: str
    target: str  # the path with its query, as sent
    headers: Message
    body: bytes


@dataclass
class Reply:
    """What to answer; ``error`` is the (type, message) of a fail body, for the request log."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    error: tuple[str, str] | None = None


def json_bytes(value: Any) -> bytes:
    # ASCII escapes: a lone surrogate that arrived as "\ud800" must not break a reply.
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def fail(row: ErrorRow, message: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    """The API's fail body, ``{"status": "fail", "error": {"type": ..., "message": ...}}``."""
    message = row.message if message is None else message
    body = {"status": "fail", "error": {"type": row.type, "message": message}}
    return Reply(
        row.status, json_bytes(body), headers=dict(headers or {}), error=(row.type, message)
    )


#: Answers a request; None closes the connection without an answer.
Responder = Callable[[Request], "Reply | None"]


class Server(ThreadingHTTPServer):
    """A thread per connection, and a registry of open connections so they can be closed."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], respond: Responder, idle_timeout: float | None = None
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.respond = respond
        #: Seconds after which an idle connection is forgotten (see :meth:`forgotten`).
        self.idle_timeout = idle_timeout
        #: When each open connection last finished a reply (absent: none yet).
        self.idle_since: dict[socket.socket, float] = {}
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall without DNS.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
            self.idle_since.pop(request, None)
        super().shutdown_request(request)

    def forgotten(self, connection: socket.socket) -> bool:
        """Whether ``connection`` sat idle past ``idle_timeout`` since its last reply.

        A load balancer or a NAT forgets such a connection without telling the client (a
        serverless process frozen between invocations never hears of it); the next request
        on it is met with a reset. The emulator does the same, so clients can be tested on
        what they do with a pooled connection that is dead.
        """
        if self.idle_timeout is None:
            return False
        with self._connections_lock:
            since = self.idle_since.get(connection)
        return since is not None and time.monotonic() - since > self.idle_timeout

    @property
    def stale_connections(self) -> int:
        """Open connections idle past ``idle_timeout``: their next request will be reset."""
        if self.idle_timeout is None:
            return 0
        limit = time.monotonic() - self.idle_timeout
        with self._connections_lock:
            return sum(since < limit for since in self.idle_since.values())

    def close_connections(self) -> None:
        """Shut down every open connection; a handler blocked reading or writing wakes up."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _TooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "moetrack-emulator"
    sys_version = ""
    # Headers and body go out in two writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms per keep-alive request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        server = cast(Server, self.server)
        if server.forgotten(self.connection):
            # SO_LINGER 0: closing sends a reset, not a polite end of stream.
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.close_connection = True
            return
        try:
            body = self._read_body()
        except _TooLarge:
            self._send(fail(ERRORS["payload_too_large"]), close=True)
            return
        except (ValueError, OSError):
            self._send(fail(ErrorRow(400, "Bad Request", "Bad Request")), close=True)
            return
        if body is None:  # the client went away mid-body
            self.close_connection = True
            return
        respond = cast(Server, self.server).respond
        try:
            reply = respond(Request(self.command, self.path, self.headers, body))
        except Exception:
            reply = fail(ERRORS["server_error"])
        if reply is None:
            self.close_connection = True
        else:
            self._send(reply)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > READ_LIMIT:
            raise _TooLarge
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                return None
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > READ_LIMIT:
                raise _TooLarge
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                return None
            chunks.append(chunk)
            self.rfile.readline(1024)  # the CRLF after the chunk

    def _send(self, reply: Reply, close: bool = False) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            close = True
        server = cast(Server, self.server)
        if server.idle_timeout is not None and not close:
            with server._connections_lock:
                server.idle_since[self.connection] = time.monotonic()
        if close:
            self.close_connection = True
